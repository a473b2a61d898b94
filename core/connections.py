"""Connection management shared by the CLI, the admin API and the demo: store row + Vault secret."""

from __future__ import annotations

import hashlib
import json
from typing import Any, get_args

from pydantic import SecretStr, TypeAdapter
from temporalio.exceptions import ApplicationError

from core.errors import IntegrationError
from core.plugin import Plugin
from core.runtime import ON_TRIAL, Runtime
from store.db import ConnectionExists, ConnectionNotFound
from store.models import Connection, ConnectionStatus, Health
from vault.client import CredentialsMissing
from vault.credentials import Credentials, OAuth2Credentials

_CREDENTIALS: TypeAdapter[Credentials] = TypeAdapter(Credentials)


def credentials_from(kind: str, secrets: dict[str, Any]) -> Credentials:
    """Credentials of `kind` from what an operator gave, structure kept: a JSON object or list for a secret
    field (a service account key) is stored as its JSON text, and a JSON text given for a structured field
    (`scopes`, `account`) is parsed. Raises pydantic's ValidationError naming the fields, never their values."""
    model = next((m for m in get_args(get_args(Credentials)[0])
                  if m.model_fields["kind"].default == kind), None)
    out: dict[str, Any] = {"kind": kind}
    for key, value in secrets.items():
        field = model.model_fields.get(key) if model is not None else None
        secret_field = field is not None and SecretStr in (field.annotation, *get_args(field.annotation))
        if secret_field and not isinstance(value, str):
            value = json.dumps(value)
        elif field is not None and not secret_field and isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return _CREDENTIALS.validate_python(out)


def _plugin(rt: Runtime, integration_type: str) -> Plugin:
    """The registered provider plugin of this integration type; ValueError names the known ones."""
    try:
        return rt.registry.plugin_for(integration_type)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


async def add_connection(
    rt: Runtime, organization_id: str, integration_type: str, name: str, settings: dict[str, Any],
    credentials: Credentials, *, actor: str = "operator", replace: bool = False,
) -> Connection:
    """Secrets to Vault first, then the store row (so a row never points at nothing)."""
    provider = _plugin(rt, integration_type).provider
    assert provider is not None
    itype = provider.integration_type
    path = rt.vault.connection_path(organization_id, itype, name)
    missing = [k for k in provider.spec.required_settings if not settings.get(k)]
    if missing:
        raise ValueError(f"{itype} connection needs settings: {', '.join(missing)}")
    if not replace:
        # Refuse before touching Vault: writing first would overwrite the live connection's secret.
        try:
            await rt.store.run(rt.store.find_connection, organization_id, itype, name)
        except ConnectionNotFound:
            pass
        else:
            raise ConnectionExists(f"connection {itype}/{name} already exists in organization {organization_id}")
    await rt.vault.write(path, credentials)
    if replace:
        conn = await rt.store.run(rt.store.upsert_connection, organization_id, itype, name, settings)
    else:
        conn = await rt.store.run(rt.store.add_connection, organization_id, itype, name, settings)
    expires = getattr(credentials, "expires_at", None)
    if expires is not None or isinstance(credentials, OAuth2Credentials):
        conn = await rt.store.run(rt.store.update_connection, conn.id, credentials_expire_at=expires)
    await rt.store.run(rt.store.audit, organization_id, actor, "connection.add", "ok",
                       connection_id=conn.id, target=f"{itype}/{name}",
                       detail={"settings": sorted(settings), "credential_kind": credentials.kind})
    return conn


class ConnectionTestFailed(Exception):
    """The new connection's test failed, so it was not kept (`result` says why)."""

    def __init__(self, result: dict[str, Any]) -> None:
        err = result.get("error") or {}
        super().__init__(f"{err.get('error_class', 'error')}: {err.get('message', 'the test failed')}"
                         + (f" (code {err.get('code')})" if err.get("code") is not None else ""))
        self.result = result


async def add_tested_connection(
    rt: Runtime, organization_id: str, integration_type: str, name: str, settings: dict[str, Any],
    credentials: Credentials, *, actor: str = "operator", keep_untested: bool = False,
) -> tuple[Connection, dict[str, Any]]:
    """Add a connection, test it for real, and keep it only when the test passes (or `keep_untested`). A
    discarded one leaves its audit trail (added, tested, removed) and raises no alert."""
    conn = await add_connection(rt, organization_id, integration_type, name, settings, credentials, actor=actor)
    token = ON_TRIAL.set(not keep_untested)
    try:
        result = await test_connection(rt, organization_id, conn.integration_type, name, actor=actor)
    finally:
        ON_TRIAL.reset(token)
    if not result.get("ok") and not keep_untested:
        await remove_connection(rt, organization_id, conn.integration_type, name, actor=actor, revoke=False)
        raise ConnectionTestFailed(result)
    return conn, result


async def update_settings(rt: Runtime, organization_id: str, integration_type: str, name: str,
                          changes: dict[str, Any], unset: list[str] | None = None, *,
                          actor: str = "operator") -> Connection:
    """Change a connection's non-secret settings in place (no revocation, no new secret); audited with the keys
    changed. A required setting cannot be removed."""
    provider = _plugin(rt, integration_type).provider
    assert provider is not None
    conn = await rt.store.run(rt.store.find_connection, organization_id, provider.integration_type, name)
    settings = {**conn.settings, **changes}
    for key in unset or []:
        settings.pop(key, None)
    missing = [k for k in provider.spec.required_settings if not settings.get(k)]
    if missing:
        raise ValueError(f"{provider.integration_type} connection needs settings: {', '.join(missing)}")
    conn = await rt.store.run(rt.store.update_connection, conn.id, settings=settings)
    await rt.store.run(rt.store.audit, organization_id, actor, "connection.update", "ok", connection_id=conn.id,
                       target=f"{provider.integration_type}/{name}",
                       detail={"set": sorted(changes), "unset": sorted(unset or [])})
    return conn


