"""The FastAPI application: health, readiness and every provider's routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from core.alerting import waker
from core.plugin import Registry
from core.runtime import Runtime
from core.settings import Settings, get_settings
from core.temporal import connect
from gateway import admin, codec
from worker.migrate import upgrade
from worker.registry import registry

log = logging.getLogger("osi.gateway")


def create_app(settings: Settings | None = None, *, rt: Runtime | None = None,
               temporal: Client | None = None, plugins: Registry | None = None) -> FastAPI:
    """The gateway: health, codec, admin API and dashboard, and every registered plugin's routes."""
    settings = settings or get_settings()
    plugins = plugins or (rt.registry if rt is not None else registry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_rt = rt is None
        if own_rt:
            await asyncio.to_thread(upgrade, settings.database_url)
        app.state.rt = rt or Runtime(settings, registry=plugins)
        # One Temporal client per process, connected at start-up (never per request).
        app.state.temporal = temporal or await connect(settings)
        if app.state.rt.alert_hook is None:  # alerts raised here (connection tests) wake their delivery
            app.state.rt.alert_hook = waker(app.state.temporal, settings.task_queue)
        yield
        if own_rt:
            await app.state.rt.close()

    app = FastAPI(title="OpenSyte Integrations gateway", lifespan=lifespan)
    app.state.settings = settings

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(
                state.temporal.workflow_service.get_system_info(GetSystemInfoRequest()), timeout=3)
            checks["temporal"] = "ok"
        except Exception as exc:
            checks["temporal"] = f"error: {type(exc).__name__}"
        checks["vault"] = "ok" if await asyncio.to_thread(state.rt.vault.is_ready) else "error"
        try:
            await asyncio.to_thread(state.rt.store.ping)
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503)

    app.include_router(codec.router(), prefix="/codec")
    app.include_router(admin.router(), prefix="/admin")

    @app.get("/dashboard", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse((Path(__file__).parent / "static" / "dashboard.html").read_text())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for plugin in plugins:
        if plugin.routes is not None:
            app.include_router(plugin.routes())
    return app
