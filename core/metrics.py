"""Prometheus metrics: provider calls, limiter waits, webhooks, HTTP requests, breakers, connection health.

The worker serves them on OSI_WORKER_METRICS_PORT (the Temporal SDK's own on OSI_WORKER_SDK_METRICS_PORT), the
gateway on `/metrics`. Breaker state and connection health are read when scraped (collectors), not pushed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
WEBHOOKS = Counter(
    "osi_webhooks_total", "Provider webhook requests by outcome (accepted, signature_failed, rejected, error)",
    ["provider", "outcome"])
SIGNATURE_FAILURES = Counter(
    "osi_webhook_signature_failures_total", "Webhook requests refused because their signature did not verify",
    ["provider"])
HTTP_REQUESTS = Histogram(
    "osi_http_request_seconds", "Gateway HTTP requests by route template, method and status",
    ["route", "method", "status"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

log = logging.getLogger("osi.metrics")

BREAKER_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


def webhook_outcome(status: int) -> str:
    """How a webhook request ended, from the gateway's answer (verification failures are 401)."""
    if status == 401:
        return "signature_failed"
    if status < 400:
        return "accepted"
    return "rejected" if status < 500 else "error"


class BreakerCollector(Collector):
    """`osi_breaker_state{provider,connection}` (0 closed, 1 half-open, 2 open) of one process's breakers."""

    def __init__(self, snapshot: Callable[[], dict[str, str]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("osi_breaker_state", "Circuit breaker per provider and connection: 0 closed, "
                                  "1 half-open, 2 open", labels=["provider", "connection"])
        for key, state in sorted(self.snapshot().items()):
            provider, _, connection = key.partition("/")
            gauge.add_metric([provider, connection], BREAKER_STATE_VALUE.get(state, 2))
        yield gauge


class ConnectionHealthCollector(Collector):
    """`osi_connection_health{organization,integration,connection,health}` = 1 per connection, read from the
    store at most every `ttl` seconds (scrapes must not hammer the database)."""

    def __init__(self, rows: Callable[[], Sequence[Any]], ttl: float = 15.0) -> None:
        self.rows = rows
        self.ttl = ttl
        self._cache: tuple[float, list[tuple[str, str, str, str, str]]] = (0.0, [])

    def collect(self) -> Iterable[GaugeMetricFamily]:
        at, cached = self._cache
        if time.monotonic() - at > self.ttl:
            try:
                cached = [(c.organization_id, c.integration_type, c.name, c.health, c.status) for c in self.rows()]
            except Exception as exc:  # the store is down: report what we knew rather than failing the scrape
                log.warning("connection health metrics: the store did not answer: %s", exc)
            self._cache = (time.monotonic(), cached)
        health = GaugeMetricFamily("osi_connection_health", "Connection health (1 for the current value)",
                                   labels=["organization", "integration", "connection", "health"])
        status = GaugeMetricFamily("osi_connection_status", "Connection status (1 for the current value)",
                                   labels=["organization", "integration", "connection", "status"])
        for org, itype, name, h, st in cached:
            health.add_metric([org, itype, name, h], 1)
            status.add_metric([org, itype, name, st], 1)
        yield health
        yield status
