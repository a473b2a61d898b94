"""Interactivity end to end: signed requests from the sandbox to the gateway, signals to SlackApproval,
events, slash commands; forged, replayed and redelivered requests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
from temporalio.client import Client, WorkflowHandle

from activities.slack import webhooks
from activities.slack.models import ApprovalContext, SlackApprovalInput, SlackApprovalResult
from activities.slack.seed import (
    channel_state,
    click,
    create_workspace,
    direct_connection,
    wait_for_message,
)


class Approval:
    def __init__(self, handle: WorkflowHandle, ws, msg: dict, org: str) -> None:
        self.handle, self.ws, self.msg, self.org = handle, ws, msg, org
        self.channel = ws.channels["approvals"]

    async def click(self, sandbox, who: str, action: str = "osi.approve", **opts) -> dict:
        return await click(sandbox.url, self.ws.team_id, self.ws.users[who], self.channel, self.msg["ts"], action,
                           **opts)


async def start_approval(client: Client, runtime, sandbox, task_queue: str, **kw) -> Approval:
    ws = await create_workspace(
        sandbox.url, users={"ann": {}, "bob": {}, "carol": {}},
        channels={"approvals": {"members": ["ann", "bob", "carol"]}, "finance": {"members": ["carol"]}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    await direct_connection(runtime, sandbox.url, org, ws)
    approvers = [ws.users[u] for u in kw.pop("approvers", ["ann"])]
    if kw.pop("finance_decides", False):
        kw["approver_channel"] = ws.channels["finance"]
    wf_id = f"approval-{uuid.uuid4().hex}"
    handle = await client.start_workflow(
        "SlackApproval",
        SlackApprovalInput(organization_id=org, channel=ws.channels["approvals"], title="Approve 15% discount",
                           text="Acme renewal", fields={"Amount": "$42,000"}, approvers=approvers,
                           requested_by="OpenSyte CRM", **kw),
        id=wf_id, task_queue=task_queue, result_type=SlackApprovalResult)
    msg = await wait_for_message(sandbox.url, ws.team_id, ws.channels["approvals"], f"osi:{wf_id}")
    return Approval(handle, ws, msg, org)


def ephemerals(sandbox, team: str, user: str) -> list[dict]:
    return [e for e in sandbox.state.providers["slack"].state.workspaces[team].ephemerals if e["user"] == user]


async def eventually(fn, within: float = 15.0):
    deadline = time.monotonic() + within
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_click_signal_update_and_decision(client, worker, runtime, sandbox, gateway, slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue)
    assert [b["type"] for b in a.msg["blocks"]] == ["header", "section", "section", "context", "actions"]
    assert [e["action_id"] for e in a.msg["blocks"][-1]["elements"]] == ["osi.approve", "osi.reject"]
    # Bob is not an approver: acknowledged, refused with an ephemeral message, nothing decided.
    res = await a.click(sandbox, "bob")
    assert res["status"] == 200
    got = await eventually(lambda: ephemerals(sandbox, a.ws.team_id, a.ws.users["bob"]))
    assert got and "not allowed" in got[0]["text"]
    ctx = await a.handle.query("approval_context", a.ws.users["bob"], result_type=ApprovalContext)
    assert ctx.open and not ctx.allowed
    # Ann rejects: the signal decides, the original message is updated, the caller gets the decision.
    assert (await a.click(sandbox, "ann", "osi.reject"))["status"] == 200
    result = await a.handle.result()
    assert (result.decision, result.decided_by, result.refused) == ("rejected", a.ws.users["ann"],
                                                                    [a.ws.users["bob"]])
    assert result.decided_at and result.ts == a.msg["ts"] and result.channel == a.channel
    updated = next(m for m in (await channel_state(sandbox.url, a.ws.team_id, a.channel))["messages"]
                   if m["ts"] == a.msg["ts"])
    assert all(b["type"] != "actions" for b in updated["blocks"])  # buttons removed
    last = updated["blocks"][-1]["text"]["text"]
    assert f"*Rejected* by <@{a.ws.users['ann']}>" in last and f"|{result.decided_at}>" in last
    assert updated["text"] == "Approve 15% discount: rejected" and updated["edited"]


async def test_click_on_a_closed_request_is_answered_via_response_url(client, worker, runtime, sandbox, gateway,
                                                                      slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue)
    await a.handle.terminate("operator stopped it")  # its message keeps the buttons
    assert (await a.click(sandbox, "ann"))["status"] == 200
    responses = await eventually(lambda: [r for r in sandbox.state.providers["slack"].state.responses
                                          if r["team"] == a.ws.team_id])
    assert responses and responses[-1]["text"] == "This request is no longer open."
    assert responses[-1]["response_type"] == "ephemeral"


async def test_members_of_a_channel_may_decide(client, worker, runtime, sandbox, gateway, slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue, approvers=[], finance_decides=True)
    await a.click(sandbox, "carol")
    result = await a.handle.result()
    assert (result.decision, result.decided_by) == ("approved", a.ws.users["carol"])


async def test_channel_membership_is_rechecked_before_refusing(client, worker, runtime, sandbox, gateway, slack_app,
                                                               task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue, approvers=[], finance_decides=True)
    async with httpx.AsyncClient() as http:  # bob joins #finance after the request was posted
        await http.patch(f"{sandbox.url}/_sandbox/slack/workspaces/{a.ws.team_id}/channels/"
                         f"{a.ws.channels['finance']}", json={"members": [a.ws.users["carol"], a.ws.users["bob"]]})
    await a.click(sandbox, "bob")
    result = await a.handle.result()
    assert (result.decision, result.decided_by, result.refused) == ("approved", a.ws.users["bob"], [])


async def test_comment_modal(client, worker, runtime, sandbox, gateway, slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue, allow_comment=True)
    res = await a.click(sandbox, "ann")
    assert res["status"] == 200
    views = sandbox.state.providers["slack"].state.views
    view = next(v for v in views.values() if json.loads(v["private_metadata"] or "{}").get("wf") == a.handle.id)
    assert view["callback_id"] == webhooks.COMMENT_CALLBACK and view["user"] == a.ws.users["ann"]
    ctx = await a.handle.query("approval_context", a.ws.users["ann"], result_type=ApprovalContext)
    assert ctx.open  # the click opened the form; the decision comes with its submission
    opened = [e for e in runtime.store.audit_log(a.org) if e.action == "slack.open_view"]
    assert opened and opened[0].actor == f"slack:{a.ws.users['ann']}" and opened[0].outcome == "ok"
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{sandbox.url}/_sandbox/slack/submit_view", json={
            "view_id": view["id"], "user_id": a.ws.users["ann"],
            "values": {webhooks.COMMENT_BLOCK: {webhooks.COMMENT_ACTION: "Within budget"}}})
    assert r.json()["status"] == 200 and r.json()["body"] == ""  # empty 200 closes the modal
    result = await a.handle.result()
    assert (result.decision, result.comment) == ("approved", "Within budget")
    updated = next(m for m in (await channel_state(sandbox.url, a.ws.team_id, a.channel))["messages"]
                   if m["ts"] == a.msg["ts"])
    assert "> Within budget" in updated["blocks"][-1]["text"]["text"]


async def test_timeout_with_reminders(client, worker, runtime, sandbox, gateway, slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue, timeout_seconds=3.5, reminder_seconds=1.2,
                             max_reminders=2)
    result = await a.handle.result()
    assert result.decision == "timed_out" and result.decided_by is None
    messages = (await channel_state(sandbox.url, a.ws.team_id, a.channel))["messages"]
    reminders = [m for m in messages if m.get("thread_ts") == a.msg["ts"]]
    assert 1 <= result.reminders_sent <= 2 and len(reminders) == result.reminders_sent
    assert "Reminder 1" in reminders[0]["text"] and f"<@{a.ws.users['ann']}>" in reminders[0]["text"]
    updated = next(m for m in messages if m["ts"] == a.msg["ts"])
    assert "No decision before the deadline" in updated["blocks"][-1]["text"]["text"]
    assert all(b["type"] != "actions" for b in updated["blocks"])


async def test_forged_and_replayed_clicks_get_401_and_signal_nothing(client, worker, runtime, sandbox, gateway,
                                                                    slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue, approvers=["ann"])
    for opts in ({"forge": True}, {"timestamp_offset": -301}, {"timestamp_offset": 400}):
        res = await a.click(sandbox, "ann", **opts)
        assert res["status"] == 401 and json.loads(res["body"]) == {"error": "invalid request"}
    # Garbage headers are a 401 too, not a crash.
    async with httpx.AsyncClient() as http:
        for headers in ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, {}):
            r = await http.post(f"{gateway}/slack/interactivity", content=b"payload=%7B%7D", headers={
                "Content-Type": "application/x-www-form-urlencoded", **headers})
            assert r.status_code == 401
    # A genuine click from Bob (no approver) after them: once its refusal is posted, the workflow has handled every
    # signal sent before it — the gateway signals before it answers, so a forged click would have come first.
    await a.click(sandbox, "bob")
    await eventually(lambda: ephemerals(sandbox, a.ws.team_id, a.ws.users["bob"]))
    ctx = await a.handle.query("approval_context", a.ws.users["ann"], result_type=ApprovalContext)
    assert ctx.open  # nothing reached the workflow
    await a.click(sandbox, "ann")
    result = await a.handle.result()
    assert result.decision == "approved" and result.refused == [a.ws.users["bob"]]


async def test_redelivered_clicks_are_handled_once(client, worker, runtime, sandbox, gateway, slack_app, task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue)
    res = await a.click(sandbox, "bob", repeat=3)  # the same signed request, redelivered with X-Slack-Retry-Num
    assert [d["status"] for d in res["deliveries"]] == [200, 200, 200]
    await eventually(lambda: ephemerals(sandbox, a.ws.team_id, a.ws.users["bob"]))
    await a.click(sandbox, "ann")
    result = await a.handle.result()
    assert result.refused == [a.ws.users["bob"]]
    assert len(ephemerals(sandbox, a.ws.team_id, a.ws.users["bob"])) == 1


async def test_message_shortcut_reaches_the_workflow(client, worker, runtime, sandbox, gateway, slack_app,
                                                     task_queue):
    a = await start_approval(client, runtime, sandbox, task_queue)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{sandbox.url}/_sandbox/slack/shortcut", json={
            "team_id": a.ws.team_id, "user_id": a.ws.users["ann"], "channel_id": a.channel,
            "message_ts": a.msg["ts"]})
    assert r.json()["status"] == 200
    got = await eventually(lambda: ephemerals(sandbox, a.ws.team_id, a.ws.users["ann"]))
    assert got and "waiting for your decision" in got[0]["text"]
    await a.click(sandbox, "ann", "osi.reject")
    assert (await a.handle.result()).decision == "rejected"


# ---- events and slash commands ----------------------------------------------------------------
async def events(sandbox, **body) -> dict:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{sandbox.url}/_sandbox/slack/events", json=body)
        r.raise_for_status()
        return dict(r.json())


async def test_url_verification_and_signed_events(runtime, sandbox, gateway, slack_app):
    res = await events(sandbox, team_id="T0", url_verification=True)
    assert res["status"] == 200 and json.loads(res["body"]) == {"challenge": res["sent"]["challenge"]}
    assert (await events(sandbox, team_id="T0", url_verification=True, forge=True))["status"] == 401
    assert (await events(sandbox, team_id="T0", event={"type": "app_mention"}, timestamp_offset=-3600))["status"] \
        == 401


async def test_tokens_revoked_event_needs_reauth_once_despite_redelivery(runtime, sandbox, gateway, slack_app):
    ws = await create_workspace(sandbox.url)
    org = f"org_{uuid.uuid4().hex[:10]}"
    conn, _ = await direct_connection(runtime, sandbox.url, org, ws)
    res = await events(sandbox, team_id=ws.team_id, event={"type": "tokens_revoked", "tokens": {
        "oauth": [], "bot": [ws.bot_user_id]}}, repeat=2)
    first, retry = res["deliveries"]
    assert (first["status"], retry["status"]) == (200, 200) and json.loads(retry["body"])["duplicate"] is True
    conn = runtime.store.get_connection(conn.id)
    assert conn.status == "needs_reauth"
    (note,) = runtime.store.notifications(connection_id=conn.id)
    assert note.kind == "reauth_required" and "/slack/install?organization_id=" in (note.action_url or "")


async def test_slash_command_status(client, worker, runtime, sandbox, gateway, slack_app):
    ws = await create_workspace(sandbox.url, users={"ann": {}}, channels={"general": {"members": ["ann"]}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    await direct_connection(runtime, sandbox.url, org, ws, name="crm")
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{sandbox.url}/_sandbox/slack/command", json={
            "team_id": ws.team_id, "user_id": ws.users["ann"], "channel_id": ws.channels["general"],
            "command": "/opensyte", "text": "status"})
        ack = r.json()
        assert ack["status"] == 200 and json.loads(ack["body"])["text"].startswith("Checking")
        replies = await eventually(lambda: [x for x in sandbox.state.providers["slack"].state.responses
                                            if x["team"] == ws.team_id])
        assert replies and replies[0]["response_type"] == "ephemeral"
        assert f"`crm` ({org}): active" in replies[0]["text"]
        r = await http.post(f"{sandbox.url}/_sandbox/slack/command", json={
            "team_id": ws.team_id, "user_id": ws.users["ann"], "channel_id": ws.channels["general"],
            "command": "/opensyte", "text": "what"})
        assert "Usage: `/opensyte status`" in json.loads(r.json()["body"])["text"]
        r = await http.post(f"{sandbox.url}/_sandbox/slack/command", json={
            "team_id": ws.team_id, "user_id": ws.users["ann"], "channel_id": ws.channels["general"],
            "command": "/opensyte", "text": "status", "timestamp_offset": -600})
        assert r.json()["status"] == 401
