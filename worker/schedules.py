"""Temporal schedules owned by the service (created idempotently at start-up of `make run` or by the CLI)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

from activities.admin.alerts import DeliverInput
from activities.admin.maintenance import SweepInput
from activities.events.models import SweepInput as EventSweepInput
from core.settings import Settings

HEALTH_SWEEP_ID = "connection-health-sweep"
ALERT_DELIVERY_ID = "admin-notification-delivery"
EVENT_SWEEP_ID = "event-outbox-sweep"


async def ensure_schedules(client: Client, settings: Settings, every: timedelta = timedelta(hours=1),
                           alerts_every: timedelta = timedelta(minutes=1)) -> list[str]:
    """Create the health sweep, alert delivery and event outbox sweep schedules where missing; return the ids
    created."""
    wanted: list[tuple[str, str, BaseModel, timedelta]] = [
        (HEALTH_SWEEP_ID, "ConnectionHealthSweep", SweepInput(), every),
        (ALERT_DELIVERY_ID, "DeliverAdminNotifications", DeliverInput(), alerts_every),
        # Events whose nudge was lost (a process died between commit and signal) start delivering within a minute.
        (EVENT_SWEEP_ID, "SweepEventOutbox", EventSweepInput(), alerts_every),
    ]
    created = []
    for schedule_id, workflow_name, arg, interval in wanted:
        try:
            await client.create_schedule(
                schedule_id,
                Schedule(
                    action=ScheduleActionStartWorkflow(workflow_name, arg, id=schedule_id,
                                                       task_queue=settings.task_queue),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
                ),
            )
        except ScheduleAlreadyRunningError:
            continue
        created.append(schedule_id)
    return created
