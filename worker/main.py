"""The worker process: every plugin's activities and workflows on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from prometheus_client import REGISTRY, start_http_server
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.worker import Worker, WorkerDeploymentConfig

from core.alerting import waker
from core.logs import configure_logging
from core.metrics import BreakerCollector
from core.runtime import Runtime
from core.settings import Settings, get_settings
from core.temporal import client_config, connect, describe, ensure_search_attributes
from core.visibility import VisibilityInterceptor
from worker import registry
from worker.health import WorkerHealth
from worker.migrate import on_start

log = logging.getLogger("osi.worker")


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning when both the deployment name and the build id are set (docs/deploy.md "Upgrades").
    Every workflow gets the worker's default behaviour (`OSI_WORKER_VERSIONING_BEHAVIOR`): the SDK sends a
    workflow definition's own `versioning_behavior` even to an unversioned worker's server, which refuses it,
    so the definitions carry none."""
    if not (settings.worker_deployment_name and settings.worker_build_id):
        if settings.worker_deployment_name or settings.worker_build_id:
            raise ValueError("OSI_WORKER_DEPLOYMENT_NAME and OSI_WORKER_BUILD_ID go together")
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.worker_deployment_name, settings.worker_build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED if settings.worker_versioning_behavior == "pinned"
        else VersioningBehavior.AUTO_UPGRADE)


def build_worker(client: Client, rt: Runtime, task_queue: str | None = None,
                 registrations: Sequence[registry.Registration] = registry.REGISTRATIONS, *,
                 search_attributes: bool = True) -> Worker:
    """A worker with every registered plugin's activities (bound to `rt`, whose registry lists the plugins)
    and workflows; activity names must be unique (the SDK enforces it). Every workflow gets our search
    attributes, summary memo and typed failures (`core.visibility`); `search_attributes=False` when the
    namespace lacks them."""
    rt.attach_temporal(client)
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
        deployment_config=deployment_config(rt.settings),
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
    settings.require("worker")
    sdk_runtime = serve_metrics(settings)
    on_start(settings.database_url, settings.migrate_on_start)
    client = await connect(settings, runtime=sdk_runtime)
    rt = Runtime(settings, registry=registry.registry())
    REGISTRY.register(BreakerCollector(rt.breakers.snapshot))  # per process: each worker has its own breakers
    rt.alert_hook = waker(client, settings.task_queue)  # a recorded alert wakes its organization's delivery
    worker = build_worker(client, rt, search_attributes=await ensure_search_attributes(client))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health: WorkerHealth | None = None
    if settings.worker_health_port:
        health = WorkerHealth(client, rt, worker.task_queue, client.identity,
                              running=lambda: worker.is_running and not stop.is_set())
        await health.start(settings.host, settings.worker_health_port)
    log.info("worker polling task queue %s on %s", settings.task_queue, describe(client_config(settings)))
    try:
        async with worker:
            await stop.wait()
            log.info("shutting down: finishing in-flight tasks")
    finally:
        if health is not None:
            await health.stop()
        await rt.close()


def main() -> None:
    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    asyncio.run(run_worker())
