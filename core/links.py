"""Signed connect links: the URL an administrator opens to (re)connect an OAuth connection, and its check.

Links are signed with a key of their own, generated in Vault on first use (`osi/keys/link-signing`), never with an
admin key. A link expires, is bound to the install path, organization and connection name, and names who asked
for it (`by`, also signed): the OAuth state issued from it records that, and so does the audit event of the
completed connect. Only in development mode are unsigned links accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from core.settings import Settings
from core.vaults import make_vault

LINK_TTL_SECONDS = 7 * 86_400
SIGNING_KEY = "link-signing"
UNSIGNED_DEV = "dev:unsigned-link"
_keys: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


def signing_key(settings: Settings) -> bytes:
    """The link-signing key (read once per process and Vault address)."""
    where = (settings.vault_addr, settings.vault_kv_mount)
    with _lock:
        key = _keys.get(where)
        if key is None:
            key = _keys[where] = make_vault(settings).generated_key(SIGNING_KEY)
    return key


def _signature(key: bytes, path: str, organization_id: str, name: str, expires: int, by: str) -> str:
    # The path is signed too: a link for one provider cannot be replayed against another's install route.
    msg = f"{path}|{organization_id}|{name}|{expires}|{by}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def connect_link(settings: Settings, path: str, organization_id: str, name: str,
                 ttl_seconds: int = LINK_TTL_SECONDS, *, requested_by: str = "system", **extra: str) -> str:
    """The signed, expiring link for `path` (a provider's install route), so nobody can bind their own account
    to another organization's connection by guessing its name."""
    exp = int(time.time()) + ttl_seconds
    sig = _signature(signing_key(settings), path, organization_id, name, exp, requested_by)
    params: dict[str, Any] = {"organization_id": organization_id, "name": name, **extra, "by": requested_by,
                              "exp": exp, "sig": sig}
    return f"{settings.gateway_public_url.rstrip('/')}{path}?{urlencode(params)}"


def link_requester(settings: Settings, path: str, organization_id: str, name: str, query: Mapping[str, str],
                   authorization: str | None = None) -> str | None:
    """Who asked for this link (its signed `by`) when the signature is valid and unexpired for exactly this
    path, organization and name; "operator" for the operator key as a bearer; None when refused."""
    bearer = (authorization or "").removeprefix("Bearer ").strip()
    operator = settings.admin_api_key
    if bearer and operator is not None and hmac.compare_digest(bearer.encode(), operator.get_secret_value().encode()):
        return "operator"
    sig = query.get("sig", "")
    if not sig:
        return UNSIGNED_DEV if settings.dev_mode else None
    try:
        exp = int(query.get("exp", "0"))
    except ValueError:
        return None
    by = query.get("by", "")[:200]
    if exp <= time.time() or not hmac.compare_digest(
            sig.encode(), _signature(signing_key(settings), path, organization_id, name, exp, by).encode()):
        return None
    return by or "unknown"


def link_allowed(settings: Settings, path: str, organization_id: str, name: str, query: Mapping[str, str],
                 authorization: str | None = None) -> bool:
    return link_requester(settings, path, organization_id, name, query, authorization) is not None


def workflow_link(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    """A workflow's page in the Temporal Web UI."""
    ui = settings.temporal_ui_url.rstrip("/")
    link = f"{ui}/namespaces/{quote(settings.namespace(), safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{link}/{quote(run_id, safe='')}/history" if run_id else link


def workflows_link(settings: Settings, query: str) -> str:
    """The Web UI's workflow list filtered by a visibility query (e.g. `core.visibility.search_query(...)`)."""
    ui = settings.temporal_ui_url.rstrip("/")
    return f"{ui}/namespaces/{quote(settings.namespace(), safe='')}/workflows?{urlencode({'query': query})}"
