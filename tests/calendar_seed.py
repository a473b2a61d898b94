"""Sandbox-backed Google Calendar and Outlook connections for tests (app in Vault, store row, fake's records)."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from core.connections import add_connection
from core.runtime import Runtime
from vault.client import CredentialsMissing
from vault.credentials import AppSecrets, ClientCredentials, OAuth2Credentials, ServiceAccountCredentials

GOOGLE_CLIENT_ID = "sandbox-client.apps.googleusercontent.com"
MS_CLIENT_ID = "00000000-0000-0000-0000-00000000c0de"
MS_TENANT = "contoso-tenant"
_APP_IDS: dict[str, str] = {}
GOOGLE_SCOPES = ["https://www.googleapis.com/auth/calendar.events",
                 "https://www.googleapis.com/auth/calendar.readonly"]


@dataclass
class CalConn:
    organization_id: str
    name: str
    connection_id: str
    email: str
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def uid(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def google_app(rt: Runtime, sandbox_url: str, gateway_url: str | None = None) -> str:
    """The Google OAuth client in Vault (created once; an existing one, e.g. the demo's, is kept) and the same
    client in the fake; returns its secret (`google_client_id()` gives its id)."""
    client_id, secret = GOOGLE_CLIENT_ID, ""
    try:
        app = await rt.vault.read_app("google")
        if app.client_id and app.client_secret:
            client_id, secret = app.client_id, app.client_secret.get_secret_value()
    except CredentialsMissing:
        pass
    if not secret:
        secret = "GOCSPX-" + secrets.token_urlsafe(16)
        rt.vault.write_app_sync("google", AppSecrets(client_id=client_id, client_secret=SecretStr(secret)))
    _APP_IDS["google"] = client_id
    redirects = [f"{gateway_url}/oauth/google_calendar/callback"] if gateway_url else []
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/google/clients", json={
            "client_id": client_id, "client_secret": secret, "redirect_uris": redirects,
            "project": "sandbox-project"})
        r.raise_for_status()
    return secret


def google_client_id() -> str:
    return _APP_IDS.get("google", GOOGLE_CLIENT_ID)


def ms_client_id() -> str:
    return _APP_IDS.get("microsoft", MS_CLIENT_ID)


async def google_user(sandbox_url: str, email: str, time_zone: str = "UTC") -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{sandbox_url}/_sandbox/google/users", json={"email": email, "time_zone": time_zone})
         ).raise_for_status()


async def google_connection(rt: Runtime, sandbox_url: str, *, email: str | None = None, time_zone: str = "UTC",
                            org: str | None = None, name: str = "default", settings: dict[str, Any] | None = None,
                            expires_in: int = 3599, store_expires_in: float | None = None) -> CalConn:
    """A user-OAuth connection: the fake issues the tokens, Vault holds them."""
    await google_app(rt, sandbox_url)
    email = email or f"{uid('g')}@example.com"
    org = org or uid("org_")
    await google_user(sandbox_url, email, time_zone)
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/google/tokens", json={
            "email": email, "client_id": google_client_id(), "scopes": GOOGLE_SCOPES, "expires_in": expires_in})
        r.raise_for_status()
        tok = r.json()
    creds = OAuth2Credentials(
        access_token=SecretStr(tok["access_token"]), refresh_token=SecretStr(tok["refresh_token"]),
        expires_at=datetime.now(UTC) + timedelta(seconds=store_expires_in if store_expires_in is not None
                                                 else expires_in),
        scopes=GOOGLE_SCOPES, account={"email": email})
    conn = await add_connection(rt, org, "GOOGLE_CALENDAR", name,
                                {"user": email, "calendar_id": "primary", "project_id": "sandbox-project",
                                 **(settings or {})}, creds, replace=True)
    return CalConn(org, name, conn.id, email, tok["access_token"], tok["refresh_token"])


def service_account_key(client_email: str) -> tuple[str, str]:
    """(service account JSON, public key PEM) with a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    info = {"type": "service_account", "project_id": "sandbox-project", "private_key_id": secrets.token_hex(20),
            "private_key": private_pem, "client_email": client_email, "client_id": str(secrets.randbelow(10**20)),
            "token_uri": "https://oauth2.googleapis.com/token"}
    return json.dumps(info), public_pem


async def google_sa_connection(rt: Runtime, sandbox_url: str, *, subject: str, org: str | None = None,
                               delegation: bool = True, scopes: list[str] | None = None) -> CalConn:
    org = org or uid("org_")
    client_email = f"{uid('sa')}@sandbox-project.iam.gserviceaccount.com"
    info, public_pem = service_account_key(client_email)
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/google/service_accounts", json={
            "client_email": client_email, "public_key_pem": public_pem, "domain_wide_delegation": delegation,
            **({"scopes": scopes} if scopes is not None else {})})
        r.raise_for_status()
    conn = await add_connection(rt, org, "GOOGLE_CALENDAR", "default", {"calendar_id": "primary",
                                                                        "project_id": "sandbox-project"},
                                ServiceAccountCredentials(service_account_json=SecretStr(info), subject=subject),
                                replace=True)
    return CalConn(org, "default", conn.id, subject, extra={"client_email": client_email})


