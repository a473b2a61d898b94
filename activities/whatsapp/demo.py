"""WhatsApp demo: an OpenSyte template action, then a conversation driven by signed webhooks from the sandbox."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr
from rich.markup import escape
from temporalio.client import WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.whatsapp import conversation_ids
from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import (
    ConversationInput,
    ConversationReply,
    ConversationReplyResult,
    ConversationResult,
    ConversationView,
    Interactive,
    Media,
    OutboundMessage,
    ReplyButton,
    SendWhatsAppMessageInput,
    SendWhatsAppMessageResult,
    UploadMediaInput,
    ViewRequest,
    WaitForReply,
    WaitForReplyResult,
)
from activities.whatsapp.settings import WhatsAppSettings
from activities.whatsapp.store import WhatsAppStore
from core.connections import add_connection
from core.demo import DemoContext
from vault.credentials import BearerTokenCredentials

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "419561257915477"
CUSTOMER = "+16505551234"
CUSTOMER_WA_ID = "16505551234"
ORDER_TEMPLATE = {
    "waba_id": WABA_ID, "name": "order_update", "language": "en_US", "category": "UTILITY",
    "components": [{"type": "BODY",
                    "text": "Hi {{1}}, your order {{2}} ships on {{3}}. Reply here with any question."}],
}


# A 1x1 PNG: enough for Meta's (and the sandbox's) type and size checks.
DEMO_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")

Conversation = WorkflowHandle[Any, ConversationResult]
CONVERSATION = "WhatsAppConversation"  # started by name: workflows sit above this layer


async def seed(ctx: DemoContext) -> str:
    """Create (or refresh) the demo connection, the sandbox's number and template, and the customer's opt-in."""
    token = "EAAsandbox" + secrets.token_hex(16)
    app_secret, verify = secrets.token_hex(16), secrets.token_hex(8)
    conn = await add_connection(
        ctx.rt, ctx.organization_id, "WHATSAPP_BUSINESS", "default",
        {"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "messaging_limit": "TIER_1K"},
        BearerTokenCredentials(token=SecretStr(token), app_secret=SecretStr(app_secret),
                               verify_token=SecretStr(verify)),
        actor="demo", replace=True,
    )
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{ctx.sandbox_url}/_sandbox/whatsapp/phone_numbers", json={
            "phone_number_id": PHONE_NUMBER_ID, "token": token, "app_secret": app_secret, "waba_id": WABA_ID,
            "webhook_url": f"{ctx.gateway_url}/webhooks/whatsapp/{conn.id}", "status_delay_ms": 150})
        r.raise_for_status()
        (await http.post(f"{ctx.sandbox_url}/_sandbox/whatsapp/templates", json=ORDER_TEMPLATE)).raise_for_status()
    await ctx.rt.store.run(WhatsAppStore(ctx.rt.store).opt_in, ctx.organization_id, PHONE_NUMBER_ID,
                           [CUSTOMER_WA_ID], "demo: checkout consent")
    ctx.say(f"seeded WhatsApp connection {conn.id} (token in Vault at {ctx.rt.credentials_path(conn)}); "
            f"customer {CUSTOMER} opted in")
    return conn.id


async def conversation(ctx: DemoContext) -> Conversation:
    """Started by OpenSyte with its context; webhooks then signal it (signal-with-start finds it running)."""
    # The id hashes the customer with the deployment's key: no phone number in any workflow id.
    wid = await conversation_ids.workflow_id(ctx.rt, ctx.organization_id, PHONE_NUMBER_ID, CUSTOMER_WA_ID)
    idle_hours = ctx.settings.section(WhatsAppSettings).conversation_idle_hours
    try:
        return await ctx.client.start_workflow(
            CONVERSATION,
            ConversationInput(organization_id=ctx.organization_id, phone_number_id=PHONE_NUMBER_ID,
                              wa_id=CUSTOMER_WA_ID, context={"contact_id": "demo-contact-1", "deal_id": "demo-deal-7"},
                              idle_timeout_seconds=idle_hours * 3600),
            id=wid, task_queue=ctx.settings.task_queue, result_type=ConversationResult)
    except WorkflowAlreadyStartedError:  # a second `make run`: the conversation is still open
        handle: Conversation = ctx.client.get_workflow_handle(wid, result_type=ConversationResult)
        await handle.signal("attach_context", {"contact_id": "demo-contact-1"})
        return handle


async def until(handle: Conversation, ok: Callable[[ConversationView], bool], tries: int = 40) -> ConversationView:
    """The conversation's view with delivery statuses (update `view_with_status`: the store owns them)."""
    view: ConversationView = await handle.execute_update("view_with_status", ViewRequest(),
                                                         result_type=ConversationView)
    for _ in range(tries):
        if ok(view):
            break
        await asyncio.sleep(0.25)
        view = await handle.execute_update("view_with_status", ViewRequest(), result_type=ConversationView)
    return view


