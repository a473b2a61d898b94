"""Temporal schedules owned by the service (created idempotently at start-up of `make run` or by the CLI)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

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
from core.settings import Settings

HEALTH_SWEEP_ID = "connection-health-sweep"
# Alerts used to be delivered by this per-minute schedule; a signal now wakes each organization's
# AdminAlertDelivery workflow. An older stack's schedule is deleted so it stops starting runs.
RETIRED_SCHEDULES = ("admin-notification-delivery",)


async def ensure_schedules(client: Client, settings: Settings, every: timedelta = timedelta(hours=1)) -> list[str]:
    """Create the health sweep schedule where missing (and delete retired ones); return the ids created."""
    for retired in RETIRED_SCHEDULES:
        with contextlib.suppress(RPCError):  # not found: nothing to retire
            await client.get_schedule_handle(retired).delete()
    try:
        await client.create_schedule(
            HEALTH_SWEEP_ID,
            Schedule(
                action=ScheduleActionStartWorkflow("ConnectionHealthSweep", SweepInput(), id=HEALTH_SWEEP_ID,
                                                   task_queue=settings.task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
            ),
        )
    except ScheduleAlreadyRunningError:
        return []
    return [HEALTH_SWEEP_ID]
