"""The send path shared by every message activity and the bulk batch activity.

Order: build and check the message (PermanentError before any call) → recipient → template approved and
parameters fit → compliance (opt-out, opt-in, window) → portfolio messaging limit (hold, never drop) → the
send intent claimed (recorded before Meta sees anything) → throughput and pair limits (wait) → call → the
intent settled with Meta's answer, category and outcome.

At most one accepted send per intent: a send whose answer was lost (timeout, crash) stays `sending`; Meta's
status webhooks name it (`biz_opaque_callback_data`), and it is sent again only if none did within the
reconcile window (counted as `resent`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
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
from activities.whatsapp.settings import WhatsAppSettings
from activities.whatsapp.store import WhatsAppContact, WhatsAppStore
from core.errors import ErrorClass, IntegrationError, PermanentError, TemporaryError
from store.intents import Claim, IntentStore, Settle
from store.models import Connection, IntentState, SendIntent, utcnow

if TYPE_CHECKING:
    from sqlmodel import Session

    from core.pipeline import Action
    from core.runtime import Runtime

HEARTBEAT_EVERY_SECONDS = 1.0
RECORD_EVERY_SECONDS = 0.25  # outcomes are written in small groups (an unrecorded one is reconciled anyway)
PREP_YIELD_EVERY = 10


def action_name(msg: OutboundMessage) -> str:
    """Usage rows and audit events name the message kind (whatsapp.send_text, whatsapp.send_template…)."""
    kind = "media" if msg.type in ("image", "video", "audio", "document", "sticker") else msg.type
    return f"whatsapp.send_{kind}"


def reconcile_seconds(act: Action) -> float:
    """How long a send whose answer was lost waits for Meta's status webhook before it is sent again."""
    own = act.settings.get("reconcile_seconds")
    return float(own) if own is not None else act.rt.section(WhatsAppSettings).reconcile_seconds


def reconciling(claim: Claim) -> TemporaryError:
    """An earlier attempt's answer was lost: wait for the webhook that names it rather than send again."""
    return TemporaryError(f"an earlier attempt's answer was lost; waiting up to {claim.wait_seconds:.0f} s more for "
                          "Meta's status webhook before sending again", code="reconciling",
                          retry_after=claim.wait_seconds, details={"intent": claim.intent.id})


def settle_failure(key: str, err: IntegrationError, window: float, to: str) -> Settle | None:
    """What a failed attempt means for its intent: unknown (the request may have been processed: keep it
    `sending`, and retry only after the reconcile window), refused for good, or refused for now."""
    if err.details.get("uncertain"):
        err.retry_after = max(err.retry_after or 0.0, window)
        return None
    if err.error_class is ErrorClass.PERMANENT:
        return Settle(key, IntentState.FAILED, result={"to": to, "status": "failed", "error": err.to_dict()})
    return Settle(key, IntentState.PENDING)


def final_result(intent: SendIntent, to: str) -> SendResult:
    """The recorded outcome of an intent that is done: never sent again."""
    if intent.state == IntentState.FAILED.value:
        error = dict(intent.result.get("error") or {})
        raise PermanentError(str(error.get("message") or "refused earlier"), code=error.get("code"),
                             provider=str(error.get("provider") or "whatsapp"), details={"intent": intent.id})
    return SendResult.model_validate({**intent.result, "to": to})


