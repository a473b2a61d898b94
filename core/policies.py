"""Retry policies and timeouts for every activity, declared side by side in one place."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TypedDict

from temporalio.common import RetryPolicy

from core.errors import NON_RETRYABLE_TYPES


class ActivityKwargs(TypedDict, total=False):
    """Typed keyword arguments so `**SEND.kwargs()` type-checks against execute_activity."""

    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: timedelta


@dataclass(frozen=True)
class ActivityOptions:
    """Keyword arguments for `workflow.execute_activity`, per activity kind."""

    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: timedelta | None = None

    def kwargs(self) -> ActivityKwargs:
        """As keyword arguments for `workflow.execute_activity`."""
        out: ActivityKwargs = {
            "start_to_close_timeout": self.start_to_close_timeout,
            "retry_policy": self.retry_policy,
        }
        if self.heartbeat_timeout is not None:
            out["heartbeat_timeout"] = self.heartbeat_timeout
        return out


# Temporal's own backoff has no jitter: activities compute a full-jitter delay and pass it as
# next_retry_delay (see `full_jitter_delay`), so these intervals only bound the schedule.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0


def _policy(max_attempts: int, maximum_interval: float = BACKOFF_CAP_SECONDS) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=BACKOFF_BASE_SECONDS),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=maximum_interval),
        maximum_attempts=max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE_TYPES),
    )


# A provider call that sends something (message, event): bounded attempts, then admins hear of it.
# 30 s bounds one HTTP call (20 s client timeout) plus limiter waits; a crashed worker's attempt is
# retried elsewhere after at most this long.
SEND = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), retry_policy=_policy(8))
# A read or lookup: cheaper to retry, fewer attempts.
LOOKUP = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), retry_policy=_policy(5))
# Store-only bookkeeping (audit, health, notifications): our own database, retried generously.
BOOKKEEPING = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), retry_policy=_policy(20, 10))
# One alert on one route (a Slack post or a signed webhook): retried by Temporal with backoff up to 5 minutes
# apart, then given up and recorded (the delivery workflow may set fewer attempts or a shorter interval).
ALERT = ActivityOptions(start_to_close_timeout=timedelta(seconds=60), retry_policy=_policy(8, 300))
# Long batch activities (bulk sends) heartbeat their progress.
BATCH = ActivityOptions(
    start_to_close_timeout=timedelta(hours=2),
    heartbeat_timeout=timedelta(seconds=30),
    retry_policy=_policy(10),
)


def full_jitter_delay(attempt: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform(0, min(cap, base*2^n))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(0.0, ceiling)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """The delay before the next attempt: a provider's Retry-After wins over our own jitter."""
    if retry_after is not None and retry_after >= 0:
        return retry_after
    return full_jitter_delay(attempt)
