"""Meta apps: Meta posts every number of one app to the app's single callback URL, signed with the app secret.

An operator registers an app once (`osi whatsapp app-set`): its id and label in the store, its app secret and
verify token in Vault at `osi/apps/whatsapp-app-{app_id}`. Connections name their app in the `app_id` setting;
the gateway's `/webhooks/whatsapp/app/{app_id}` routes each change to the connection owning its number.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from activities.whatsapp.store import WhatsAppApp, WhatsAppStore
from core.errors import PermanentError
from vault.client import CredentialsMissing, VaultError
from vault.credentials import AppSecrets

if TYPE_CHECKING:
    from core.runtime import Runtime

APP_ID_RE = re.compile(r"^[0-9]{1,32}$")
VAULT_PREFIX = "whatsapp-app-"
# Alerts about an app without an owning organization go to the operator's pseudo-organization.
OPERATOR_ORG = "_operator"


@dataclass(frozen=True)
class AppKeys:
    app_secret: str
    verify_token: str


def vault_name(app_id: str) -> str:
    if not APP_ID_RE.match(app_id or ""):
        raise PermanentError(f"app_id: {app_id!r} is not a Meta app id (digits)", code="invalid_app_id",
                             details={"field": "app_id"})
    return VAULT_PREFIX + app_id


async def set_app(rt: Runtime, app_id: str, app_secret: str, verify_token: str, *, label: str = "",
                  organization_id: str | None = None, actor: str = "operator") -> WhatsAppApp:
    """Register (or update) an app: secrets to Vault, the rest to the store; audited."""
    name = vault_name(app_id)
    if not app_secret or not verify_token:
        raise PermanentError("the app secret and the verify token are both required", code="invalid_app")
    # client_secret: Meta's "App Secret" (signs deliveries); signing_secret: the verify token (the GET challenge).
    await asyncio.to_thread(rt.vault.write_app_sync, name, AppSecrets(
        client_id=app_id, client_secret=SecretStr(app_secret), signing_secret=SecretStr(verify_token)))
    row = await rt.store.run(WhatsAppStore(rt.store).set_app, app_id, label, organization_id)
    await rt.store.run(rt.store.audit, organization_id or OPERATOR_ORG, actor, "whatsapp.app_set", "ok",
                       target=app_id, detail={"label": label})
    return row


async def remove_app(rt: Runtime, app_id: str, *, actor: str = "operator") -> bool:
    name = vault_name(app_id)
    row = await rt.store.run(WhatsAppStore(rt.store).app, app_id)
    removed = await rt.store.run(WhatsAppStore(rt.store).remove_app, app_id)
    await rt.vault.delete(rt.vault.app_path(name))
    if removed:
        await rt.store.run(rt.store.audit, (row.organization_id if row else None) or OPERATOR_ORG, actor,
                           "whatsapp.app_remove", "ok", target=app_id)
    return removed


async def keys(rt: Runtime, app_id: str) -> AppKeys | None:
    """The app's secrets, or None when the app is unknown (its deliveries cannot be verified: refused)."""
    try:
        name = vault_name(app_id)
    except PermanentError:
        return None
    try:
        app = await rt.vault.read_app(name)
    except (CredentialsMissing, VaultError, ValueError):
        return None
    if not isinstance(app, AppSecrets) or app.client_secret is None or app.signing_secret is None:
        return None
    return AppKeys(app.client_secret.get_secret_value(), app.signing_secret.get_secret_value())
