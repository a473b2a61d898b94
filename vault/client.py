"""Vault KV v2 access for connection credentials and app secrets, with a TTL cache."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import hvac
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest
from pydantic import TypeAdapter

from vault.credentials import AppSecrets, Credentials

_SAFE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
_CREDS: TypeAdapter[Credentials] = TypeAdapter(Credentials)
T = TypeVar("T")
log = logging.getLogger("osi.vault")


class VaultError(Exception):
    """Vault is unreachable or refused the request (message never includes a secret)."""


class CredentialsMissing(LookupError):
    """No credentials stored for this connection."""


class CASConflict(Exception):
    """Another writer changed the secret since we read it (check-and-set failed)."""


@dataclass
class AuthStats:
    """What the client did to stay authenticated (metrics and tests observe it)."""

    logins: int = 0  # AppRole logins, the first one included
    renewals: int = 0  # successful renew-self calls
    relogins_on_forbidden: int = 0  # a request was refused with 403 because the token had died
    token_file_reads: int = 0  # the agent's token file was (re-)read because it changed
    token_accessors: list[str] = field(default_factory=list)  # accessor of each token obtained (not secret)


@dataclass
class Versioned:
    """Credentials with the KV version they were read at (for check-and-set writes)."""

    credentials: Credentials
    version: int
    metadata: dict[str, Any]


def _segment(value: str, what: str) -> str:
    if not _SAFE.match(value):
        raise ValueError(f"{what} {value!r} is not a valid path segment (letters, digits, _.@- only)")
    return value


class VaultClient:
    """Thin async facade over hvac (blocking calls run in threads); nothing else reads secrets.

    Authentication, in this order of precedence:

    * ``token_file`` (setting ``OSI_VAULT_TOKEN_FILE``): a token written and renewed by Vault Agent / OpenBao
      Agent (auto-auth file sink). The file is re-read whenever it changes (checked before each request,
      a ``stat`` call) and once more when a request is refused with 403.
    * ``role_id`` with ``secret_id`` or ``secret_id_file`` (setting ``OSI_VAULT_SECRET_ID_FILE``): AppRole. The
      token is renewed lazily, before the first request made after ``renew_fraction`` of its TTL has
      passed; when renewal is refused or the token reaches its max TTL the client logs in again. A request
      refused with 403 because the token died (revoked, expired while idle) logs in once and is repeated
      once. There are no background threads and no sleeping retry loops.
    * ``token``: a static token, used as is.
    """

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        secret_id_file: str | os.PathLike[str] | None = None,
        approle_mount: str = "approle",
        renew_fraction: float = 2 / 3,
        kv_mount: str = "secret",
        kv_prefix: str = "osi/connections",
        transit_mount: str = "transit",
        cache_ttl: float = 300.0,
        stale_ttl: float = 3600.0,
        timeout: float = 5.0,
        threads: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        self._mode: Literal["file", "approle", "token"]
        if token_file:
            self._mode = "file"
        elif role_id and (secret_id or secret_id_file):
            self._mode = "approle"
        else:
            self._mode = "token"
        # A short timeout: a hanging Vault must fail a read quickly (the cached secret is served meanwhile)
        # rather than hold one of this client's few threads for long.
        self._client = hvac.Client(url=addr, token=token, timeout=timeout)
        if self._mode != "token":
            # Ignore the static token (the settings default it to the dev root token) and whatever hvac
            # picked up from VAULT_TOKEN or ~/.vault-token: this process authenticates itself.
            self._client.token = None
        self._token_file = Path(token_file) if token_file else None
        self._token_file_sig: tuple[int, int, int] | None = None
        self._role_id = role_id
        self._secret_id = secret_id
        self._secret_id_file = Path(secret_id_file) if secret_id_file else None
        self.approle_mount = approle_mount
        self.renew_fraction = renew_fraction
        self._clock = clock
        self._auth_lock = threading.Lock()  # requests run in worker threads: one login/renewal at a time
        self._renew_at: float | None = None  # clock time after which the next request renews first
        self._renewable = False
        self._login_ttl = 0.0
        self.stats = AuthStats()
        self.kv_mount = kv_mount
        self.kv_prefix = kv_prefix.strip("/")
        self.transit_mount = transit_mount
        self.cache_ttl = cache_ttl
        self.stale_ttl = stale_ttl
        self._cache: dict[str, tuple[float, Versioned]] = {}
        # Blocking hvac calls run on threads of their own: a hanging Vault cannot starve the store or anything
        # else that runs in threads. Concurrent reads of one path share one request (one thread at most).
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="osi-vault")
        self._inflight: dict[str, asyncio.Future[Versioned]] = {}
        self.stale_served = 0  # reads answered from an expired cache entry while Vault was unreachable
        self._rechecked: dict[str, float] = {}
        self._keys: dict[str, bytes] = {}

    # ---- authentication ------------------------------------------------------------------
    @property
    def auth_mode(self) -> Literal["file", "approle", "token"]:
        return self._mode

    def _login(self) -> None:
        """AppRole login (caller holds the auth lock); the secret id file is re-read so rotation needs no restart."""
        secret_id = self._secret_id
        if self._secret_id_file is not None:
            secret_id = self._secret_id_file.read_text().strip()
        resp = self._client.auth.approle.login(
            role_id=self._role_id, secret_id=secret_id, use_token=True, mount_point=self.approle_mount
        )
        auth = resp["auth"]
        self.stats.logins += 1
        self.stats.token_accessors.append(str(auth.get("accessor", "")))
        self._schedule(float(auth.get("lease_duration") or 0), renewable=bool(auth.get("renewable")))
        self._login_ttl = float(auth.get("lease_duration") or 0)

    def _schedule(self, ttl: float, *, renewable: bool) -> None:
        # ttl 0 means a token that never expires (e.g. root): nothing to schedule. A non-renewable token is
        # "renewed" by logging in again at the same point.
        self._renewable = renewable
        self._renew_at = self._clock() + ttl * self.renew_fraction if ttl > 0 else None

    def _renew_or_login(self) -> None:
        """Past the renewal point (caller holds the lock): renew-self, or log in when that is refused or
        the token is close to its max TTL (a renewal then returns less than what is left to use)."""
        if self._renewable:
            try:
                resp = self._client.auth.token.renew_self()
            except Exception:  # expired, revoked or not renewable any more: a new login below
                resp = None
            if resp is not None:
                ttl = float(resp["auth"].get("lease_duration") or 0)
                # Near max TTL Vault grants only the remainder; renewing that again and again would end in
                # a dead token, so log in instead once the grant falls under one renewal interval.
                if ttl >= self._login_ttl * (1 - self.renew_fraction):
                    self.stats.renewals += 1
                    self._schedule(ttl, renewable=bool(resp["auth"].get("renewable")))
                    return
        self._login()

    def _read_token_file(self, *, force: bool = False) -> bool:
        """Load the agent's token when the file changed (or `force`); True when the token changed."""
        assert self._token_file is not None
        try:
            st = self._token_file.stat()
        except FileNotFoundError:
            return False  # the agent has not written it yet; the request fails with 403 and says so
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._token_file_sig and not force:
            return False
        token = self._token_file.read_text().strip()
        if not token:  # the agent is rewriting it: keep the token we have
            return False
        self._token_file_sig = sig
        self.stats.token_file_reads += 1
        changed = token != self._client.token
        self._client.token = token
        return changed

    def _ensure_token(self) -> None:
        """Before a request: load a changed token file, log in the first time, renew past the renewal point."""
        if self._mode == "file":
            with self._auth_lock:
                self._read_token_file()
        elif self._mode == "approle":
            if self._client.token and (self._renew_at is None or self._clock() < self._renew_at):
                return  # the common case: no lock taken
            with self._auth_lock:
                if not self._client.token:
                    self._login()
                elif self._renew_at is not None and self._clock() >= self._renew_at:
                    self._renew_or_login()

    def _reauthenticate(self, dead_token: str | None) -> bool:
        """After a 403: obtain a new token if ours died; False when nothing can be done (a policy refusal,
        or a static token)."""
        if self._mode == "token":
            return False
        with self._auth_lock:
            if self._client.token != dead_token:
                return True  # another thread already replaced it
            if self._mode == "file":
                return self._read_token_file(force=True)
            try:
                self._client.auth.token.lookup_self()
                return False  # the token is alive: the path is simply not allowed by its policies
            except Forbidden:
                pass
            self.stats.relogins_on_forbidden += 1
            self._login()
            return True

    def _call(self, op: Callable[[], T]) -> T:
        """One Vault request with the token kept alive: renew/login before, one re-login and one repeat on 403."""
        self._ensure_token()
        token = self._client.token
        try:
            return op()
        except Forbidden:
            if not self._reauthenticate(token):
                raise
        return op()

    # ---- paths ---------------------------------------------------------------------------
    def connection_path(self, organization_id: str, integration_type: str, name: str) -> str:
        return "/".join(
            [
                self.kv_prefix,
                _segment(organization_id, "organization id"),
                _segment(integration_type, "integration type"),
                _segment(name, "connection name"),
            ]
        )

    def alert_route_path(self, organization_id: str, route_id: str) -> str:
        """A webhook alert route's signing secret."""
        return f"osi/alerts/{_segment(organization_id, 'organization id')}/{_segment(route_id, 'route id')}"

    def event_subscription_path(self, organization_id: str, subscription_id: str) -> str:
        """An event subscription's signing secret."""
        return (f"osi/events/{_segment(organization_id, 'organization id')}/"
                f"{_segment(subscription_id, 'subscription id')}")

    def app_path(self, provider: str) -> str:
        return f"osi/apps/{_segment(provider, 'provider')}"

    def key_path(self, name: str) -> str:
        """A key the service generates for itself (audit chain, link signing)."""
        return f"osi/keys/{_segment(name, 'key name')}"

    # ---- raw KV --------------------------------------------------------------------------
    def _read_raw(self, path: str) -> tuple[dict[str, Any], int, dict[str, Any]]:
        try:
            resp = self._call(
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.kv_mount, raise_on_deleted_version=True
                )
            )
        except InvalidPath as exc:
            raise CredentialsMissing(f"no secret stored at {path}") from exc
        except Exception as exc:  # requests/hvac errors: never include response bodies
            raise VaultError(f"vault read failed for {path}: {type(exc).__name__}") from None
        meta = resp["data"]["metadata"]
        return resp["data"]["data"], int(meta["version"]), meta

    def _write_raw(self, path: str, data: dict[str, Any], cas: int | None = None) -> int:
        try:
            resp = self._call(
                lambda: self._client.secrets.kv.v2.create_or_update_secret(
                    path=path, secret=data, cas=cas, mount_point=self.kv_mount
                )
            )
        except InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise CASConflict(path) from None
            raise VaultError(f"vault write refused for {path}") from None
        except Exception as exc:
            raise VaultError(f"vault write failed for {path}: {type(exc).__name__}") from None
        return int(resp["data"]["version"])

    def _delete_raw(self, path: str) -> None:
        try:
            kv = self._client.secrets.kv.v2
            self._call(lambda: kv.delete_metadata_and_all_versions(path=path, mount_point=self.kv_mount))
        except InvalidPath:
            return
        except Exception as exc:
            raise VaultError(f"vault delete failed for {path}: {type(exc).__name__}") from None

    # ---- credentials ---------------------------------------------------------------------
    def read_versioned_sync(self, path: str, *, use_cache: bool = True) -> Versioned:
        now = time.monotonic()
        if use_cache:
            hit = self._cache.get(path)
            if hit and hit[0] > now:
                return hit[1]
        data, version, _meta = self._read_raw(path)
        creds = _CREDS.validate_python(data.get("credentials", data))
        entry = Versioned(creds, version, {k: v for k, v in data.items() if k != "credentials"})
        self._cache[path] = (now + self.cache_ttl, entry)
        return entry

    async def read(self, path: str, *, use_cache: bool = True) -> Credentials:
        return (await self.read_versioned(path, use_cache=use_cache)).credentials

    async def read_versioned(self, path: str, *, use_cache: bool = True) -> Versioned:
        """Cached (no thread hop), else one shared read per path on Vault's own threads. While Vault is
        unreachable an expired entry is served for up to `stale_ttl` more seconds, and logged."""
        now = time.monotonic()
        hit = self._cache.get(path)
        if use_cache and hit and hit[0] > now:
            return hit[1]
        try:
            return await self._shared_read(path)
        except VaultError:
            if hit is None or hit[0] + self.stale_ttl <= now:
                raise
            self.stale_served += 1
            log.warning("vault unreachable: serving the cached secret of %s, %.0f s past its TTL", path,
                        now - hit[0])
            return hit[1]

    async def _shared_read(self, path: str) -> Versioned:
        found = self._inflight.get(path)
        if found is None:
            loop = asyncio.get_running_loop()
            found = loop.run_in_executor(self._executor, functools.partial(self.read_versioned_sync, path,
                                                                           use_cache=False))
            self._inflight[path] = found
            found.add_done_callback(lambda _: self._inflight.pop(path, None))
        # Shielded: one waiter being cancelled must not cancel the read the others wait for.
        return await asyncio.shield(found)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking call on Vault's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args,
                                                                                                   **kwargs))

    def write_sync(
        self, path: str, creds: Credentials, *, cas: int | None = None, extra: dict[str, Any] | None = None
    ) -> int:
        data = {"credentials": creds.to_vault(), **(extra or {})}
        self._cache.pop(path, None)
        version = self._write_raw(path, data, cas=cas)
        self._cache[path] = (time.monotonic() + self.cache_ttl, Versioned(creds, version, extra or {}))
        return version

    async def write(
        self, path: str, creds: Credentials, *, cas: int | None = None, extra: dict[str, Any] | None = None
    ) -> int:
        return await self.run(self.write_sync, path, creds, cas=cas, extra=extra)

    def delete_sync(self, path: str) -> None:
        self._cache.pop(path, None)
        self._delete_raw(path)

    async def delete(self, path: str) -> None:
        await self.run(self.delete_sync, path)

    async def recheck(self, path: str, *, min_interval: float = 5.0) -> bool:
        """Re-read a cached secret from Vault itself; True when it changed (rotated by another process). For
        a signature that did not verify with the cached secret: at most one read per path per `min_interval`
        seconds, so forged requests cannot hammer Vault."""
        now = time.monotonic()
        if now - self._rechecked.get(path, float("-inf")) < min_interval:
            return False
        self._rechecked[path] = now
        before = self._cache.get(path)
        try:
            _data, version, _meta = await self.run(self._read_raw, path)
        except (VaultError, CredentialsMissing):
            return False
        if before is not None and before[1].version == version:
            return False
        self._cache.pop(path, None)  # the next read caches the new version
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def invalidate(self, path: str) -> None:
        self._cache.pop(path, None)

    # ---- app secrets ---------------------------------------------------------------------
    def read_app_sync(self, provider: str) -> AppSecrets:
        path = self.app_path(provider)
        now = time.monotonic()
        hit = self._cache.get(path)
        if hit and hit[0] > now and isinstance(hit[1].credentials, AppSecrets):
            return hit[1].credentials
        data, version, _ = self._read_raw(path)
        app = AppSecrets.model_validate(data)
        self._cache[path] = (now + self.cache_ttl, Versioned(app, version, {}))  # type: ignore[arg-type]
        return app

    async def read_app(self, provider: str) -> AppSecrets:
        return await self.run(self.read_app_sync, provider)

    def write_app_sync(self, provider: str, app: AppSecrets) -> None:
        path = self.app_path(provider)
        self._cache.pop(path, None)
        self._write_raw(path, app.to_vault())

    # ---- generated keys ------------------------------------------------------------------
    def generated_key(self, name: str, nbytes: int = 32) -> bytes:
        """The random key `name`, created on first use. Creation is check-and-set on version 0, so processes
        starting together agree on one key (the loser of the race reads the winner's). Kept for the process."""
        cached = self._keys.get(name)
        if cached is not None:
            return cached
        path = self.key_path(name)
        try:
            data, _, _ = self._read_raw(path)
        except CredentialsMissing:
            try:
                self._write_raw(path, {"key": base64.b64encode(os.urandom(nbytes)).decode()}, cas=0)
            except CASConflict:
                pass  # another process created it first
            data, _, _ = self._read_raw(path)
        key = base64.b64decode(str(data["key"]))
        self._keys[name] = key
        return key

    # ---- health and transit --------------------------------------------------------------
    def is_ready(self) -> bool:
        try:
            if self._client.sys.is_sealed():
                return False
            self._ensure_token()
            token = self._client.token
            if self._client.is_authenticated():
                return True
            return self._reauthenticate(token) and bool(self._client.is_authenticated())
        except Exception:
            return False

    def ensure_engines(self, transit_key: str) -> None:
        """Enable KV v2 and transit (dev servers) and create the payload key; idempotent.

        Production servers are set up once by `vault.bootstrap.bootstrap` with an admin token instead.
        """
        self._ensure_token()
        mounts = self._client.sys.list_mounted_secrets_engines()["data"]
        if f"{self.kv_mount}/" not in mounts:
            self._client.sys.enable_secrets_engine("kv", path=self.kv_mount, options={"version": "2"})
        if f"{self.transit_mount}/" not in mounts:
            self._client.sys.enable_secrets_engine("transit", path=self.transit_mount)
        try:
            self._client.secrets.transit.read_key(name=transit_key, mount_point=self.transit_mount)
        except InvalidPath:
            self._client.secrets.transit.create_key(name=transit_key, mount_point=self.transit_mount)

    def generate_data_key(self, key_name: str) -> tuple[bytes, str]:
        """A fresh AES-256 data key: (plaintext bytes, transit-wrapped ciphertext)."""
        resp = self._call(
            lambda: self._client.secrets.transit.generate_data_key(
                name=key_name, key_type="plaintext", mount_point=self.transit_mount
            )
        )
        return base64.b64decode(resp["data"]["plaintext"]), resp["data"]["ciphertext"]

    def unwrap_data_key(self, key_name: str, ciphertext: str) -> bytes:
        resp = self._call(
            lambda: self._client.secrets.transit.decrypt_data(
                name=key_name, ciphertext=ciphertext, mount_point=self.transit_mount
            )
        )
        return base64.b64decode(resp["data"]["plaintext"])
