"""SendSlackMessage end to end on Temporal: the primary route, and each fallback route."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.slack.models import SendSlackMessageInput, SendSlackMessageResult
from activities.slack.seed import channel_state, create_workspace, direct_connection
from store.models import ConnectionStatus
from tests import seed


async def send(client: Client, task_queue: str, **kw) -> SendSlackMessageResult:
    return await client.execute_workflow(
        "SendSlackMessage", SendSlackMessageInput.model_validate(kw), id=f"slack-{uuid.uuid4().hex}",
        task_queue=task_queue, result_type=SendSlackMessageResult)


async def setup(runtime, sandbox, **conn_kw):
    ws = await create_workspace(
        sandbox.url, users={"ann": {"email": "ann@example.com"}},
        channels={"general": {"members": ["ann"]}, "ops": {"members": ["ann"]}, "old": {"is_archived": True}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    conn, _ = await direct_connection(runtime, sandbox.url, org, ws, **conn_kw)
    return org, ws, conn


async def test_primary_route_delivers(client, worker, runtime, sandbox, slack_app, task_queue):
    org, ws, _ = await setup(runtime, sandbox)
    res = await send(client, task_queue, organizationId=org, channel=ws.channels["general"],
                     message="Invoice {n} paid", variables={"n": "INV-7"},
                     blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*{n}* paid :tada:"}}])
    assert res.delivered and res.route == "slack" and res.channel == ws.channels["general"]
    assert [a.route for a in res.attempts] == ["slack"]
    msg = (await channel_state(sandbox.url, ws.team_id, ws.channels["general"]))["messages"][-1]
    assert msg["ts"] == res.ts and msg["text"] == "Invoice INV-7 paid"
    assert msg["blocks"][0]["text"]["text"] == "*INV-7* paid :tada:"


async def test_permanent_failure_falls_back_to_another_channel(client, worker, runtime, sandbox, slack_app,
                                                               task_queue):
    org, ws, _ = await setup(runtime, sandbox)
    res = await send(client, task_queue, organization_id=org, channel=ws.channels["old"], message="Deal lost",
                     fallback=[{"kind": "channel", "channel": ws.channels["ops"]}])
    assert res.delivered and res.route == "fallback[0]:channel" and res.channel == ws.channels["ops"]
    assert res.fallback and res.outcome == "partial"
    first = res.attempts[0]
    assert first.route == "slack" and not first.ok
    assert first.error and (first.error["error_class"], first.error["code"]) == ("PermanentError", "is_archived")
    assert (await channel_state(sandbox.url, ws.team_id, ws.channels["ops"]))["messages"][-1]["text"] == "Deal lost"


async def test_fallback_dm_to_a_named_person(client, worker, runtime, sandbox, slack_app, task_queue):
    org, ws, _ = await setup(runtime, sandbox)
    res = await send(client, task_queue, organization_id=org, channel="C0GONE0000", message="Server down",
                     fallback=[{"kind": "dm", "email": "nobody@example.com"},
                               {"kind": "dm", "email": "ann@example.com"}])
    assert res.delivered and res.route == "fallback[1]:dm"
    assert res.channel == "D" + ws.users["ann"][1:]
    assert [(a.route, a.ok) for a in res.attempts] == [("slack", False), ("fallback[0]:dm", False),
                                                       ("fallback[1]:dm", True)]
    assert res.attempts[1].error and res.attempts[1].error["code"] == "users_not_found"


async def test_fallback_to_whatsapp(client, worker, runtime, sandbox, slack_app, task_queue):
    org, ws, _ = await setup(runtime, sandbox)
    await seed.whatsapp_connection(runtime, sandbox.url, org=org, name="wa")
    res = await send(client, task_queue, organization_id=org, channel=ws.channels["old"],
                     blocks=[{"type": "header", "text": {"type": "plain_text", "text": "Contract renewal due"}},
                             {"type": "section", "text": {"type": "mrkdwn", "text": "Acme renews on {date}"}}],
                     variables={"date": "May 3"}, message=None,
                     fallback=[{"kind": "whatsapp", "to": "+16505551234", "connection": "wa"}])
    assert res.delivered and res.route == "fallback[0]:whatsapp"
    assert res.whatsapp_message_ids and res.whatsapp_message_ids[0].startswith("wamid.")
    sent = [r for r in sandbox.state.recorder.dump("whatsapp") if r["path"].endswith("/messages")
            and r["body"] and r["body"].get("to") == "16505551234"][-1]
    assert sent["body"]["text"]["body"] == "Contract renewal due\nAcme renews on May 3"


async def failed_send(client: Client, task_queue: str, **kw) -> tuple[ApplicationError, SendSlackMessageResult]:
    """The send must end Failed; its typed error and the result carried in the error's details."""
    with pytest.raises(WorkflowFailureError) as exc:
        await send(client, task_queue, **kw)
    cause = exc.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause, SendSlackMessageResult.model_validate(cause.details[0]["result"])


async def test_needs_reauth_falls_back_to_an_admin_notification(client, worker, runtime, sandbox, slack_app,
                                                                task_queue):
    """Only the administrators heard of it: not delivered, so the workflow ends Failed (typed by the
    configuration error) with the notification in the result."""
    org, ws, conn = await setup(runtime, sandbox)
    runtime.store.update_connection(conn.id, status=ConnectionStatus.NEEDS_REAUTH.value)
    err, res = await failed_send(client, task_queue, organization_id=org, channel=ws.channels["general"],
                                 message="Payroll ran",
                                 fallback=[{"kind": "channel", "channel": ws.channels["ops"]}, {"kind": "admin"}])
    assert err.type == "ConfigurationError" and err.non_retryable and "administrators notified" in err.message
    assert not res.delivered and res.fallback and res.outcome == "failed"
    assert res.route == "fallback[1]:admin" and res.notification_id
    assert [a.error["code"] for a in res.attempts if a.error] == ["needs_reauth", "needs_reauth"]
    note = next(n for n in runtime.store.notifications(org) if n.id == res.notification_id)
    assert note.kind == "slack_undelivered" and "Payroll ran" in note.message
    assert "needs re-authentication" in note.message
    assert note.connection_id == conn.id


async def test_nothing_delivered_fails_the_workflow(client, worker, runtime, sandbox, slack_app, task_queue):
    org, ws, _ = await setup(runtime, sandbox)
    err, res = await failed_send(client, task_queue, organization_id=org, channel=ws.channels["old"], message="x")
    assert err.type == "PermanentError" and err.details[0]["code"] == "is_archived"
    assert not res.delivered and res.route is None and res.outcome == "failed"
    assert [(a.route, a.ok) for a in res.attempts] == [("slack", False)]


async def test_invalid_input_fails_the_workflow_at_once(client, worker, task_queue):
    """A starter without our models (OpenSyte's TypeScript) sends plain JSON; bad input must fail the
    workflow with the field named, not leave it retrying its first task."""
    handle = await client.start_workflow(
        "SendSlackMessage", {"organizationId": "o", "channel": "general", "message": "x"},
        id=f"slack-bad-{uuid.uuid4().hex}", task_queue=task_queue)
    with pytest.raises(WorkflowFailureError) as exc:
        await asyncio.wait_for(handle.result(), timeout=20)
    cause = exc.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PermanentError" and cause.non_retryable
    assert "'general' is not a Slack conversation ID" in cause.message
    assert cause.details[0]["code"] == "invalid_input"
    assert [e["field"] for e in cause.details[0]["details"]["errors"]] == ["channel"]
