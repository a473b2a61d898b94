"""Connecting a Microsoft account: consent URL, and MSAL's code redemption recorded through the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pydantic import SecretStr

from activities.outlook import auth
from activities.outlook.provider import PROVIDER
from activities.outlook.settings import OutlookSettings
from core.connections import add_connection
from core.errors import IntegrationError
from vault.credentials import OAuth2Credentials

if TYPE_CHECKING:
    from core.runtime import Runtime


class OutlookConnect:
    """The Microsoft side of `activities.calendar.connect`: delegated scopes, a tenant, a rotating refresh token."""

    async def app_secrets(self, rt: Runtime) -> tuple[str, str]:
        return await auth.app_secrets(rt)

    def authorize_url(self, rt: Runtime, params: dict[str, str], tenant: str) -> str:
        s = rt.section(OutlookSettings)
        scopes = ["offline_access", "openid", "profile", *auth.delegated_scopes(rt, [])]
        params = {**params, "scope": " ".join(scopes), "response_mode": "query", "prompt": "select_account"}
        # The browser goes to the public authority (or, locally, where MSAL's requests are routed).
        host = (s.entra_http_route or s.entra_authority_host).rstrip("/")
        return f"{host}/{quote(tenant)}/oauth2/v2.0/authorize?{urlencode(params)}"

    async def exchange(self, rt: Runtime, organization_id: str, name: str, code: str, verifier: str,
                       redirect_uri: str, tenant: str) -> str:
        client_id, client_secret = await auth.app_secrets(rt)
        app = await auth.msal_app(rt, client_id, client_secret, tenant)
        scopes = auth.delegated_scopes(rt, [])

        def classify(result: Any) -> IntegrationError | None:
            if isinstance(result, dict) and "access_token" in result:
                return None
            return auth.token_error(result if isinstance(result, dict) else {}, "the authorization code",
                                    reauth_possible=False)

        async with rt.app_action(PROVIDER, organization_id, "outlook.connect", target=name) as act:
            result: dict[str, Any] = await act.external(
                "POST", auth.authority(rt, tenant) + "/oauth2/v2.0/token",
                lambda: app.acquire_token_by_authorization_code(code, scopes, redirect_uri=redirect_uri,
                                                                data={"code_verifier": verifier}), classify)
        claims = result.get("id_token_claims") or {}
        user = str(claims.get("preferred_username") or "")
        tid = str(claims.get("tid") or tenant)
        creds = OAuth2Credentials(
            access_token=SecretStr(str(result["access_token"])),
            refresh_token=SecretStr(str(result["refresh_token"])) if result.get("refresh_token") else None,
            expires_at=datetime.now(UTC) + timedelta(seconds=float(result.get("expires_in") or 3599)),
            scopes=[s for s in str(result.get("scope") or "").split() if s.lower() not in auth.RESERVED_SCOPES],
            account={"tenant": tid, **({"email": user} if user else {})})
        conn_settings: dict[str, Any] = {"tenant": tid, "mailbox": "me"}
        if user:
            conn_settings["user"] = user
        await add_connection(rt, organization_id, PROVIDER.integration_type, name, conn_settings, creds,
                             actor="oauth", replace=True)
        return user or "the Microsoft account"
