"""Temporal schedules owned by the service (created idempotently at start-up of `make run` or by the CLI)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

from activities.maintenance import SweepInput
from worker.settings import Settings

HEALTH_SWEEP_ID = "connection-health-sweep"


async def ensure_schedules(client: Client, settings: Settings, every: timedelta = timedelta(hours=1)) -> list[str]:
    """Create the health sweep schedule if it does not exist; return the ids created."""
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
