"""The one guard for requests to user-supplied URLs (alert webhooks, media sources, future callbacks).

https only (outside development mode); never a private, loopback, link-local, metadata, CGNAT, unique-local or
otherwise non-public address, IPv4 or IPv6 (IPv4-mapped and NAT64 forms included); the name is resolved once
per request and the connection goes to that pinned address (Host header and TLS SNI keep the name, so the
certificate is still checked against it), so a DNS answer that changes between the check and the connect
(rebinding) cannot reach inside. Redirects are followed through the same check; timeouts and a body cap bound
every request. `OSI_EGRESS_PRIVATE_HOSTS` names the hosts exempt from the address check (a local receiver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from core.settings import Settings

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa", ".lan")
# Non-public ranges named explicitly (Python's is_global covers them too; this list documents and pins them).
_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32")]


class EgressRefused(Exception):
    """A user-supplied URL the guard will not reach; the message says why (never a secret)."""


def blocked_reason(addr: IPAddress) -> str | None:
    """Why `addr` is not a public destination, or None when it is."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return blocked_reason(addr.ipv4_mapped)
        if addr in _NAT64:
            return blocked_reason(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    for net in _BLOCKED:
        if addr in net:
            return f"{addr} is in the non-public range {net}"
    if not addr.is_global:
        return f"{addr} is not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class EgressGuard:
    """Checks URLs and makes the pinned HTTP client that every user-supplied URL goes through."""

    def __init__(self, *, dev_mode: bool, private_hosts: set[str], resolver: Resolver | None = None,
                 timeout: float = 10.0, max_redirects: int = 3, max_response_bytes: int = 1024 * 1024,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.dev_mode = dev_mode
        self.private_hosts = {h.lower() for h in private_hosts}
        self.resolver = resolver or system_resolver
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.max_response_bytes = max_response_bytes
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, s: Settings, **kw: object) -> EgressGuard:
        hosts = {h.strip() for h in s.egress_private_hosts.split(",") if h.strip()}
        return cls(dev_mode=s.dev_mode, private_hosts=hosts, timeout=s.egress_timeout_seconds,
                   max_redirects=s.egress_max_redirects, max_response_bytes=s.egress_max_response_bytes,
                   **kw)  # type: ignore[arg-type]

    # ---- checks ----------------------------------------------------------------------------------
    def check_static(self, url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of a URL that may be fetched as far as can be told without DNS."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise EgressRefused(f"{url[:200]!r} is not a valid URL") from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise EgressRefused(f"{url[:200]!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise EgressRefused("URLs with credentials are not allowed")
        exempt = host in self.private_hosts
        if parts.scheme == "http" and not (self.dev_mode and exempt):
            raise EgressRefused("only https URLs are allowed" + (
                "" if self.dev_mode else " outside development mode") + " (plain http only to "
                "OSI_EGRESS_PRIVATE_HOSTS in development mode)")
        if not exempt:
            try:
                literal: IPAddress | None = ipaddress.ip_address(host)
            except ValueError:
                literal = None
            if literal is not None and (why := blocked_reason(literal)):
                raise EgressRefused(why)
            if literal is None and (host.endswith(_LOCAL_NAMES) or host in _LOCAL_NAMES or "." not in host):
                raise EgressRefused(f"{host!r} is a local name")
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)

    async def resolve(self, url: str) -> tuple[str, str]:
        """(host, the one address to connect to) after checking every address the name resolves to."""
        _, host, port = self.check_static(url)
        try:
            ipaddress.ip_address(host)
            return host, host
        except ValueError:
            pass
        try:
            addrs = await self.resolver(host, port)
        except (OSError, UnicodeError):
            raise EgressRefused(f"cannot resolve {host!r}") from None
        if not addrs:
            raise EgressRefused(f"{host!r} resolves to no address")
        if host not in self.private_hosts:
            for a in addrs:
                try:
                    why = blocked_reason(ipaddress.ip_address(a.split("%", 1)[0]))
                except ValueError:
                    why = f"{a!r} is not an address"
                if why:
                    raise EgressRefused(f"{host!r} resolves to a non-public address ({why})")
        return host, addrs[0]

    # ---- the client ------------------------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        """One pooled client per process; every request (redirects too) goes through `PinnedTransport`."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=PinnedTransport(self, self._transport or httpx.AsyncHTTPTransport()),
                follow_redirects=True, max_redirects=self.max_redirects,
                timeout=httpx.Timeout(self.timeout), trust_env=False)
        return self._client

    async def read_capped(self, resp: httpx.Response, cap: int | None = None) -> bytes:
        """The body of a streamed response, refusing more than `cap` bytes (stops reading at the cap)."""
        limit = self.max_response_bytes if cap is None else cap
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise EgressRefused(f"the answer declares {int(declared):,} bytes, over the {limit:,}-byte cap")
        chunks, size = [], 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise EgressRefused(f"the answer is over the {limit:,}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    """Resolves and checks each request's host once, then connects to that address (Host header and SNI keep
    the name). Raises EgressRefused before any connection is made to a refused destination."""

    def __init__(self, guard: EgressGuard, inner: httpx.AsyncBaseTransport) -> None:
        self.guard = guard
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host, address = await self.guard.resolve(str(request.url))
        if address != host:
            request.headers.setdefault("Host", request.url.netloc.decode("ascii"))  # the name, not the address
            request.url = request.url.copy_with(host=address)
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
