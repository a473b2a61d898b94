"""Microsoft Entra tokens through MSAL's ConfidentialClientApplication: delegated refresh tokens (rotated:
the new refresh token replaces the old one in Vault) and app-only client credentials.

MSAL refuses an authority that is not https. Rather than serving the local Entra fake over TLS, MSAL gets
`http_client=RoutedSession(...)`: a requests.Session that sends requests for the configured authority host
to `entra_http_route` (the sandbox's /entra) when that setting is present. MSAL still sees an https
authority (login.microsoftonline.com by default), runs its real discovery and token logic, and the fake's
discovery document advertises endpoints on that same https host, which the session routes again.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msal
import requests
from pydantic import SecretStr

from activities.outlook.settings import OutlookSettings
from activities.outlook.spec import GRAPH_DEFAULT_SCOPE, REAUTH_AADSTS, RESERVED_SCOPES
from core.errors import ConfigurationError, IntegrationError, TemporaryError
from vault.client import CredentialsMissing, VaultError
from vault.credentials import ClientCredentials, OAuth2Credentials

if TYPE_CHECKING:
    from core.plugin import Provider
    from core.runtime import Runtime
    from store.models import Connection

REAUTH_ERRORS = {"invalid_grant", "interaction_required", "consent_required", "login_required"}
TEMPORARY_ERRORS = {"temporarily_unavailable", "server_error"}

APP = "microsoft"  # Vault: the OAuth app (client id and secret) at osi/apps/microsoft


class RoutedSession(requests.Session):
    """MSAL's HTTP client; URLs on `authority_host` are sent to `route` instead (see module docstring)."""

    def __init__(self, authority_host: str, route: str | None, timeout: float) -> None:
        super().__init__()
        self.authority_host = authority_host.rstrip("/")
        self.route = route.rstrip("/") if route else None
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        if self.route and (target == self.authority_host or target.startswith(self.authority_host + "/")):
            target = self.route + target[len(self.authority_host):]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, target, *args, **kwargs)


def http_client(rt: Runtime) -> RoutedSession:
    session = rt.extras.get("outlook.http")
    if session is None:
        session = rt.extras["outlook.http"] = RoutedSession(
            rt.section(OutlookSettings).entra_authority_host, rt.section(OutlookSettings).entra_http_route,
            rt.settings.http_timeout_seconds)
    return session


def authority(rt: Runtime, tenant: str) -> str:
    return f"{rt.section(OutlookSettings).entra_authority_host.rstrip('/')}/{tenant}"


async def msal_app(rt: Runtime, client_id: str, client_secret: str, tenant: str) -> msal.ConfidentialClientApplication:
    """One MSAL app per (client, tenant, secret) per process; building it fetches the discovery document."""
    key = (client_id, tenant, hashlib.sha256(client_secret.encode()).hexdigest())
    apps: dict[tuple[str, str, str], msal.ConfidentialClientApplication] = rt.extras.setdefault("outlook.apps", {})
    if key in apps:
        return apps[key]
    lock: asyncio.Lock = rt.extras.setdefault("outlook.apps_lock", asyncio.Lock())
    async with lock:
        if key not in apps:
            try:
                apps[key] = await asyncio.to_thread(
                    msal.ConfidentialClientApplication, client_id, client_credential=client_secret,
                    authority=authority(rt, tenant), http_client=http_client(rt), instance_discovery=False)
            except requests.RequestException as exc:
                raise TemporaryError(f"Microsoft identity platform unreachable: {type(exc).__name__}",
                                     code="authority_unreachable", provider="outlook") from None
            except ValueError as exc:
                raise ConfigurationError(f"Microsoft authority for tenant {tenant!r} is not usable: "
                                         f"{str(exc).splitlines()[0][:200]}", code="invalid_authority",
                                         provider="outlook") from None
    return apps[key]


