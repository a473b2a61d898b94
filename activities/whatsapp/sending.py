"""The send path shared by every message activity and the bulk batch activity.

Order: build and check the message (PermanentError before any call) → recipient → idempotency →
template approved and parameters fit → compliance (opt-out, opt-in, window) → portfolio messaging
limit (hold, never drop) → throughput and pair limits (wait) → call → record category and outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.whatsapp import compliance, templates
from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.messages import build_payload
from activities.whatsapp.models import (
    BulkBatchInput,
    BulkBatchResult,
    BulkOutcome,
    OutboundMessage,
    SendResult,
    Template,
)
from activities.whatsapp.phone import recipient
from activities.whatsapp.provider import PROVIDER
from activities.whatsapp.store import WhatsAppStore
from core.errors import ErrorClass, IntegrationError, PermanentError
from store.models import utcnow

if TYPE_CHECKING:
    from core.pipeline import Action
    from core.runtime import Runtime

HEARTBEAT_EVERY_SECONDS = 1.0
RECORD_CHUNK = 200
PREP_YIELD_EVERY = 10


def action_name(msg: OutboundMessage) -> str:
    """Usage rows and audit events name the message kind (whatsapp.send_text, whatsapp.send_template…)."""
    kind = "media" if msg.type in ("image", "video", "audio", "document", "sticker") else msg.type
    return f"whatsapp.send_{kind}"


async def send_one(rt: Runtime, organization_id: str, connection: str, to: str, msg: OutboundMessage,
                   idempotency_key: str | None, *, conversation_id: str | None = None) -> SendResult:
    """One message to one recipient through the pipeline (a classified error is raised on failure)."""
    async with rt.action(PROVIDER, organization_id, connection, action_name(msg), target=to) as act:
        payload = build_payload(msg)
        wa_id = recipient(to).key  # a phone number's digits, or a BSUID
        key = act.idempotency_key(idempotency_key, to)
        if key:
            done = await rt.store.run(rt.store.get_idempotent, key)
            if done:
                return SendResult.model_validate(done)
        client = WhatsAppClient(act)
        category = "service"
        if msg.type == "template":
            assert msg.template is not None
            category = templates.check(await templates.find(client, msg.template.name, msg.template.language),
                                       msg.template)
        act.detail["category"] = category
        ws = WhatsAppStore(rt.store)
        contact = await rt.store.run(ws.contact, organization_id, client.phone_number_id, wa_id)
        now = utcnow()
        refused = compliance.refusal(compliance.Policy.of(act.settings), contact, template=msg.type == "template",
                                     category=category, now=now)
        if refused is not None:
            raise refused
        reserved_at: datetime | None = None
        if msg.type == "template" and not compliance.window_open(contact, now):
            held, reserved_at = await _reserve(act, [wa_id])
            if held:
                act.detail["held_until"] = held[wa_id].isoformat()
                return SendResult(to=to, status="held", wa_id=wa_id, category=category,
                                  resume_at=held[wa_id].isoformat())
        try:
            resp = await client.send(payload, wa_id, category=category)
        except IntegrationError as err:
            if err.code == 132001 and msg.type == "template":
                templates.invalidate(client)  # Meta disagrees with our cache: look again next time
            raise
        body = resp.json()
        m = (body.get("messages") or [{}])[0]
        contact_out = (body.get("contacts") or [{}])[0]
        result = SendResult(to=to, status=m.get("message_status", "accepted"), message_id=m.get("id"),
                            wa_id=contact_out.get("wa_id", wa_id), category=category)
        if result.message_id:
            await rt.store.run(ws.record_outbound, [_outbound_row(act, client, result.message_id, wa_id, msg,
                                                                  category, key, result.status)])
            if reserved_at is not None:
                await rt.store.run(ws.confirm_initiations, compliance.portfolio_id(act.settings), [wa_id],
                                   reserved_at)
        if key:
            await rt.store.run(rt.store.put_idempotent, key, act.organization_id, act.name, result.model_dump())
        if conversation_id:
            act.detail["conversation"] = conversation_id
    if result.message_id:  # the usage row exists now: give it any outcome a fast webhook already reported
        await rt.store.run(ws.sync_usage, [result.message_id])
    return result


def _outbound_row(act: Action, client: WhatsAppClient, message_id: str, wa_id: str, msg: OutboundMessage,
                  category: str, key: str | None, provider_status: str = "accepted") -> dict[str, Any]:
    """The message record; its timeline starts with what Meta answered (accepted, or held / paused)."""
    return {"message_id": message_id, "organization_id": act.organization_id, "connection_id": act.connection.id,
            "phone_number_id": client.phone_number_id, "wa_id": wa_id, "direction": "out", "type": msg.type,
            "category": category, "template_name": msg.template.name if msg.template else None,
            "idempotency_key": key, "timeline": [{"status": provider_status, "at": int(time.time())}]}


async def _reserve(act: Action, wa_ids: list[str]) -> tuple[dict[str, datetime], datetime | None]:
    """Messaging-limit slots for customers outside a window: (held ones with their resume time, reserved at).

    `reserved at` is None when no limit applies; otherwise accepted sends confirm their slots from it.
    """
    limit = compliance.messaging_limit(act.settings)
    if limit is None or not wa_ids:
        return {}, None
    ws = WhatsAppStore(act.rt.store)
    now = utcnow()
    _allowed, held = await act.rt.store.run(
        ws.reserve_initiations, compliance.portfolio_id(act.settings), act.organization_id, wa_ids, limit,
        compliance.messaging_limit_window(act.settings), now)
    return held, now


async def mark_read(rt: Runtime, organization_id: str, connection: str, message_id: str,
                    typing_indicator: bool) -> bool:
    async with rt.action(PROVIDER, organization_id, connection, "whatsapp.mark_read") as act:
        if not message_id:
            raise PermanentError("message_id: the inbound message to mark as read is required", code="invalid_message")
        body = await WhatsAppClient(act).mark_read(message_id, typing_indicator)
        return bool(body.get("success"))


# ---- bulk ---------------------------------------------------------------------------------------
def _heartbeat_done() -> dict[int, BulkOutcome]:
    """Outcomes a previous attempt of this batch reported before it failed (resume, never resend)."""
    if not activity.in_activity():
        return {}
    details = activity.info().heartbeat_details
    if not details:
        return {}
    out: dict[int, BulkOutcome] = {}
    for item in details[0] or []:
        o = BulkOutcome.model_validate(item)
        out[o.index] = o
    return out


class _Progress:
    """Heartbeats at most once a second with every outcome so far."""

    def __init__(self, outcomes: dict[int, BulkOutcome]) -> None:
        self.outcomes = outcomes
        self.last = 0.0

    def beat(self, force: bool = False) -> None:
        if not activity.in_activity():
            return
        now = time.monotonic()
        if force or now - self.last >= HEARTBEAT_EVERY_SECONDS:
            self.last = now
            activity.heartbeat([o.model_dump() for o in self.outcomes.values()])


async def send_batch(rt: Runtime, inp: BulkBatchInput) -> BulkBatchResult:
    """One template to a batch of recipients, concurrently within the number's limits.

    Permanent per-recipient failures are outcomes; a configuration error stops the batch (admins are
    told); a temporary one stops it too and Temporal retries it, resuming from the heartbeat.
    """
    outcomes = _heartbeat_done()
    progress = _Progress(outcomes)
    ws = WhatsAppStore(rt.store)
    async with rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.send_template",
                         target=f"bulk:{inp.idempotency_key}") as act:
        client = WhatsAppClient(act)
        tpl_def = await templates.find(client, inp.template_name, inp.language)
        category = templates.category_of(tpl_def)
        if len(inp.indices) != len(inp.recipients):
            raise PermanentError("indices: one index per recipient is required", code="invalid_batch")
        keys = {idx: f"{inp.idempotency_key}:{idx}" for idx in inp.indices}
        already = await rt.store.run(ws.sent_by_keys, [k for i, k in keys.items() if i not in outcomes])
        todo: dict[int, tuple[str, dict[str, Any], OutboundMessage]] = {}
        for n, (idx, r) in enumerate(zip(inp.indices, inp.recipients, strict=True)):
            if n % PREP_YIELD_EVERY == 0:
                # Let other batches' requests, which already hold limiter slots, reach the wire on time.
                await asyncio.sleep(0)
            if idx in outcomes:
                continue
            if keys[idx] in already:
                outcomes[idx] = BulkOutcome(index=idx, status="sent", message_id=already[keys[idx]])
                continue
            msg = OutboundMessage(type="template", template=Template(
                name=inp.template_name, language=inp.language, header=r.header, body=r.body, buttons=r.buttons))
            try:
                wa_id = recipient(r.to).key
                templates.check(tpl_def, msg.template)  # type: ignore[arg-type]
                payload = build_payload(msg)
            except IntegrationError as err:
                if err.error_class is ErrorClass.CONFIGURATION:
                    raise
                outcomes[idx] = BulkOutcome(index=idx, status="failed", code=str(err.code))
                continue
            todo[idx] = (wa_id, payload, msg)
        policy = compliance.Policy.of(act.settings)
        contacts = await rt.store.run(ws.contacts, inp.organization_id, client.phone_number_id,
                                      [v[0] for v in todo.values()])
        now = utcnow()
        outside: list[str] = []
        for idx, (wa_id, _payload, _msg) in list(todo.items()):
            refused = compliance.refusal(policy, contacts.get(wa_id), template=True, category=category, now=now)
            if refused is not None:
                outcomes[idx] = BulkOutcome(index=idx, status="skipped", code=str(refused.code))
                del todo[idx]
            elif not compliance.window_open(contacts.get(wa_id), now):
                outside.append(wa_id)
        held, reserved_at = await _reserve(act, outside)
        for idx, (wa_id, _payload, _msg) in list(todo.items()):
            if wa_id in held:
                outcomes[idx] = BulkOutcome(index=idx, status="held", resume_at=held[wa_id].isoformat())
                del todo[idx]
        progress.beat(force=True)
        await _send_concurrently(act, client, ws, inp, todo, keys, category, outcomes, progress)
        if reserved_at is not None:
            sent = {todo[i][0] for i, o in outcomes.items() if i in todo and o.message_id}
            await rt.store.run(ws.confirm_initiations, compliance.portfolio_id(act.settings),
                               [w for w in outside if w in sent], reserved_at)
    await rt.store.run(ws.sync_usage, [o.message_id for o in outcomes.values() if o.message_id])
    return BulkBatchResult(outcomes=[outcomes[i] for i in sorted(outcomes)])


async def _send_concurrently(act: Action, client: WhatsAppClient, ws: WhatsAppStore, inp: BulkBatchInput,
                             todo: dict[int, tuple[str, dict[str, Any], OutboundMessage]], keys: dict[int, str],
                             category: str, outcomes: dict[int, BulkOutcome], progress: _Progress) -> None:
    sem = asyncio.Semaphore(max(1, inp.concurrency))
    stop: list[IntegrationError] = []
    pending_rows: list[dict[str, Any]] = []

    async def flush() -> None:
        if pending_rows:
            rows = pending_rows[:]
            pending_rows.clear()
            await act.rt.store.run(ws.record_outbound, rows)

    async def one(idx: int, wa_id: str, payload: dict[str, Any], msg: OutboundMessage) -> None:
        async with sem:
            if stop:
                return  # a temporary or configuration error stopped the batch: leave it for the retry
            try:
                resp = await client.send(payload, wa_id, category=category)
            except IntegrationError as err:
                if err.error_class is ErrorClass.PERMANENT:
                    outcomes[idx] = BulkOutcome(index=idx, status="failed", code=str(err.code))
                else:
                    stop.append(err)
                return
            sent = (resp.json().get("messages") or [{}])[0]
            mid, provider_status = sent.get("id"), sent.get("message_status", "accepted")
            outcomes[idx] = BulkOutcome(index=idx, status="sent", message_id=mid,
                                        message_status=None if provider_status == "accepted" else provider_status)
            if mid:
                pending_rows.append(_outbound_row(act, client, mid, wa_id, msg, category, keys[idx], provider_status))
            if len(pending_rows) >= RECORD_CHUNK:
                await flush()
            progress.beat()

    try:
        await asyncio.gather(*(one(i, *v) for i, v in todo.items()))
    finally:
        # Recorded even when cancelled: a retry finds these by idempotency key and never resends them.
        with contextlib.suppress(Exception):
            await asyncio.shield(flush())
        progress.beat(force=True)
    if stop:
        config = [e for e in stop if e.error_class is ErrorClass.CONFIGURATION]
        err = (config or stop)[0]
        # The workflow counts what this batch did before it stopped (a retry resumes from the heartbeat).
        err.details = {**err.details, "outcomes": [o.model_dump() for o in outcomes.values()]}
        raise err

