"""Sandbox-wide state: the request recorder and per-provider fault injection."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel


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


class FaultConfig(BaseModel):
    """Fault injection for one provider; counters decrement as faults fire."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # probability of a 5xx
    error_status: int = 500
    errors_next: int = 0  # the next N requests fail with a 5xx
    rate_limit_next: int = 0  # the next N requests get the provider's 429
    retry_after: float | None = None
    outage: bool = False
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

    def dump(self, provider: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.requests if r.seq > since and (provider is None or r.provider == provider)]


class SandboxState:
    """Shared by every provider fake in one sandbox process."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.faults: dict[str, FaultConfig] = {}
        self.sinks: dict[str, dict[str, Any]] = {}  # webhook receivers: {name: {"status", "received"}}
        self.files: dict[str, tuple[bytes, str]] = {}  # name → (content, content type)
        self._rng = random.Random()
        self.providers: dict[str, Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.inflight: dict[str, int] = {}  # requests received but not yet answered, per provider

    def set_faults(self, provider: str, cfg: FaultConfig) -> None:
        self.faults[provider] = cfg
        if cfg.seed is not None:
            self._rng.seed(cfg.seed)

    async def fault_for(self, provider: str) -> str | None:
        """Which fault fires for this request: 'outage', '5xx', '429' or None (after latency)."""
        cfg = self.faults.get(provider)
        if cfg is None:
            return None
        if cfg.latency_ms:
            await asyncio.sleep(cfg.latency_ms / 1000)
        if cfg.outage:
            return "outage"
        if cfg.rate_limit_next > 0:
            cfg.rate_limit_next -= 1
            return "429"
        if cfg.errors_next > 0:
            cfg.errors_next -= 1
            return "5xx"
        if cfg.error_rate and self._rng.random() < cfg.error_rate:
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
