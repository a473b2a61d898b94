"""Vault KV v2 access for connection credentials and app secrets, with a TTL cache."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import threading
import time
from collections.abc import Callable
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

# Until the settings module (being moved into core/) carries these fields, the token file and the AppRole
# secret-id file are also read from the environment here, so a container can use them today.
ENV_TOKEN_FILE = "OSI_VAULT_TOKEN_FILE"
ENV_SECRET_ID_FILE = "OSI_VAULT_SECRET_ID_FILE"


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

    * ``token_file`` (or ``OSI_VAULT_TOKEN_FILE``): a token written and renewed by Vault Agent / OpenBao
      Agent (auto-auth file sink). The file is re-read whenever it changes (checked before each request,
      a ``stat`` call) and once more when a request is refused with 403.
    * ``role_id`` with ``secret_id`` or ``secret_id_file`` (or ``OSI_VAULT_SECRET_ID_FILE``): AppRole. The
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        token_file = token_file or os.environ.get(ENV_TOKEN_FILE) or None
        secret_id_file = secret_id_file or os.environ.get(ENV_SECRET_ID_FILE) or None
        self._mode: Literal["file", "approle", "token"]
        if token_file:
            self._mode = "file"
        elif role_id and (secret_id or secret_id_file):
            self._mode = "approle"
        else:
            self._mode = "token"
        self._client = hvac.Client(url=addr, token=token, timeout=10)
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
        self._cache: dict[str, tuple[float, Versioned]] = {}

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
        now = time.monotonic()
        hit = self._cache.get(path) if use_cache else None
        if hit and hit[0] > now:
            return hit[1]  # hot path: no thread hop when cached
        return await asyncio.to_thread(self.read_versioned_sync, path, use_cache=use_cache)

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
        return await asyncio.to_thread(self.write_sync, path, creds, cas=cas, extra=extra)

    def delete_sync(self, path: str) -> None:
        self._cache.pop(path, None)
        self._delete_raw(path)

    async def delete(self, path: str) -> None:
        await asyncio.to_thread(self.delete_sync, path)

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
        return await asyncio.to_thread(self.read_app_sync, provider)

    def write_app_sync(self, provider: str, app: AppSecrets) -> None:
        path = self.app_path(provider)
        self._cache.pop(path, None)
        self._write_raw(path, app.to_vault())

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
