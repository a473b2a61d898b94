"""Metrics that mean something: webhooks by provider and outcome, signature failures, request durations by route,
breaker state, connection health, and the Temporal SDK's own metrics from the worker's runtime."""

from __future__ import annotations

import json
import logging
import socket
import uuid

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.whatsapp.webhooks import sign
from core.breaker import Breakers
from core.metrics import BreakerCollector
from core.payloads import compact_data_converter
from core.settings import Settings
from tests import seed
from worker.main import serve_metrics
from worker.stack import free_port


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(url)).text


async def test_gateway_counts_webhooks_signature_failures_and_request_durations(gateway, runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    url = f"{gateway}/webhooks/whatsapp/{wa.connection_id}"
    before = await scrape(f"{gateway}/metrics")
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, content=body, headers={"X-Hub-Signature-256": sign("wrong", body)})
                ).status_code == 401
        assert (await http.post(url, content=body, headers={"X-Hub-Signature-256": sign(wa.app_secret, body)})
                ).status_code == 200
        assert (await http.get(f"{gateway}/healthz")).status_code == 200
    after = await scrape(f"{gateway}/metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("osi_webhooks_total", provider="whatsapp", outcome="accepted") == 1
    assert delta("osi_webhooks_total", provider="whatsapp", outcome="signature_failed") == 1
    assert delta("osi_webhook_signature_failures_total", provider="whatsapp") == 1
    route = "/webhooks/whatsapp/{connection_id}"
    assert delta("osi_http_request_seconds_count", route=route, method="POST", status="401") == 1
    assert delta("osi_http_request_seconds_count", route="/healthz", method="GET", status="200") == 1
    # Connection health comes from the store at scrape time.
    assert value(after, "osi_connection_health", organization=wa.organization_id, integration="WHATSAPP_BUSINESS",
                 connection="default", health="unknown") == 1

    # Too deep for LimitsMiddleware: refused before any route runs, and still measured.
    async with httpx.AsyncClient() as http:
        deep = b"[" * 100 + b"]" * 100
        assert (await http.post(url, content=deep, headers={"Content-Type": "application/json"})).status_code == 400
    refused = await scrape(f"{gateway}/metrics")
    assert value(refused, "osi_http_request_seconds_count", route="unmatched", method="POST", status="400") \
        - value(after, "osi_http_request_seconds_count", route="unmatched", method="POST", status="400") == 1


def test_gateway_middleware_is_plain_asgi(settings) -> None:
    """Starlette's BaseHTTPMiddleware (`@app.middleware("http")`) adds a task group and memory streams to every
    request: on the webhook path that cost more CPU than verifying the signature (bench/webhook_ingest.py)."""
    from starlette.middleware.base import BaseHTTPMiddleware

    from gateway.app import create_app

    app = create_app(settings)
    assert app.user_middleware, "the gateway's own middleware (limits, metrics)"
    assert not [m for m in app.user_middleware if m.cls is BaseHTTPMiddleware or (
        isinstance(m.cls, type) and issubclass(m.cls, BaseHTTPMiddleware))]


def test_breaker_state_is_exported_per_provider_and_connection() -> None:
    breakers = Breakers(failure_threshold=2, reset_seconds=30)
    breakers.get("slack", "c1").record(healthy=True)
    sick = breakers.get("whatsapp", "c2")
    sick.record(healthy=False)
    sick.record(healthy=False)
    reg = CollectorRegistry()
    reg.register(BreakerCollector(breakers.snapshot))
    text = generate_latest(reg).decode()
    assert value(text, "osi_breaker_state", provider="slack", connection="c1") == 0
    assert value(text, "osi_breaker_state", provider="whatsapp", connection="c2") == 2


@workflow.defn(name="MetricsProbe", sandboxed=False)  # this test module imports httpx
class MetricsProbe:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hi {name}"


async def test_worker_serves_sdk_metrics_and_survives_a_busy_metrics_port(settings, caplog) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        sdk_port = free_port()
        s = Settings(worker_metrics_port=taken, worker_sdk_metrics_port=sdk_port, _env_file=None)  # type: ignore[call-arg]
        with caplog.at_level(logging.ERROR, logger="osi.worker"):
            runtime = serve_metrics(s)
    assert runtime is not None
    assert any("OSI_WORKER_METRICS_PORT" in r.getMessage() and str(taken) in r.getMessage() for r in caplog.records)
    client = await Client.connect(settings.temporal_address, runtime=runtime, data_converter=compact_data_converter)
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[MetricsProbe]):
        assert await client.execute_workflow(MetricsProbe.run, "x", id=queue, task_queue=queue) == "hi x"
    text = await scrape(f"http://127.0.0.1:{sdk_port}/metrics")
    assert "temporal_workflow_completed" in text and "temporal_request" in text
    # A busy SDK port turns its endpoint off the same way, never the worker.
    with caplog.at_level(logging.ERROR, logger="osi.worker"):
        assert serve_metrics(Settings(worker_metrics_port=0, worker_sdk_metrics_port=sdk_port,
                                      _env_file=None)) is None  # type: ignore[call-arg]
    assert any("OSI_WORKER_SDK_METRICS_PORT" in r.getMessage() for r in caplog.records)


