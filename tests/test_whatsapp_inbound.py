"""Every inbound message type Meta documents, from Meta's published webhook examples (tests/data), arrives with its
full content: parsed, in the conversation's query, in `wait_for_reply` and in a subscriber's signal; a workflow
branches on the tapped button; a customer's photo downloads through the media activity; users without a phone
number (BSUID only) are their own conversations, and no workflow id carries a phone number."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.whatsapp import conversation_ids, webhooks
from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import (
    ConversationMessage,
    ConversationReply,
    ConversationView,
    DownloadMediaInput,
    OutboundMessage,
    ReplySubscription,
    WaitForReply,
)
from activities.whatsapp.phone import recipient
from core.errors import PermanentError
from tests.test_whatsapp_support import customer_writes, eventually, wa_conn
from workflows.whatsapp_conversation import WhatsAppConversation

EXAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "whatsapp_inbound_examples.json").read_text())


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[name]["payload"])


def only_message(name: str) -> Any:
    batch = webhooks.parse(json.dumps(example(name)).encode())
    assert len(batch.messages) == 1, batch
    return batch.messages[0]


# ---- parsing Meta's published examples (pure) ------------------------------------------------------
def test_every_documented_type_is_parsed_with_its_content() -> None:
    text = only_message("text")
    assert (text.customer, text.wa_id, text.profile_name, text.type) == ("16505551234", "16505551234",
                                                                         "Sheena Nelson", "text")
    assert text.content.text == "Does it come in another color?"

    inquiry = only_message("text_product_inquiry").content
    assert inquiry.context.referred_product == {"catalog_id": "194836987003835", "product_retailer_id": "di9ozbzfi4"}
    assert inquiry.context.message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGA9wcm9kdWN0X2lucXVpcnkA"

    ad = only_message("text_click_to_whatsapp_ad").content
    assert ad.text == "Hello! Can I get more info on this?"
    assert (ad.referral.source_type, ad.referral.source_id, ad.referral.headline, ad.referral.media_type) == (
        "ad", "120226305854810726", "Chat with us", "image")
    assert ad.referral.ctwa_clid.startswith("Aff-n8ZT") and ad.referral.welcome_message == {
        "text": "Hi there! Let us know how we can help!"}

    reaction = only_message("reaction").content
    assert (reaction.reaction.emoji, reaction.reaction.message_id) == (
        "👍", "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA")

    image = only_message("image").content.media
    assert (image.id, image.mime_type, image.sha256, image.caption) == (
        "1003383421387256", "image/jpeg", "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=", "Taj Mahal")
    video = only_message("video").content.media
    assert (video.id, video.mime_type, video.caption) == ("1166846181421424", "video/mp4", "A succulent eclipse!")
    assert video.url.startswith("https://lookaside.fbsbx.com/")
    voice = only_message("audio_voice").content.media
    assert voice.voice is True and voice.mime_type == "audio/ogg; codecs=opus" and voice.caption is None
    doc = only_message("document").content.media
    assert (doc.filename, doc.caption, doc.mime_type) == ("lucky-shrub-invoice.pdf", "Lucky Shrub Invoice",
                                                          "application/pdf")
    sticker = only_message("sticker").content.media
    assert sticker.animated is False and sticker.mime_type == "image/webp"

    loc = only_message("location").content.location
    assert (loc.latitude, loc.longitude, loc.name, loc.address, loc.url) == (
        37.44221496582, -122.16165924072, "Philz Coffee", "101 Forest Ave, Palo Alto, CA 94301",
        "https://philzcoffee.com/")

    card = only_message("contacts").content.contacts[0]
    assert card.name["formatted_name"] == "Lucía Gómez" and card.org == {"company": "Google"}
    assert card.phones == [{"phone": "+1 (983) 555-2319", "wa_id": "19835552319", "type": "MOBILE"}]

    unsupported = only_message("unsupported").content
    assert unsupported.type == "unsupported" and unsupported.errors[0]["code"] == 131051
    assert unsupported.raw["errors"][0]["title"] == "Message type unknown"

    button = only_message("button").content
    assert (button.button.payload, button.button.text, button.choice) == ("Unsubscribe", "Unsubscribe", "Unsubscribe")
    listed = only_message("interactive_list_reply").content
    assert (listed.reply.type, listed.reply.id, listed.reply.title, listed.reply.description, listed.choice) == (
        "list_reply", "priority_express", "Priority Mail Express", "Next Day to 2 Days", "priority_express")
    tapped = only_message("interactive_button_reply").content
    assert (tapped.reply.type, tapped.choice, tapped.text) == ("button_reply", "cancel-button", "Cancel")
    assert tapped.context.message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MEM2RUJFNkI0RENGQTVDRjUA"

    order = only_message("order").content.order
    assert order.catalog_id == "194836987003835" and [(i.product_retailer_id, i.quantity, i.item_price, i.currency)
                                                      for i in order.product_items] == [
        ("di9ozbzfi4", 2, 30, "USD"), ("nqryix03ez", 1, 25, "USD")]

    system = only_message("system")
    assert system.customer == "16505551234" and system.profile_name is None  # system messages carry no contacts
    assert (system.content.system.type, system.content.system.wa_id) == ("user_changed_number", "12195555358")

    bsuid = only_message("text_username_without_phone")
    assert (bsuid.customer, bsuid.wa_id, bsuid.user_id, bsuid.username) == (
        "US.13491208655302741918", None, "US.13491208655302741918", "@sheena.nelson")


def test_a_message_without_any_sender_is_malformed_never_an_empty_key() -> None:
    doc = example("text_username_without_phone")
    msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    del msg["from_user_id"]
    doc["entry"][0]["changes"][0]["value"]["contacts"] = []
    with pytest.raises(webhooks.MalformedWebhook):
        webhooks.parse(json.dumps(doc).encode())


def test_recipients_are_phone_numbers_or_bsuids_never_empty_or_partial() -> None:
    assert recipient("+1 650-555-1234").address() == {"to": "16505551234"}
    assert recipient("US.13491208655302741918").address() == {"recipient": "US.13491208655302741918"}
    assert recipient("US.ENT.11815799212886844830").kind == "user_id"
    for bad in ("", "  ", "+", "+1650", "US.", "us.123", "XX.12-3"):
        with pytest.raises(PermanentError):
            recipient(bad)


def test_conversation_ids_hash_the_customer_deterministically() -> None:
    from activities.whatsapp.models import conversation_workflow_id

    a = conversation_workflow_id(b"k1", "org", "106540352242922", "16505551234")
    assert a == conversation_workflow_id(b"k1", "org", "106540352242922", "16505551234")
    assert a != conversation_workflow_id(b"k2", "org", "106540352242922", "16505551234")
    assert "16505551234" not in a and a.startswith("whatsapp-conversation:org:106540352242922:")
    with pytest.raises(ValueError):
        conversation_workflow_id(b"k1", "org", "106540352242922", "")


# ---- end to end: Meta's examples through the gateway into the conversation ---------------------------
def _retarget(doc: dict[str, Any], pid: str, customer: str | None, tag: str) -> dict[str, Any]:
    """Meta's example, addressed to our number and customer, with message ids unique to this run (several of
    Meta's examples share one id)."""
    value = doc["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = pid
    for c in value.get("contacts") or []:
        if customer and "wa_id" in c:
            c["wa_id"] = customer
    for m in value["messages"]:
        m["id"] = f"{m['id']}.{tag}"
        if customer and "from" in m:
            m["from"] = customer
    return doc


async def post_signed(gateway: str, path: str, secret: str, doc: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(doc).encode()
    async with httpx.AsyncClient() as http:
        return await http.post(f"{gateway}{path}", content=raw,
                               headers={"X-Hub-Signature-256": webhooks.sign(secret, raw),
                                        "Content-Type": "application/json"})


async def view(client: Client, wid: str) -> ConversationView:
    return await client.get_workflow_handle(wid).query(WhatsAppConversation.view)


async def test_metas_examples_arrive_with_their_full_content_in_the_conversation(client, worker, runtime, sandbox,
                                                                                 gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    customer = f"1650555{uuid.uuid4().int % 10000:04d}"
    names = [n for n in EXAMPLES if n != "text_username_without_phone"]
    tag = uuid.uuid4().hex[:8]
    for i, name in enumerate(names):
        r = await post_signed(gateway, f"/webhooks/whatsapp/{wa.connection_id}", wa.app_secret,
                              _retarget(example(name), wa.phone_number_id, customer, f"{tag}.{i}"))
        assert r.status_code == 200, (name, r.text)
    wid = await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, customer)
    v = await eventually(lambda: view(client, wid), lambda v: len(v.messages) == len(names))
    by_type = {m.content.type if m.content else m.type: m for m in v.messages}
    assert len(v.messages) == len(names) and all(m.direction == "in" and m.content for m in v.messages)
    expected = {only_message(n).content.model_dump_json(exclude={"context"}) for n in names}
    assert {m.content.model_dump_json(exclude={"context"}) for m in v.messages} == expected
    assert by_type["order"].content.order.product_items[1].product_retailer_id == "nqryix03ez"
    assert by_type["location"].content.location.name == "Philz Coffee"
    assert by_type["contacts"].content.contacts[0].phones[0]["wa_id"] == "19835552319"
    assert by_type["sticker"].content.media.animated is False and by_type["audio"].content.media.voice is True
    assert by_type["reaction"].content.reaction.emoji == "👍"
    assert by_type["system"].content.system.body.startswith("User Sheena Nelson changed")
    assert by_type["unsupported"].content.errors[0]["code"] == 131051
    assert "16505551234" not in wid and customer not in wid


async def test_wait_for_reply_returns_the_tapped_button_and_a_workflow_branches_on_it(
        client, worker, runtime, sandbox, gateway, task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    customer = f"1650556{uuid.uuid4().int % 10000:04d}"
    first = await customer_writes(sandbox.url, wa, "+" + customer, "hi")
    wid = await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, customer)
    await eventually(lambda: view(client, wid), lambda v: len(v.messages) == 1)
    handle = client.get_workflow_handle(wid)
    queue = f"branch-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[ButtonFlow], workflow_runner=UnsandboxedWorkflowRunner()):
        flow = await client.start_workflow(ButtonFlow.run, wid, id=f"flow-{uuid.uuid4().hex}", task_queue=queue)
        await eventually(lambda: view(client, wid), lambda v: v.subscriptions == 1)
        waiting = await handle.start_update(WhatsAppConversation.wait_for_reply, WaitForReply(timeout_seconds=30),
                                            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await customer_writes(sandbox.url, wa, "+" + customer, type="interactive", reply_id="cancel-button",
                              reply_title="Cancel", context_message_id=first["message_id"])
        got = await waiting.result()
        assert got.reply.content.reply.title == "Cancel" and got.reply.content.choice == "cancel-button"
        assert await flow.result() == "cancelled: cancel-button (Cancel)"


@workflow.defn(name="TestButtonFlow", sandboxed=False)
class ButtonFlow:
    """An OpenSyte flow that branches on which button the customer pressed (via subscribe_reply)."""

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
        assert self.reply is not None and self.reply.content is not None
        content = self.reply.content
        if content.choice == "cancel-button":
            return f"cancelled: {content.choice} ({content.reply.title if content.reply else ''})"
        return f"other: {content.choice}"


async def test_a_customers_photo_downloads_through_the_media_activity(client, worker, runtime, sandbox,
                                                                        gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    customer = f"1650557{uuid.uuid4().int % 10000:04d}"
    await customer_writes(sandbox.url, wa, "+" + customer, "the damaged box", type="image")
    wid = await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, customer)
    v = await eventually(lambda: view(client, wid), lambda v: len(v.messages) == 1)
    media = v.messages[0].content.media
    assert media.caption == "the damaged box" and media.mime_type == "image/jpeg"
    got = await WhatsAppActivities(runtime).download_media(DownloadMediaInput(
        organization_id=wa.organization_id, media_id=media.id))
    data = base64.b64decode(got.content_base64)
    assert data.startswith(b"\xff\xd8") and got.size == len(data)
    assert base64.b64encode(hashlib.sha256(data).digest()).decode() == media.sha256  # Meta's hash, checked
    # Or straight into OpenSyte's storage (a PUT to a presigned URL; here the sandbox's file store).
    put = await WhatsAppActivities(runtime).download_media(DownloadMediaInput(
        organization_id=wa.organization_id, media_id=media.id,
        upload_url=f"{sandbox.url}/_sandbox/files/{uuid.uuid4().hex}.jpg"))
    assert put.content_base64 is None and put.uploaded_to and put.sha256 == got.sha256
    async with httpx.AsyncClient() as http:
        assert (await http.get(put.uploaded_to)).content == data


# ---- customers without a phone number ---------------------------------------------------------------
async def test_two_users_without_phone_numbers_get_two_conversations_and_replies(client, worker, runtime, sandbox,
                                                                                 gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    users = [f"BR.{uuid.uuid4().int % 10**18}", f"BR.{uuid.uuid4().int % 10**18}"]
    for i, user in enumerate(users):
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{sandbox.url}/_sandbox/whatsapp/inbound", json={
                "phone_number_id": wa.phone_number_id, "user_id": user, "username": f"@user{i}",
                "text": f"hello from user {i}"})
            assert r.status_code == 200 and r.json()["wa_id"] is None
    delivered = [d["body"] for d in sandbox.state.providers["whatsapp"].state.webhook_deliveries
                 if d["body"]["entry"][0]["changes"][0]["value"].get("messages")
                 and d["body"]["entry"][0]["changes"][0]["value"]["messages"][0].get("from_user_id") in users]
    assert all("from" not in d["entry"][0]["changes"][0]["value"]["messages"][0] for d in delivered)
    wids = [await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, u) for u in users]
    assert len(set(wids)) == 2
    for i, wid in enumerate(wids):
        v = await eventually(lambda wid=wid: view(client, wid), lambda v: len(v.messages) == 1)
        assert v.user_id == users[i] and v.wa_id is None and v.messages[0].text == f"hello from user {i}"
        assert v.window_open
    # A reply inside the window goes to the BSUID (Meta's `recipient`), never to an empty or partial number.
    sent = await client.get_workflow_handle(wids[0]).execute_update(
        WhatsAppConversation.send_reply, ConversationReply(message=OutboundMessage(type="text", text="Hi!")))
    assert sent.status == "accepted"
    bodies = [r["body"] for r in sandbox.state.recorder.dump("whatsapp")
              if r["path"].endswith(f"/{wa.phone_number_id}/messages") and isinstance(r["body"], dict)
              and r["body"].get("type") == "text"]
    assert bodies[-1]["recipient"] == users[0] and "to" not in bodies[-1]
    assert not any(b.get("to") in ("", "+") for b in bodies)


async def test_no_workflow_id_carries_a_phone_number(client, worker, runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    numbers = [f"1650558{uuid.uuid4().int % 10000:04d}" for _ in range(3)]
    for n in numbers:
        await customer_writes(sandbox.url, wa, "+" + n, "hello")
    wids = [await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, n) for n in numbers]
    for wid in wids:
        await eventually(lambda wid=wid: view(client, wid), lambda v: len(v.messages) == 1)
    ids = [w.id async for w in client.list_workflows()]
    assert set(wids) <= set(ids)
    leaked = [i for i in ids for n in numbers if n in i or n[1:] in i]
    assert leaked == []
