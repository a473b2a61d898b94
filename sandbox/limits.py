"""Sliding-window counting of arrivals, shared by the fakes' rate limits."""

from __future__ import annotations

from bisect import bisect_right, insort


class SlidingWindow:
    """Admitted arrival instants of one limited key (a phone number, a workspace's method...).

    An arrival is admitted while fewer than `limit` admitted arrivals lie in the `window` seconds
    up to and including its own instant. Instants are the provider-side arrival times, which
    concurrent requests may reach the limiter in any order (each finished its inbound delay at its
    own pace), so the instants are kept sorted instead of assumed monotonic.
    """

    def __init__(self) -> None:
        self.times: list[float] = []

    def count(self, at: float, window: float) -> int:
        return bisect_right(self.times, at) - bisect_right(self.times, at - window)

    def admit(self, at: float, limit: int, window: float) -> bool:
        # Keep two windows of history: a late-processed earlier arrival still finds its neighbours.
        del self.times[:bisect_right(self.times, at - 2 * window)]
        if self.count(at, window) >= limit:
            return False
        insort(self.times, at)
        return True

    def retry_after(self, at: float, window: float) -> float:
        """Seconds from `at` until the oldest arrival in its window leaves it."""
        start = bisect_right(self.times, at - window)
        return max(0.0, self.times[start] + window - at) if start < len(self.times) else 0.0
