"""Slack demo: install through OAuth, a Block Kit notification, a fallback, an approval clicked in the sandbox.

The seeding helpers here (app secrets in Vault, a sandbox workspace, a connection) are also what the
tests use, so the demo and the suite exercise the same path.
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

from activities.runtime import Runtime
from activities.slack import oauth
from activities.slack.models import (
    SendSlackMessageInput,
    SendSlackMessageResult,
    SlackApprovalInput,
    SlackApprovalResult,
)
from activities.slack.spec import SPEC
from store.models import Connection
from vault.client import CredentialsMissing
from vault.credentials import AppSecrets, OAuth2Credentials
from worker.connections import add_connection
from worker.demo import DemoContext

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
        link = f"{gateway_url}{oauth.INSTALL_PATH}?" + urlencode({"organization_id": organization_id, "name": name})
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
async def run(ctx: DemoContext) -> None:
    from gateway.slack import install_link

    await ensure_app(ctx.rt, ctx.sandbox_url, ctx.gateway_url)
    ws = await create_workspace(
        ctx.sandbox_url, team_id=DEMO_TEAM, name="OpenSyte Demo",
        users={"alice": {"id": DEMO_USERS["alice"], "email": "alice@example.com"},
               "bob": {"id": DEMO_USERS["bob"], "email": "bob@example.com"}},
        channels={"general": {"id": DEMO_CHANNELS["general"], "members": ["alice", "bob"], "bot_member": False},
                  "approvals": {"id": DEMO_CHANNELS["approvals"], "members": ["alice", "bob"]},
                  "old-news": {"id": DEMO_CHANNELS["old-news"], "is_archived": True},
                  "finance": {"id": DEMO_CHANNELS["finance"], "is_private": True, "members": ["alice"],
                              "bot_member": False}})
    resp = await install_via_gateway(ctx.gateway_url, ctx.organization_id, "default", ws.team_id,
                                     link=install_link(ctx.settings, ctx.organization_id, "default"))
    conn = await ctx.rt.store.run(ctx.rt.store.find_connection, ctx.organization_id, "SLACK", "default")
    ctx.say(f"installed Slack app through OAuth v2 (HTTP {resp.status_code}): workspace {conn.settings['team_id']}, "
            f"bot {conn.settings['bot_user_id']}, {len(conn.settings['scopes'])} scopes, rotating token in Vault at "
            f"{ctx.rt.credentials_path(conn)}")

    stamp = int(time.time())
    wf_id = f"demo-slack-notify-{stamp}"
    res: SendSlackMessageResult = await ctx.client.execute_workflow(
        "SendSlackMessage",
        SendSlackMessageInput(
            organization_id=ctx.organization_id, channel=DEMO_CHANNELS["general"],
            message="New deal won: {deal} ({amount})", variables={"deal": "Acme renewal", "amount": "$42,000"},
            blocks=[{"type": "header", "text": {"type": "plain_text", "text": "Deal won :tada:"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "*{deal}* closed at *{amount}*"}}]),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=SendSlackMessageResult)
    ctx.expect(res.delivered and res.route == "slack", f"notification: {res.route}, delivered={res.delivered}")
    ctx.say(f"SendSlackMessage → delivered={res.delivered} via {res.route} (ts {res.ts}); the bot auto-joined #general")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")

    wf_id = f"demo-slack-fallback-{stamp}"
    res = await ctx.client.execute_workflow(
        "SendSlackMessage",
        SendSlackMessageInput(organization_id=ctx.organization_id, channel=DEMO_CHANNELS["old-news"],
                              message="Invoice INV-1009 is overdue",
                              fallback=[{"kind": "channel", "channel": DEMO_CHANNELS["approvals"]}]),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=SendSlackMessageResult)
    ctx.expect(res.delivered and res.route != "slack", f"archived channel fallback: {res.route}")
    ctx.say(f"SendSlackMessage to an archived channel → {res.attempts[0].error and res.attempts[0].error.get('code')}"
            f", delivered via {res.route}")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")

    wf_id = f"demo-slack-approval-{stamp}"
    handle = await ctx.client.start_workflow(
        "SlackApproval",
        SlackApprovalInput(organization_id=ctx.organization_id, channel=DEMO_CHANNELS["approvals"],
                           title="Approve discount of 15% for Acme", text="Requested for the Q3 renewal.",
                           fields={"Amount": "$42,000", "Owner": "Dana"}, approvers=[DEMO_USERS["alice"]],
                           requested_by="OpenSyte CRM", timeout_seconds=600, reminder_seconds=300),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=SlackApprovalResult)
    msg = await wait_for_message(ctx.sandbox_url, ws.team_id, DEMO_CHANNELS["approvals"], f"osi:{wf_id}")
    await click(ctx.sandbox_url, ws.team_id, DEMO_USERS["bob"], DEMO_CHANNELS["approvals"], msg["ts"], "osi.approve")
    ctx.say("bob clicked Approve → refused with an ephemeral “not allowed” (he is not an approver)")
    await click(ctx.sandbox_url, ws.team_id, DEMO_USERS["alice"], DEMO_CHANNELS["approvals"], msg["ts"],
                "osi.approve")
    result: SlackApprovalResult = await handle.result()
    state = await channel_state(ctx.sandbox_url, ws.team_id, DEMO_CHANNELS["approvals"])
    updated = next(m for m in state["messages"] if m["ts"] == msg["ts"])
    ctx.expect(result.decision == "approved" and result.decided_by == DEMO_USERS["alice"] and result.refused,
               f"approval: {result.decision} by {result.decided_by}, refused {result.refused}")
    ctx.say(f"SlackApproval → {result.decision} by {result.decided_by} at {result.decided_at}; "
            f"refused {result.refused}")
    ctx.say(f"  message now reads: {updated['blocks'][-1]['text']['text']!r}")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")

    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{ctx.sandbox_url}/_sandbox/slack/command", json={
            "team_id": ws.team_id, "user_id": DEMO_USERS["alice"], "channel_id": DEMO_CHANNELS["general"],
            "command": "/opensyte", "text": "status"})
        ack = r.json()
        for _ in range(100):
            replies = (await http.get(f"{ctx.sandbox_url}/_sandbox/slack/responses")).json()
            if replies and replies[-1].get("team") == ws.team_id and "OpenSyte integrations" in replies[-1]["text"]:
                break
            await asyncio.sleep(0.1)
    ctx.expect(replies and replies[-1].get("team") == ws.team_id, "/opensyte status: no reply via response_url")
    ctx.say(f"/opensyte status → ack HTTP {ack.get('status')} in {ack.get('seconds')} s; reply via response_url: "
            f"{replies[-1]['text'].splitlines()[1] if replies else 'none'}")
    await alerts(ctx)


async def alerts(ctx: DemoContext) -> None:
    """Administrators hear of what went wrong where they work: an alert route to #approvals, then a post
    to a private channel the bot is not in (a configuration error, with an `admin` fallback)."""
    from activities.alerts import DeliverInput, DeliverResult, RouteSpec, add_route
    from store.alerts import AlertStore

    alerts_store = AlertStore(ctx.rt.store)
    routes = await ctx.rt.store.run(alerts_store.routes, ctx.organization_id)
    route = next((r for r in routes if r.kind == "slack" and r.target.get("channel") == DEMO_CHANNELS["approvals"]),
                 None)
    if route is None:  # a second `make run` keeps the first run's route
        route, _ = await add_route(ctx.rt, ctx.organization_id, RouteSpec(
            kind="slack", connection="default", channel=DEMO_CHANNELS["approvals"]), actor="demo")
    wf_id = f"demo-slack-private-{int(time.time())}"
    res: SendSlackMessageResult = await ctx.client.execute_workflow(
        "SendSlackMessage",
        SendSlackMessageInput(organization_id=ctx.organization_id, channel=DEMO_CHANNELS["finance"],
                              message="Q3 revenue report is ready", fallback=[{"kind": "admin"}]),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=SendSlackMessageResult)
    ctx.expect(res.route != "slack", f"a private channel without the bot was posted to: {res.route}")
    rounds: DeliverResult = await ctx.client.execute_workflow(
        "DeliverAdminNotifications", DeliverInput(organization_id=ctx.organization_id),
        id=f"demo-alerts-{int(time.time())}", task_queue=ctx.settings.task_queue, result_type=DeliverResult)
    notes = await ctx.rt.store.run(ctx.rt.store.notifications, ctx.organization_id)
    fallback = [n for n in notes if n.kind == "slack_undelivered" and "Q3 revenue" in n.message]
    ctx.expect(fallback, "the admin fallback recorded no notification")
    states = await ctx.rt.store.run(alerts_store.deliveries, fallback[-1].id or 0)
    ctx.expect(any(d.route_id == route.id and d.status == "delivered" for d in states),
               f"the alert did not reach #approvals: {[d.model_dump() for d in states]}")
    code = res.attempts[0].error.get("code") if res.attempts and res.attempts[0].error else None
    ctx.say(f"SendSlackMessage to private #finance (bot not invited) → {code}, delivered via {res.route}; "
            f"DeliverAdminNotifications sent {rounds.delivered} alert(s) to #approvals")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")
