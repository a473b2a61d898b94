"""Which connection a verified delivery runs under: the one owning the change's `metadata.phone_number_id`.

Meta posts every number of an app to the app's one callback URL, so the URL a delivery arrived at does not
say whose it is. A change runs only under the connection that owns its number (and, on the per-connection
URL, only when that owner shares the URL's organization and Meta app); anything else is recorded raw and
alerted, never run under another connection (a reply would leave from the wrong number).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from activities.whatsapp import apps
from activities.whatsapp.spec import SPEC
from activities.whatsapp.store import WhatsAppStore
from store.models import Connection
from vault.client import CredentialsMissing
from vault.credentials import BearerTokenCredentials

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger("osi.whatsapp.routing")


@dataclass(frozen=True)
class Unroutable:
    reason: str  # unknown_number | ambiguous_number | other_organization | other_app | no_phone_number_id
    detail: str


async def _owners(rt: Runtime, pid: str) -> list[Connection]:
    return list(await rt.store.run(rt.store.find_connections_by_setting, SPEC.integration_type,
                                   "phone_number_id", pid))


async def owner_for_app(rt: Runtime, app_id: str, pid: str) -> Connection | Unroutable:
    """The one connection of this app owning the number."""
    if not pid:
        return Unroutable("no_phone_number_id", "a messages change without metadata.phone_number_id")
    owners = [c for c in await _owners(rt, pid) if str(c.settings.get("app_id") or "") == app_id]
    if not owners:
        return Unroutable("unknown_number", f"no connection of app {app_id} has phone number id {pid}")
    if len(owners) > 1:
        return Unroutable("ambiguous_number", f"{len(owners)} connections claim phone number id {pid}")
    return owners[0]


async def app_secret_of(rt: Runtime, conn: Connection, creds: BearerTokenCredentials | None) -> str:
    """The secret Meta signs this connection's deliveries with: its app's when it names a registered app (Meta
    signs with the app secret), else the one stored with the connection (setups from before apps)."""
    app_id = str(conn.settings.get("app_id") or "")
    found = await apps.keys(rt, app_id) if app_id else None
    if found is not None:
        return found.app_secret
    if creds is not None and creds.app_secret is not None:
        return creds.app_secret.get_secret_value()
    return ""


async def _bearer(rt: Runtime, conn: Connection) -> BearerTokenCredentials | None:
    try:
        creds = await rt.vault.read(rt.credentials_path(conn))
    except CredentialsMissing:
        return None
    return creds if isinstance(creds, BearerTokenCredentials) else None


async def owner_for_connection(rt: Runtime, conn: Connection, secret: str, pid: str) -> Connection | Unroutable:
    """On a connection's own URL: that connection for its number; for another number, the owner only when it is
    in the same organization and the same Meta app (the same `app_id`, or the same app secret when neither
    names one), since only then could Meta have posted it here legitimately."""
    if not pid:
        return Unroutable("no_phone_number_id", "a messages change without metadata.phone_number_id")
    if pid == str(conn.settings.get("phone_number_id") or ""):
        return conn
    owners = await _owners(rt, pid)
    same_org = [c for c in owners if c.organization_id == conn.organization_id]
    if not same_org:
        why = "other_organization" if owners else "unknown_number"
        return Unroutable(why, f"phone number id {pid} posted to connection {conn.id}'s URL belongs to "
                               f"{'another organization' if owners else 'no connection'}")
    if len(same_org) > 1:
        return Unroutable("ambiguous_number", f"{len(same_org)} connections claim phone number id {pid}")
    owner = same_org[0]
    app_id, owner_app = str(conn.settings.get("app_id") or ""), str(owner.settings.get("app_id") or "")
    if app_id or owner_app:
        same_app = app_id == owner_app
    else:
        other = await app_secret_of(rt, owner, await _bearer(rt, owner))
        same_app = bool(secret and other) and hmac.compare_digest(secret.encode(), other.encode())
    if not same_app:
        return Unroutable("other_app", f"phone number id {pid} belongs to connection {owner.id} of another Meta app")
    return owner


async def record_unroutable(rt: Runtime, why: Unroutable, doc: dict[str, Any], pid: str, *,
                            app_id: str | None = None, via: Connection | None = None) -> None:
    """Keep the part raw (once per distinct body) and alert the administrators of the app or connection."""
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    first = await rt.store.run(WhatsAppStore(rt.store).record_unrouted, digest, app_id, via.id if via else None,
                               pid, why.reason, doc)
    log.warning("whatsapp webhook not routed (%s): %s", why.reason, why.detail)
    if not first:
        return
    org = via.organization_id if via is not None else None
    if org is None and app_id:
        app = await rt.store.run(WhatsAppStore(rt.store).app, app_id)
        org = app.organization_id if app else None
    await rt.store.run(rt.store.notify_admins, org or apps.OPERATOR_ORG, "whatsapp_unrouted",
                       f"WhatsApp delivery not run ({why.reason}): {why.detail}; kept in whatsapp_unrouted "
                       "(register the number's connection with the right app_id)",
                       connection_id=via.id if via else None, severity="warning")
