"""Events to OpenSyte: one long-lived delivery workflow per subscription, and the helper workflows use to emit.

`EventDelivery` (id `osi-events:{subscription}`) is fed by signal-with-start nudges after each commit that
queued events; it reads the subscription's pending events from the outbox in order and delivers them one at a
time (per-subscription ordering), one activity per event that Temporal retries for days with jittered backoff.
Idle, it ends (the next nudge starts it again); busy, it continues as new before its history grows large.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.events.activities import EventActivities
    from activities.events.models import (
        DeliverEventInput,
        DeliveryInput,
        DeliveryResult,
        EmitInput,
        GiveUpInput,
        NewEvent,
        PendingInput,
        SweepInput,
        SweepResult,
    )
    from core.errors import NON_RETRYABLE_TYPES, error_from_details
    from core.policies import BOOKKEEPING

DELIVER_TIMEOUT = timedelta(seconds=30)  # one POST (the HTTP client gives up after 20 s)


@workflow.defn(name="EventDelivery")
class EventDelivery:
    """Deliver one subscription's events in order; a nudge (`wake`) says there is something new."""

    def __init__(self) -> None:
        self.woken = True

    @workflow.signal(name="wake")
    def wake(self) -> None:
        self.woken = True

    @workflow.run
    async def run(self, inp: DeliveryInput) -> DeliveryResult:
        delivered, failed = inp.delivered, inp.failed
        policy = RetryPolicy(initial_interval=timedelta(seconds=inp.initial_backoff_seconds), backoff_coefficient=2.0,
                             maximum_interval=timedelta(seconds=inp.max_backoff_seconds),
                             non_retryable_error_types=list(NON_RETRYABLE_TYPES))
        while True:
            self.woken = False  # a nudge from here on means: look again
            batch = await workflow.execute_activity_method(
                EventActivities.pending, PendingInput(subscription_id=inp.subscription_id, limit=inp.batch),
                **BOOKKEEPING.kwargs())
            if not batch.subscription_exists:
                return DeliveryResult(reason="subscription_removed", delivered=delivered, failed=failed)
            for ev in batch.events:
                try:
                    await workflow.execute_activity_method(
                        EventActivities.deliver,
                        DeliverEventInput(subscription_id=inp.subscription_id, row_id=ev.row_id,
                                          initial_backoff_seconds=inp.initial_backoff_seconds,
                                          max_backoff_seconds=inp.max_backoff_seconds),
                        start_to_close_timeout=DELIVER_TIMEOUT,
                        schedule_to_close_timeout=timedelta(seconds=inp.give_up_after_seconds),
                        retry_policy=policy)
                    delivered += 1
                except ActivityError as err:
                    details = error_from_details(err) or {}
                    why = str(details.get("message") or err.cause or err)
                    await workflow.execute_activity_method(
                        EventActivities.give_up, GiveUpInput(subscription_id=inp.subscription_id, row_id=ev.row_id,
                                                             error=why), **BOOKKEEPING.kwargs())
                    failed += 1
            if self._history_too_long(inp.history_limit):
                workflow.continue_as_new(inp.model_copy(update={"delivered": delivered, "failed": failed}))
            if batch.events:
                continue
            try:
                await workflow.wait_condition(lambda: self.woken, timeout=timedelta(seconds=inp.idle_seconds))
            except TimeoutError:
                return DeliveryResult(reason="idle", delivered=delivered, failed=failed)

    def _history_too_long(self, limit: int) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit


@workflow.defn(name="SweepEventOutbox")
class SweepEventOutbox:
    """Nudge the delivery of subscriptions whose events wait (schedule `event-outbox-sweep`, every minute)."""

    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        return await workflow.execute_activity_method(EventActivities.sweep, inp, **BOOKKEEPING.kwargs())


async def emit(organization_id: str, events: list[tuple[str, dict[str, Any], str]]) -> None:
    """Queue events (type, data, dedupe key) of this workflow's facts for the organization's subscribers.

    Never fails the calling workflow: an event that cannot be queued is logged (the fact itself stands).
    """
    # patched: workflows started before events existed replay without this activity.
    if not events or not workflow.patched("events-v1"):
        return
    try:
        await workflow.execute_activity_method(
            EventActivities.emit,
            EmitInput(organization_id=organization_id,
                      events=[NewEvent(type=t, data=d, dedupe_key=k) for t, d, k in events]),
            **BOOKKEEPING.kwargs())
    except ActivityError as err:
        workflow.logger.warning("events %s not queued: %s", [t for t, _, _ in events], err)


EVENT_WORKFLOWS: tuple[type, ...] = (EventDelivery, SweepEventOutbox)
