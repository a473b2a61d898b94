"""Proactive rate limiting: pace calls at the provider's limit instead of failing (in-process or Redis)."""

from __future__ import annotations

import asyncio
import itertools
import time
from bisect import bisect_right, insort
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

# How long a slot whose answer never came (a worker killed mid-request) stays held: longer than any HTTP
# call may take (20 s client timeout), so a live request is always counted, a dead one is freed eventually.
HOLD_MAX = 60.0
RTT_SAMPLES = 256
# A 429 without Retry-After pauses the key this long (capped by its own period).
THROTTLE_PAUSE = 1.0


@dataclass(frozen=True)
class Limit:
    """At most `limit` calls per `period` seconds for one key of a scope, paced by the provider's clock.

    Two rules, both counted where the provider counts, at each request's *arrival*:

    - The window: no more than `limit` arrivals in any `period`. Our clock only knows when a request left
      and when its answer came back, and the provider received it somewhere in between. So a slot is held
      from the moment it is taken until the answer, then kept for `period` after the answer. A
      request delayed anywhere (network, a starved event loop, a paused provider process) keeps its slot
      for as long as it was delayed; no fixed margin is needed.
    - Pacing (GCRA, virtual scheduling): calls start `period / limit` apart, `burst` of them may go
      together. `burst=1` spreads a number's 80 msg/s evenly over the second; `burst=None` (= `limit`)
      leaves only the window (limits stated as a budget, like 250 customers per 24 h).
    """

    scope: str
    key: str
    limit: int
    period: float
    burst: int | None = None

    @property
    def name(self) -> str:
        return f"{self.scope}:{self.key}"

    @property
    def interval(self) -> float:
        return self.period / self.limit

    @property
    def tolerance(self) -> float:
        """GCRA's tau: how far ahead of the even schedule a call may start."""
        return (max(1, min(self.burst or self.limit, self.limit)) - 1) * self.interval


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` calls in flight at once for one key (Graph: 4 per mailbox)."""

    scope: str
    key: str
    limit: int


@dataclass(frozen=True)
class Spacing:
    """Consecutive calls for one key start at least `period` seconds after the previous one's answer.

    In-process and one call at a time per key; `Limit` holds its slots until the answer too, across workers.
    """

    scope: str
    key: str
    period: float


@dataclass
class Slot:
    """One call's reservation in every limit it was paced by; released with the answer."""

    token: str
    limits: tuple[Limit, ...]
    departure: float
    waited: float
    released: bool = False


class Limiter(Protocol):
    async def acquire(self, limits: Sequence[Limit]) -> float:
        """Wait for a slot in every limit, counted as if answered at once; return seconds waited."""

    async def take(self, limits: Sequence[Limit]) -> Slot:
        """Wait for a slot in every limit; held until `release` (call it with the answer)."""

    async def release(self, slot: Slot) -> None:
        """The answer came: the slot's window runs from now (less the scope's fastest round trip)."""

    async def penalize(self, limits: Sequence[Limit], seconds: float | None) -> None:
        """The provider throttled us (429 / 130429): no call on these keys for `seconds` (Retry-After)."""

    def concurrency(self, limits: Sequence[Concurrency]) -> Any:
        """Async context manager holding one in-flight slot per limit."""

    def spaced(self, spacings: Sequence[Spacing]) -> Any:
        """Async context manager: one call at a time per key, started `period` after the last answer."""


def pause_for(lim: Limit, seconds: float | None) -> float:
    """Retry-After when the provider gave one, else a second (at most the key's period)."""
    return seconds if seconds is not None and seconds > 0 else min(lim.period, THROTTLE_PAUSE)


class RttStats:
    """Recent round trips per scope (slot start to answer, on the limiter's clock): what holding slots to the
    answer costs (benchmarks report them)."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=RTT_SAMPLES))

    def add(self, scope: str, rtt: float) -> None:
        self._samples[scope].append(max(0.0, rtt))

    def recent(self, scope: str) -> list[float]:
        return list(self._samples.get(scope, ()))


@dataclass
class _KeyState:
    tat: float = float("-inf")  # GCRA theoretical arrival time
    held: dict[str, float] = field(default_factory=dict)  # token → departure, for calls not answered yet
    released: list[float] = field(default_factory=list)  # sorted instants from which a slot's window runs
    period: float = 0.0


class MemoryLimiter:
    """In-process pacing limiter; one per worker process. `clock` and `sleep` are injectable for tests."""

    # Pair limits key on (number, customer): millions of keys over a worker's life. Every this many
    # acquisitions, keys with nothing held, nothing in the window and a past schedule are dropped.
    PRUNE_EVERY = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._keys: dict[str, _KeyState] = {}
        self._tokens = itertools.count()
        self._acquired = 0
        self.rtt = RttStats()
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._spacing_locks: dict[str, asyncio.Lock] = {}
        self._last_answer: dict[str, float] = {}
        self._spaced_calls = 0
        self._spacing_period: dict[str, float] = {}
        self.waited_total = 0.0

    def _plan(self, limits: Sequence[Limit], now: float) -> tuple[float, bool]:
        """(start instant, whether to reserve it). Not reserved: come back then (see module docs)."""
        t, own, poll = now, [], False
        for lim in limits:
            st = self._keys.setdefault(lim.name, _KeyState(period=lim.period))
            st.period = lim.period
            del st.released[:bisect_right(st.released, now - lim.period)]
            mine = now
            room = lim.limit - 1 - len(st.held)  # arrivals besides ours the window may still hold
            if room < 0:
                # Every slot is in flight: look again when, at the pace, one would be answered.
                poll = True
                mine = now + max(0.002, (len(st.held) - lim.limit + 1) * lim.interval)
            elif len(st.released) > room:
                mine = max(mine, st.released[-(room + 1)] + lim.period)
            mine = max(mine, st.tat - lim.tolerance)
            own.append(mine)
            t = max(t, mine)
        # Reserve only when no key would be booked much later than it needs itself (a customer's pair
        # limit must not hold the number's evenly paced schedule for seconds).
        reserve = not poll and all(t - o <= max(lim.tolerance, lim.interval) + 1e-9
                                   for lim, o in zip(limits, own, strict=True))
        return t, reserve

    async def take(self, limits: Sequence[Limit]) -> Slot:
        token = str(next(self._tokens))
        waited = 0.0
        while True:
            now = self._clock()
            start, reserve = self._plan(limits, now)
            if reserve:
                for lim in limits:
                    st = self._keys[lim.name]
                    st.tat = max(st.tat, start) + lim.interval
                    st.held[token] = start
                slot = Slot(token, tuple(limits), start, waited)
                self._acquired += 1
                if self._acquired % self.PRUNE_EVERY == 0:
                    self._prune(now)
                if start > now:
                    try:
                        await self._sleep(start - now)
                    except BaseException:
                        self._forget(slot)
                        raise
                    slot.waited += start - now
                self.waited_total += slot.waited
                return slot
            await self._sleep(start - now)
            waited += start - now

    def _forget(self, slot: Slot) -> None:
        """A reservation never used (cancelled while waiting): nothing arrived, nothing to count."""
        slot.released = True
        for lim in slot.limits:
            if (st := self._keys.get(lim.name)) is not None:
                st.held.pop(slot.token, None)

    async def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        now = self._clock()
        for lim in slot.limits:
            st = self._keys.get(lim.name)
            if st is None or st.held.pop(slot.token, None) is None:
                continue
            insort(st.released, max(slot.departure, now))
        if slot.limits and now > slot.departure:
            for scope in {lim.scope for lim in slot.limits}:
                self.rtt.add(scope, now - slot.departure)

    async def acquire(self, limits: Sequence[Limit]) -> float:
        """A slot counted from its start (no answer to wait for): extra members of a batch call."""
        slot = await self.take(limits)
        await self._release_at_departure(slot)
        return slot.waited

    async def _release_at_departure(self, slot: Slot) -> None:
        slot.released = True
        for lim in slot.limits:
            st = self._keys.get(lim.name)
            if st is not None and st.held.pop(slot.token, None) is not None:
                insort(st.released, slot.departure)

    async def penalize(self, limits: Sequence[Limit], seconds: float | None) -> None:
        now = self._clock()
        for lim in limits:
            st = self._keys.setdefault(lim.name, _KeyState(period=lim.period))
            st.tat = max(st.tat, now + pause_for(lim, seconds) + lim.tolerance)

    def _prune(self, now: float) -> None:
        stale = [name for name, st in self._keys.items()
                 if not st.held and st.tat <= now and (not st.released or st.released[-1] <= now - st.period)]
        for name in stale:
            del self._keys[name]

    @property
    def tracked_keys(self) -> int:
        return len(self._keys)

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
                    await self._sleep(wait)
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


# Every script starts with `now`: Redis's own clock, unless a test passes one as ARGV[1].
_REDIS_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# The same rules as MemoryLimiter._plan, atomically over every worker. Per limit two keys: a sorted set of
# slots (score: the instant its window runs from; a call not yet answered scores its start + HOLD_MAX, so
# "in flight" is "scored in the future") and the GCRA schedule. Time is Redis's own clock unless a test
# passes one, so workers on different hosts share one clock.
_REDIS_TAKE = _REDIS_NOW + """
-- Numbers go back to Redis with microseconds (Lua's own tostring keeps 14 digits: 0.1 ms of an epoch).
local function f(x) return string.format('%.6f', x) end
local token = ARGV[2]
local n = tonumber(ARGV[3])
local hold = tonumber(ARGV[4])
local start = now
local own = {}
local poll = false
for i = 1, n do
  local zkey, tkey = KEYS[2 * i - 1], KEYS[2 * i]
  local b = 4 + 4 * (i - 1)
  local limit, period = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local interval, tau = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now - period)
  local mine = now
  -- Answered slots score at most now; held ones at their start + hold, far ahead (1 ms spares rounding).
  local held = redis.call('ZCOUNT', zkey, '(' .. f(now + 0.001), '+inf')
  local room = limit - 1 - held
  if room < 0 then
    poll = true
    mine = now + math.max(0.002, (held - limit + 1) * interval)
  else
    local nth = redis.call('ZREVRANGEBYSCORE', zkey, f(now + 0.001), '-inf', 'WITHSCORES', 'LIMIT', room, 1)
    if nth[2] then mine = math.max(mine, tonumber(nth[2]) + period) end
  end
  local tat = tonumber(redis.call('GET', tkey) or '-1e18')
  mine = math.max(mine, tat - tau)
  own[i] = mine
  if mine > start then start = mine end
end
local reserve = not poll
if reserve then
  for i = 1, n do
    local b = 4 + 4 * (i - 1)
    if start - own[i] > math.max(tonumber(ARGV[b + 4]), tonumber(ARGV[b + 3])) + 1e-9 then reserve = false end
  end
end
if not reserve then return {f(start - now), 0, f(start)} end
for i = 1, n do
  local zkey, tkey = KEYS[2 * i - 1], KEYS[2 * i]
  local b = 4 + 4 * (i - 1)
  local period, interval = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local tat = tonumber(redis.call('GET', tkey) or '-1e18')
  local nxt = math.max(tat, start) + interval
  redis.call('SET', tkey, f(nxt), 'PX', math.ceil((nxt - now + period) * 1000) + 1000)
  redis.call('ZADD', zkey, f(start + hold), token)
  redis.call('PEXPIRE', zkey, math.ceil((start - now + hold + period) * 1000) + 1000)
end
return {f(start - now), 1, f(start)}
"""

# Release: each slot's window runs from the answer (now); at_start=1 counts it from its start instead (no answer to
# wait for); forget=1 drops it (never sent). Returns Redis's now.
_REDIS_RELEASE = _REDIS_NOW + """
local token, hold, at_start, forget = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5] == '1'
for i = 1, #KEYS do
  local s = redis.call('ZSCORE', KEYS[i], token)
  if s then
    if forget then
      redis.call('ZREM', KEYS[i], token)
    else
      local start = tonumber(s) - hold
      local from = start
      if not at_start then from = math.max(start, now) end
      redis.call('ZADD', KEYS[i], 'XX', string.format('%.6f', from), token)
    end
  end
end
return string.format('%.6f', now)
"""

_REDIS_PENALIZE = _REDIS_NOW + """
for i = 1, #KEYS do
  local until_ = now + tonumber(ARGV[1 + 2 * i - 1]) + tonumber(ARGV[1 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '-1e18')
  if until_ > tat then
    redis.call('SET', KEYS[i], string.format('%.6f', until_), 'PX', math.ceil((until_ - now) * 1000) + 1000)
  end
end
return 1
"""


class RedisLimiter:
    """Pacing limiter shared by all workers through Redis (atomic Lua scripts, Redis's clock)."""

    def __init__(self, url: str, prefix: str = "osi:rl:", *, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)
        self._prefix = prefix
        self._take = self._redis.register_script(_REDIS_TAKE)
        self._release = self._redis.register_script(_REDIS_RELEASE)
        self._penalize = self._redis.register_script(_REDIS_PENALIZE)
        self._clock = clock  # None: Redis's TIME
        self._sleep = sleep
        self._local = MemoryLimiter()  # concurrency and spacing stay per process
        self._id = f"{id(self):x}:{time.time_ns():x}"
        self._seq = itertools.count()
        self.rtt = RttStats()
        self.waited_total = 0.0

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def _keys(self, limits: Sequence[Limit]) -> list[str]:
        return [k for lim in limits for k in (self._prefix + lim.name, self._prefix + lim.name + ":tat")]

    async def take(self, limits: Sequence[Limit]) -> Slot:
        token = f"{self._id}:{next(self._seq)}"
        if not limits:
            return Slot(token, (), 0.0, 0.0, released=True)
        args: list[Any] = []
        for lim in limits:
            args += [lim.limit, lim.period, lim.interval, lim.tolerance]
        waited = 0.0
        while True:
            wait_s, reserved, start_s = await self._take(keys=self._keys(limits),
                                                         args=[self._now(), token, len(limits), HOLD_MAX, *args])
            wait = max(0.0, float(wait_s))
            if int(reserved):
                slot = Slot(token, tuple(limits), float(start_s), waited)
                if wait > 0:
                    try:
                        await self._sleep(wait)
                    except BaseException:
                        await self._forget(slot)
                        raise
                    slot.waited += wait
                self.waited_total += slot.waited
                return slot
            await self._sleep(wait)
            waited += wait

    async def _forget(self, slot: Slot) -> None:
        slot.released = True
        await self._release(keys=[self._prefix + lim.name for lim in slot.limits],
                            args=[self._now(), slot.token, HOLD_MAX, 0, 1])

    async def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        now = float(await self._release(keys=[self._prefix + lim.name for lim in slot.limits],
                                        args=[self._now(), slot.token, HOLD_MAX, 0, 0]))
        if now > slot.departure:
            for scope in {lim.scope for lim in slot.limits}:
                self.rtt.add(scope, now - slot.departure)

    async def acquire(self, limits: Sequence[Limit]) -> float:
        slot = await self.take(limits)
        if not slot.released:
            slot.released = True
            await self._release(keys=[self._prefix + lim.name for lim in slot.limits],
                                args=[self._now(), slot.token, HOLD_MAX, 1, 0])
        return slot.waited

    async def penalize(self, limits: Sequence[Limit], seconds: float | None) -> None:
        if not limits:
            return
        args: list[Any] = [self._now()]
        for lim in limits:
            args += [pause_for(lim, seconds), lim.tolerance]
        await self._penalize(keys=[self._prefix + lim.name + ":tat" for lim in limits], args=args)

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
