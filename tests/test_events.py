"""Events to OpenSyte: a subscription (admin API, secret shown once) receives every event type exactly once per
occurrence, signed `v1=HMAC(secret, timestamp.body)`, in order, and survives its receiver being down."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from activities.calendar.model import (
    CalendarActionInput,
    CancelCalendarEventInput,
    CancelCalendarEventResult,
    CreateCalendarEventResult,
    EventPatch,
    UpdateCalendarEventInput,
    UpdateCalendarEventResult,
)
from activities.slack.models import SlackApprovalInput, SlackApprovalResult
from activities.slack.seed import click, create_workspace, direct_connection, ensure_app, wait_for_message
from activities.whatsapp import conversation_ids
from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import ConversationReply, OutboundMessage, SendTemplateInput, Template
from activities.whatsapp.store import WhatsAppStore
from core.signing import sign, verify
from store.events import EventStore
from tests import calendar_seed
from tests.test_whatsapp_support import customer_writes, eventually, wa_conn
from vault.client import CredentialsMissing
from workflows.whatsapp_conversation import WhatsAppConversation


# ---- the signature every receiver checks (the TypeScript verifier pins the same vector) --------------------
def test_signature_vector_replay_window_and_tampering() -> None:
    secret, ts, body = "whsec_test_vector", "1700000000", b'{"id":"evt_1","type":"ping"}'
    sig = sign(secret, ts, body)
    assert sig == "v1=d95fda2cebcd9958f9b2b719ce1b411de884290221d5b01352607c30b8d7b589"
    assert verify(secret, ts, body, sig, now=lambda: 1700000000 + 299)
    assert verify(secret, ts, body, sig, now=lambda: 1700000000 - 299)  # a receiver's clock may run behind
    assert not verify(secret, ts, body, sig, now=lambda: 1700000000 + 301)  # replayed after the window
    assert not verify(secret, ts, body + b" ", sig, now=lambda: 1700000000)  # tampered body
    assert not verify(secret, "1700000001", body, sig, now=lambda: 1700000000)  # tampered timestamp
    assert not verify("whsec_other", ts, body, sig, now=lambda: 1700000000)
    for garbage in ("", "v1=", "sha256=" + sig[3:], "v1=zz"):
        assert not verify(secret, ts, body, garbage, now=lambda: 1700000000)
    assert not verify(secret, "not-a-number", body, sig)


# ---- helpers --------------------------------------------------------------------------------------------
def sink_url(sandbox, name: str) -> str:
    return f"{sandbox.url}/_sandbox/sink/{name}"


async def received(sandbox, name: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        return list((await http.get(sink_url(sandbox, name))).json())


async def answer(sandbox, name: str, status: int) -> None:
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sink_url(sandbox, name)}/status/{status}")).raise_for_status()


async def subscribe(gateway: str, runtime, org: str, url: str, types: list[str]) -> tuple[str, str, str]:
    """Through the admin API, with an organization's key: (subscription id, signing secret, admin key)."""
    key = runtime.store.issue_admin_key(org, "opensyte")
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{gateway}/admin/orgs/{org}/event-subscriptions", json={
            "url": url, "event_types": types, "description": "OpenSyte"}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201, r.text
        doc = r.json()
        listed = (await http.get(f"{gateway}/admin/orgs/{org}/event-subscriptions",
                                 headers={"Authorization": f"Bearer {key}"})).json()
    assert [s["id"] for s in listed] == [doc["id"]] and "signing_secret" not in listed[0]  # shown once
    return doc["id"], doc["signing_secret"], key


