"""Webhooks → WhatsAppConversation: verified deliveries, signal-with-start per customer, dedupe of
redeliveries, the window rule in the reply update, fallback templates, waiting for replies, subscribers,
continue-as-new and the idle end."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.whatsapp import conversation_ids
from activities.whatsapp.models import (
    ConversationInput,
    ConversationMessage,
    ConversationReply,
    ConversationResult,
    ConversationView,
    OutboundMessage,
    ReplySubscription,
    Template,
    ViewRequest,
    WaitForReply,
)
from activities.whatsapp.store import WhatsAppStore
from activities.whatsapp.webhooks import sign
from tests.test_whatsapp_support import customer_writes, eventually, wa_conn
from workflows.whatsapp_conversation import WhatsAppConversation

TEXT = OutboundMessage(type="text", text="Yes, it comes in blue.")
HELLO = OutboundMessage(type="template", template=Template(name="hello_world"))


async def view(client: Client, wid: str) -> ConversationView:
    return await client.get_workflow_handle(wid).query(WhatsAppConversation.view)


async def status_view(client: Client, wid: str) -> ConversationView:
    """The view with delivery statuses: the conversation asks the store (their owner) in an update."""
    return await client.get_workflow_handle(wid).execute_update(WhatsAppConversation.view_with_status, ViewRequest())


async def conv_id(runtime, wa, customer: str) -> str:
    return await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, customer)


async def start(client: Client, task_queue: str, wa, wa_id: str, runtime=None, **kw) -> str:
    wid = await conv_id(runtime, wa, wa_id)
    await client.start_workflow(WhatsAppConversation.run, ConversationInput(
        organization_id=wa.organization_id, phone_number_id=wa.phone_number_id, wa_id=wa_id, **kw),
        id=wid, task_queue=task_queue)
    return wid


def statuses(v: ConversationView, message_id: str | None) -> list[str]:
    m = next((m for m in v.messages if m.message_id == message_id), None)
    return [s.status for s in m.timeline] if m else []


async def test_template_then_reply_inside_the_window(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    customer, wa_id = "+16505554001", "16505554001"
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, [wa_id], "website")
    wid = await start(client, task_queue, wa, runtime=runtime, wa_id=wa_id, context={"contact_id": "ckx1contact"})
    handle = client.get_workflow_handle(wid)
    # Free-form before the customer ever wrote: refused by the update validator, nothing sent.
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update(WhatsAppConversation.send_reply, ConversationReply(message=TEXT))
    assert "outside the 24-hour customer service window" in str(exc.value.cause)
    sent = await handle.execute_update(WhatsAppConversation.send_reply, ConversationReply(message=HELLO))
    assert sent.status == "accepted" and sent.category == "utility" and not sent.used_fallback_template
    waiting = await handle.start_update(WhatsAppConversation.wait_for_reply, WaitForReply(timeout_seconds=30),
                                        wait_for_stage=WorkflowUpdateStage.ACCEPTED)
    inbound = await customer_writes(sandbox.url, wa, customer, "Does it come in another color?",
                                    context_message_id=sent.message_id)
    reply = await waiting.result()
    assert not reply.timed_out and reply.reply and reply.reply.message_id == inbound["message_id"]
    assert reply.reply.text == "Does it come in another color?"
    answer = await handle.execute_update(WhatsAppConversation.send_reply, ConversationReply(message=TEXT))
    assert answer.status == "accepted" and answer.category == "service"
    v = await eventually(lambda: status_view(client, wid), lambda v: statuses(v, answer.message_id)[-1:] == ["read"]
                         and statuses(v, sent.message_id)[-1:] == ["read"], delay=0.2, tries=100)
    assert statuses(v, sent.message_id) == ["accepted", "sent", "delivered", "read"]  # the store's timeline
    assert statuses(v, answer.message_id) == ["accepted", "sent", "delivered", "read"]
    assert [(m.direction, m.type) for m in v.messages] == [("out", "template"), ("in", "text"), ("out", "text")]
    assert v.window_open and v.window_closes_at and v.opted_in and not v.opted_out
    assert v.context == {"contact_id": "ckx1contact"} and v.profile_name == "Sandbox Customer"


async def test_redelivered_webhooks_change_nothing(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    customer, wa_id = "+16505554002", "16505554002"
    first = await customer_writes(sandbox.url, wa, customer, "hello", redeliver=2)
    assert first["deliveries"] == [200, 200, 200]
    wid = await conv_id(runtime, wa, wa_id)
    handle = client.get_workflow_handle(wid)
    answer = await handle.execute_update(WhatsAppConversation.send_reply, ConversationReply(message=TEXT))
    v = await eventually(lambda: status_view(client, wid), lambda v: statuses(v, answer.message_id)[-1:] == ["read"],
                         delay=0.2, tries=100)
    before = v.model_dump()
    async with httpx.AsyncClient() as http:  # Meta retries: the last deliveries again, same bytes and signature
        r = await http.post(f"{sandbox.url}/_sandbox/whatsapp/redeliver", json={"count": 4})
    assert r.json()["statuses"] == [200] * 4
    assert (await status_view(client, wid)).model_dump() == before
    assert len(before["messages"]) == 2 and before["seq"] == 2
    rec = WhatsAppStore(runtime.store).message(answer.message_id)
    assert [s["status"] for s in rec.timeline] == ["accepted", "sent", "delivered", "read"]


async def test_gateway_refuses_forged_and_malformed_and_acks_unknown(client, worker, runtime, sandbox, gateway):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    url = f"{gateway}/webhooks/whatsapp/{wa.connection_id}"
    wa_id = "16505554003"
    doc = {"object": "whatsapp_business_account", "entry": [{"id": wa.waba_id, "changes": [{"field": "messages",
           "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": wa.phone_number_id},
                     "messages": [{"from": wa_id, "id": "wamid.forged", "timestamp": str(int(time.time())),
                                   "type": "text", "text": {"body": "STOP"}}]}}]}]}
    raw = json.dumps(doc).encode()
    wid = await conv_id(runtime, wa, wa_id)
    async with httpx.AsyncClient() as http:
        forged = await http.post(url, content=raw, headers={"X-Hub-Signature-256": sign("not-the-secret", raw)})
        assert forged.status_code == 401
        garbage = b'{"object": "whatsapp_business_account", "entry": [{'
        bad = await http.post(url, content=garbage, headers={"X-Hub-Signature-256": sign(wa.app_secret, garbage)})
        assert bad.status_code == 400
        other = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": wa.waba_id, "changes": [
            {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
            {"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
                "phone_number_id": wa.phone_number_id}, "message_echoes": [{"id": "x"}]}}]}]}).encode()
        ack = await http.post(url, content=other, headers={"X-Hub-Signature-256": sign(wa.app_secret, other)})
        assert ack.status_code == 200
    with pytest.raises(RPCError):  # nothing was signalled: no conversation exists
        await client.get_workflow_handle(wid).describe()
    contact = WhatsAppStore(runtime.store).contact(wa.organization_id, wa.phone_number_id, wa_id)
    assert contact is None  # the forged STOP touched nothing


async def test_fallback_template_outside_the_window(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    wa_id = "16505554004"
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, [wa_id], "website")
    await customer_writes(sandbox.url, wa, "+" + wa_id, "old", timestamp=int(time.time()) - 30 * 3600)
    wid = await conv_id(runtime, wa, wa_id)
    v = await eventually(lambda: view(client, wid), lambda v: len(v.messages) == 1)
    assert not v.window_open
    plain = client.get_workflow_handle(wid)
    with pytest.raises(WorkflowUpdateFailedError):
        await plain.execute_update(WhatsAppConversation.send_reply, ConversationReply(message=TEXT))
    other = "16505554005"
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, [other], "website")
    wid2 = await start(client, task_queue, wa, runtime=runtime, wa_id=other,
                       fallback_template=Template(name="hello_world"))
    res = await client.get_workflow_handle(wid2).execute_update(WhatsAppConversation.send_reply,
                                                               ConversationReply(message=TEXT))
    assert res.used_fallback_template and res.category == "utility" and res.status == "accepted"
    sent = [r["body"] for r in sandbox.state.recorder.dump("whatsapp")
            if r["path"].endswith("/messages") and r["body"].get("to") == other]
    assert [b["type"] for b in sent] == ["template"]


async def test_wait_for_reply_times_out_and_stop_opts_out(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    wa_id = "16505554006"
    wid = await start(client, task_queue, wa, runtime=runtime, wa_id=wa_id)
    handle = client.get_workflow_handle(wid)
    res = await handle.execute_update(WhatsAppConversation.wait_for_reply, WaitForReply(timeout_seconds=0.3))
    assert res.timed_out and res.reply is None
    await customer_writes(sandbox.url, wa, "+" + wa_id, "STOP")
    v = await eventually(lambda: view(client, wid), lambda v: v.opted_out)
    assert v.opted_out and not v.opted_in
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update(WhatsAppConversation.send_reply, ConversationReply(message=TEXT))
    assert "opted out" in str(exc.value.cause)


@workflow.defn(name="TestReplyWaiter", sandboxed=False)
class ReplyWaiter:
    """A stand-in for an OpenSyte flow that asks a conversation for the customer's next reply."""

    def __init__(self) -> None:
        self.reply: ConversationMessage | None = None

    @workflow.signal(name="whatsapp_reply")
    def got(self, msg: ConversationMessage) -> None:
        self.reply = msg

    @workflow.run
    async def run(self, conversation_id: str) -> str:
        await workflow.get_external_workflow_handle(conversation_id).signal(
            "subscribe_reply", ReplySubscription(workflow_id=workflow.info().workflow_id))
        await workflow.wait_condition(lambda: self.reply is not None, timeout=timedelta(seconds=30))
        assert self.reply is not None
        return self.reply.text or ""


