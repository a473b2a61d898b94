"""Circuit breaker per (provider, connection): stop hammering a provider that is failing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import TemporaryError


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    failure_threshold: int
    reset_seconds: float
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False
    transitions: list[str] = field(default_factory=list)

    def before_call(self, name: str) -> None:
        """Raise a TemporaryError (retry after the cool-down) while the circuit is open."""
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
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self.transitions.append(f"{self.state.value}->{state.value}")
        self.state = state


class Breakers:
    """All breakers of a worker process."""

    def __init__(self, failure_threshold: int = 5, reset_seconds: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._breakers: dict[tuple[str, str], Breaker] = {}

    def get(self, provider: str, connection_id: str) -> Breaker:
        key = (provider, connection_id)
        if key not in self._breakers:
            self._breakers[key] = Breaker(self.failure_threshold, self.reset_seconds)
        return self._breakers[key]

    def snapshot(self) -> dict[str, str]:
        return {f"{p}/{c}": b.state.value for (p, c), b in self._breakers.items()}
