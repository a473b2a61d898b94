"""Signed connect links: the URL an administrator opens to (re)connect an OAuth connection, and its check."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from core.settings import Settings

LINK_TTL_SECONDS = 7 * 86_400


def _signature(key: str, path: str, organization_id: str, name: str, expires: int) -> str:
    # The path is signed too: a link for one provider cannot be replayed against another's install route.
    return hmac.new(key.encode(), f"{path}|{organization_id}|{name}|{expires}".encode(), hashlib.sha256).hexdigest()


def connect_link(settings: Settings, path: str, organization_id: str, name: str,
                 ttl_seconds: int = LINK_TTL_SECONDS, **extra: str) -> str:
    """The link for `path` (a provider's install route); signed and expiring when a signing key exists, so
    nobody can bind their own account to another organization's connection by guessing its name."""
    params: dict[str, Any] = {"organization_id": organization_id, "name": name, **extra}
    if settings.admin_api_key is not None:
        exp = int(time.time()) + ttl_seconds
        params |= {"exp": exp, "sig": _signature(settings.admin_api_key.get_secret_value(), path,
                                                 organization_id, name, exp)}
    return f"{settings.gateway_public_url.rstrip('/')}{path}?{urlencode(params)}"


def link_allowed(settings: Settings, path: str, organization_id: str, name: str, query: Mapping[str, str],
                 authorization: str | None = None) -> bool:
    """A valid, unexpired signature for exactly this path, organization and name (or the operator key)."""
    key = settings.admin_api_key
    if key is None:
        return True
    secret = key.get_secret_value()
    bearer = (authorization or "").removeprefix("Bearer ").strip()
    if bearer and hmac.compare_digest(bearer, secret):
        return True
    try:
        exp = int(query.get("exp", "0"))
    except ValueError:
        return False
    sig = query.get("sig", "")
    return exp > time.time() and bool(sig) and hmac.compare_digest(
        sig, _signature(secret, path, organization_id, name, exp))


def workflow_link(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    """A workflow's page in the Temporal Web UI."""
    ui = settings.temporal_ui_url.rstrip("/")
    link = f"{ui}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{link}/{quote(run_id, safe='')}/history" if run_id else link


def workflows_link(settings: Settings, query: str) -> str:
    """The Web UI's workflow list filtered by a visibility query (e.g. `core.visibility.search_query(...)`)."""
    ui = settings.temporal_ui_url.rstrip("/")
    return f"{ui}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows?{urlencode({'query': query})}"