async def microsoft_app(rt: Runtime, sandbox_url: str, gateway_url: str | None = None,
                        strict_rotation: bool = True) -> str:
    """The Microsoft app in Vault (an existing one is kept) and in the Entra fake; returns its secret."""
    client_id, secret = MS_CLIENT_ID, ""
    try:
        app = await rt.vault.read_app("microsoft")
        if app.client_id and app.client_secret:
            client_id, secret = app.client_id, app.client_secret.get_secret_value()
    except CredentialsMissing:
        pass
    if not secret:
        secret = "msal~" + secrets.token_urlsafe(24)
        rt.vault.write_app_sync("microsoft", AppSecrets(client_id=client_id, client_secret=SecretStr(secret)))
    _APP_IDS["microsoft"] = client_id
    redirects = [f"{gateway_url}/oauth/outlook/callback"] if gateway_url else []
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/entra/apps", json={
            "client_id": client_id, "client_secret": secret, "tenant": MS_TENANT, "redirect_uris": redirects,
            "strict_rotation": strict_rotation})
        r.raise_for_status()
    return secret


async def mailbox(sandbox_url: str, email: str, time_zone: str = "UTC", working_hours: dict[str, Any] | None = None
                  ) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{sandbox_url}/_sandbox/graph/mailboxes", json={
            "email": email, "display_name": email.split("@")[0], "time_zone": time_zone,
            "working_hours": working_hours})).raise_for_status()


async def outlook_connection(rt: Runtime, sandbox_url: str, *, email: str | None = None, time_zone: str = "UTC",
                             org: str | None = None, name: str = "default", settings: dict[str, Any] | None = None,
                             expires_in: int = 3599, store_expires_in: float | None = None,
                             working_hours: dict[str, Any] | None = None) -> CalConn:
    """A delegated connection: Entra issues access + refresh tokens for the mailbox's user."""
    await microsoft_app(rt, sandbox_url)
    email = email or f"{uid('m')}@contoso.com"
    org = org or uid("org_")
    await mailbox(sandbox_url, email, time_zone, working_hours)
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/entra/tokens", json={
            "user": email, "client_id": ms_client_id(), "tenant": MS_TENANT, "expires_in": expires_in})
        r.raise_for_status()
        tok = r.json()
    creds = OAuth2Credentials(
        access_token=SecretStr(tok["access_token"]), refresh_token=SecretStr(tok["refresh_token"]),
        expires_at=datetime.now(UTC) + timedelta(seconds=store_expires_in if store_expires_in is not None
                                                 else expires_in),
        scopes=["Calendars.ReadWrite", "User.Read"], account={"email": email, "tenant": MS_TENANT})
    conn = await add_connection(rt, org, "OUTLOOK_CALENDAR", name,
                                {"tenant": MS_TENANT, "user": email, "mailbox": "me", **(settings or {})}, creds,
                                replace=True)
    return CalConn(org, name, conn.id, email, tok["access_token"], tok["refresh_token"])


async def outlook_app_connection(rt: Runtime, sandbox_url: str, *, email: str | None = None,
                                 time_zone: str = "UTC", org: str | None = None) -> CalConn:
    """An app-only connection (client credentials) acting on one mailbox."""
    org = org or uid("org_")
    email = email or f"{uid('a')}@contoso.com"
    await mailbox(sandbox_url, email, time_zone)
    client_id, secret = str(uuid.uuid4()), "app~" + secrets.token_urlsafe(20)
    async with httpx.AsyncClient() as http:
        (await http.post(f"{sandbox_url}/_sandbox/entra/apps", json={
            "client_id": client_id, "client_secret": secret, "tenant": MS_TENANT, "roles": ["Calendars.ReadWrite"]})
         ).raise_for_status()
    conn = await add_connection(rt, org, "OUTLOOK_CALENDAR", "default", {"mailbox": email, "tenant": MS_TENANT},
                                ClientCredentials(client_id=client_id, client_secret=SecretStr(secret),
                                                  tenant=MS_TENANT), replace=True)
    return CalConn(org, "default", conn.id, email, extra={"client_id": client_id})


async def sandbox_json(method: str, url: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient() as http:
        r = await http.request(method, url, **kwargs)
        r.raise_for_status()
        return r.json() if r.content else None
