"""Maintenance workflows: the scheduled health sweep over connections, and each organization's alert delivery."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.admin.alerts import (
        AlertActivities,
        AlertDeliveryInput,
        AlertDeliveryState,
        AlertJob,
        AlertRef,
        DeliveryRecord,
        DueInput,
        WakeInput,
    )
    from activities.admin.maintenance import CheckInput, MaintenanceActivities, SweepInput, SweepResult
    from activities.slack.models import MessageRef, PostMessageInput
    from core.alerting import ALERT_WORKFLOW, WAKE_SIGNAL
    from core.errors import error_from_details
    from core.policies import ALERT, BOOKKEEPING, LOOKUP, ActivityKwargs


@workflow.defn(name="ConnectionHealthSweep")
class ConnectionHealthSweep:
    """Test every connection, warn about expiring credentials, report what is unhealthy; then wake the alert
    delivery of organizations with alerts still due (in case a wake was lost)."""

    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        refs = await workflow.execute_activity_method(
            MaintenanceActivities.list_connections, inp, **BOOKKEEPING.kwargs())
        result = SweepResult(checked=0)
        for ref in refs:
            check = await workflow.execute_activity_method(
                MaintenanceActivities.check_connection,
                CheckInput(connection=ref, expiry_warning_days=inp.expiry_warning_days,
                           run_connection_test=inp.run_connection_tests),
                **LOOKUP.kwargs())
            result.checked += 1
            if not check.healthy:
                result.unhealthy.append(check)
            if check.expiring:
                result.expiring.append(check)
        await workflow.execute_activity_method(AlertActivities.wake_pending, WakeInput(), **BOOKKEEPING.kwargs())
        return result


def _key(ref: AlertRef) -> tuple[int, str]:
    return ref.notification_id, ref.route_id


@workflow.defn(name=ALERT_WORKFLOW)
class AdminAlertDelivery:
    """One organization's alerts to its routes, for as long as the organization exists.

    Woken by the `wake` signal (signal-with-start by whoever records an alert, `core.alerting`), it asks the
    store what is due and runs one activity per (alert, route) — `slack.post_message` through the Slack
    plugin, or `admin.deliver_webhook` — each retried by Temporal (`ALERT` policy) and recorded as delivered
    or given up. One failing route never holds up another. Idle, it waits on the signal without a timer;
    after `continue_after` deliveries it continues as new.
    """

    def __init__(self) -> None:
        self.wakes = 0
        self.state = AlertDeliveryState()

    @workflow.signal(name=WAKE_SIGNAL)
    def wake(self) -> None:
        """Only counts: the run loop looks at the store again."""
        self.wakes += 1
        self.state.wakes += 1

    @workflow.query(name="state")
    def get_state(self) -> AlertDeliveryState:
        return self.state

    @workflow.run
    async def run(self, inp: AlertDeliveryInput) -> AlertDeliveryState:
        self.state.delivered, self.state.failed = inp.delivered, inp.failed
        options = ALERT.kwargs()
        options["retry_policy"] = dataclasses.replace(
            ALERT.retry_policy, maximum_attempts=inp.max_attempts,
            maximum_interval=timedelta(seconds=inp.max_interval_seconds))
        in_flight: dict[tuple[int, str], asyncio.Task[None]] = {}
        handled = 0
        while True:
            seen = self.wakes
            due = await workflow.execute_activity_method(
                AlertActivities.due, DueInput(organization_id=inp.organization_id, max_age_hours=inp.max_age_hours,
                                              exclude=[AlertRef(notification_id=k[0], route_id=k[1])
                                                       for k in in_flight]),
                **BOOKKEEPING.kwargs())
            for job in due:
                in_flight[_key(job)] = asyncio.ensure_future(self._deliver(job, options))
            self.state.in_flight = len(in_flight)
            await workflow.wait_condition(
                lambda seen=seen: self.wakes != seen or any(t.done() for t in in_flight.values()))  # type: ignore[misc]
            for key in [k for k, t in in_flight.items() if t.done()]:
                in_flight.pop(key).result()
                handled += 1
            self.state.in_flight = len(in_flight)
            if handled >= inp.continue_after or workflow.info().is_continue_as_new_suggested():
                if in_flight:
                    await asyncio.gather(*in_flight.values())
                await workflow.wait_condition(workflow.all_handlers_finished)
                # Wakes that arrived meanwhile are not lost: the next run starts by looking at the store.
                workflow.continue_as_new(inp.model_copy(update={"delivered": self.state.delivered,
                                                                "failed": self.state.failed}))

    async def _deliver(self, job: AlertJob, options: ActivityKwargs) -> None:
        try:
            if job.kind == "slack":
                await workflow.execute_activity(
                    "slack.post_message",
                    PostMessageInput(organization_id=job.organization_id, connection=job.connection or "default",
                                     channel=job.channel, user_id=job.user_id, text=job.text,
                                     idempotency_key=f"alert:{job.notification_id}:{job.route_id}"),
                    result_type=MessageRef, **options)
            else:
                await workflow.execute_activity_method(AlertActivities.deliver_webhook, job, **options)
        except ActivityError as err:
            details = error_from_details(err) or {"message": str(err)}
            error = f"{details.get('code') or details.get('error_class')}: {details.get('message')}"
            record = DeliveryRecord(notification_id=job.notification_id, route_id=job.route_id, status="failed",
                                    error=error)
            self.state.failed += 1
        else:
            record = DeliveryRecord(notification_id=job.notification_id, route_id=job.route_id,
                                    status="delivered")
            self.state.delivered += 1
        await workflow.execute_activity_method(AlertActivities.record, record, **BOOKKEEPING.kwargs())


MAINTENANCE_WORKFLOWS: tuple[type, ...] = (ConnectionHealthSweep, AdminAlertDelivery)
