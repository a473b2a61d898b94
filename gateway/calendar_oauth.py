"""OAuth connect flows for Google Calendar and Outlook: authorization code with PKCE (S256) and a one-shot
state, tokens written to Vault and the connection (re)activated.

GET /oauth/{google_calendar|outlook}/install?organization_id=…&name=…[&login_hint=…][&tenant=…]
    → 302 to the provider's consent page. When an admin API key is configured the link must be signed
      (`exp` + `sig`, see `install_link`) or carry the key as a bearer token.
GET /oauth/{google_calendar|outlook}/callback?code=…&state=…
    → exchanges the code (with the PKCE verifier) and stores the tokens.

The PKCE verifier is HMAC(app client secret, state): recomputed at the callback, never stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import SecretStr

from activities.errors import IntegrationError
from activities.google_calendar import auth as google_auth
from activities.outlook import auth as ms_auth
from store.calendar import consume_state, issue_state
from vault.credentials import OAuth2Credentials
from worker.connections import add_connection
from worker.settings import Settings

log = logging.getLogger("osi.gateway.calendar")

PROVIDERS = {"google_calendar": "GOOGLE_CALENDAR", "outlook": "OUTLOOK_CALENDAR"}
_SEGMENT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-")


def callback_url(settings: Settings, provider: str) -> str:
    return f"{settings.gateway_public_url.rstrip('/')}/oauth/{provider}/callback"


def signature(key: str, provider: str, organization_id: str, name: str, expires: int) -> str:
    return hmac.new(key.encode(), f"{provider}|{organization_id}|{name}|{expires}".encode(),
                    hashlib.sha256).hexdigest()


def install_link(settings: Settings, provider: str, organization_id: str, name: str,
                 ttl_seconds: int = 7 * 86_400, **extra: str) -> str:
    """The link an administrator opens to connect (or reconnect) a calendar; signed when an admin key exists."""
    params: dict[str, Any] = {"organization_id": organization_id, "name": name, **extra}
    if settings.admin_api_key is not None:
        exp = int(time.time()) + ttl_seconds
        params |= {"exp": exp, "sig": signature(settings.admin_api_key.get_secret_value(), provider,
                                                 organization_id, name, exp)}
    return f"{settings.gateway_public_url.rstrip('/')}/oauth/{provider}/install?{urlencode(params)}"


def _allowed(request: Request, provider: str, organization_id: str, name: str) -> bool:
    key = request.app.state.settings.admin_api_key
    if key is None:
        return True
    secret = key.get_secret_value()
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if bearer and hmac.compare_digest(bearer, secret):
        return True
    try:
        exp = int(request.query_params.get("exp", "0"))
    except ValueError:
        return False
    sig = request.query_params.get("sig", "")
    return exp > time.time() and bool(sig) and hmac.compare_digest(
        sig, signature(secret, provider, organization_id, name, exp))


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


# ---- Google ---------------------------------------------------------------------------------------
async def _google_connect(request: Request, org: str, name: str, code: str, verifier: str) -> str:
    rt = request.app.state.rt
    settings: Settings = request.app.state.settings
    client_id, client_secret = await google_auth.app_secrets(rt)
    resp = await rt.http.post(settings.google_token_url, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": callback_url(settings, "google_calendar"),
        "client_id": client_id, "client_secret": client_secret, "code_verifier": verifier})
    data = resp.json() if resp.content else {}
    if resp.status_code != 200 or "access_token" not in data:
        raise ValueError(f"Google refused the authorization code: {data.get('error', resp.status_code)}")
    if not data.get("refresh_token"):
        raise ValueError("Google returned no refresh token (offline access was not granted)")
    token = str(data["access_token"])
    base = settings.google_calendar_base_url.rstrip("/")
    cal = await rt.http.get(f"{base}/calendars/primary", headers={"Authorization": f"Bearer {token}"})
    primary = cal.json() if cal.status_code == 200 else {}
    email = str(primary.get("id") or "")
    creds = OAuth2Credentials(
        access_token=SecretStr(token), refresh_token=SecretStr(str(data["refresh_token"])),
        expires_at=datetime.now(UTC) + timedelta(seconds=float(data.get("expires_in") or 3599)),
        scopes=str(data.get("scope") or "").split(), account={"email": email} if email else {})
    conn_settings: dict[str, Any] = {"calendar_id": "primary"}
    if email:
        conn_settings["user"] = email
    if primary.get("timeZone"):
        conn_settings["time_zone"] = primary["timeZone"]
    await add_connection(rt, org, PROVIDERS["google_calendar"], name, conn_settings, creds, actor="oauth",
                         replace=True)
    return email or "the Google account"


# ---- Microsoft --------------------------------------------------------------------------------------
async def _microsoft_connect(request: Request, org: str, name: str, tenant: str, code: str, verifier: str) -> str:
    rt = request.app.state.rt
    settings: Settings = request.app.state.settings
    client_id, client_secret = await ms_auth.app_secrets(rt)
    app = await ms_auth.msal_app(rt, client_id, client_secret, tenant)
    scopes = ms_auth.delegated_scopes(rt, [])
    result: dict[str, Any] = await asyncio.to_thread(
        app.acquire_token_by_authorization_code, code, scopes, redirect_uri=callback_url(settings, "outlook"),
        data={"code_verifier": verifier})
    if "access_token" not in result:
        raise ms_auth.token_error(result, "the authorization code", reauth_possible=False)
    claims = result.get("id_token_claims") or {}
    user = str(claims.get("preferred_username") or "")
    tid = str(claims.get("tid") or tenant)
    creds = OAuth2Credentials(
        access_token=SecretStr(str(result["access_token"])),
        refresh_token=SecretStr(str(result["refresh_token"])) if result.get("refresh_token") else None,
        expires_at=datetime.now(UTC) + timedelta(seconds=float(result.get("expires_in") or 3599)),
        scopes=[s for s in str(result.get("scope") or "").split() if s.lower() not in ms_auth.RESERVED_SCOPES],
        account={"tenant": tid, **({"email": user} if user else {})})
    conn_settings: dict[str, Any] = {"tenant": tid, "mailbox": "me"}
    if user:
        conn_settings["user"] = user
    await add_connection(rt, org, PROVIDERS["outlook"], name, conn_settings, creds, actor="oauth", replace=True)
    return user or "the Microsoft account"


def router() -> APIRouter:
    r = APIRouter()

    async def install(request: Request, provider: str, organization_id: str, name: str = "default",
                      login_hint: str | None = None, tenant: str = "common") -> Response:
        rt = request.app.state.rt
        settings: Settings = request.app.state.settings
        if not (_valid_segment(organization_id) and _valid_segment(name) and _valid_segment(tenant)):
            return _page("Invalid connect link", "organization_id, name and tenant may hold letters, digits and "
                         "_.@- only (at most 128 characters).", 400)
        if not _allowed(request, provider, organization_id, name):
            return _page("Not authorized", "This connect link is not signed or has expired; ask an administrator "
                         "for a new one (osi calendar connect-link).", 401)
        try:
            if provider == "google_calendar":
                client_id, secret = await google_auth.app_secrets(rt)
            else:
                client_id, secret = await ms_auth.app_secrets(rt)
        except IntegrationError as exc:
            return _page("Calendar app not configured", exc.message, 503)
        state = secrets.token_urlsafe(32)
        _, challenge = pkce_pair(secret, state)
        await rt.store.run(issue_state, rt.store, state, provider, organization_id, name,
                           settings.calendar_oauth_state_ttl_seconds, tenant if provider == "outlook" else None)
        params = {"client_id": client_id, "redirect_uri": callback_url(settings, provider), "response_type": "code",
                  "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
        if login_hint:
            params["login_hint"] = login_hint
        if provider == "google_calendar":
            params |= {"scope": " ".join(s for s in settings.google_calendar_scopes.split(",") if s),
                       "access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"}
            return RedirectResponse(f"{settings.google_authorize_url}?{urlencode(params)}", status_code=302)
        scopes = ["offline_access", "openid", "profile", *ms_auth.delegated_scopes(rt, [])]
        params |= {"scope": " ".join(scopes), "response_mode": "query", "prompt": "select_account"}
        # The browser goes to the public authority (or, locally, where MSAL's requests are routed).
        host = (settings.entra_http_route or settings.entra_authority_host).rstrip("/")
        return RedirectResponse(f"{host}/{quote(tenant)}/oauth2/v2.0/authorize?{urlencode(params)}",
                                status_code=302)

    async def callback(request: Request, provider: str, state: str = "", code: str | None = None,
                       error: str | None = None) -> Response:
        rt = request.app.state.rt
        pending = await rt.store.run(consume_state, rt.store, state, provider) if state else None
        if pending is None:
            return _page("Connect link expired", "The connect state is unknown, used or expired: start again.", 400)
        if error or not code:
            return _page("Not connected", f"The provider answered: {error or 'no authorization code'}.", 400)
        try:
            if provider == "google_calendar":
                _, secret = await google_auth.app_secrets(rt)
                verifier, _ = pkce_pair(secret, state)
                who = await _google_connect(request, pending.organization_id, pending.connection_name, code, verifier)
            else:
                _, secret = await ms_auth.app_secrets(rt)
                verifier, _ = pkce_pair(secret, state)
                who = await _microsoft_connect(request, pending.organization_id, pending.connection_name,
                                               pending.tenant or "common", code, verifier)
        except (IntegrationError, ValueError) as exc:
            message = exc.message if isinstance(exc, IntegrationError) else str(exc)
            log.warning("calendar connect failed for %s/%s: %s", provider, pending.connection_name, message)
            return _page("Not connected", message, 400)
        await rt.store.run(rt.store.audit, pending.organization_id, "oauth", f"{provider}.connect", "ok",
                           target=f"{PROVIDERS[provider]}/{pending.connection_name}")
        return _page("Calendar connected", f"{who} is connected to organization {pending.organization_id} as "
                     f"connection {pending.connection_name!r}.")

    def bind(provider: str) -> None:
        async def _install(request: Request, organization_id: str, name: str = "default",
                           login_hint: str | None = None, tenant: str = "common") -> Response:
            return await install(request, provider, organization_id, name, login_hint, tenant)

        async def _callback(request: Request, state: str = "", code: str | None = None,
                            error: str | None = None) -> Response:
            return await callback(request, provider, state, code, error)

        r.add_api_route(f"/oauth/{provider}/install", _install, methods=["GET"])
        r.add_api_route(f"/oauth/{provider}/callback", _callback, methods=["GET"])

    for provider in PROVIDERS:
        bind(provider)
    return r
