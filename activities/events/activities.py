"""Event activities: queue events of workflow facts, list a subscription's pending events, deliver one signed
event (Temporal retries it), give one up, and sweep for deliveries whose nudge was lost."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from temporalio import activity

from activities.events import service
from activities.events.models import (
    DeliverEventInput,
    DeliverEventResult,
    EmitInput,
    EmitResult,
    GiveUpInput,
    PendingEvent,
    PendingInput,
    PendingResult,
    SweepInput,
    SweepResult,
)
from core.egress import EgressRefused
from core.errors import PermanentError, TemporaryError
from core.policies import full_jitter_delay
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from store.events import EventStore
from vault.client import CredentialsMissing
from vault.credentials import ApiKeyCredentials

if TYPE_CHECKING:
    from core.runtime import Runtime

EVENT_ID_HEADER = "X-OSI-Event-Id"
EVENT_TYPE_HEADER = "X-OSI-Event-Type"


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes signed and sent (the same on every attempt)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class EventActivities:
    """Bound to the worker's runtime (store, Vault, the pooled HTTP client)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @activity.defn(name="events.emit")
    async def emit(self, inp: EmitInput) -> EmitResult:
        """Queue events of a workflow's fact; the dedupe key makes a retried activity add nothing twice."""
        got = await self.rt.store.run(EventStore(self.rt.store).emit, inp.organization_id,
                                      [(e.type, e.data, e.dedupe_key) for e in inp.events])
        return EmitResult(subscriptions=len(got))

    @activity.defn(name="events.pending")
    async def pending(self, inp: PendingInput) -> PendingResult:
        events = EventStore(self.rt.store)
        if await self.rt.store.run(events.subscription, inp.subscription_id) is None:
            return PendingResult(subscription_exists=False)
        rows = await self.rt.store.run(events.pending, inp.subscription_id, inp.limit)
        return PendingResult(subscription_exists=True, events=[
            PendingEvent(row_id=r.id or 0, event_id=r.event_id, type=r.type) for r in rows])

    @activity.defn(name="events.deliver")
    async def deliver(self, inp: DeliverEventInput) -> DeliverEventResult:
        """POST one signed event. Any answer but 2xx (or no answer) is a temporary failure: Temporal retries
        with full-jitter backoff; the receiver deduplicates by X-OSI-Event-Id."""
        events = EventStore(self.rt.store)
        row = await self.rt.store.run(events.outbox_row, inp.row_id)
        if row is None or row.status != "pending":
            return DeliverEventResult(status="already_done" if row else "cancelled",
                                      attempts=row.attempts if row else 0)
        sub = await self.rt.store.run(events.subscription, inp.subscription_id)
        if sub is None:
            return DeliverEventResult(status="cancelled", attempts=row.attempts)
        try:
            creds = await self.rt.vault.read(self.rt.vault.event_subscription_path(sub.organization_id, sub.id))
        except CredentialsMissing:
            creds = None
        if not isinstance(creds, ApiKeyCredentials):
            raise PermanentError("event subscription: its signing secret is missing from Vault",
                                 code="secret_missing").to_application_error()
        body = body_of(row.payload)
        ts = str(int(time.time()))
        status: int | None = None
        error: str | None = None
        try:
            # Through the egress guard: the URL is the organization's input; the worker must not reach inside.
            resp = await self.rt.egress.client.post(sub.url, content=body, headers={
                "Content-Type": "application/json", TIMESTAMP_HEADER: ts, EVENT_ID_HEADER: row.event_id,
                EVENT_TYPE_HEADER: row.type, SIGNATURE_HEADER: sign(creds.api_key.get_secret_value(), ts, body)})
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"receiver answered HTTP {status}"
        except EgressRefused as exc:
            error = f"receiver refused by the egress guard: {exc}"
        except httpx.HTTPError as exc:
            error = f"receiver unreachable: {type(exc).__name__}"
        done = await self.rt.store.run(events.record_attempt, inp.row_id, ok=error is None, status_code=status,
                                       error=error)
        if error is None:
            return DeliverEventResult(status="delivered", status_code=status, attempts=done.attempts)
        attempt = activity.info().attempt if activity.in_activity() else 1
        delay = full_jitter_delay(attempt, inp.initial_backoff_seconds, inp.max_backoff_seconds)
        raise TemporaryError(error, code=status or "unreachable").to_application_error(
            timedelta(seconds=max(delay, 0.001)))

    @activity.defn(name="events.give_up")
    async def give_up(self, inp: GiveUpInput) -> bool:
        """Retries ran out (days): the event is marked failed and the organization's administrators hear of it."""
        row = await self.rt.store.run(EventStore(self.rt.store).give_up, inp.row_id, inp.error)
        if row is None or row.status != "failed":
            return False
        await self.rt.store.run(self.rt.store.notify_admins, row.organization_id, "event_delivery_failed",
                                f"event {row.type} ({row.event_id}) to subscription {inp.subscription_id} was not "
                                f"delivered after {row.attempts} attempts: {inp.error[:300]}", severity="warning")
        return True

    @activity.defn(name="events.sweep")
    async def sweep(self, inp: SweepInput) -> SweepResult:
        """Nudge every subscription whose events wait longer than they should (their nudge was lost)."""
        stalled = await self.rt.store.run(EventStore(self.rt.store).stalled,
                                          timedelta(seconds=inp.older_than_seconds))
        if stalled:
            await service.nudge(activity.client(), self.rt.settings, stalled)
        return SweepResult(nudged=len(stalled))

    def all(self) -> list[Any]:
        return [self.emit, self.pending, self.deliver, self.give_up, self.sweep]