def token_error(result: dict[str, Any], what: str, *, reauth_possible: bool) -> IntegrationError:
    """An error for an MSAL error dict; branches on `error` and AADSTS codes, never on the description."""
    error = str(result.get("error") or "token_error")
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    label = f"AADSTS{codes[0]}" if codes else error
    first_line = str(result.get("error_description") or "").split("\r\n")[0].split("\n")[0][:240]
    message = f"Microsoft refused {what}: {error}" + (f" ({first_line})" if first_line else "")
    if error in TEMPORARY_ERRORS:
        return TemporaryError(message, code=label, provider="outlook")
    if reauth_possible and (error in REAUTH_ERRORS or set(codes) & REAUTH_AADSTS):
        return ConfigurationError(message + "; an administrator must reconnect the calendar", code=label,
                                  provider="outlook", details={"reauth": True, "aadsts": codes})
    return ConfigurationError(message, code=label, provider="outlook", details={"aadsts": codes})


def delegated_scopes(rt: Runtime, granted: list[str]) -> list[str]:
    wanted = granted or [s for s in rt.section(OutlookSettings).scopes.split(",") if s]
    return [s for s in wanted if s.lower() not in RESERVED_SCOPES]


async def app_secrets(rt: Runtime) -> tuple[str, str]:
    try:
        app = await rt.vault.read_app(APP)
    except CredentialsMissing:
        raise ConfigurationError("the Microsoft app registration (client id and secret) is not configured in Vault",
                                 code="app_not_configured", provider="outlook") from None
    except VaultError as exc:
        raise TemporaryError(str(exc), code="vault_unavailable", provider="vault") from None
    if not app.client_id or app.client_secret is None:
        raise ConfigurationError("the Microsoft app in Vault lacks client_id or client_secret",
                                 code="app_not_configured", provider="outlook")
    return app.client_id, app.client_secret.get_secret_value()


async def _run(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        result = await asyncio.to_thread(fn, *args, **kwargs)
    except requests.RequestException as exc:
        raise TemporaryError(f"Microsoft token endpoint unreachable: {type(exc).__name__}",
                             code="token_endpoint_unreachable", provider="outlook") from None
    except ValueError as exc:  # an unreadable (non-JSON) answer, e.g. a 5xx page
        raise TemporaryError(f"Microsoft token endpoint gave an unreadable answer: {type(exc).__name__}",
                             code="token_endpoint_unavailable", provider="outlook") from None
    return result if isinstance(result, dict) else {"error": "no_response"}


async def refresh(rt: Runtime, provider: Provider, connection: Connection,
                  current: OAuth2Credentials) -> OAuth2Credentials:
    """Redeem the refresh token; Entra returns a NEW refresh token, which replaces the old one in Vault
    (TokenRefresher writes what this returns under its check-and-set claim)."""
    if current.refresh_token is None:
        raise ConfigurationError("no refresh token stored; reconnect the calendar", code="no_refresh_token",
                                 provider="outlook", details={"reauth": True})
    client_id, secret = await app_secrets(rt)
    tenant = str(connection.settings.get("tenant") or current.account.get("tenant") or "common")
    app = await msal_app(rt, client_id, secret, tenant)
    scopes = delegated_scopes(rt, current.scopes)
    result = await _run(app.acquire_token_by_refresh_token, current.refresh_token.get_secret_value(), scopes)
    if "access_token" not in result:
        raise token_error(result, "the refresh token", reauth_possible=True)
    expires_in = float(result.get("expires_in") or 3599)
    return OAuth2Credentials(
        access_token=SecretStr(str(result["access_token"])),
        refresh_token=SecretStr(str(result.get("refresh_token") or current.refresh_token.get_secret_value())),
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        scopes=[s for s in str(result.get("scope") or "").split() if s] or current.scopes,
        account=current.account,
    )


async def app_only_token(rt: Runtime, creds: ClientCredentials, *, force: bool = False) -> str:
    """An application token (client credentials); MSAL caches it and renews it ahead of expiry."""
    app = await msal_app(rt, creds.client_id, creds.client_secret.get_secret_value(), creds.tenant)
    if force:
        app.remove_tokens_for_client()
    result = await _run(app.acquire_token_for_client, scopes=[GRAPH_DEFAULT_SCOPE])
    if "access_token" not in result:
        raise token_error(result, "the client credentials", reauth_possible=False)
    return str(result["access_token"])
