"""OAuth connect flows for calendar providers: authorization code with PKCE (S256) and a one-shot state, tokens
written to Vault and the connection (re)activated. Each calendar provider supplies its `ConnectFlow`.

GET {install_path}?organization_id=…&name=…[&login_hint=…][&tenant=…]
    → 302 to the provider's consent page. The link must be signed (`by` + `exp` + `sig`, see `core.links`; only
      development mode accepts unsigned links) or carry the operator key as a bearer token. The state records
      who asked (`by`), and so does the audit event of the completed connect.
GET {install_path minus /install}/callback?code=…&state=…
    → exchanges the code (with the PKCE verifier) through the pipeline and stores the tokens.

The PKCE verifier is HMAC(app client secret, state): recomputed at the callback, never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from activities.calendar.settings import CalendarSettings
from activities.calendar.store import consume_state, issue_state
from core.errors import IntegrationError
from core.links import link_requester
from core.settings import Settings

if TYPE_CHECKING:
    from core.plugin import Provider
    from core.runtime import Runtime

log = logging.getLogger("osi.gateway.calendar")

_SEGMENT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-")


class ConnectFlow(Protocol):
    """What differs per provider in an authorization-code connect."""

    async def app_secrets(self, rt: Runtime) -> tuple[str, str]:
        """(client id, client secret) of the provider app, from Vault."""

    def authorize_url(self, rt: Runtime, params: dict[str, str], tenant: str) -> str:
        """The consent page URL for these common parameters (client_id, redirect_uri, state, PKCE…)."""

    async def exchange(self, rt: Runtime, organization_id: str, name: str, code: str, verifier: str,
                       redirect_uri: str, tenant: str) -> str:
        """Redeem the code through the pipeline, store the connection; who was connected."""


def callback_path(provider: Provider) -> str:
    assert provider.spec.install_path is not None
    return provider.spec.install_path.rsplit("/", 1)[0] + "/callback"


def callback_url(settings: Settings, provider: Provider) -> str:
    return f"{settings.gateway_public_url.rstrip('/')}{callback_path(provider)}"


def pkce_pair(app_secret: str, state: str) -> tuple[str, str]:
    """(verifier, S256 challenge) for a state; the verifier is 43 base64url characters (RFC 7636)."""
    verifier = base64.urlsafe_b64encode(hmac.new(app_secret.encode(), f"pkce:{state}".encode(),
                                                 hashlib.sha256).digest()).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
                        f"<p>{html.escape(body)}</p>", status_code=status)


def _valid_segment(value: str) -> bool:
    return 0 < len(value) <= 128 and set(value) <= _SEGMENT


def router(provider: Provider, flow: ConnectFlow) -> APIRouter:
    """The install and callback routes of one calendar provider."""
    r = APIRouter()
    install_path = provider.spec.install_path
    assert install_path is not None

    async def install(request: Request, organization_id: str, name: str = "default",
                      login_hint: str | None = None, tenant: str = "common") -> Response:
        rt: Runtime = request.app.state.rt
        settings: Settings = request.app.state.settings
        if not (_valid_segment(organization_id) and _valid_segment(name) and _valid_segment(tenant)):
            return _page("Invalid connect link", "organization_id, name and tenant may hold letters, digits and "
                         "_.@- only (at most 128 characters).", 400)
        requester = link_requester(settings, install_path, organization_id, name, request.query_params,
                                   request.headers.get("authorization"))
        if requester is None:
            return _page("Not authorized", "This connect link is not signed or has expired; ask an administrator "
                         "for a new one (osi calendar connect-link).", 401)
        try:
            client_id, secret = await flow.app_secrets(rt)
        except IntegrationError as exc:
            return _page("Calendar app not configured", exc.message, 503)
        state = secrets.token_urlsafe(32)
        _, challenge = pkce_pair(secret, state)
        await rt.store.run(issue_state, rt.store, state, provider.name, organization_id, name,
                           rt.section(CalendarSettings).oauth_state_ttl_seconds, tenant, requester)
        params = {"client_id": client_id, "redirect_uri": callback_url(settings, provider), "response_type": "code",
                  "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
        if login_hint:
            params["login_hint"] = login_hint
        return RedirectResponse(flow.authorize_url(rt, params, tenant), status_code=302)

    async def callback(request: Request, state: str = "", code: str | None = None,
                       error: str | None = None) -> Response:
        rt: Runtime = request.app.state.rt
        pending = await rt.store.run(consume_state, rt.store, state, provider.name) if state else None
        if pending is None:
            return _page("Connect link expired", "The connect state is unknown, used or expired: start again.", 400)
        if error or not code:
            return _page("Not connected", f"The provider answered: {error or 'no authorization code'}.", 400)
        try:
            _, secret = await flow.app_secrets(rt)
            verifier, _ = pkce_pair(secret, state)
            who = await flow.exchange(rt, pending.organization_id, pending.connection_name, code, verifier,
                                      callback_url(request.app.state.settings, provider), pending.tenant or "common")
        except IntegrationError as exc:
            log.warning("calendar connect failed for %s/%s: %s", provider.name, pending.connection_name, exc.message)
            return _page("Not connected", exc.message, 400)
        await rt.store.run(rt.store.audit, pending.organization_id, "oauth", f"{provider.name}.connect", "ok",
                           target=f"{provider.integration_type}/{pending.connection_name}",
                           detail={"requested_by": pending.requested_by})
        return _page("Calendar connected", f"{who} is connected to organization {pending.organization_id} as "
                     f"connection {pending.connection_name!r}.")

    r.add_api_route(install_path, install, methods=["GET"])
    r.add_api_route(callback_path(provider), callback, methods=["GET"])
    return r
