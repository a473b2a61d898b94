"""The worker process: every plugin's activities and workflows on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from prometheus_client import REGISTRY, start_http_server
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.worker import Worker

from core.alerting import waker
from core.logs import configure_logging
from core.metrics import BreakerCollector
from core.runtime import Runtime
from core.settings import Settings, get_settings
from core.temporal import connect, ensure_search_attributes
from core.visibility import VisibilityInterceptor
from worker import registry
from worker.migrate import upgrade

log = logging.getLogger("osi.worker")


def build_worker(client: Client, rt: Runtime, task_queue: str | None = None,
                 registrations: Sequence[registry.Registration] = registry.REGISTRATIONS, *,
                 search_attributes: bool = True) -> Worker:
    """A worker with every registered plugin's activities (bound to `rt`, whose registry lists the plugins)
    and workflows; activity names must be unique (the SDK enforces it). Every workflow gets our search
    attributes, summary memo and typed failures (`core.visibility`); `search_attributes=False` when the
    namespace lacks them."""
    return Worker(
        client,
        task_queue=task_queue or rt.settings.task_queue,
        workflows=registry.workflows(registrations),
        activities=registry.activities(rt),
        # Every activity is async (I/O on the shared httpx client), so no thread pool is needed.
        max_concurrent_activities=200,
        # An input that fails validation fails the workflow at once with the field named, instead of
        # retrying the first workflow task forever (a start from plain JSON can carry anything).
        workflow_failure_exception_types=[ValidationError],
        interceptors=[VisibilityInterceptor(registry.workflow_integrations(registrations),
                                            upsert_attributes=search_attributes)],
    )


def serve_metrics(settings: Settings) -> TemporalRuntime | None:
    """Our metrics on OSI_WORKER_METRICS_PORT and the SDK's (through its runtime's Prometheus exporter) on
    OSI_WORKER_SDK_METRICS_PORT. A busy port turns that endpoint off with an error naming the variable; the
    worker itself runs on (losing metrics must not stop sends)."""
    if settings.worker_metrics_port:
        try:
            start_http_server(settings.worker_metrics_port, addr=settings.host)
        except OSError as exc:
            log.error("metrics are off: port %s (OSI_WORKER_METRICS_PORT) cannot be bound: %s; set "
                      "OSI_WORKER_METRICS_PORT to a free port (0 turns the endpoint off)",
                      settings.worker_metrics_port, exc)
    if not settings.worker_sdk_metrics_port:
        return None
    try:
        return TemporalRuntime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
            bind_address=f"{settings.host}:{settings.worker_sdk_metrics_port}", durations_as_seconds=True)))
    except ValueError as exc:
        log.error("Temporal SDK metrics are off: port %s (OSI_WORKER_SDK_METRICS_PORT) cannot be bound: %s",
                  settings.worker_sdk_metrics_port, exc)
        return None


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    sdk_runtime = serve_metrics(settings)
    upgrade(settings.database_url)
    client = await connect(settings, runtime=sdk_runtime)
    rt = Runtime(settings, registry=registry.registry())
    REGISTRY.register(BreakerCollector(rt.breakers.snapshot))  # per process: each worker has its own breakers
    rt.alert_hook = waker(client, settings.task_queue)  # a recorded alert wakes its organization's delivery
    worker = build_worker(client, rt, search_attributes=await ensure_search_attributes(client))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
        log.info("shutting down: finishing in-flight tasks")
    await rt.close()


def main() -> None:
    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    asyncio.run(run_worker())
