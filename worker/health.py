"""The worker's /healthz (liveness) and /readyz (polls its task queue, reaches Vault and the store) over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.runtime import Runtime

# A poller is seen by the server at the start of each long poll (at most ~70 s apart while idle).
POLL_FRESH_SECONDS = 120.0
CHECK_TIMEOUT = 3.0


class WorkerHealth:
    """Readiness as the rest of the system sees this worker: the Temporal server lists this process's
    identity among recent pollers of both its workflow and activity task queue, Vault answers as ready,
    and the store answers a query. Not ready while starting and once shutdown began."""

    def __init__(self, client: Client, rt: Runtime, task_queue: str, identity: str,
                 running: Callable[[], bool]) -> None:
        self.client = client
        self.rt = rt
        self.task_queue = task_queue
        self.identity = identity
        self.running = running
        self._runner: web.AppRunner | None = None

    async def _polling(self) -> str:
        if not self.running():
            return "error: worker not running"
        now = time.time()
        for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
            resp = await self.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=self.client.namespace, task_queue=TaskQueue(name=self.task_queue), task_queue_type=kind))
            seen = [p for p in resp.pollers if p.identity == self.identity
                    and now - p.last_access_time.ToSeconds() < POLL_FRESH_SECONDS]
            if not seen:
                name = TaskQueueType.Name(kind).removeprefix("TASK_QUEUE_TYPE_").lower()
                return f"error: not polling {self.task_queue} ({name})"
        return "ok"

    async def _check(self, what: Callable[[], Any]) -> str:
        try:
            result = await asyncio.wait_for(what(), timeout=CHECK_TIMEOUT)
        except Exception as exc:
            return f"error: {type(exc).__name__}"
        return result if isinstance(result, str) else "ok"

    async def checks(self) -> dict[str, str]:
        async def vault() -> str:
            return "ok" if await asyncio.to_thread(self.rt.vault.is_ready) else "error: not ready"

        async def store() -> None:
            await asyncio.to_thread(self.rt.store.ping)

        names = ("task_queue", "vault", "store")
        results = await asyncio.gather(self._check(self._polling), self._check(vault), self._check(store))
        return dict(zip(names, results, strict=True))

    async def readyz(self, _: web.Request) -> web.Response:
        checks = await self.checks()
        ok = all(v == "ok" for v in checks.values())
        return web.json_response({"status": "ready" if ok else "not ready", "checks": checks},
                                 status=200 if ok else 503)

    async def healthz(self, _: web.Request) -> web.Response:
        """Liveness: the event loop answers (a wedged loop or a dead process does not)."""
        return web.json_response({"status": "ok"})

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/healthz", self.healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
