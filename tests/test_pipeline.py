"""The action pipeline in an activity context: retry delays, exhaustion alerts, breaker, usage rows."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import SendTextInput
from core.policies import WHATSAPP_SEND, full_jitter_delay, retry_delay
from tests import seed
from tests.activity_env import activity_env


def env_at(attempt: int, elapsed: timedelta = timedelta(0)) -> ActivityEnvironment:
    """An activity attempt `elapsed` after its first one, under WhatsApp's delivery deadline."""
    return activity_env(attempt, elapsed=elapsed)


def test_full_jitter_is_bounded_and_spread() -> None:
    samples = [full_jitter_delay(4) for _ in range(500)]
    assert all(0 <= s <= 8 for s in samples)
    assert max(samples) > 4 and min(samples) < 2  # spread, not a fixed schedule
    assert all(full_jitter_delay(30) <= 60 for _ in range(100))  # capped
    assert retry_delay(3, 7.5) == 7.5  # Retry-After wins


async def fault(sandbox, **cfg) -> None:
    async with httpx.AsyncClient() as http:
        if cfg:
            await http.put(f"{sandbox.url}/_sandbox/faults/whatsapp", json=cfg)
        else:
            await http.delete(f"{sandbox.url}/_sandbox/faults")


async def test_retry_after_becomes_next_retry_delay(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    await fault(sandbox, rate_limit_next=1, retry_after=7.25)
    try:
        with pytest.raises(ApplicationError) as exc:
            await env_at(1).run(acts.send_text, SendTextInput(organization_id=wa.organization_id,
                                                              to="+16505551234", text="x"))
    finally:
        await fault(sandbox)
    err = exc.value
    assert err.type == "TemporaryError" and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=7.25)
    assert err.details[0]["code"] == 4


async def test_exhausted_retries_alert_admins_and_mark_unhealthy(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    await fault(sandbox, outage=True)
    try:
        inp = SendTextInput(organization_id=wa.organization_id, to="+16505551234", text="x")
        with pytest.raises(ApplicationError) as exc:  # many attempts, hours before the deadline: keep trying
            await env_at(40, elapsed=timedelta(hours=1)).run(acts.send_text, inp)
        assert not exc.value.non_retryable
        assert not runtime.store.notifications(connection_id=wa.connection_id)  # the deadline is far
        with pytest.raises(ApplicationError) as exc:  # the next attempt would start after the deadline
            await env_at(41, elapsed=WHATSAPP_SEND.deadline - timedelta(seconds=0.5)).run(
                acts.send_text, inp.model_copy(update={"to": "+16505551235"}))
    finally:
        await fault(sandbox)
    assert exc.value.type == "TemporaryError" and exc.value.non_retryable
    assert exc.value.details[0]["details"]["deadline_exceeded"] is True
    (note,) = runtime.store.notifications(connection_id=wa.connection_id)
    assert note.kind == "retries_exhausted" and "delivery deadline" in note.message
    assert runtime.store.get_connection(wa.connection_id).health == "unhealthy"
    # A later success heals the connection.
    await env_at(1).run(acts.send_text, inp.model_copy(update={"to": "+16505551236"}))
    assert runtime.store.get_connection(wa.connection_id).health == "healthy"


async def test_breaker_opens_after_consecutive_provider_failures(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    breaker = runtime.breakers.get("whatsapp", wa.connection_id)
    breaker.failure_threshold = 3

    def inp(i: int) -> SendTextInput:  # distinct customers: the 6 s pair limit is not what we test here
        return SendTextInput(organization_id=wa.organization_id, to=f"+1650555{1200 + i}", text="x")

    await fault(sandbox, outage=True)
    try:
        for i in range(3):
            with pytest.raises(ApplicationError):
                await env_at(1).run(acts.send_text, inp(i))
        before = len(sandbox.state.recorder.dump("whatsapp"))
        with pytest.raises(ApplicationError) as exc:
            await env_at(1).run(acts.send_text, inp(9))
        assert exc.value.details[0]["code"] == "circuit_open"
        assert len(sandbox.state.recorder.dump("whatsapp")) == before  # no call reached the provider
    finally:
        await fault(sandbox)
    assert breaker.state.value == "open"


async def test_every_call_is_a_usage_row_and_every_action_an_audit_event(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    res = await env_at(1).run(acts.send_text, SendTextInput(organization_id=wa.organization_id,
                                                            to="+16505551234", text="x"))
    (row,) = runtime.store.usage(connection_id=wa.connection_id)
    assert (row.action, row.outcome, row.status_code, row.reference) == (
        "whatsapp.send_text", "ok", 200, res.message_id)
    assert row.latency_ms > 0
    events = [e for e in runtime.store.audit_log(wa.organization_id) if e.action == "whatsapp.send_text"]
    assert events and events[0].outcome == "ok" and events[0].target == "+16505551234"


async def test_idempotency_key_prevents_a_second_send(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    inp = SendTextInput(organization_id=wa.organization_id, to="+16505551234", text="once",
                        idempotency_key="order-42")
    a = await env_at(1).run(acts.send_text, inp)
    b = await env_at(2).run(acts.send_text, inp)  # no 6 s pair-limit wait either: nothing is sent
    assert a.message_id == b.message_id
    assert len(runtime.store.usage(connection_id=wa.connection_id)) == 1
