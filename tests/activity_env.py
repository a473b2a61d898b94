"""An activity context as Temporal gives one: its own activity id, real schedule times and a delivery deadline."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import ActivityEnvironment

from core.policies import WHATSAPP_SEND, ActivityOptions


def activity_env(attempt: int = 1, *, elapsed: timedelta = timedelta(0), options: ActivityOptions = WHATSAPP_SEND,
                 deadline: timedelta | None = None, **info: Any) -> ActivityEnvironment:
    """Attempt `attempt`, `elapsed` after the first one, under `options` (and `deadline`, as `deliver_within`).

    A fresh activity id per call, as Temporal gives each scheduled activity (default idempotency keys use it).
    """
    kwargs = options.kwargs(deadline)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=attempt, activity_id=uuid.uuid4().hex, scheduled_time=datetime.now(UTC) - elapsed,
        current_attempt_scheduled_time=datetime.now(UTC), start_to_close_timeout=kwargs["start_to_close_timeout"],
        schedule_to_close_timeout=kwargs["schedule_to_close_timeout"], retry_policy=kwargs["retry_policy"], **info)
    return env
