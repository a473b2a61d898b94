"""Pacing (GCRA spacing, slots held until the answer, Retry-After pauses) on an injected clock: no timed asserts."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest

from core.limiter import HOLD_MAX, Limit, MemoryLimiter, RedisLimiter

REDIS = "redis://127.0.0.1:6379/0"


class FakeTime:
    """A clock that only moves when someone sleeps: every wait is exact and the test takes no real time."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def windows_hold(starts: list[float], limit: int, period: float) -> bool:
    """No `limit + 1` starts within one `period` (the provider's sliding window)."""
    starts = sorted(starts)
    return all(starts[i + limit] - starts[i] >= period - 1e-9 for i in range(len(starts) - limit))


async def test_calls_are_spaced_evenly_at_the_limit() -> None:
    clock = FakeTime()
    lim = MemoryLimiter(clock=clock, sleep=clock.sleep)
    number = Limit("wa", "n1", 80, 1.0, burst=1)
    starts = []
    for _ in range(400):
        slot = await lim.take([number])
        starts.append(slot.departure)
        await lim.release(slot)  # answered at once
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(starts)}
    assert gaps == {round(1 / 80, 9)}  # evenly 12.5 ms apart: no burst, no gap
    assert windows_hold(starts, 80, 1.0)
    assert starts[-1] - starts[0] == pytest.approx(399 / 80)  # the whole limit, no margin


async def test_without_burst_1_the_window_alone_applies() -> None:
    clock = FakeTime()
    lim = MemoryLimiter(clock=clock, sleep=clock.sleep)
    pair = Limit("pair", "n1:c1", 3, 6.0)  # a budget: 3 together, then the window
    starts = []
    for _ in range(4):
        slot = await lim.take([pair])
        starts.append(slot.departure)
        await lim.release(slot)
    assert starts[:3] == [1000.0] * 3 and starts[3] == pytest.approx(1006.0)


async def test_a_slot_is_held_until_the_answer() -> None:
    """The provider counted the request somewhere before its answer: the window runs from the answer."""
    clock = FakeTime()
    lim = MemoryLimiter(clock=clock, sleep=clock.sleep)
    w = Limit("wa", "n1", 2, 1.0)
    a, b = await lim.take([w]), await lim.take([w])
    assert a.departure == b.departure == 1000.0
    clock.t = 1000.3
    await lim.release(a)  # a slow answer: 300 ms of round trip
    clock.t = 1000.05 + 0.3
    await lim.release(b)
    c = await lim.take([w])
    # Counted from its departure, c could leave at 1001.0 and reach the provider before a's arrival + 1 s.
    assert c.departure == pytest.approx(1001.3)


async def test_every_slot_in_flight_means_wait_for_an_answer() -> None:
    clock = FakeTime()
    lim = MemoryLimiter(clock=clock, sleep=clock.sleep)
    post = Limit("slack.post_channel", "T1:C1", 1, 1.0, burst=1)
    first = await lim.take([post])
    start, reserve = lim._plan([post], clock())
    assert not reserve and start > clock()  # no booking while the only slot is in flight: look again later
    clock.t += 0.2
    await lim.release(first)
    second = await lim.take([post])
    assert second.departure == pytest.approx(1001.2)  # a second after Slack's answer, not after our send


async def test_a_long_pair_wait_does_not_book_the_numbers_schedule() -> None:
    clock = FakeTime()
    lim = MemoryLimiter(clock=clock, sleep=clock.sleep)
    number, pair = Limit("wa", "n1", 80, 1.0, burst=1), Limit("pair", "n1:c1", 1, 6.0)
    await lim.release(await lim.take([number, pair]))
    start, reserve = lim._plan([number, pair], clock())
    assert not reserve and start == pytest.approx(1006.0)
    other = await lim.take([number, Limit("pair", "n1:c2", 1, 6.0)])
    assert other.departure == pytest.approx(1000.0 + 1 / 80)  # another customer is not held back


async def test_a_cancelled_wait_gives_its_reservation_back() -> None:
    lim = MemoryLimiter()
    w = Limit("wa", uuid.uuid4().hex, 1, 30.0, burst=1)
    await lim.release(await lim.take([w]))
    task = asyncio.ensure_future(lim.take([w]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not lim._keys[w.name].held


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_retry_after_pauses_the_key(backend: str) -> None:
    clock = FakeTime()
    lim: Any = (MemoryLimiter(clock=clock, sleep=clock.sleep) if backend == "memory"
                else RedisLimiter(REDIS, f"osi:test:{uuid.uuid4().hex}:", clock=clock, sleep=clock.sleep))
    number = Limit("wa", "n1", 80, 1.0, burst=1)
    pair = Limit("pair", "n1:c1", 45, 270.0)
    try:
        await lim.release(await lim.take([number, pair]))
        await lim.penalize([number, pair], 2.5)  # Retry-After: 2.5
        slot = await lim.take([number, pair])
        assert slot.departure == pytest.approx(1002.5)
        await lim.release(slot)
        await lim.penalize([number], None)  # 130429 says no Retry-After: a second (the key's period)
        assert (await lim.take([number])).departure == pytest.approx(1003.5)
    finally:
        if backend == "redis":
            await lim.close()


async def test_two_workers_share_one_numbers_pace_through_redis() -> None:
    clock = FakeTime(float(int(time.time())))
    prefix = f"osi:test:{uuid.uuid4().hex}:"
    a = RedisLimiter(REDIS, prefix, clock=clock, sleep=clock.sleep)
    b = RedisLimiter(REDIS, prefix, clock=clock, sleep=clock.sleep)
    number = Limit("wa", "n1", 10, 1.0, burst=1)
    try:
        starts = []
        for i in range(30):
            lim = (a, b)[i % 2]
            slot = await lim.take([number])
            starts.append(slot.departure)
            clock.t += 0.002
            await lim.release(slot)
        gaps = [round(y - x, 6) for x, y in itertools.pairwise(starts)]
        # One schedule for both workers: 100 ms apart whoever asks, plus each answer's 2 ms round trip
        # every tenth call (the window holds a slot until its answer).
        assert all(g >= 0.1 - 1e-6 for g in gaps) and windows_hold(starts, 10, 1.0)
        assert starts[-1] - starts[0] == pytest.approx(2.9 + 0.004, abs=0.0025)
        # The window is shared too: a slot b took and never answered (its worker was killed) holds a's next
        # call for HOLD_MAX, after which it counts as answered then.
        post = Limit("slack.post_channel", "T1:C1", 1, 1.0, burst=1)
        lost = await b.take([post])
        nxt = await a.take([post])
        assert nxt.departure == pytest.approx(lost.departure + HOLD_MAX + 1.0, abs=0.01)
    finally:
        await a.close()
        await b.close()
