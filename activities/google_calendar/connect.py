"""Connecting a Google account: consent URL, and the code exchange and primary-calendar read through the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from pydantic import SecretStr

from activities.google_calendar import auth
from activities.google_calendar.provider import PROVIDER
from activities.google_calendar.settings import GoogleCalendarSettings
from core.connections import add_connection
from core.errors import ConfigurationError
from vault.credentials import OAuth2Credentials

if TYPE_CHECKING:
    from core.runtime import Runtime


class GoogleConnect:
    """The Google side of `activities.calendar.connect`: offline access, consent, one refresh token."""

    async def app_secrets(self, rt: Runtime) -> tuple[str, str]:
        return await auth.app_secrets(rt)

    def authorize_url(self, rt: Runtime, params: dict[str, str], tenant: str) -> str:
        s = rt.section(GoogleCalendarSettings)
        params = {**params, "scope": " ".join(x for x in s.scopes.split(",") if x), "access_type": "offline",
                  "prompt": "consent", "include_granted_scopes": "true"}
        return f"{s.authorize_url}?{urlencode(params)}"

    async def exchange(self, rt: Runtime, organization_id: str, name: str, code: str, verifier: str,
                       redirect_uri: str, tenant: str) -> str:
        client_id, client_secret = await auth.app_secrets(rt)
        async with rt.app_action(PROVIDER, organization_id, "google_calendar.connect", target=name) as act:
            data = (await act.call("POST", rt.section(GoogleCalendarSettings).token_url, authenticate=False, data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": client_id, "client_secret": client_secret, "code_verifier": verifier})).json()
            if "access_token" not in data:
                raise ConfigurationError("Google answered the code exchange without an access token",
                                         code="no_access_token", provider=PROVIDER.name)
            if not data.get("refresh_token"):
                raise ConfigurationError("Google returned no refresh token (offline access was not granted)",
                                         code="no_refresh_token", provider=PROVIDER.name)
            token = str(data["access_token"])
            primary = (await act.call("GET", f"{act.base_url().rstrip('/')}/calendars/primary", authenticate=False,
                                      headers={"Authorization": f"Bearer {token}"})).json()
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
        await add_connection(rt, organization_id, PROVIDER.integration_type, name, conn_settings, creds,
                             actor="oauth", replace=True)
        return email or "the Google account"
