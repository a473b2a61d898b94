"""Retry policies, timeouts and delivery deadlines for every activity kind, declared side by side in one place.

Temporary failures are retried until a deadline in time, not a number of attempts: an outage of minutes (or of
hours, within the deadline) loses nothing. Temporal owns the retries; activities pass a full-jitter delay (or
the provider's Retry-After) as `next_retry_delay`, and say themselves when the next attempt would fall after
the deadline (`core.pipeline` then records the exhaustion once and fails for good).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypedDict

from temporalio.common import RetryPolicy

from core.errors import NON_RETRYABLE_TYPES


class ActivityKwargs(TypedDict, total=False):
    """Typed keyword arguments so `**SEND.kwargs()` type-checks against execute_activity."""

    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: timedelta


# Temporal's own backoff has no jitter: activities compute a full-jitter delay and pass it as next_retry_delay
# (see `retry_delay`), so these intervals only bound the schedule. The cap keeps a recovered provider in use
# within a minute of its recovery.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0

RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=BACKOFF_BASE_SECONDS),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=BACKOFF_CAP_SECONDS),
    maximum_attempts=0,  # bounded by the deadline (schedule_to_close_timeout), not by attempts
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)


@dataclass(frozen=True)
class ActivityOptions:
    """How one kind of activity runs: each attempt's timeout and the deadline of all attempts together."""

    start_to_close_timeout: timedelta
    deadline: timedelta
    retry_policy: RetryPolicy = field(default_factory=lambda: RETRY_FOREVER)
    heartbeat_timeout: timedelta | None = None

    def within(self, deadline: timedelta | None) -> ActivityOptions:
        """The same kind with a caller's deadline (`deliver_within` in a workflow input), never below one attempt."""
        if deadline is None:
            return self
        return replace(self, deadline=max(deadline, self.start_to_close_timeout))

    def kwargs(self, deliver_within: timedelta | None = None) -> ActivityKwargs:
        """As keyword arguments for `workflow.execute_activity`."""
        opts = self.within(deliver_within)
        out: ActivityKwargs = {
            "start_to_close_timeout": opts.start_to_close_timeout,
            # One attempt past the deadline may still be running: the activity declares exhaustion itself when
            # its next attempt would start too late, so Temporal's timeout rarely has to cut it off.
            "schedule_to_close_timeout": opts.deadline + opts.start_to_close_timeout,
            "retry_policy": opts.retry_policy,
        }
        if opts.heartbeat_timeout is not None:
            out["heartbeat_timeout"] = opts.heartbeat_timeout
        return out


# 60 s bounds one HTTP call (20 s client timeout) plus limiter waits; a crashed worker's attempt is retried
# elsewhere after at most this long.
ATTEMPT = timedelta(seconds=60)

# A WhatsApp message: a template can wait hours for a provider outage to end. Free-form replies are further
# bounded by the 24 h window (the conversation passes the window's close as the deadline).
WHATSAPP_SEND = ActivityOptions(start_to_close_timeout=ATTEMPT, deadline=timedelta(hours=6))
# A Slack notification is stale after an hour.
SLACK_SEND = ActivityOptions(start_to_close_timeout=ATTEMPT, deadline=timedelta(hours=1))
# A calendar change (create, update, cancel) stays useful for a day.
CALENDAR_SEND = ActivityOptions(start_to_close_timeout=ATTEMPT, deadline=timedelta(days=1))
# A read or lookup a workflow waits on.
LOOKUP = ActivityOptions(start_to_close_timeout=ATTEMPT, deadline=timedelta(minutes=30))
# Store-only bookkeeping (audit, health, notifications): our own database.
BOOKKEEPING = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), deadline=timedelta(hours=1))
# One alert on one route (a Slack post or a signed webhook): attempts up to 5 minutes apart, at most 8 (the
# delivery workflow may set fewer or a shorter interval), then given up and recorded as failed.
ALERT = ActivityOptions(start_to_close_timeout=ATTEMPT, deadline=timedelta(hours=1),
                        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=BACKOFF_BASE_SECONDS),
                                                 backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5),
                                                 maximum_attempts=8,
                                                 non_retryable_error_types=list(NON_RETRYABLE_TYPES)))
# A bulk batch: long, heartbeating; it pauses on temporary errors and resumes where it stopped.
BATCH = ActivityOptions(start_to_close_timeout=timedelta(hours=2), deadline=timedelta(hours=12),
                        heartbeat_timeout=timedelta(seconds=10))
# Kept for callers that do not send anything themselves (connection tests, generic sends).
SEND = WHATSAPP_SEND


def deadline_of(seconds: float | None) -> timedelta | None:
    """A workflow input's `deliver_within` (seconds) as a deadline."""
    return None if seconds is None else timedelta(seconds=seconds)


def full_jitter_delay(attempt: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform(0, min(cap, base*2^n))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(0.0, ceiling)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """The delay before the next attempt: a provider's Retry-After wins over our own jitter."""
    if retry_after is not None and retry_after >= 0:
        return retry_after
    return full_jitter_delay(attempt)


def past_deadline(first_scheduled: datetime, deadline: timedelta, now: datetime, delay: float) -> bool:
    """Would the next attempt, `delay` seconds from now, start after the deadline of all attempts?"""
    return now + timedelta(seconds=delay) >= first_scheduled + deadline
