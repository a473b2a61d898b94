"""Pacing limiter (in-process and Redis) and the circuit breaker; tests/test_pacing.py has the pacing rules."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from core.breaker import Breaker, BreakerState
from core.errors import TemporaryError
from core.limiter import Concurrency, Limit, MemoryLimiter, RedisLimiter, Spacing


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_memory_limiter_never_exceeds_window() -> None:
    lim = MemoryLimiter()
    limit = Limit("t", uuid.uuid4().hex, 5, 0.2)
    stamps: list[float] = []

    async def one() -> None:
        # The start each call was given (when it wakes up depends on the event loop, not on the limiter).
        slot = await lim.take([limit])
        stamps.append(slot.departure)
        await lim.release(slot)

    await asyncio.gather(*(one() for _ in range(15)))
    stamps.sort()
    # In any window of 0.2 s at most 5 acquisitions: the 6th is at least 0.2 s after the 1st.
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.2 - 1e-3
    assert lim.waited_total > 0


async def test_memory_limiter_takes_all_limits_together() -> None:
    lim = MemoryLimiter()
    number, pair = Limit("n", "p1", 100, 1.0), Limit("pair", "p1:c1", 1, 0.3)
    other = Limit("pair", "p1:c2", 1, 0.3)
    assert await lim.acquire([number, pair]) == 0
    assert await lim.acquire([number, other]) == 0  # another customer is not held back
    waited = await lim.acquire([number, pair])
    assert waited >= 0.29


async def test_memory_limiter_forgets_keys_whose_window_passed() -> None:
    """Pair limits key on every customer: a long-lived worker must not keep them all forever."""
    clock = FakeClock()
    lim = MemoryLimiter(clock=clock)
    lim.PRUNE_EVERY = 100
    number = Limit("n", "p1", 1_000_000, 1.0)
    for i in range(250):
        await lim.acquire([number, Limit("pair", f"p1:c{i}", 1, 6.0)])
    clock.t += 3.0  # the number's window has passed; pairs are still within theirs
    for i in range(250, 300):
        await lim.acquire([number, Limit("pair", f"p1:c{i}", 1, 6.0)])
    assert lim.tracked_keys == 1 + 300  # nothing expired yet except the number log, which is in use again
    clock.t += 10.0
    for i in range(300, 400):
        await lim.acquire([number, Limit("pair", f"p1:c{i}", 1, 6.0)])
    assert lim.tracked_keys == 1 + 100  # only the pairs of the last window and the number remain


async def test_spacing_counts_from_the_previous_answer_not_the_send() -> None:
    """A slow call followed by a fast one must still reach the provider a full period apart."""
    lim = MemoryLimiter()
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    latencies = iter([0.25, 0.0, 0.15, 0.0])  # the provider receives at the END of each latency

    async def call() -> None:
        async with lim.spaced([Spacing("post", "team:C1", 0.2)]):
            await asyncio.sleep(next(latencies))
            arrivals.append(loop.time())

    await asyncio.gather(*(call() for _ in range(4)))
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(g >= 0.2 - 1e-3 for g in gaps), gaps
    # Another key is not held back by this one.
    t0 = loop.time()
    async with lim.spaced([Spacing("post", "team:C2", 5.0)]):
        pass
    assert loop.time() - t0 < 0.05


async def test_spacing_forgets_keys_whose_period_passed() -> None:
    clock = FakeClock()
    lim = MemoryLimiter(clock=clock)
    lim.PRUNE_EVERY = 50
    for i in range(49):
        async with lim.spaced([Spacing("post", f"team:C{i}", 1.0)]):
            pass
    clock.t += 5.0
    async with lim.spaced([Spacing("post", "team:fresh", 1.0)]):
        pass
    assert list(lim._last_answer) == ["post:team:fresh"] and list(lim._spacing_locks) == ["post:team:fresh"]


async def test_concurrency_limit() -> None:
    lim = MemoryLimiter()
    inflight = peak = 0

    async def one() -> None:
        nonlocal inflight, peak
        async with lim.concurrency([Concurrency("mailbox", "m1", 4)]):
            inflight += 1
            peak = max(peak, inflight)
            await asyncio.sleep(0.01)
            inflight -= 1

    await asyncio.gather(*(one() for _ in range(20)))
    assert peak == 4


async def test_redis_limiter_is_shared_between_instances() -> None:
    a, b = RedisLimiter("redis://127.0.0.1:6379/0"), RedisLimiter("redis://127.0.0.1:6379/0")
    limit = Limit("t", uuid.uuid4().hex, 3, 0.5)
    try:
        for lim in (a, b, a):
            assert await lim.acquire([limit]) == 0
        waited = await b.acquire([limit])  # the fourth in the window waits, whichever worker asks
        assert waited >= 0.3
    finally:
        await a.close()
        await b.close()


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    br = Breaker(failure_threshold=3, reset_seconds=10, clock=clock)
    for _ in range(3):
        br.before_call("x")
        br.record(healthy=False)
    assert br.state is BreakerState.OPEN
    with pytest.raises(TemporaryError) as exc:
        br.before_call("x")
    assert exc.value.retry_after == pytest.approx(10)
    clock.t += 10.5
    br.before_call("x")  # trial call allowed
    assert br.state is BreakerState.HALF_OPEN
    with pytest.raises(TemporaryError):
        br.before_call("x")  # only one trial at a time
    br.record(healthy=True)
    assert br.state is BreakerState.CLOSED and br.failures == 0


def test_breaker_reopens_when_trial_fails() -> None:
    clock = FakeClock()
    br = Breaker(failure_threshold=1, reset_seconds=5, clock=clock)
    br.before_call("x")
    br.record(healthy=False)
    clock.t += 6
    br.before_call("x")
    br.record(healthy=False)
    assert br.state is BreakerState.OPEN
    assert list(br.transitions) == ["closed->open", "open->half_open", "half_open->open"]


def test_breaker_transitions_are_bounded_and_exported() -> None:
    from prometheus_client import CollectorRegistry

    from core.breaker import Breakers
    from core.metrics import BreakerCollector

    clock = FakeClock()
    seen: list[tuple[str, str]] = []
    br = Breaker(failure_threshold=1, reset_seconds=1, provider="p", connection_id="c-bounded", clock=clock,
                 on_transition=lambda p, c, old, new: seen.append((old.value, new.value)))
    for _ in range(30):
        br.before_call("x")
        br.record(healthy=False)
        clock.t += 2
    assert len(br.transitions) == 20  # a flapping provider does not grow memory
    assert seen[0] == ("closed", "open") and len(seen) == 59
    breakers = Breakers()
    breakers._breakers[("p", "c-bounded")] = br
    registry = CollectorRegistry()
    registry.register(BreakerCollector(breakers.snapshot))
    assert registry.get_sample_value("osi_breaker_state", {"provider": "p", "connection": "c-bounded"}) == 2


async def test_a_cancelled_trial_call_releases_the_breaker(runtime, sandbox) -> None:
    """The half-open trial is always given back: cancelling it mid-call must not leave the circuit stuck."""
    import asyncio

    import httpx

    from activities.whatsapp.client import WhatsAppClient
    from activities.whatsapp.provider import PROVIDER
    from tests import seed

    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    br = runtime.breakers.get("whatsapp", wa.connection_id)
    br.state, br.opened_at = BreakerState.OPEN, -1e9  # open, cool-down long over: the next call is the trial
    async with httpx.AsyncClient() as http:
        await http.put(f"{sandbox.url}/_sandbox/faults/whatsapp", json={"latency_ms": 5000})
    try:
        async with runtime.action(PROVIDER, wa.organization_id, "default", "whatsapp.test") as act:
            call = asyncio.ensure_future(WhatsAppClient(act).phone_number())
            while not br.trial_in_flight:
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
    finally:
        async with httpx.AsyncClient() as http:
            await http.delete(f"{sandbox.url}/_sandbox/faults")
    assert br.state is BreakerState.HALF_OPEN and not br.trial_in_flight
    br.before_call("x")  # a new trial is allowed
    br.record(healthy=True)
    assert br.state is BreakerState.CLOSED


async def test_an_open_breaker_makes_the_connection_degraded(runtime, sandbox) -> None:
    import asyncio

    from tests import seed

    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    br = runtime.breakers.get("whatsapp", wa.connection_id)
    for _ in range(br.failure_threshold):
        br.before_call("x")
        br.record(healthy=False)
    for _ in range(100):
        conn = runtime.store.get_connection(wa.connection_id)
        if conn.health == "degraded":
            break
        await asyncio.sleep(0.02)
    assert conn.health == "degraded" and conn.health_detail["breaker"] == "open"
