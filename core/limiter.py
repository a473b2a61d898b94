"""Proactive rate limiting: wait for a slot instead of failing (in-process or Redis)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Limit:
    """At most `limit` calls in any window of `period` seconds for one key of a scope.

    A sliding-window log rather than a token bucket: providers state their limits as
    "N per window" (80 msg/s, 600/min, 10,000 per 10 min), and a bucket's burst on top of its
    refill rate can exceed such a window. The log never does.
    """

    scope: str
    key: str
    limit: int
    period: float

    @property
    def name(self) -> str:
        return f"{self.scope}:{self.key}"


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` calls in flight at once for one key (Graph: 4 per mailbox)."""

    scope: str
    key: str
    limit: int


@dataclass(frozen=True)
class Spacing:
    """Consecutive calls for one key start at least `period` seconds after the previous one's answer.

    A window counted when we send cannot see when the provider received: a slow request followed by a
    fast one arrive closer together than they left. The provider received the previous call before we
    got its answer, so spacing from the answer holds at the provider whatever the latency (Slack's one
    post per second per channel). In-process; across workers the window limit still applies.
    """

    scope: str
    key: str
    period: float


class Limiter(Protocol):
    async def acquire(self, limits: Sequence[Limit]) -> float:
        """Wait until every limit has room, take one slot in each; return seconds waited."""

    def concurrency(self, limits: Sequence[Concurrency]) -> Any:
        """Async context manager holding one in-flight slot per limit."""

    def spaced(self, spacings: Sequence[Spacing]) -> Any:
        """Async context manager: one call at a time per key, started `period` after the last answer."""


class MemoryLimiter:
    """In-process sliding-window limiter; one per worker process."""

    # Pair limits key on (number, customer): millions of keys over a worker's life. Every this many
    # acquisitions, logs whose newest entry has left its window are dropped (they would wait for nothing).
    PRUNE_EVERY = 4096

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, deque[float]] = defaultdict(deque)
        self._periods: dict[str, float] = {}
        self._acquired = 0
        self._lock = asyncio.Lock()
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._spacing_locks: dict[str, asyncio.Lock] = {}
        self._last_answer: dict[str, float] = {}
        self._spaced_calls = 0
        self._spacing_period: dict[str, float] = {}
        self.waited_total = 0.0

    def _wait_needed(self, lim: Limit, now: float) -> float:
        log = self._logs[lim.name]
        while log and log[0] <= now - lim.period:
            log.popleft()
        if len(log) < lim.limit:
            return 0.0
        return log[0] + lim.period - now

    async def acquire(self, limits: Sequence[Limit]) -> float:
        waited = 0.0
        while True:
            async with self._lock:
                now = self._clock()
                wait = max((self._wait_needed(lim, now) for lim in limits), default=0.0)
                if wait <= 0:
                    for lim in limits:
                        self._logs[lim.name].append(now)
                        self._periods[lim.name] = lim.period
                    self.waited_total += waited
                    self._acquired += 1
                    if self._acquired % self.PRUNE_EVERY == 0:
                        self._prune(now)
                    return waited
            # Small margin so a slot freed exactly at the boundary is really free at the provider.
            await asyncio.sleep(wait + 0.002)
            waited += wait + 0.002

    def _prune(self, now: float) -> None:
        stale = [name for name, log in self._logs.items()
                 if not log or log[-1] <= now - self._periods.get(name, 0.0)]
        for name in stale:
            del self._logs[name]
            self._periods.pop(name, None)

    @property
    def tracked_keys(self) -> int:
        return len(self._logs)

    @asynccontextmanager
    async def concurrency(self, limits: Sequence[Concurrency]) -> AsyncIterator[None]:
        sems = []
        for c in sorted(limits, key=lambda c: f"{c.scope}:{c.key}"):  # fixed order: no deadlock
            name = f"{c.scope}:{c.key}"
            sem = self._sems.setdefault(name, asyncio.Semaphore(c.limit))
            await sem.acquire()
            sems.append(sem)
        try:
            yield
        finally:
            for sem in sems:
                sem.release()

    @asynccontextmanager
    async def spaced(self, spacings: Sequence[Spacing]) -> AsyncIterator[None]:
        held: list[tuple[str, asyncio.Lock]] = []
        try:
            for sp in sorted(spacings, key=lambda sp: f"{sp.scope}:{sp.key}"):  # fixed order: no deadlock
                name = f"{sp.scope}:{sp.key}"
                lock = self._spacing_locks.setdefault(name, asyncio.Lock())
                self._spacing_period[name] = sp.period
                await lock.acquire()
                held.append((name, lock))
                wait = self._last_answer.get(name, float("-inf")) + sp.period - self._clock()
                if wait > 0:
                    self.waited_total += wait
                    await asyncio.sleep(wait)
            yield
        finally:
            now = self._clock()
            for name, lock in held:
                self._last_answer[name] = now
                lock.release()
            self._spaced_calls += 1
            if held and self._spaced_calls % self.PRUNE_EVERY == 0:  # amortised, like the window logs
                self._prune_spacing(now)

    def _prune_spacing(self, now: float) -> None:
        for name in [n for n, at in self._last_answer.items() if at < now - self._spacing_period.get(n, 0.0)
                     and not self._spacing_locks[n].locked()]:
            del self._last_answer[name]
            del self._spacing_locks[name]
            self._spacing_period.pop(name, None)


_REDIS_ACQUIRE = """
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local member = ARGV[3]
local wait = 0
for i = 1, n do
  local key = KEYS[i]
  local limit = tonumber(ARGV[3 + 2 * i - 1])
  local period = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local w = tonumber(oldest[2]) + period - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return tostring(wait) end
for i = 1, n do
  local period = tonumber(ARGV[3 + 2 * i])
  redis.call('ZADD', KEYS[i], now, member .. ':' .. i)
  redis.call('PEXPIRE', KEYS[i], math.ceil(period * 1000) + 1000)
end
return '0'
"""


class RedisLimiter:
    """Sliding-window limiter shared by all workers through Redis (atomic Lua script)."""

    def __init__(self, url: str, prefix: str = "osi:rl:") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)
        self._prefix = prefix
        self._script = self._redis.register_script(_REDIS_ACQUIRE)
        self._local = MemoryLimiter()  # concurrency stays per process
        self._seq = 0
        self.waited_total = 0.0

    async def acquire(self, limits: Sequence[Limit]) -> float:
        if not limits:
            return 0.0
        waited = 0.0
        keys = [self._prefix + lim.name for lim in limits]
        args: list[Any] = []
        for lim in limits:
            args += [lim.limit, lim.period]
        while True:
            self._seq += 1
            now = time.time()
            res = await self._script(keys=keys, args=[now, len(limits), f"{id(self)}:{self._seq}:{now}", *args])
            wait = float(res)
            if wait <= 0:
                self.waited_total += waited
                return waited
            await asyncio.sleep(wait + 0.002)
            waited += wait + 0.002

    def concurrency(self, limits: Sequence[Concurrency]) -> Any:
        return self._local.concurrency(limits)

    def spaced(self, spacings: Sequence[Spacing]) -> Any:
        return self._local.spaced(spacings)

    async def close(self) -> None:
        await self._redis.aclose()


def make_limiter(backend: str, prefix: str = "osi:rl:") -> MemoryLimiter | RedisLimiter:
    """`memory` for the embedded stack, a `redis://` URL in production (keys under `prefix`)."""
    if backend.startswith("redis://") or backend.startswith("rediss://"):
        return RedisLimiter(backend, prefix)
    return MemoryLimiter()