def timeline(view: ConversationView, message_id: str | None) -> str:
    m = next((m for m in view.messages if m.message_id == message_id), None)
    return " → ".join(s.status for s in m.timeline) if m and m.timeline else "(none yet)"


async def run(ctx: DemoContext) -> None:
    await seed(ctx)
    conv = await conversation(ctx)
    ctx.say(f"WhatsAppConversation {conv.id}\n  Temporal UI: {ctx.workflow_link(conv.id)}")

    # 1. An OpenSyte WhatsAppAction, as stored in its schema: a template with {VAR} / {{var}} variables.
    wf_id = f"demo-whatsapp-template-{int(time.time())}"
    res: SendWhatsAppMessageResult = await ctx.client.execute_workflow(
        "SendWhatsAppMessage",
        SendWhatsAppMessageInput(organization_id=ctx.organization_id, to_numbers=["{customer.phone}"],
                                 message_type="TEMPLATE", template_name="order_update", template_language="en_US",
                                 template_params=["{{customer.name}}", "{ORDER_NUMBER}", "Friday"],
                                 variables={"customer": {"name": "Sheena", "phone": CUSTOMER},
                                            "ORDER_NUMBER": "SO-1042"}),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=SendWhatsAppMessageResult,
    )
    template = res.results[0]
    ctx.expect(template.status == "accepted" and template.message_id, f"template send: {template}")
    ctx.say(f"1. SendWhatsAppMessage (OpenSyte TEMPLATE order_update) → {template.status} {template.message_id} "
            f"({template.category})\n   Temporal UI: {ctx.workflow_link(wf_id)}")

    # Its status webhooks go to the store; the conversation's view asks the store for the customer's messages.
    before = await until(conv, lambda v: timeline(v, template.message_id) != "(none yet)")
    ctx.say(f"   the conversation sees it: {timeline(before, template.message_id)}")

    # 2. The customer answers: the sandbox signs Meta's webhook, the gateway verifies it and signals.
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{ctx.sandbox_url}/_sandbox/whatsapp/inbound", json={
            "phone_number_id": PHONE_NUMBER_ID, "from": CUSTOMER, "profile_name": "Sheena Nelson",
            "text": "Thanks! Can I still change the delivery address?", "context_message_id": template.message_id})
        r.raise_for_status()
    got = await conv.execute_update("wait_for_reply", WaitForReply(after_seq=before.seq, timeout_seconds=30),
                                    result_type=WaitForReplyResult)
    ctx.expect(got.reply is not None, "the customer's signed reply never reached the conversation")
    ctx.say(f"2. customer reply by signed webhook → {got.reply.text if got.reply else 'timed out'!r}")

    # 2b. Buttons: the customer taps one; the reply carries the button's id, so a flow can branch on it.
    buttons = await conv.execute_update("send_reply", ConversationReply(message=OutboundMessage(
        type="interactive", interactive=Interactive(type="button", body="Change the delivery address?", buttons=[
            ReplyButton(id="change-address", title="Change it"), ReplyButton(id="keep-address", title="Keep it")]))),
        result_type=ConversationReplyResult)
    seq = (await conv.query("view", result_type=ConversationView)).seq
    async with httpx.AsyncClient() as http:
        (await http.post(f"{ctx.sandbox_url}/_sandbox/whatsapp/inbound", json={
            "phone_number_id": PHONE_NUMBER_ID, "from": CUSTOMER, "type": "interactive", "reply_id": "change-address",
            "reply_title": "Change it", "context_message_id": buttons.message_id})).raise_for_status()
    tapped = await conv.execute_update("wait_for_reply", WaitForReply(after_seq=seq, timeout_seconds=30),
                                       result_type=WaitForReplyResult)
    choice = tapped.reply.content.choice if tapped.reply and tapped.reply.content else None
    ctx.expect(choice == "change-address", f"button reply: {tapped}")
    ctx.say(f"   buttons sent ({buttons.message_id}); the customer tapped {choice!r} → the flow branches on it")

    # 3. Inside the 24 h window the conversation may answer free-form.
    answer = await conv.execute_update("send_reply", ConversationReply(message=OutboundMessage(
        type="text", text="Yes — reply with the new address and we will update order SO-1042.")),
        result_type=ConversationReplyResult)
    ctx.expect(answer.status == "accepted", f"reply through the conversation: {answer}")
    ctx.say(f"3. reply through the conversation (update send_reply) → {answer.status} {answer.message_id} "
            f"({answer.category})")

    # 3b. A picture: uploaded from a URL (Meta's type and size limits checked first), then sent by media id.
    async with httpx.AsyncClient() as http:
        (await http.put(f"{ctx.sandbox_url}/_sandbox/files/delivery-map.png", content=DEMO_PNG,
                        headers={"Content-Type": "image/png"})).raise_for_status()
    up = await WhatsAppActivities(ctx.rt).upload_media(UploadMediaInput(
        organization_id=ctx.organization_id, source_url=f"{ctx.sandbox_url}/_sandbox/files/delivery-map.png"))
    picture = await conv.execute_update("send_reply", ConversationReply(message=OutboundMessage(
        type="image", media=Media(id=up.media_id, caption="Your delivery area"))), result_type=ConversationReplyResult)
    ctx.expect(picture.status == "accepted", f"image reply: {picture}")
    ctx.say(f"   uploaded {up.size} bytes ({up.mime_type}) as media {up.media_id}; sent as an image → {picture.status}")

    # 4. Statuses from Meta's webhooks, kept by the store; the conversation's `view_with_status` update asks it.
    view = await until(conv, lambda v: timeline(v, answer.message_id).endswith("read")
                       and timeline(v, template.message_id).endswith("read"))
    ctx.expect(view.opted_in and timeline(view, answer.message_id).endswith("read"),
               f"conversation view: opted in={view.opted_in}, reply {timeline(view, answer.message_id)}")
    ctx.say(f"4. conversation view with status: window open={view.window_open}, opted in={view.opted_in}, "
            f"context={view.context}")
    for m in view.messages[-3:]:
        arrow = "←" if m.direction == "in" else "→"
        text = escape(str(m.text or "")[:48].ljust(48))  # "[template …]" is not rich markup
        ctx.say(f"   {arrow} {m.type:<8} {(m.category or ''):<8} {text} "
                f"{timeline(view, m.message_id)}")
    costs = await ctx.rt.store.run(WhatsAppStore(ctx.rt.store).cost_report, ctx.organization_id)
    for c in costs:
        ctx.say(f"   cost {c.day} {c.category:<9} delivered={c.delivered} billable={c.billable} "
                f"{c.cost_amount:.4f} {c.currency}")
    ctx.results["whatsapp"] = {"template": template.message_id, "reply": answer.message_id,
                               "conversation": conv.id}
