"""Circuit breaker per (provider, connection): stop hammering a provider that is failing, and say so."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import TemporaryError

log = logging.getLogger("osi.breaker")

TRANSITIONS_KEPT = 20


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
# Called with (provider, connection id, old state, new state) on every transition.
TransitionHook = Callable[[str, str, BreakerState, BreakerState], None]


@dataclass
class Breaker:
    failure_threshold: int
    reset_seconds: float
    provider: str = ""
    connection_id: str = ""
    clock: Callable[[], float] = time.monotonic
    on_transition: TransitionHook | None = None
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False
    transitions: deque[str] = field(default_factory=lambda: deque(maxlen=TRANSITIONS_KEPT))

    def before_call(self, name: str) -> bool:
        """Raise a TemporaryError (retry after the cool-down) while the circuit is open; True when this call is
        the half-open trial, which the caller must settle with `record` or give back with `release`."""
        if self.state is BreakerState.OPEN:
            remaining = self.opened_at + self.reset_seconds - self.clock()
            if remaining > 0:
                raise TemporaryError(
                    f"circuit open for {name} after {self.failures} consecutive failures",
                    code="circuit_open",
                    retry_after=remaining,
                )
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self.trial_in_flight:
                raise TemporaryError(f"circuit half-open for {name}: trial call in flight",
                                     code="circuit_open", retry_after=1.0)
            self.trial_in_flight = True
            return True
        return False

    def record(self, healthy: bool) -> None:
        """`healthy` is False only for provider-side failures (5xx, timeouts, connection errors)."""
        self.trial_in_flight = False
        if healthy:
            self.failures = 0
            if self.state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED)
            return
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()
            if self.state is not BreakerState.OPEN:
                self._set(BreakerState.OPEN)

    def release(self) -> None:
        """A trial call that ended without an answer (cancelled, or a bug before the call): the next call may
        try again, instead of the circuit staying half-open forever."""
        self.trial_in_flight = False

    def _set(self, state: BreakerState) -> None:
        old, self.state = self.state, state
        self.transitions.append(f"{old.value}->{state.value}")
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit %s -> %s", old.value, state.value, extra={"osi": {
            "provider": self.provider, "connection_id": self.connection_id, "breaker": state.value,
            "failures": self.failures}})
        if self.on_transition is not None:
            self.on_transition(self.provider, self.connection_id, old, state)


class Breakers:
    """All breakers of a worker process."""

    def __init__(self, failure_threshold: int = 5, reset_seconds: float = 30.0,
                 on_transition: TransitionHook | None = None) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.on_transition = on_transition
        self._breakers: dict[tuple[str, str], Breaker] = {}

    def get(self, provider: str, connection_id: str) -> Breaker:
        key = (provider, connection_id)
        if key not in self._breakers:
            self._breakers[key] = Breaker(self.failure_threshold, self.reset_seconds, provider, connection_id,
                                          on_transition=self.on_transition)
        return self._breakers[key]

    def snapshot(self) -> dict[str, str]:
        return {f"{p}/{c}": b.state.value for (p, c), b in self._breakers.items()}