async def test_another_workflow_waits_for_the_reply(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    wa_id = "16505554007"
    wid = await start(client, task_queue, wa, runtime=runtime, wa_id=wa_id)
    queue = f"waiter-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[ReplyWaiter], workflow_runner=UnsandboxedWorkflowRunner()):
        waiter = await client.start_workflow(ReplyWaiter.run, wid, id=f"waiter-{uuid.uuid4().hex}", task_queue=queue)
        await eventually(lambda: view(client, wid), lambda v: v.subscriptions == 1)
        await customer_writes(sandbox.url, wa, "+" + wa_id, "here is my answer")
        assert await waiter.result() == "here is my answer"


async def test_continue_as_new_keeps_the_context(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    wa_id = "16505554008"
    # 12 signals alone pass 15 history events, however the worker batches them into workflow tasks.
    wid = await start(client, task_queue, wa, runtime=runtime, wa_id=wa_id, history_limit=15,
                      context={"deal_id": "d1"})
    first_run = (await client.get_workflow_handle(wid).describe()).run_id
    for i in range(12):
        await customer_writes(sandbox.url, wa, "+" + wa_id, f"message {i}")
    v = await eventually(lambda: view(client, wid), lambda v: len(v.messages) == 12)
    desc = await client.get_workflow_handle(wid).describe()
    assert desc.run_id != first_run, "continued as new"
    assert [m.text for m in v.messages] == [f"message {i}" for i in range(12)] and v.seq == 12
    assert v.context == {"deal_id": "d1"} and v.window_open
    async with httpx.AsyncClient() as http:  # a redelivery from before the continue-as-new is still a duplicate
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/redeliver", json={"count": 12})
    # The redeliveries were signalled before the sandbox's call returned; a new message after them is seen only
    # once they were all handled.
    await customer_writes(sandbox.url, wa, "+" + wa_id, "message 12")
    v = await eventually(lambda: view(client, wid), lambda v: len(v.messages) == 13)
    assert [m.text for m in v.messages] == [f"message {i}" for i in range(13)] and v.seq == 13


async def test_idle_conversation_ends_and_restarts_from_the_store(client, worker, runtime, sandbox, gateway,
                                                                  task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    wa_id = "16505554009"
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, [wa_id], "website")
    wid = await start(client, task_queue, wa, runtime=runtime, wa_id=wa_id, idle_timeout_seconds=1.5)
    await customer_writes(sandbox.url, wa, "+" + wa_id, "hi")
    result = await client.get_workflow_handle(wid, result_type=ConversationResult).result()
    assert result.reason == "idle" and result.messages == 1
    # A new delivery starts a fresh run that knows the opt-in and the open window from the store.
    await customer_writes(sandbox.url, wa, "+" + wa_id, "back again")
    v = await eventually(lambda: view(client, wid), lambda v: v.opted_in and len(v.messages) == 1)
    assert v.opted_in and v.window_open and v.messages[0].text == "back again"


async def test_idle_end_waits_for_a_pending_wait_for_reply(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    wid = await start(client, task_queue, wa, runtime=runtime, wa_id="16505554010", idle_timeout_seconds=0.3)
    handle = client.get_workflow_handle(wid, result_type=ConversationResult)
    waited = await handle.execute_update(WhatsAppConversation.wait_for_reply, WaitForReply(timeout_seconds=1.2))
    assert waited.timed_out  # the conversation stayed open for the caller past its idle time
    assert (await handle.result()).reason == "idle"