async def rotate_credentials(
    rt: Runtime, organization_id: str, integration_type: str, name: str, credentials: Credentials,
    *, actor: str = "operator",
) -> Connection:
    """Replace a connection's secret (a new Vault version; caches invalidated) and clear its health."""
    itype = _plugin(rt, integration_type).provider.integration_type  # type: ignore[union-attr]
    conn = await rt.store.run(rt.store.find_connection, organization_id, itype, name)
    path = rt.credentials_path(conn)
    old = await rt.vault.read_versioned(path, use_cache=False)
    if old.credentials.kind != credentials.kind:
        raise ValueError(f"rotation keeps the credential kind ({old.credentials.kind}), got {credentials.kind}")
    await rt.vault.write(path, credentials, cas=old.version)
    conn = await rt.store.run(
        rt.store.update_connection, conn.id, status="active", health=Health.UNKNOWN.value,
        credentials_expire_at=getattr(credentials, "expires_at", None),
    )
    await rt.store.run(rt.store.audit, organization_id, actor, "connection.rotate", "ok", connection_id=conn.id,
                       target=f"{itype}/{name}", detail={"vault_version": old.version + 1})
    return conn


async def remove_connection(rt: Runtime, organization_id: str, integration_type: str, name: str,
                            *, actor: str = "operator", revoke: bool = True) -> dict[str, Any]:
    """Revoke the grant at the provider where it can be (best effort, reported), then delete the secrets
    from Vault and the connection from the store. Returns what the revocation did."""
    plugin = _plugin(rt, integration_type)
    assert plugin.provider is not None
    itype = plugin.provider.integration_type
    conn = await rt.store.run(rt.store.find_connection, organization_id, itype, name)
    outcome: dict[str, Any] = {"revoked": False}
    if not revoke:
        outcome["note"] = "not asked to revoke"
    elif plugin.revoke is None:
        outcome["note"] = f"{plugin.name} has no revocation API; the credentials are deleted from Vault"
    elif conn.status == ConnectionStatus.NEEDS_REAUTH.value:
        outcome["note"] = "the provider already refused the credentials; nothing to revoke"
    else:
        try:
            async with rt.action(plugin.provider, organization_id, name, f"{plugin.name}.revoke", actor=actor) as act:
                outcome = await plugin.revoke(act)
        except CredentialsMissing:
            outcome["note"] = "no credentials were stored"
        except ApplicationError as exc:  # the provider is down or refused: remove anyway, and say so
            outcome = {"revoked": False, "error": exc.message}
    await rt.vault.delete(rt.credentials_path(conn))
    await rt.store.run(rt.store.delete_connection, conn.id)
    await rt.store.run(rt.store.audit, organization_id, actor, "connection.remove", "ok",
                       connection_id=conn.id, target=f"{itype}/{name}", detail=outcome)
    return outcome


async def test_connection(rt: Runtime, organization_id: str, integration_type: str, name: str,
                          *, actor: str = "operator") -> dict[str, Any]:
    """A real provider call through the pipeline; records health either way."""
    plugin = _plugin(rt, integration_type)
    assert plugin.provider is not None and plugin.test_connection is not None
    itype = plugin.provider.integration_type
    try:
        async with rt.action(plugin.provider, organization_id, name, f"{plugin.name}.test_connection",
                             actor=actor) as act:
            result = await plugin.test_connection(act)
    except IntegrationError as exc:  # pragma: no cover - converted by the Action on exit
        result = {"ok": False, "error": exc.to_dict()}
    except Exception as exc:
        details = getattr(exc, "details", None)
        err = details[0] if details and isinstance(details[0], dict) else {"message": str(exc)}
        result = {"ok": False, "error": err}
    try:
        conn = await rt.store.run(rt.store.find_connection, organization_id, itype, name)
    except ConnectionNotFound:
        return result
    health = Health.HEALTHY if result.get("ok") else (Health.DEGRADED if "problems" in result else Health.UNHEALTHY)
    await rt.store.run(rt.store.set_health, conn.id, health, {"test": result})
    return result


async def masked_credentials(rt: Runtime, conn: Connection) -> dict[str, Any]:
    """What `show` prints: the credential kind and masked secrets, never the values."""
    try:
        creds = await rt.vault.read(rt.credentials_path(conn), use_cache=False)
    except CredentialsMissing:
        return {"kind": None, "stored": False}
    out: dict[str, Any] = {"stored": True}
    for key, value in creds.to_vault().items():
        if key in creds.model_fields and isinstance(getattr(creds, key), type(None)):
            continue
        secret = getattr(creds, key, None)
        if hasattr(secret, "get_secret_value"):
            # Never a character of the secret: its length and a short fingerprint to compare copies.
            raw = str(value)
            out[key] = f"****({len(raw)} chars, sha256:{hashlib.sha256(raw.encode()).hexdigest()[:8]})"
        else:
            out[key] = value
    return out
