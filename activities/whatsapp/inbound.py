"""Bookkeeping for a verified webhook delivery (idempotent: Meta redelivers).

Inbound messages open the window and may opt the customer out (STOP); statuses extend the message's
timeline, the usage ledger and, once delivered, the cost; asynchronous failures count against the
connection's health. Each new fact queues its event for the organization's subscribers in its own
transaction. Returns the inbound messages grouped per customer for the conversation workflows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from activities.whatsapp import compliance, conversation_ids, cost, intents
from activities.whatsapp.errors import classify_code
from activities.whatsapp.models import (
    ConversationEvent,
    InboundMessage,
    StatusEvent,
    WebhookBatch,
    conversation_workflow_id,
)
from activities.whatsapp.phone import customer_country_code
from activities.whatsapp.store import WhatsAppStore
from core.errors import ErrorClass
from store.intents import IntentStore
from store.models import Connection, Health

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger("osi.whatsapp.inbound")

# Failures that say the number's standing is at risk rather than that one recipient is unreachable.
QUALITY_CODES = {131048, 131049, 130429, 131056}
MARKETING_OPT_OUT_CODE = 131050


async def record(rt: Runtime, conn: Connection, batch: WebhookBatch) -> dict[tuple[str, str], list[ConversationEvent]]:
    """Apply a delivery to the store (and queue its events for subscribers in the same transactions).

    Returns {(phone number id, customer key): inbound events} for signal-with-start. Statuses are the store's
    alone: no conversation is signalled for them (a conversation asks the store when it needs a timeline).
    """
    ws = WhatsAppStore(rt.store)
    policy = compliance.Policy.of(conn.settings)
    id_key = await conversation_ids.key(rt)
    events: dict[tuple[str, str], list[ConversationEvent]] = defaultdict(list)
    for m in batch.messages:
        at = datetime.fromtimestamp(m.timestamp, UTC) if m.timestamp else datetime.now(UTC)
        # A phone number is the key as it is; only a BSUID-only sender needs the store to find their key.
        customer = m.wa_id if m.wa_id else await rt.store.run(ws.resolve_customer, conn.organization_id,
                                                              m.phone_number_id, m.wa_id, m.user_id)
        m = m.model_copy(update={"customer": customer})
        data = {**_source(conn, m.phone_number_id),
                "conversation_id": conversation_workflow_id(id_key, conn.organization_id, m.phone_number_id, customer),
                "customer": customer, "wa_id": m.wa_id, "user_id": m.user_id, "username": m.username,
                "profile_name": m.profile_name, "message_id": m.message_id, "timestamp": m.timestamp,
                "message": m.content.model_dump(mode="json", exclude_none=True) if m.content else {"type": m.type}}
        keyword = compliance.opt_out_keyword(policy, m)

        def write(m: InboundMessage = m, customer: str = customer, at: datetime = at,
                  data: dict[str, Any] = data, keyword: tuple[str, bool] | None = keyword) -> None:
            """One store round trip per message (the message, the window, an opt-out keyword)."""
            ws.record_inbound(conn.organization_id, conn.id, m.phone_number_id, customer, m.message_id, at, m.type,
                              m.profile_name, user_id=m.user_id, event=data)
            if keyword is not None:
                ws.opt_out(conn.organization_id, m.phone_number_id, customer, f"keyword:{keyword[0]}",
                           marketing_only=keyword[1], at=at)

        await rt.store.run(write)
        full_opt_out = keyword is not None and not keyword[1]
        events[(m.phone_number_id, customer)].append(ConversationEvent(inbound=m, opt_out=full_opt_out))
    if batch.statuses:
        rates = await cost.current_rates(rt)
    for st in batch.statuses:
        base = {**_source(conn, st.phone_number_id), "recipient": st.recipient_id,
                "recipient_user_id": st.recipient_user_id,
                "conversation_id": conversation_workflow_id(id_key, conn.organization_id, st.phone_number_id,
                                                            st.recipient_id)}
        intent_id = intents.intent_of(st.biz_opaque_callback_data)

        def apply(st: StatusEvent = st, base: dict[str, Any] = base, intent_id: str | None = intent_id
                  ) -> dict[str, Any]:
            """One store round trip per status (the timeline and usage, the intent it names)."""
            res: dict[str, Any] = ws.apply_status(
                conn.organization_id, conn.id, st.phone_number_id, st.message_id, st.status, st.timestamp,
                st.recipient_id, st.errors, st.pricing, rates, str(customer_country_code(st.recipient_id)),
                event=base)
            if intent_id is not None:
                # Meta names the send we attached this intent to: it was accepted, even if its answer was lost.
                # A `failed` status proves it too (the message got an id and failed afterwards, e.g. the messaging
                # limit): sending it again would only make a second copy fail, or reach the customer twice.
                IntentStore(rt.store).accept_by_id(intent_id, st.message_id, {
                    "to": "+" + st.recipient_id, "status": "accepted", "message_id": st.message_id,
                    "wa_id": st.recipient_id, "category": (st.pricing or {}).get("category") or "service"})
            return res

        res = await rt.store.run(apply)
        if res["new"] and st.status == "failed":
            await _async_failure(rt, conn, st.recipient_id, st.phone_number_id, st.errors)
    for err in batch.errors:
        await _account_error(rt, conn, err)
    return dict(events)


def _source(conn: Connection, pid: str) -> dict[str, str]:
    return {"connection": conn.name, "connection_id": conn.id, "phone_number_id": pid}


async def _async_failure(rt: Runtime, conn: Connection, wa_id: str, pid: str, errors: list[dict]) -> None:
    """A send accepted by the API failed later: count it; configuration trouble makes the number unhealthy."""
    ws = WhatsAppStore(rt.store)
    err = errors[0] if errors else {}
    try:
        code = int(err.get("code"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        code = 0
    cls = classify_code(code, 400)
    health = None
    if cls is ErrorClass.CONFIGURATION:
        health = Health.UNHEALTHY
    elif code in QUALITY_CODES:
        health = Health.DEGRADED
    await rt.store.run(ws.note_async_failure, conn.id, str(code), str(err.get("title") or ""), health)
    if code == MARKETING_OPT_OUT_CODE:
        await rt.store.run(ws.opt_out, conn.organization_id, pid, wa_id, "meta:131050", marketing_only=True)
    if health is not None:
        await rt.notify_admins(conn.organization_id, "async_failure",
                               f"WHATSAPP_BUSINESS connection {conn.name!r}: a message failed after acceptance with "
                               f"{code} ({err.get('title') or 'no title'})", connection_id=conn.id,
                               severity="error" if health is Health.UNHEALTHY else "warning")


async def _account_error(rt: Runtime, conn: Connection, err: dict) -> None:
    ws = WhatsAppStore(rt.store)
    code = str(err.get("code"))
    log.warning("whatsapp account-level error %s on connection %s: %s", code, conn.id, err.get("title"))
    await rt.store.run(ws.note_async_failure, conn.id, code, str(err.get("title") or ""), Health.DEGRADED)
    await rt.notify_admins(conn.organization_id, "account_error",
                           f"WHATSAPP_BUSINESS connection {conn.name!r}: Meta reported {code} "
                           f"({err.get('title') or 'no title'})", connection_id=conn.id, severity="warning")