async def send_one(rt: Runtime, organization_id: str, connection: str, to: str, msg: OutboundMessage,
                   idempotency_key: str | None, *, conversation_id: str | None = None) -> SendResult:
    """One message to one recipient through the pipeline (a classified error is raised on failure).

    Three store round trips: the connection with the intent and the customer (one read), the claim (written
    before Meta sees anything), and the outcome with the action's bookkeeping (one transaction at the end)."""
    try:
        wa_id, bad = recipient(to).key, None  # a phone number's digits, or a BSUID
    except IntegrationError as err:  # refused inside the action below, so it is audited like any failed send
        wa_id, bad = "", err
    looked_up: dict[str, Any] = {}

    def prefetch(s: Session, conn: Connection) -> tuple[SendIntent | None, WhatsAppContact | None]:
        if bad is not None:
            return None, None
        key = act.key_for(conn.id, idempotency_key, to)
        looked_up["key"] = key
        known = IntentStore.get_in(s, [key]).get(key) if key else None
        pid = str(conn.settings.get("phone_number_id", ""))
        return known, WhatsAppStore.contact_in(s, organization_id, pid, wa_id)

    act = rt.action(PROVIDER, organization_id, connection, action_name(msg), target=to, prefetch=prefetch)
    async with act:
        if bad is not None:
            raise bad
        payload = build_payload(msg)
        key: str | None = looked_up.get("key")
        known, contact = act.prefetched
        if known is not None and known.state in (IntentState.ACCEPTED.value, IntentState.FAILED.value):
            return final_result(known, to)
        client = WhatsAppClient(act)
        category = "service"
        if msg.type == "template":
            assert msg.template is not None
            category = templates.check(await templates.find(client, msg.template.name, msg.template.language),
                                       msg.template)
        act.detail["category"] = category
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
        window = reconcile_seconds(act)
        intents = IntentStore(rt.store)
        claim: Claim | None = None
        if key:
            claim = (await rt.store.run(intents.claim, [key], organization_id=organization_id,
                                        connection_id=act.connection.id, action=act.name,
                                        reconcile_seconds=window))[key]
            if claim.final:
                return final_result(claim.intent, to)
            if not claim.send:
                raise reconciling(claim)
            if claim.resend:
                act.detail["resent"] = True  # its earlier attempt's answer never came and no webhook named it
        try:
            resp = await client.send(payload, wa_id, category=category,
                                     intent_id=claim.intent.id if claim else None)
        except IntegrationError as err:
            if err.code == 132001 and msg.type == "template":
                templates.invalidate(client)  # Meta disagrees with our cache: look again next time
            if key and (settle := settle_failure(key, err, window, to)) is not None:
                act.defer(functools.partial(IntentStore.settle_in, outcomes=[settle]))
            raise
        body = resp.json()
        m = (body.get("messages") or [{}])[0]
        contact_out = (body.get("contacts") or [{}])[0]
        result = SendResult(to=to, status=m.get("message_status", "accepted"), message_id=m.get("id"),
                            wa_id=contact_out.get("wa_id", wa_id), category=category)
        if result.message_id:
            row = _outbound_row(act, client, result.message_id, wa_id, msg, category, key, result.status)
            act.defer(functools.partial(_record_sent, row=row, reserved_at=reserved_at,
                                        portfolio=compliance.portfolio_id(act.settings), wa_id=wa_id))
        if key:
            act.defer(functools.partial(IntentStore.settle_in, outcomes=[
                Settle(key, IntentState.ACCEPTED, result.message_id, result.model_dump())]))
        if conversation_id:
            act.detail["conversation"] = conversation_id
    return result


def _record_sent(s: Session, *, row: dict[str, Any], reserved_at: datetime | None, portfolio: str,
                 wa_id: str) -> None:
    """The message record (and the messaging-limit slot moved to Meta's acceptance), in the action's transaction
    after its usage row: an outcome a fast status webhook reported first is copied onto that row."""
    raced = WhatsAppStore.record_outbound_in(s, [row])
    if raced:
        WhatsAppStore.sync_usage_in(s, raced)
    if reserved_at is not None:
        WhatsAppStore.confirm_initiations_in(s, portfolio, [wa_id], reserved_at)


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
def _beat() -> None:
    if activity.in_activity():
        activity.heartbeat()


async def _keep_beating() -> None:
    """Heartbeat while the batch runs, waits on limits or for Retry-After included: a dead worker is noticed
    within the heartbeat timeout and its batch resumes elsewhere (intents keep accepted sends from repeating)."""
    while True:
        _beat()
        await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)


async def send_batch(rt: Runtime, inp: BulkBatchInput) -> BulkBatchResult:
    """One template to a batch of recipients, concurrently within the number's limits.

    Every recipient is an intent claimed before it is sent. Permanent per-recipient failures are outcomes; a
    temporary failure pauses the batch: the recipients not yet accepted come back `pending` with a retry delay
    (the workflow retries them; accepted ones are never sent again); a configuration error stops the batch
    (admins are told). At the deadline the still-pending recipients fail with their last cause.
    """
    outcomes: dict[int, BulkOutcome] = {}
    ws = WhatsAppStore(rt.store)
    intents = IntentStore(rt.store)
    if len(inp.indices) != len(inp.recipients):
        raise PermanentError("indices: one index per recipient is required", code="invalid_batch")
    keys = {idx: f"{inp.idempotency_key}:{idx}" for idx in inp.indices}
    async with rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.send_template",
                         target=f"bulk:{inp.idempotency_key}") as act:
        known = await rt.store.run(intents.get, list(keys.values()))
        for idx, key in keys.items():
            intent = known.get(key)
            if intent is not None and (o := _final_outcome(idx, intent)) is not None:
                outcomes[idx] = o
        if inp.settle_only:
            result = _give_up(inp, outcomes, "deadline_exceeded", None)
            if any(o.code == "deadline_exceeded" for o in result.outcomes):
                await rt.retries_exhausted(act.connection, act.name, TemporaryError(
                    "recipients were not accepted by the bulk send's deadline", code="deadline_exceeded"), 0)
            return result
        client = WhatsAppClient(act)
        tpl_def = await templates.find(client, inp.template_name, inp.language)
        category = templates.category_of(tpl_def)
        todo: dict[int, tuple[str, dict[str, Any], OutboundMessage]] = {}
        for n, (idx, r) in enumerate(zip(inp.indices, inp.recipients, strict=True)):
            if n % PREP_YIELD_EVERY == 0:
                # Let other batches' requests, which already hold limiter slots, reach the wire on time.
                await asyncio.sleep(0)
            if idx in outcomes:
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
        _beat()
        sender = _BatchSender(act, client, ws, intents, inp, keys, category, outcomes)
        beating = asyncio.ensure_future(_keep_beating())
        try:
            stop = await sender.run(todo)
        finally:
            beating.cancel()
        stop = stop or sender.last_error  # the cause pending recipients report (and give up with at the deadline)
        if reserved_at is not None:
            sent = {todo[i][0] for i, o in outcomes.items() if i in todo and o.message_id}
            await rt.store.run(ws.confirm_initiations, compliance.portfolio_id(act.settings),
                               [w for w in outside if w in sent], reserved_at)
        if stop is not None and stop.error_class is ErrorClass.CONFIGURATION:
            # The workflow counts what this batch did before it stopped.
            stop.details = {**stop.details, "outcomes": [o.model_dump() for o in outcomes.values()]}
            raise stop
        result = _result(inp, outcomes, stop, sender.waits)
        if stop is not None and _past(inp.deadline, result.retry_after):
            await rt.retries_exhausted(act.connection, act.name, stop, 0)
            result = _give_up(inp, outcomes, str(stop.code), stop)
    await rt.store.run(ws.sync_usage, [o.message_id for o in outcomes.values() if o.message_id])
    return result


