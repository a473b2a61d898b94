"""Temporal schedules owned by the service (created idempotently at start-up of `make run` or by the CLI)."""

from __future__ import annotations

import contextlib
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
from temporalio.service import RPCError

from activities.admin.maintenance import SweepInput
from activities.events.models import SweepInput as EventSweepInput
from core.settings import Settings

HEALTH_SWEEP_ID = "connection-health-sweep"
EVENT_SWEEP_ID = "event-outbox-sweep"
# Alerts used to be delivered by this per-minute schedule; a signal now wakes each organization's
# AdminAlertDelivery workflow. An older stack's schedule is deleted so it stops starting runs.
RETIRED_SCHEDULES = ("admin-notification-delivery",)


async def ensure_schedules(client: Client, settings: Settings, every: timedelta = timedelta(hours=1),
                           sweep_every: timedelta = timedelta(minutes=1)) -> list[str]:
    """Create the health sweep and event outbox sweep schedules where missing (and delete retired ones);
    return the ids created."""
    for retired in RETIRED_SCHEDULES:
        with contextlib.suppress(RPCError):  # not found: nothing to retire
            await client.get_schedule_handle(retired).delete()
    wanted: list[tuple[str, str, BaseModel, timedelta]] = [
        (HEALTH_SWEEP_ID, "ConnectionHealthSweep", SweepInput(), every),
        # Events whose nudge was lost (a process died between commit and signal) start delivering within a minute.
        (EVENT_SWEEP_ID, "SweepEventOutbox", EventSweepInput(), sweep_every),
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
