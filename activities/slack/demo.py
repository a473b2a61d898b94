"""The Slack part of the `make run` demo: install, Block Kit, fallback, approval, slash command, alert route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.admin.alerts import RouteSpec, add_route
from activities.slack.models import (
    SendSlackMessageInput,
    SendSlackMessageResult,
    SlackApprovalInput,
    SlackApprovalResult,
)
from activities.slack.routes import install_link
from activities.slack.seed import (
    DEMO_CHANNELS,
    DEMO_TEAM,
    DEMO_USERS,
    channel_state,
    click,
    create_workspace,
    ensure_app,
    install_via_gateway,
    wait_for_message,
)
from core.alerting import alert_workflow_id
from core.demo import DemoContext, DemoFailed
from store.alerts import AlertDelivery, AlertStore


async def run(ctx: DemoContext) -> None:
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
            f", delivered via {res.route} (outcome {res.outcome})")
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

    alerts_store = AlertStore(ctx.rt.store)
    routes = await ctx.rt.store.run(alerts_store.routes, ctx.organization_id)
    route = next((r for r in routes if r.kind == "slack" and r.target.get("channel") == DEMO_CHANNELS["approvals"]),
                 None)
    if route is None:  # a second `make run` keeps the first run's route
        route, _ = await add_route(ctx.rt, ctx.organization_id, RouteSpec(
            kind="slack", connection="default", channel=DEMO_CHANNELS["approvals"]), actor="demo")
    wf_id = f"demo-slack-private-{int(time.time())}"
    # Only the administrators hear of it: not delivered, so the workflow ends Failed (typed, searchable).
    err: ApplicationError | None = None
    try:
        await ctx.client.execute_workflow(
            "SendSlackMessage",
            SendSlackMessageInput(organization_id=ctx.organization_id, channel=DEMO_CHANNELS["finance"],
                                  message="Q3 revenue report is ready", fallback=[{"kind": "admin"}]),
            id=wf_id, task_queue=ctx.settings.task_queue, result_type=SendSlackMessageResult)
        raise DemoFailed("a private channel without the bot was posted to")
    except WorkflowFailureError as exc:
        cause = exc.cause
        if not isinstance(cause, ApplicationError) or not cause.details:
            raise DemoFailed(f"untyped failure: {cause!r}") from None
        err = cause
        res = SendSlackMessageResult.model_validate(err.details[0]["result"])
    ctx.expect(res.notification_id and not res.delivered, f"the admin fallback did not record an alert: {res}")
    # The alert wakes the organization's AdminAlertDelivery workflow, which posts it to #approvals.
    states: Sequence[AlertDelivery] = []
    for _ in range(150):
        states = await ctx.rt.store.run(alerts_store.deliveries, res.notification_id or 0)
        if any(d.route_id == route.id and d.status == "delivered" for d in states):
            break
        await asyncio.sleep(0.2)
    ctx.expect(any(d.route_id == route.id and d.status == "delivered" for d in states),
               f"the alert did not reach #approvals: {[d.model_dump() for d in states]}")
    code = res.attempts[0].error.get("code") if res.attempts and res.attempts[0].error else None
    ctx.say(f"SendSlackMessage to private #finance (bot not invited) → {code}: Failed ({err and err.type}), "
            f"administrators notified; AdminAlertDelivery posted the alert to #approvals")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")
    ctx.say(f"  alert delivery: {ctx.workflow_link(alert_workflow_id(ctx.organization_id))}")
