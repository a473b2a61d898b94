"""OAuth v2 install and token rotation: state store, authorize URL, oauth.v2.access exchange, refresh.

slack_sdk provides the pieces bolt's own OAuth flow is made of (AuthorizeUrlGenerator, the
OAuthStateStore interface, the Installation model); the HTTP exchange goes through the worker's one
pooled httpx client and our classifier, with the client secret sent by HTTP Basic as Slack prefers.
"""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.oauth import AuthorizeUrlGenerator
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.state_store import OAuthStateStore

from activities.slack import store as slack_store
from activities.slack.settings import SlackSettings
from core.connections import add_connection
from core.errors import ConfigurationError, ErrorClass, IntegrationError, TemporaryError
from store.models import Health
from vault.client import CredentialsMissing
from vault.credentials import AppSecrets, OAuth2Credentials

if TYPE_CHECKING:
    from core.plugin import Provider
    from core.runtime import Runtime
    from core.settings import Settings
    from store.db import Store
    from store.models import Connection

log = logging.getLogger("osi.slack.oauth")

APP = "slack"  # Vault app secrets: client_id, client_secret, signing_secret
CALLBACK_PATH = "/slack/oauth/callback"


class StateStore(OAuthStateStore):
    """slack_sdk's state-store interface on our store: one-shot states bound to (organization, name)."""

    def __init__(self, store: Store, ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds

    @property
    def logger(self) -> logging.Logger:
        return log

    def issue(self, *args: Any, **kwargs: Any) -> str:
        """A fresh state for an install of `organization_id`'s connection `name`."""
        organization_id, name = kwargs["organization_id"], kwargs["name"]
        state = secrets.token_urlsafe(24)
        slack_store.issue_state(self.store, state, organization_id, name, self.ttl_seconds,
                                kwargs.get("auto_join"), kwargs.get("requested_by"))
        return state

    def consume(self, state: str) -> bool:
        return self.consume_install(state) is not None

    def consume_install(self, state: str) -> slack_store.SlackOAuthState | None:
        if not state or len(state) > 128:
            return None
        return slack_store.consume_state(self.store, state)


def scopes(settings: Settings) -> list[str]:
    return [s.strip() for s in settings.section(SlackSettings).scopes.split(",") if s.strip()]


def redirect_uri(settings: Settings) -> str:
    return settings.gateway_public_url.rstrip("/") + CALLBACK_PATH


def authorize_url(settings: Settings, client_id: str, state: str, team: str | None = None) -> str:
    """Slack's authorize URL; `team` pre-selects the workspace when the installer belongs to several."""
    return AuthorizeUrlGenerator(client_id=client_id, scopes=scopes(settings), redirect_uri=redirect_uri(settings),
                                 authorization_url=settings.section(SlackSettings).authorize_url
                                 ).generate(state, team=team)


async def app_secrets(rt: Runtime) -> AppSecrets:
    """The Slack app's client id/secret and signing secret, from Vault only."""
    try:
        app = await rt.vault.read_app(APP)
    except CredentialsMissing:
        raise ConfigurationError("the Slack app is not configured: store client_id, client_secret and "
                                 "signing_secret with `osi slack app-set`", code="app_not_configured",
                                 provider="slack") from None
    if not app.client_id or app.client_secret is None:
        raise ConfigurationError("the Slack app has no client_id/client_secret in Vault",
                                 code="app_not_configured", provider="slack")
    return app


async def oauth_access(rt: Runtime, provider: Provider, app: AppSecrets, data: dict[str, str],
                       organization_id: str = "*") -> dict[str, Any]:
    """POST oauth.v2.access (client credentials by HTTP Basic) through the pipeline as an app-level call."""
    assert app.client_secret is not None
    basic = base64.b64encode(f"{app.client_id}:{app.client_secret.get_secret_value()}".encode()).decode()
    async with rt.app_action(provider, organization_id, "slack.oauth_access") as act:
        resp = await act.call("POST", act.base_url().rstrip("/") + "/oauth.v2.access", data=data,
                              headers={"Authorization": f"Basic {basic}"}, authenticate=False)
    return resp.json()


async def _auth_test(rt: Runtime, provider: Provider, token: str, organization_id: str) -> dict[str, Any]:
    async with rt.app_action(provider, organization_id, "slack.auth_test") as act:
        resp = await act.call("POST", act.base_url().rstrip("/") + "/auth.test", json={},
                              headers={"Authorization": f"Bearer {token}"}, authenticate=False)
    return resp.json()


async def exchange_code(rt: Runtime, provider: Provider, organization_id: str, code: str) -> Installation:
    """code → tokens (oauth.v2.access), then auth.test for the bot id, as bolt's installer does."""
    app = await app_secrets(rt)
    body = await oauth_access(rt, provider, app, {"code": code, "redirect_uri": redirect_uri(rt.settings),
                                                  "grant_type": "authorization_code"}, organization_id)
    if body.get("token_type") != "bot" or not body.get("access_token"):
        raise ConfigurationError("oauth.v2.access returned no bot token (the app requests no bot scopes?)",
                                 code="no_bot_token", provider="slack")
    team = body.get("team") or {}
    enterprise = body.get("enterprise") or {}
    auth = await _auth_test(rt, provider, body["access_token"], organization_id)
    return Installation(
        app_id=body.get("app_id"), enterprise_id=enterprise.get("id"), enterprise_name=enterprise.get("name"),
        team_id=team.get("id"), team_name=team.get("name"), bot_token=body["access_token"],
        bot_id=auth.get("bot_id"), bot_user_id=body.get("bot_user_id"), bot_scopes=body.get("scope", ""),
        bot_refresh_token=body.get("refresh_token"), bot_token_expires_in=body.get("expires_in"),
        user_id=(body.get("authed_user") or {}).get("id") or "", token_type="bot",
        is_enterprise_install=bool(body.get("is_enterprise_install")),
    )


def installation_credentials(inst: Installation) -> OAuth2Credentials:
    expires_at = (datetime.fromtimestamp(inst.bot_token_expires_at, UTC)
                  if inst.bot_token_expires_at else None)
    return OAuth2Credentials(
        access_token=inst.bot_token, refresh_token=inst.bot_refresh_token, expires_at=expires_at,
        scopes=list(inst.bot_scopes or []), token_type="bot",
        account={k: v for k, v in {"team_id": inst.team_id, "team_name": inst.team_name,
                                   "bot_user_id": inst.bot_user_id, "bot_id": inst.bot_id,
                                   "app_id": inst.app_id, "enterprise_id": inst.enterprise_id}.items() if v},
    )


def installation_settings(inst: Installation, auto_join: bool | None) -> dict[str, Any]:
    """Non-secret facts of an install kept on the connection row."""
    out: dict[str, Any] = {k: v for k, v in {
        "team_id": inst.team_id, "team_name": inst.team_name, "bot_user_id": inst.bot_user_id,
        "bot_id": inst.bot_id, "app_id": inst.app_id, "enterprise_id": inst.enterprise_id,
        "installer_user_id": inst.user_id or None,
    }.items() if v}
    out["scopes"] = list(inst.bot_scopes or [])
    out["token_rotation"] = inst.bot_refresh_token is not None
    if auto_join is not None:
        out["auto_join"] = auto_join
    return out


async def install(rt: Runtime, provider: Provider, organization_id: str, name: str, code: str, *,
                  auto_join: bool | None = None, actor: str = "oauth") -> Connection:
    """Exchange the code and record the connection (secrets to Vault first, then the row)."""
    inst = await exchange_code(rt, provider, organization_id, code)
    if not inst.team_id:
        raise ConfigurationError("oauth.v2.access answered without a team", code="no_team", provider="slack")
    conn = await add_connection(rt, organization_id, provider.integration_type, name,
                                installation_settings(inst, auto_join), installation_credentials(inst),
                                actor=actor, replace=True)
    await rt.store.run(rt.store.set_health, conn.id, Health.HEALTHY,
                       {"installed": datetime.now(UTC).isoformat(), "team_id": inst.team_id})
    rt.extras.pop("slack.channels", None)  # a re-install may change memberships and scopes
    return conn


async def refresh(rt: Runtime, provider: Provider, connection: Connection,
                  current: OAuth2Credentials) -> OAuth2Credentials:
    """Token rotation for the pipeline's refresher (called once per connection across workers).

    The refresh token is one-shot: Slack revokes it as it issues the next one, so the caller (the
    Vault CAS-claimed TokenRefresher) writes the answer back before anyone else may refresh.
    """
    if current.refresh_token is None:
        raise ConfigurationError("the token expired and the install has no refresh token: re-install the app",
                                 code="token_expired", provider="slack", details={"reauth": True})
    app = await app_secrets(rt)
    try:
        body = await oauth_access(rt, provider, app, {"grant_type": "refresh_token",
                                                      "refresh_token": current.refresh_token.get_secret_value()},
                                  connection.organization_id)
    except IntegrationError as err:
        if err.error_class is ErrorClass.CONFIGURATION:
            err.details["reauth"] = True
            err.message = f"token rotation failed ({err.code}): re-install the app"
        raise
    if not body.get("access_token"):
        raise TemporaryError("oauth.v2.access (refresh) answered without a token", code="malformed_response",
                             provider="slack")
    expires_in = body.get("expires_in")
    fresh = OAuth2Credentials(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token") or current.refresh_token,
        expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None,
        scopes=[s for s in str(body.get("scope") or "").split(",") if s] or current.scopes,
        token_type="bot", account=current.account,
    )
    await rt.store.run(rt.store.update_connection, connection.id, credentials_expire_at=fresh.expires_at)
    return fresh