# Throttling answers (Graph's application limit, the number's throughput limit): every send would get them.
THROTTLING_CODES = {4, 80007, 130429}


def batch_wide(err: IntegrationError) -> bool:
    """Does this failure concern the whole batch rather than one recipient?"""
    return (err.error_class is ErrorClass.CONFIGURATION or err.code == "circuit_open"
            or err.code in THROTTLING_CODES or err.details.get("status") == 429)


def _final_outcome(idx: int, intent: SendIntent) -> BulkOutcome | None:
    if intent.state == IntentState.ACCEPTED.value:
        status = intent.result.get("status")
        return BulkOutcome(index=idx, status="sent", message_id=intent.provider_ref,
                           message_status=None if status in (None, "accepted") else str(status),
                           resent=intent.resent)
    if intent.state == IntentState.FAILED.value:
        return BulkOutcome(index=idx, status="failed", code=str((intent.result.get("error") or {}).get("code")))
    return None


def _result(inp: BulkBatchInput, outcomes: dict[int, BulkOutcome], stop: IntegrationError | None,
            waits: list[float]) -> BulkBatchResult:
    """Every recipient of the batch accounted for: the ones without an outcome are pending."""
    for idx in inp.indices:
        if idx not in outcomes:
            outcomes[idx] = BulkOutcome(index=idx, status="pending", code=str(stop.code) if stop else "pending")
    retry_after: float | None = None  # without a hint the workflow backs off with jitter
    if any(o.status == "pending" for o in outcomes.values()):
        hints = waits + ([stop.retry_after] if stop and stop.retry_after else [])
        retry_after = max(hints) if hints else None
    return BulkBatchResult(outcomes=[outcomes[i] for i in sorted(outcomes)], retry_after=retry_after,
                           error=stop.to_dict() if stop else None)


def _past(deadline: str | None, retry_after: float | None) -> bool:
    """Would the next try (after `retry_after`, or at once) come after the bulk send's deadline?"""
    if deadline is None:
        return False
    return utcnow().timestamp() + (retry_after or 0.0) >= datetime.fromisoformat(deadline).timestamp()


def _give_up(inp: BulkBatchInput, outcomes: dict[int, BulkOutcome], code: str,
             cause: IntegrationError | None) -> BulkBatchResult:
    """The deadline passed: every recipient not accepted fails with the last cause."""
    for idx in inp.indices:
        if idx not in outcomes or outcomes[idx].status == "pending":
            outcomes[idx] = BulkOutcome(index=idx, status="failed", code=f"deadline_exceeded:{code}"
                                        if code != "deadline_exceeded" else code)
    return BulkBatchResult(outcomes=[outcomes[i] for i in sorted(outcomes)],
                           error=cause.to_dict() if cause else None)


