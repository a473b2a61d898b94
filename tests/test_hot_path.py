"""The send path's store work: three round trips (one read, the claim, one closing transaction), and what the
closing transaction writes is all there together (message record, intent outcome, usage row, audit event)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.whatsapp.models import OutboundMessage
from activities.whatsapp.sending import send_one
from activities.whatsapp.store import WhatsAppStore
from store.intents import IntentStore
from store.models import IntentState
from tests.test_whatsapp_support import customer_writes, wa_conn


def intent(runtime: Any, wa: Any, action: str, explicit: str, to: str) -> Any:
    conn = runtime.store.find_connection(wa.organization_id, "WHATSAPP_BUSINESS", "default")
    key = f"{wa.organization_id}:{conn.id}:{action}:{explicit}:{to}"
    return IntentStore(runtime.store).get([key]).get(key)


COUNTING: ContextVar[bool] = ContextVar("counting_store_runs", default=False)


class CountingRuns:
    """Counts the store's thread hops (`Store.run`) made by this task while installed (the shared worker may be
    finishing other tests' workflows on the same runtime meanwhile: those are not counted)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime, self.original, self.calls = runtime, runtime.store.run, []

    def __enter__(self) -> CountingRuns:
        async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
            if COUNTING.get():
                self.calls.append(getattr(fn, "__name__", type(fn).__name__))
            return await self.original(fn, *args, **kwargs)

        self.runtime.store.run = counting
        self.token = COUNTING.set(True)
        return self

    def __exit__(self, *_: object) -> None:
        COUNTING.reset(self.token)
        self.runtime.store.run = self.original


async def test_a_send_is_three_store_round_trips_and_its_bookkeeping_lands_together(runtime, sandbox,
                                                                                      gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    await customer_writes(sandbox.url, wa, "+16505557001", "hi")  # the window is open: a free-form reply
    msg = OutboundMessage(type="text", text="hello")
    with CountingRuns(runtime) as hops:
        res = await send_one(runtime, wa.organization_id, "default", "+16505557001", msg, "hot-1")
    assert res.status == "accepted" and res.message_id
    assert hops.calls == ["_resolve", "claim", "record_action"], hops.calls

    record = WhatsAppStore(runtime.store).message(res.message_id)
    assert record is not None and record.category == "service" and record.direction == "out"
    key = intent(runtime, wa, "whatsapp.send_text", "hot-1", "+16505557001")
    assert key is not None and key.state == IntentState.ACCEPTED.value and key.provider_ref == res.message_id
    usage = runtime.store.usage(wa.organization_id)
    assert any(u.reference == res.message_id and u.outcome == "ok" for u in usage)
    audit = runtime.store.audit_log(wa.organization_id)
    assert audit[0].action == "whatsapp.send_text" and audit[0].outcome == "ok"
    assert runtime.store.verify_audit(wa.organization_id).ok  # the plain INSERT keeps the hash chain

    # Sent again with the same key: one read says it is done; nothing is written but the audit event.
    with CountingRuns(runtime) as again:
        same = await send_one(runtime, wa.organization_id, "default", "+16505557001", msg, "hot-1")
    assert same.message_id == res.message_id and again.calls == ["_resolve", "record_action"]


async def test_a_refused_send_settles_its_intent_in_the_closing_transaction(runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    await customer_writes(sandbox.url, wa, "+16505557002", "hi")
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": wa.token})
    msg = OutboundMessage(type="text", text="hello")
    with pytest.raises(ApplicationError) as refused:
        await send_one(runtime, wa.organization_id, "default", "+16505557002", msg, "hot-2")
    assert refused.value.type == "ConfigurationError"
    # Claimed before the call, refused by Meta: settled `pending` (a later attempt may send), never left
    # `sending` (which would make the next attempt wait for a webhook that will not come).
    row = intent(runtime, wa, "whatsapp.send_text", "hot-2", "+16505557002")
    assert row is not None and row.state == IntentState.PENDING.value


async def test_inbound_redelivery_and_the_window_with_plain_upserts(runtime) -> None:
    from datetime import UTC, datetime, timedelta

    ws = WhatsAppStore(runtime.store)
    t0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert ws.record_inbound("hot-org", "c1", "p1", "16505557003", "wamid.hot.1", t0, "text", "Ann")
    assert not ws.record_inbound("hot-org", "c1", "p1", "16505557003", "wamid.hot.1", t0, "text", "Ann")
    # An older message arriving late does not move the window back; a missing name keeps the known one.
    assert ws.record_inbound("hot-org", "c1", "p1", "16505557003", "wamid.hot.0", t0 - timedelta(hours=1), "text",
                             None, user_id="US.hot")
    row = ws.contact("hot-org", "p1", "16505557003")
    assert row is not None and row.last_inbound_at == t0 and row.profile_name == "Ann" and row.user_id == "US.hot"
    assert ws.record_inbound("hot-org", "c1", "p1", "16505557003", "wamid.hot.2", t0 + timedelta(hours=1), "text",
                             "Ann B")
    row = ws.contact("hot-org", "p1", "16505557003")
    assert row is not None and row.last_inbound_at == t0 + timedelta(hours=1) and row.profile_name == "Ann B"
