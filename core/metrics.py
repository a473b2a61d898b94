"""Prometheus metrics for provider calls, limiter waits and webhooks (scraped from worker and gateway)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVIDER_CALLS = Counter(
    "osi_provider_calls_total", "Provider API calls by outcome class", ["provider", "action", "outcome"]
)
PROVIDER_LATENCY = Histogram(
    "osi_provider_call_seconds", "Provider API call latency", ["provider", "action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
LIMITER_WAIT = Histogram(
    "osi_limiter_wait_seconds", "Time spent waiting for a rate-limit slot", ["provider"],
    buckets=(0, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
)
WEBHOOKS = Counter("osi_webhooks_total", "Webhook deliveries by result", ["provider", "result"])
BREAKER_STATE = Gauge("osi_breaker_state", "Circuit breaker state per connection: 0 closed, 1 half-open, 2 open",
                      ["provider", "connection"])
