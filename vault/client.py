"""Vault KV v2 access for connection credentials and app secrets, with a TTL cache."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass
from typing import Any

import hvac
from hvac.exceptions import InvalidPath, InvalidRequest
from pydantic import TypeAdapter

from vault.credentials import AppSecrets, Credentials

_SAFE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
_CREDS: TypeAdapter[Credentials] = TypeAdapter(Credentials)


class VaultError(Exception):
    """Vault is unreachable or refused the request (message never includes a secret)."""


class CredentialsMissing(LookupError):
    """No credentials stored for this connection."""


class CASConflict(Exception):
    """Another writer changed the secret since we read it (check-and-set failed)."""


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
    """Thin async facade over hvac (blocking calls run in threads); nothing else reads secrets."""

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        kv_mount: str = "secret",
        kv_prefix: str = "osi/connections",
        transit_mount: str = "transit",
        cache_ttl: float = 300.0,
    ) -> None:
        self._client = hvac.Client(url=addr, token=token, timeout=10)
        if role_id and secret_id:
            # AppRole login: the token we get back replaces any static one.
            self._client.auth.approle.login(role_id=role_id, secret_id=secret_id)
        self.kv_mount = kv_mount
        self.kv_prefix = kv_prefix.strip("/")
        self.transit_mount = transit_mount
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, Versioned]] = {}

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

    def app_path(self, provider: str) -> str:
        return f"osi/apps/{_segment(provider, 'provider')}"

    # ---- raw KV --------------------------------------------------------------------------
    def _read_raw(self, path: str) -> tuple[dict[str, Any], int, dict[str, Any]]:
        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.kv_mount, raise_on_deleted_version=True
            )
        except InvalidPath as exc:
            raise CredentialsMissing(f"no secret stored at {path}") from exc
        except Exception as exc:  # requests/hvac errors: never include response bodies
            raise VaultError(f"vault read failed for {path}: {type(exc).__name__}") from None
        meta = resp["data"]["metadata"]
        return resp["data"]["data"], int(meta["version"]), meta

    def _write_raw(self, path: str, data: dict[str, Any], cas: int | None = None) -> int:
        try:
            resp = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=cas, mount_point=self.kv_mount
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
            self._client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.kv_mount)
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
            return not self._client.sys.is_sealed() and self._client.is_authenticated()
        except Exception:
            return False

    def ensure_engines(self, transit_key: str) -> None:
        """Enable KV v2 and transit (dev servers) and create the payload key; idempotent."""
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
        resp = self._client.secrets.transit.generate_data_key(
            name=key_name, key_type="plaintext", mount_point=self.transit_mount
        )
        return base64.b64decode(resp["data"]["plaintext"]), resp["data"]["ciphertext"]

    def unwrap_data_key(self, key_name: str, ciphertext: str) -> bytes:
        resp = self._client.secrets.transit.decrypt_data(
            name=key_name, ciphertext=ciphertext, mount_point=self.transit_mount
        )
        return base64.b64decode(resp["data"]["plaintext"])
