"""A test PKI (CA, server and client certificates) and a TLS-terminating TCP proxy in front of a plaintext
Temporal dev server, which can require a client certificate (mTLS) and an API key it reads off the HTTP/2
request headers (gRPC metadata `authorization: Bearer <key>`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "temporal.test"  # the server certificate's name; the client must ask for it (TLS server name)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for `temporal.test`, a client certificate it signed, and a stranger's."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = _key(), _key()
    ca = _cert("osi test CA", ca_key, None, ca_key, ca=True)
    other_ca = _cert("someone else's CA", other_key, None, other_key, ca=True)
    out: dict[str, Path] = {}
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, cn, issuer, issuer_key, server in (
            ("server", SERVER_NAME, ca, ca_key, True), ("client", "osi-worker", ca, ca_key, False),
            ("stranger", "osi-worker", other_ca, other_key, False)):
        key = _key()
        cert = _cert(cn, key, issuer.subject, issuer_key, server=server)
        out[f"{name}_cert"] = folder / f"{name}.pem"
        out[f"{name}_key"] = folder / f"{name}.key"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(out[f"{name}_key"], key)
    return Pki(ca=folder / "ca.pem", **out)


@dataclass
class Seen:
    """What the proxy observed (read by the tests)."""

    connections: int = 0
    handshake_failures: int = 0
    client_subjects: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)  # :path and authorization of each gRPC call
    refused: int = 0  # connections closed for a missing or wrong API key


class _Observer:
    """Reads the client's HTTP/2 stream passively (h2 as a server that never sends): request headers come
    out as events; the bytes themselves are forwarded unchanged by the proxy."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()

    def feed(self, data: bytes) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                           for k, v in event.headers or []}
                found.append({"path": headers.get(":path", ""), "authorization": headers.get("authorization", "")})
            elif isinstance(event, h2.events.DataReceived) and event.stream_id:
                # The real server grants the window; keep ours open so h2 never sees a flow-control violation.
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(event, h2.events.StreamEnded) or getattr(event, "stream_ended", None) is not None:
                # The response goes by without us: close the stream here so h2's stream count stays low.
                with contextlib.suppress(h2.exceptions.H2Error):
                    self.conn.reset_stream(event.stream_id)
        self.conn.data_to_send()  # what an h2 server would answer: discarded, the real server answers
        return found


class TlsProxy:
    """`127.0.0.1:<port>` (TLS, ALPN h2) -> `upstream` (plaintext gRPC), in a thread with its own event loop."""

    def __init__(self, pki: Pki, upstream: str, *, require_client_cert: bool = False,
                 api_key: str | None = None) -> None:
        self.pki = pki
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.require_client_cert = require_client_cert
        self.api_key = api_key
        self.seen = Seen()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        ctx.set_alpn_protocols(["h2"])  # gRPC clients insist on HTTP/2 by ALPN
        if self.require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.pki.ca)
        return ctx

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    observer: _Observer | None, client: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if observer is not None:
                    try:
                        calls = observer.feed(data)
                    except h2.exceptions.H2Error:
                        calls = [{"path": "?", "authorization": ""}]  # unreadable: treated as unauthenticated
                    self.seen.requests.extend(calls)
                    if self.api_key is not None and any(c["authorization"] != f"Bearer {self.api_key}"
                                                        for c in calls):
                        self.seen.refused += 1
                        client.transport.abort()  # what a gateway does with a request it will not serve
                        writer.transport.abort()
                        return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen.connections += 1
        peer = writer.get_extra_info("peercert")
        if peer:
            self.seen.client_subjects.append(dict(x[0] for x in peer["subject"]).get("commonName", ""))
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.close()
            return
        observer = _Observer()
        await asyncio.gather(self._pipe(reader, up_writer, observer, writer),
                             self._pipe(up_reader, writer, None, writer))

    def _handshake_errors(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        if isinstance(context.get("exception"), ssl.SSLError | ConnectionError):
            self.seen.handshake_failures += 1
            return
        loop.default_exception_handler(context)

    def start(self) -> TlsProxy:
        self._loop.set_exception_handler(self._handshake_errors)
        self._thread.start()

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context(),
                                              ssl_handshake_timeout=10)

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
