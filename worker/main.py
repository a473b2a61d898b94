"""The worker process: every plugin's activities and workflows on one task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from prometheus_client import start_http_server
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import Worker

from core.alerting import waker
from core.logs import configure_logging
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


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.host)
    upgrade(settings.database_url)
    client = await connect(settings)
    rt = Runtime(settings, registry=registry.registry())
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