def delivered_ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the receiver accepted (2xx), as (event document, headers)."""
    return [{"doc": json.loads(r["body"]), "headers": r["headers"], "raw": r["body"].encode()}
            for r in records if 200 <= r["answered"] < 300]


def check_signed(secret: str, item: dict[str, Any]) -> None:
    h, doc = item["headers"], item["doc"]
    assert verify(secret, h["x-osi-timestamp"], item["raw"], h["x-osi-signature"])
    assert h["x-osi-event-id"] == doc["id"] and h["x-osi-event-type"] == doc["type"]
    assert abs(time.time() - int(h["x-osi-timestamp"])) < 300 and doc["id"].startswith("evt_")


def counts(items: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i["doc"]["type"]] = out.get(i["doc"]["type"], 0) + 1
    return out


async def settled(runtime, org: str, sub: str) -> bool:
    """Nothing pending for the subscription any more."""
    return not EventStore(runtime.store).pending(sub, 1)


# ---- every event type, once per occurrence ------------------------------------------------------------------
async def test_a_subscription_receives_each_event_type_once_with_a_valid_signature(
        client, worker, runtime, sandbox, gateway, task_queue) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    name = f"opensyte-{uuid.uuid4().hex[:8]}"
    sub, secret, key = await subscribe(gateway, runtime, org, sink_url(sandbox, name), ["*"])

    # WhatsApp: a customer writes (received), our reply goes sent → delivered → read (3 status changes), a
    # template to an unreachable number fails (failed). The connection's first success heals it (health).
    wa = await wa_conn(runtime, sandbox.url, gateway, org=org)
    customer, unreachable = f"1650560{uuid.uuid4().int % 10000:04d}", f"1650561{uuid.uuid4().int % 10000:04d}"
    await customer_writes(sandbox.url, wa, "+" + customer, "where is my order?")
    conv = client.get_workflow_handle(await _conversation(runtime, wa, customer))
    reply = await conv.execute_update(WhatsAppConversation.send_reply, ConversationReply(
        message=OutboundMessage(type="text", text="On its way!")))
    WhatsAppStore(runtime.store).opt_in(org, wa.phone_number_id, [unreachable], "test")
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/undeliverable", json={"numbers": [unreachable]})
    failed = await WhatsAppActivities(runtime).send_template(SendTemplateInput(
        organization_id=org, to="+" + unreachable, template=Template(name="hello_world")))

    # Slack: an approver clicks Approve (interaction) and the approval is decided (decision).
    await ensure_app(runtime, sandbox.url, gateway)
    ws = await create_workspace(sandbox.url, users={"ann": {}}, channels={"approvals": {"members": ["ann"]}})
    await direct_connection(runtime, sandbox.url, org, ws)
    wf = f"approval-{uuid.uuid4().hex}"
    approval = await client.start_workflow("SlackApproval", SlackApprovalInput(
        organization_id=org, channel=ws.channels["approvals"], title="Approve 15% discount",
        approvers=[ws.users["ann"]]), id=wf, task_queue=task_queue, result_type=SlackApprovalResult)
    msg = await wait_for_message(sandbox.url, ws.team_id, ws.channels["approvals"], f"osi:{wf}")
    await click(sandbox.url, ws.team_id, ws.users["ann"], ws.channels["approvals"], msg["ts"], "osi.approve")
    assert (await approval.result()).decision == "approved"

    # Calendar: created, updated, cancelled by us.
    cal = await calendar_seed.google_connection(runtime, sandbox.url, org=org)
    made = await client.execute_workflow("CreateCalendarEvent", CalendarActionInput(
        organization_id=org, integration_type="GOOGLE_CALENDAR", title="Kick-off",
        startTime="2030-05-06T10:00:00Z", endTime="2030-05-06T10:30:00Z", attendees=["pat@partner.org"]),
        id=f"cal-{uuid.uuid4().hex}", task_queue=task_queue, result_type=CreateCalendarEventResult)
    await client.execute_workflow("UpdateCalendarEvent", UpdateCalendarEventInput(
        organization_id=org, integration_type="GOOGLE_CALENDAR", eventId=made.event.id,
        changes=EventPatch(title="Kick-off (moved)")), id=f"cal-{uuid.uuid4().hex}", task_queue=task_queue,
        result_type=UpdateCalendarEventResult)
    await client.execute_workflow("CancelCalendarEvent", CancelCalendarEventInput(
        organization_id=org, integration_type="GOOGLE_CALENDAR", eventId=made.event.id),
        id=f"cal-{uuid.uuid4().hex}", task_queue=task_queue, result_type=CancelCalendarEventResult)

    # A test event from the admin API.
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{gateway}/admin/orgs/{org}/event-subscriptions/{sub}/test",
                            headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 202

    expected = {"whatsapp.message.received": 1, "whatsapp.message.status": 3, "whatsapp.message.failed": 1,
                "slack.interaction": 1, "slack.approval.decided": 1, "calendar.event.created": 1,
                "calendar.event.updated": 1, "calendar.event.cancelled": 1, "connection.health.changed": 3,
                "ping": 1}
    total = sum(expected.values())
    got = await eventually(lambda: received(sandbox, name), lambda r: len(delivered_ok(r)) >= total
                           and counts(delivered_ok(r)) == expected, tries=300, delay=0.1)
    items = delivered_ok(got)
    assert counts(items) == expected
    assert len({i["doc"]["id"] for i in items}) == total  # each occurrence once
    for item in items:
        check_signed(secret, item)
        assert item["doc"]["organization_id"] == org
    by_type = {i["doc"]["type"]: i["doc"]["data"] for i in items}
    inbound = by_type["whatsapp.message.received"]
    assert inbound["message"]["text"] == "where is my order?" and inbound["customer"] == customer
    assert inbound["conversation_id"] == conv.id and customer not in inbound["conversation_id"]
    statuses = [i["doc"]["data"]["status"] for i in items if i["doc"]["type"] == "whatsapp.message.status"]
    assert statuses == ["sent", "delivered", "read"]  # in order
    assert {i["doc"]["data"]["message_id"] for i in items if i["doc"]["type"] == "whatsapp.message.status"} == {
        reply.message_id}
    assert by_type["whatsapp.message.failed"]["error"]["code"] == 131026
    assert by_type["whatsapp.message.failed"]["message_id"] == failed.message_id
    assert by_type["slack.approval.decided"]["decision"] == "approved"
    assert by_type["slack.interaction"]["decision"] == "approve"
    assert by_type["calendar.event.created"]["event_id"] == made.event.id
    assert by_type["calendar.event.cancelled"]["deleted"] is True
    healed = [i["doc"]["data"] for i in items if i["doc"]["type"] == "connection.health.changed"]
    assert sorted(h["integration_type"] for h in healed) == ["GOOGLE_CALENDAR", "SLACK", "WHATSAPP_BUSINESS"]
    assert all(h["health"] == "healthy" and h["previous_health"] == "unknown" for h in healed)
    assert cal.connection_id in {h["connection_id"] for h in healed}

    # Meta redelivers everything it sent: no event twice. Proof without sleeping: deliveries are ordered, so once
    # a ping queued after the redeliveries arrives, anything they had queued would have arrived before it.
    async with httpx.AsyncClient() as http:
        again = await http.post(f"{sandbox.url}/_sandbox/whatsapp/redeliver", json={"count": 6})
        assert all(s == 200 for s in again.json()["statuses"])
        await http.post(f"{gateway}/admin/orgs/{org}/event-subscriptions/{sub}/test",
                        headers={"Authorization": f"Bearer {key}"})
    final = await eventually(lambda: received(sandbox, name), lambda r: counts(delivered_ok(r)).get("ping") == 2)
    assert counts(delivered_ok(final)) == {**expected, "ping": 2}


async def _conversation(runtime, wa, customer: str) -> str:
    return await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, customer)


# ---- the receiver down --------------------------------------------------------------------------------------
async def test_events_survive_the_receiver_being_down_and_arrive_in_order_once(
        client, worker, runtime, sandbox, gateway) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    name = f"down-{uuid.uuid4().hex[:8]}"
    await answer(sandbox, name, 503)
    sub, secret, _ = await subscribe(gateway, runtime, org, sink_url(sandbox, name), ["whatsapp.message.received"])
    wa = await wa_conn(runtime, sandbox.url, gateway, org=org)
    texts = [f"message {i}" for i in range(4)]
    for t in texts:
        await customer_writes(sandbox.url, wa, "+16505562001", t)
    # The first event is retried (with backoff) while the others wait behind it: per-subscription order.
    await eventually(lambda: EventStore(runtime.store).pending(sub, 1),
                     lambda rows: bool(rows) and rows[0].attempts >= 3, tries=400, delay=0.05)
    refused = await received(sandbox, name)
    assert refused and all(r["answered"] == 503 for r in refused)
    assert {json.loads(r["body"])["data"]["message"]["text"] for r in refused} == {"message 0"}
    await answer(sandbox, name, 200)  # back up
    got = await eventually(lambda: received(sandbox, name), lambda r: len(delivered_ok(r)) == len(texts),
                           tries=400, delay=0.05)
    items = delivered_ok(got)
    assert [i["doc"]["data"]["message"]["text"] for i in items] == texts
    assert len({i["doc"]["id"] for i in items}) == len(texts)
    for item in items:
        check_signed(secret, item)
    # Every attempt of one event carried the same id and body (receivers deduplicate by X-OSI-Event-Id).
    first = [r for r in got if json.loads(r["body"])["data"]["message"]["text"] == "message 0"]
    assert len({r["headers"]["x-osi-event-id"] for r in first}) == 1 and len({r["body"] for r in first}) == 1
    # The receiver's 200 is recorded right after it answers: wait for that write too.
    rows = await eventually(lambda: EventStore(runtime.store).deliveries(org, sub),
                            lambda rows: all(r.status == "delivered" for r in rows), tries=200, delay=0.05)
    assert all(r.status == "delivered" for r in rows) and max(r.attempts for r in rows) >= 3


async def test_subscriptions_refuse_bad_urls_and_types(runtime, gateway) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    key = runtime.store.issue_admin_key(org, "opensyte")
    async with httpx.AsyncClient() as http:
        for body in ({"url": "http://opensyte.example.com/hooks", "event_types": ["*"]},
                     {"url": "ftp://opensyte.example.com/hooks"},
                     {"url": "https://opensyte.example.com/hooks", "event_types": ["whatsapp.nope"]}):
            r = await http.post(f"{gateway}/admin/orgs/{org}/event-subscriptions", json=body,
                                headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 422, (body, r.text)
        other = runtime.store.issue_admin_key(f"org_{uuid.uuid4().hex[:10]}", "elsewhere")
        r = await http.get(f"{gateway}/admin/orgs/{org}/event-subscriptions",
                           headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 403


async def test_removing_a_subscription_deletes_its_secret(runtime, gateway, sandbox) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    sub, _, key = await subscribe(gateway, runtime, org, sink_url(sandbox, "gone"), ["ping"])
    path = runtime.vault.event_subscription_path(org, sub)
    assert await runtime.vault.read(path, use_cache=False)
    async with httpx.AsyncClient() as http:
        r = await http.delete(f"{gateway}/admin/orgs/{org}/event-subscriptions/{sub}",
                              headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    with pytest.raises(CredentialsMissing):
        await runtime.vault.read(path, use_cache=False)