class _BatchSender:
    """Claims recipients in small groups (one transaction each) just ahead of sending them, sends within the
    number's limits, and settles outcomes in small groups as they come back. A temporary failure stops new
    sends (the batch pauses); what was claimed but not sent goes back to pending."""

    def __init__(self, act: Action, client: WhatsAppClient, ws: WhatsAppStore, intents: IntentStore,
                 inp: BulkBatchInput, keys: dict[int, str], category: str, outcomes: dict[int, BulkOutcome]) -> None:
        self.act, self.client, self.ws, self.intents = act, client, ws, intents
        self.inp, self.keys, self.category, self.outcomes = inp, keys, category, outcomes
        self.window = reconcile_seconds(act)
        self.stop: IntegrationError | None = None
        self.settles: list[Settle] = []
        self.rows: list[dict[str, Any]] = []
        self.last_write = time.monotonic()
        self.last_beat = 0.0
        self.waits: list[float] = []  # how long reconciling recipients still wait for their webhook
        self.last_error: IntegrationError | None = None

    def _chunks(self, idxs: list[int]) -> Iterator[list[int]]:
        size = max(10, self.inp.concurrency)
        for i in range(0, len(idxs), size):
            yield idxs[i:i + size]

    async def run(self, todo: dict[int, tuple[str, dict[str, Any], OutboundMessage]]) -> IntegrationError | None:
        sem = asyncio.Semaphore(max(1, self.inp.concurrency))
        tasks: set[asyncio.Task[None]] = set()
        unsent: list[int] = []
        try:
            for chunk in self._chunks(list(todo)):
                if self.stop is not None:
                    break
                claims = await self.act.rt.store.run(
                    self.intents.claim, [self.keys[i] for i in chunk], organization_id=self.inp.organization_id,
                    connection_id=self.act.connection.id, action=self.act.name, reconcile_seconds=self.window)
                for pos, idx in enumerate(chunk):
                    claim = claims[self.keys[idx]]
                    if claim.final:
                        self.outcomes[idx] = _final_outcome(idx, claim.intent) or BulkOutcome(index=idx,
                                                                                              status="pending")
                        continue
                    if not claim.send:  # an earlier attempt's answer was lost: wait for its webhook
                        self.outcomes[idx] = BulkOutcome(index=idx, status="pending", code="reconciling")
                        self.waits.append(claim.wait_seconds)
                        continue
                    await sem.acquire()
                    if self.stop is not None:
                        sem.release()
                        unsent += [i for i in chunk[pos:] if claims[self.keys[i]].send]
                        break
                    task = asyncio.ensure_future(self._one(idx, claim, *todo[idx]))
                    task.add_done_callback(lambda _t: sem.release())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            # Claimed but never sent: back to pending, so a retry sends them without waiting to reconcile.
            self.settles += [Settle(self.keys[i], IntentState.PENDING) for i in unsent]
            await asyncio.shield(self._flush())
            _beat()
        return self.stop

    async def _one(self, idx: int, claim: Claim, wa_id: str, payload: dict[str, Any], msg: OutboundMessage) -> None:
        key = self.keys[idx]
        try:
            resp = await self.client.send(payload, wa_id, category=self.category, intent_id=claim.intent.id)
        except IntegrationError as err:
            settle = settle_failure(key, err, self.window, "+" + wa_id)
            if settle is not None:
                self.settles.append(settle)
            if err.error_class is ErrorClass.PERMANENT:
                self.outcomes[idx] = BulkOutcome(index=idx, status="failed", code=str(err.code))
                return
            self.outcomes[idx] = BulkOutcome(index=idx, status="pending", code=str(err.code))
            self.last_error = err
            # One recipient's 5xx or lost answer leaves it pending; trouble that concerns every recipient
            # (throttling, an open circuit, a configuration error) pauses the batch (a configuration one wins).
            if batch_wide(err) and (self.stop is None or err.error_class is ErrorClass.CONFIGURATION):
                self.stop = err
            return
        sent = (resp.json().get("messages") or [{}])[0]
        mid, provider_status = sent.get("id"), sent.get("message_status", "accepted")
        self.outcomes[idx] = BulkOutcome(index=idx, status="sent", message_id=mid, resent=claim.intent.resent,
                                         message_status=None if provider_status == "accepted" else provider_status)
        result = SendResult(to="+" + wa_id, status=provider_status, message_id=mid, wa_id=wa_id,
                            category=self.category)
        self.settles.append(Settle(key, IntentState.ACCEPTED, mid, result.model_dump()))
        if mid:
            self.rows.append(_outbound_row(self.act, self.client, mid, wa_id, msg, self.category, key,
                                           provider_status))
        now = time.monotonic()
        if now - self.last_write >= RECORD_EVERY_SECONDS:
            await self._flush()
        if now - self.last_beat >= HEARTBEAT_EVERY_SECONDS:
            self.last_beat = now
            _beat()

    async def _flush(self) -> None:
        self.last_write = time.monotonic()
        settles, self.settles = self.settles, []
        rows, self.rows = self.rows, []
        if rows:
            await self.act.rt.store.run(self.ws.record_outbound, rows)
        if settles:
            await self.act.rt.store.run(self.intents.settle, settles)
