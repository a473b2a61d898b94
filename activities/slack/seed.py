"""Seeding Slack against the sandbox: app secrets in Vault, a sandbox workspace, a connection, clicks.

`make run`'s demo and the benchmarks seed through these; tests have their own fixtures over them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from activities.slack import oauth
from activities.slack.spec import SPEC
from core.connections import add_connection
from core.runtime import Runtime
from store.models import Connection
from vault.client import CredentialsMissing
from vault.credentials import AppSecrets, OAuth2Credentials

DEMO_TEAM = "TDEMO00001"
DEMO_CHANNELS = {"general": "CDEMOGEN01", "approvals": "CDEMOAPR01", "old-news": "CDEMOOLD01",
                 "finance": "GDEMOFIN01"}
DEMO_USERS = {"alice": "UDEMOALICE", "bob": "UDEMOBOB01"}


@dataclass
class SlackApp:
    client_id: str
    signing_secret: str


@dataclass
class SandboxWorkspace:
    team_id: str
    bot_user_id: str
    channels: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)


async def ensure_app(rt: Runtime, sandbox_url: str, gateway_url: str, *, token_rotation: bool = True) -> SlackApp:
    """The Slack app's secrets in Vault (created once) and the same app registered in the sandbox."""
    try:
        app = await rt.vault.read_app(oauth.APP)
        if not (app.client_id and app.client_secret and app.signing_secret):
            raise CredentialsMissing(oauth.APP)
    except CredentialsMissing:
        app = AppSecrets(client_id=f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}",
                         client_secret=SecretStr(secrets.token_hex(16)),
                         signing_secret=SecretStr(secrets.token_hex(16)))
        await asyncio.to_thread(rt.vault.write_app_sync, oauth.APP, app)
    assert app.client_secret is not None and app.signing_secret is not None
    gw = gateway_url.rstrip("/")
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/slack/apps", json={
            "client_id": app.client_id, "client_secret": app.client_secret.get_secret_value(),
            "signing_secret": app.signing_secret.get_secret_value(), "token_rotation": token_rotation,
            "interactivity_url": f"{gw}/slack/interactivity", "commands_url": f"{gw}/slack/commands",
            "events_url": f"{gw}/slack/events"})
        r.raise_for_status()
    return SlackApp(app.client_id, app.signing_secret.get_secret_value())


async def create_workspace(sandbox_url: str, *, team_id: str | None = None, name: str = "Sandbox Workspace",
                           channels: dict[str, dict[str, Any]] | None = None,
                           users: dict[str, dict[str, Any]] | None = None) -> SandboxWorkspace:
    """A workspace in the sandbox with named channels ({name: {is_private, members, bot_member, ...}})
    and users ({name: {email, id}}); member lists may name users by their key."""
    base = f"{sandbox_url}/_sandbox/slack"
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{base}/workspaces", json={"team_id": team_id, "name": name})
        r.raise_for_status()
        ws = SandboxWorkspace(r.json()["team_id"], r.json()["bot_user_id"])
        for uname, spec in (users or {}).items():
            r = await http.post(f"{base}/workspaces/{ws.team_id}/users", json={"name": uname, **spec})
            r.raise_for_status()
            ws.users[uname] = r.json()["id"]
        for cname, spec in (channels or {}).items():
            spec = dict(spec)
            spec["members"] = [ws.users.get(m, m) for m in spec.get("members", [])]
            r = await http.post(f"{base}/workspaces/{ws.team_id}/channels", json={"name": cname, **spec})
            r.raise_for_status()
            ws.channels[cname] = r.json()["id"]
    return ws


async def direct_connection(rt: Runtime, sandbox_url: str, organization_id: str, ws: SandboxWorkspace, *,
                            name: str = "default", scopes: list[str] | None = None, rotation: bool = True,
                            settings: dict[str, Any] | None = None) -> tuple[Connection, dict[str, Any]]:
    """A connection whose token the sandbox issued directly (no browser step): for tests and seeding."""
    granted = list(SPEC.scopes) if scopes is None else scopes
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/slack/tokens", json={
            "team_id": ws.team_id, "scopes": granted, "rotation": rotation,
            "client_id": (await rt.vault.read_app(oauth.APP)).client_id})
        r.raise_for_status()
        issued = r.json()
    creds = OAuth2Credentials(
        access_token=SecretStr(issued["access_token"]),
        refresh_token=SecretStr(issued["refresh_token"]) if issued.get("refresh_token") else None,
        expires_at=(datetime.now(UTC) + timedelta(seconds=issued["expires_in"])
                    if issued.get("expires_in") else None),
        scopes=granted, token_type="bot", account={"team_id": ws.team_id, "bot_user_id": ws.bot_user_id})
    conn = await add_connection(rt, organization_id, "SLACK", name,
                                {"team_id": ws.team_id, "bot_user_id": ws.bot_user_id, "scopes": granted,
                                 **(settings or {})}, creds, actor="seed", replace=True)
    return conn, issued


async def install_via_gateway(gateway_url: str, organization_id: str, name: str, team_id: str,
                              *, link: str | None = None) -> httpx.Response:
    """What an administrator's browser does: install link → Slack authorize → our callback."""
    if link is None:
        link = f"{gateway_url}{SPEC.install_path}?" + urlencode({"organization_id": organization_id, "name": name})
    async with httpx.AsyncClient(follow_redirects=True, timeout=30) as http:
        return await http.get(f"{link}&{urlencode({'team': team_id})}")


async def wait_for_message(sandbox_url: str, team_id: str, channel: str, block_id: str,
                           within: float = 20.0) -> dict[str, Any]:
    """The message in `channel` carrying `block_id` (an approval request), once it is posted."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            r = await http.get(f"{sandbox_url}/_sandbox/slack/workspaces/{team_id}/channels/{channel}")
            for msg in r.json()["messages"]:
                if any(b.get("block_id") == block_id for b in msg.get("blocks") or []):
                    return dict(msg)
            await asyncio.sleep(0.1)
    raise TimeoutError(f"no message with block {block_id} in {channel}")


async def click(sandbox_url: str, team_id: str, user_id: str, channel: str, ts: str, action_id: str,
                **opts: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{sandbox_url}/_sandbox/slack/click", json={
            "team_id": team_id, "user_id": user_id, "channel_id": channel, "message_ts": ts,
            "action_id": action_id, **opts})
        r.raise_for_status()
        return dict(r.json())


async def channel_state(sandbox_url: str, team_id: str, channel: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{sandbox_url}/_sandbox/slack/workspaces/{team_id}/channels/{channel}")
        r.raise_for_status()
        return dict(r.json())


# ---- the demo --------------------------------------------------------------------------------
