"""Google credentials through google-auth: user refresh tokens and service accounts with domain-wide delegation.

google-auth retries the token endpoint itself (500/503/504/408/429 and `internal_failure`). Temporal owns
retries here, so the transport handed to google-auth raises at once on those answers; the pipeline turns
that into a TemporaryError and Temporal schedules the next attempt with jitter.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any

import google.auth.transport
import google.auth.transport.requests
import requests
from google.auth import exceptions as gexc
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from pydantic import SecretStr

from activities.google_calendar.settings import GoogleCalendarSettings
from core.errors import ConfigurationError, IntegrationError, TemporaryError
from vault.client import CredentialsMissing, VaultError
from vault.credentials import OAuth2Credentials, ServiceAccountCredentials

if TYPE_CHECKING:
    from core.plugin import Provider
    from core.runtime import Runtime
    from store.models import Connection

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
RETRYABLE_ERRORS = {"internal_failure", "server_error", "temporarily_unavailable"}
# Token-endpoint errors that only a new consent fixes.
REAUTH_ERRORS = {"invalid_grant", "invalid_scope", "access_denied"}
AHEAD_SECONDS = 300.0

APP = "google"  # Vault: the OAuth app (client id and secret) at osi/apps/google


class TokenEndpointUnavailable(gexc.TransportError):
    """The token endpoint answered with something worth retrying later."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"token endpoint answered HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class NoRetryRequest(google.auth.transport.Request):
    """google-auth's requests transport without google-auth's own retry loop (see module docstring)."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._inner = google.auth.transport.requests.Request(session)
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        resp = self._inner(url, method=method, body=body, headers=headers, timeout=timeout or self._timeout, **kwargs)
        error = None
        try:
            data = json.loads(resp.data) if resp.data else {}
            error = data.get("error") if isinstance(data, dict) else None
        except ValueError:
            pass
        if resp.status in RETRYABLE_STATUS or error in RETRYABLE_ERRORS:
            retry_after = None
            try:
                retry_after = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                pass
            raise TokenEndpointUnavailable(resp.status, retry_after)
        return resp


def _request(rt: Runtime) -> NoRetryRequest:
    session = rt.extras.get("google_calendar.session")
    if session is None:
        session = rt.extras["google_calendar.session"] = requests.Session()
    return NoRetryRequest(session, rt.settings.http_timeout_seconds)


def _refresh_failure(exc: BaseException, what: str) -> IntegrationError:
    if isinstance(exc, TokenEndpointUnavailable):
        return TemporaryError(f"Google token endpoint unavailable while {what} (HTTP {exc.status})",
                              code="token_endpoint_unavailable", provider="google_calendar",
                              retry_after=exc.retry_after)
    if isinstance(exc, gexc.TransportError):
        return TemporaryError(f"Google token endpoint unreachable while {what}", code="token_endpoint_unreachable",
                              provider="google_calendar")
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error") or "refresh_failed")
    description = str(data.get("error_description") or "")
    message = f"Google refused {what}: {error}" + (f" ({description})" if description else "")
    if error in REAUTH_ERRORS:
        return ConfigurationError(message + "; an administrator must reconnect the calendar", code=error,
                                  provider="google_calendar", details={"reauth": True})
    return ConfigurationError(message, code=error, provider="google_calendar")


async def app_secrets(rt: Runtime) -> tuple[str, str]:
    """The OAuth client of our Google app (Vault `osi/apps/google`)."""
    try:
        app = await rt.vault.read_app(APP)
    except CredentialsMissing:
        raise ConfigurationError("the Google OAuth app (client id and secret) is not configured in Vault",
                                 code="app_not_configured", provider="google_calendar") from None
    except VaultError as exc:
        raise TemporaryError(str(exc), code="vault_unavailable", provider="vault") from None
    if not app.client_id or app.client_secret is None:
        raise ConfigurationError("the Google OAuth app in Vault lacks client_id or client_secret",
                                 code="app_not_configured", provider="google_calendar")
    return app.client_id, app.client_secret.get_secret_value()


async def refresh(rt: Runtime, provider: Provider, connection: Connection,
                  current: OAuth2Credentials) -> OAuth2Credentials:
    """Refresh a user's access token with google-auth (token URL from settings)."""
    if current.refresh_token is None:
        raise ConfigurationError("no refresh token stored; reconnect the calendar", code="no_refresh_token",
                                 provider="google_calendar", details={"reauth": True})
    client_id, client_secret = await app_secrets(rt)
    creds = user_credentials.Credentials(
        token=None,
        refresh_token=current.refresh_token.get_secret_value(),
        token_uri=rt.section(GoogleCalendarSettings).token_url,
        client_id=client_id,
        client_secret=client_secret,
    )
    try:
        await asyncio.to_thread(creds.refresh, _request(rt))
    except (gexc.RefreshError, gexc.TransportError) as exc:
        raise _refresh_failure(exc, "the refresh token") from None
    expiry = creds.expiry.replace(tzinfo=UTC) if creds.expiry else None  # google-auth keeps naive UTC
    granted = list(creds.granted_scopes or []) or current.scopes
    return OAuth2Credentials(
        access_token=SecretStr(str(creds.token)),
        # Google does not rotate refresh tokens; google-auth keeps the old one when none comes back.
        refresh_token=SecretStr(creds.refresh_token or current.refresh_token.get_secret_value()),
        expires_at=expiry,
        scopes=granted,
        account=current.account,
    )


async def service_account_token(rt: Runtime, connection: Connection, creds: ServiceAccountCredentials,
                                subject: str | None, scopes: list[str], *, force: bool = False) -> str:
    """An access token for the service account acting as `subject` (domain-wide delegation), cached per
    (connection, subject) until five minutes before it expires."""
    cache: dict[tuple[str, str | None], tuple[str, float]] = rt.extras.setdefault("google_calendar.sa_tokens", {})
    locks: dict[tuple[str, str | None], asyncio.Lock] = rt.extras.setdefault("google_calendar.sa_locks", {})
    key = (connection.id, subject)
    lock = locks.setdefault(key, asyncio.Lock())
    async with lock:
        hit = cache.get(key)
        if hit and not force and hit[1] - time.time() > AHEAD_SECONDS:
            return hit[0]
        try:
            info = json.loads(creds.service_account_json.get_secret_value())
            info["token_uri"] = rt.section(GoogleCalendarSettings).token_url
            sa = service_account.Credentials.from_service_account_info(info, scopes=scopes, subject=subject)
        except (ValueError, KeyError) as exc:
            raise ConfigurationError(f"the stored service account key is not usable: {type(exc).__name__}",
                                     code="invalid_service_account", provider="google_calendar") from None
        try:
            await asyncio.to_thread(sa.refresh, _request(rt))
        except (gexc.RefreshError, gexc.TransportError) as exc:
            err = _refresh_failure(exc, f"the service account grant for {subject or 'itself'}")
            # Domain-wide delegation is granted by a Workspace admin, not by re-consenting.
            err.details.pop("reauth", None)
            raise err from None
        expiry = sa.expiry.replace(tzinfo=UTC).timestamp() if sa.expiry else time.time() + 3600
        cache[key] = (str(sa.token), expiry)
        return str(sa.token)


def forget_service_account_token(rt: Runtime, connection_id: str, subject: str | None) -> None:
    rt.extras.get("google_calendar.sa_tokens", {}).pop((connection_id, subject), None)

