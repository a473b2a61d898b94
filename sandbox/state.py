"""Sandbox-wide state: the request recorder, the clock, and per-provider fault injection."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

# When the request under way reached the provider (sandbox clock). Set by the transport middleware
# after the simulated inbound network delay; read by every limiter, so they count arrivals.
ARRIVAL: contextvars.ContextVar[float | None] = contextvars.ContextVar("sandbox_arrival", default=None)


def fingerprint(secret: str) -> str:
    """A stable, non-reversible id of a credential, so tests can tell which token was used."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass
class RecordedRequest:
    seq: int
    at: float
    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0
    response: Any = None
    lost_answer: bool = False  # processed and accepted, but the client never got the answer


class NetworkConfig(BaseModel):
    """The network between clients and one provider: a fixed delay plus jitter (see sandbox.transport)."""

    latency_ms: float = 0.0  # fixed delay before the provider sees the request
    jitter_ms: float = Field(default=0.0, description="random extra delay: uniform in [0, jitter_ms], or lognormal "
                                                      "with median jitter_ms")
    jitter_dist: Literal["uniform", "lognormal"] = "uniform"
    jitter_sigma: float = 0.5  # lognormal shape
    jitter_inbound_fraction: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="share of requests whose jitter delays their arrival (before rate limits count them); "
                    "the others get it on the way back (after counting)")


class FaultConfig(NetworkConfig):
    """Fault injection for one provider; counters decrement as faults fire. Its latency and jitter, when set,
    replace the sandbox-wide network (`PUT /_sandbox/network`) for this provider."""

    error_rate: float = 0.0  # probability of a 5xx
    error_status: int = 500
    errors_next: int = 0  # the next N requests fail with a 5xx
    rate_limit_next: int = 0  # the next N requests get the provider's 429
    retry_after: float | None = None
    outage: bool = False
    lose_answer_next: int = Field(default=0, description="the next N accepted sends are processed but unanswered")
    lose_answer_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="probability an accepted send is "
                                                                           "processed but unanswered")
    hang_after_accept_ms: float = Field(default=30_000.0, description="how long a lost answer is held (the client "
                                                                      "gives up first); ends early on disconnect")
    seed: int | None = None


@dataclass
class Recorder:
    requests: list[RecordedRequest] = field(default_factory=list)
    seq: int = 0
    limit: int = 50_000

    def add(self, rec: RecordedRequest) -> None:
        self.requests.append(rec)
        if len(self.requests) > self.limit:
            del self.requests[: len(self.requests) - self.limit]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def dump(self, provider: str | None = None, since: int = 0, lost_answer: bool | None = None
             ) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.requests
                if r.seq > since and (provider is None or r.provider == provider)
                and (lost_answer is None or r.lost_answer == lost_answer)]


class SandboxState:
    """Shared by every provider fake in one sandbox process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.recorder = Recorder()
        self.faults: dict[str, FaultConfig] = {}
        # Every provider's network unless its faults set their own latency/jitter (`PUT /_sandbox/network`,
        # or OSI_SANDBOX_LATENCY_MS / OSI_SANDBOX_JITTER_MS for `python -m sandbox`).
        self.network = NetworkConfig()
        self.sinks: dict[str, dict[str, Any]] = {}  # webhook receivers: {name: {"status", "received"}}
        self.files: dict[str, tuple[bytes, str]] = {}  # name → (content, content type)
        self.rngs: dict[str, random.Random] = defaultdict(random.Random)
        self.providers: dict[str, Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.inflight: dict[str, int] = {}  # requests received but not yet answered, per provider
        # Answers of the sends that can be lost (see sandbox.transport): accepted and lost, per provider.
        self.answers: dict[str, dict[str, int]] = defaultdict(lambda: {"accepted": 0, "lost": 0})
        # Monotonic seconds; replaceable so tests can pace requests on a clock they control.
        self.clock = clock

    def arrival(self) -> float:
        """When the request under way reached the provider; limiters count it at this instant."""
        at = ARRIVAL.get()
        return self.clock() if at is None else at

    def set_faults(self, provider: str, cfg: FaultConfig) -> None:
        self.faults[provider] = cfg
        if cfg.seed is not None:
            self.rngs[provider] = random.Random(cfg.seed)

    async def fault_for(self, provider: str) -> str | None:
        """Which fault fires for this request: 'outage', '5xx', '429' or None (latency is the transport's)."""
        cfg = self.faults.get(provider)
        if cfg is None:
            return None
        if cfg.outage:
            return "outage"
        if cfg.rate_limit_next > 0:
            cfg.rate_limit_next -= 1
            return "429"
        if cfg.errors_next > 0:
            cfg.errors_next -= 1
            return "5xx"
        if cfg.error_rate and self.rngs[provider].random() < cfg.error_rate:
            return "5xx"
        return None

    def spawn(self, coro: Any) -> None:
        """Run a background task (e.g. a webhook delivery) and keep a reference to it."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def now() -> float:
    return time.time()
