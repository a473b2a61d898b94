"""The FastAPI application: health, readiness and every provider's routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from core.alerting import waker
from core.metrics import HTTP_REQUESTS, SIGNATURE_FAILURES, WEBHOOKS, ConnectionHealthCollector, webhook_outcome
from core.plugin import Registry
from core.runtime import Runtime
from core.settings import Settings, get_settings
from core.temporal import connect
from gateway import admin, codec, dashboard
from gateway.limits import ASGIApp, LimitsMiddleware, Message, Receive, Scope, Send
from worker.migrate import on_start
from worker.registry import registry

log = logging.getLogger("osi.gateway")


class MeasureMiddleware:
    """Request duration by route template (bounded labels); webhooks by provider and outcome.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every request through a
    task group and memory streams, which cost the webhook path more CPU than verifying the signature."""

    def __init__(self, app: ASGIApp, webhook_routes: dict[str, str]) -> None:
        self.app, self.webhook_routes = app, webhook_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router sets the matched route in this same scope.
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(template, method, str(status)).observe(time.perf_counter() - t0)
            provider = self.webhook_routes.get(template)
            if provider is not None and method == "POST":
                WEBHOOKS.labels(provider, webhook_outcome(status)).inc()
                if status == 401:
                    SIGNATURE_FAILURES.labels(provider).inc()


def create_app(settings: Settings | None = None, *, rt: Runtime | None = None,
               temporal: Client | None = None, plugins: Registry | None = None) -> FastAPI:
    """The gateway: health, codec, admin API and dashboard, and every registered plugin's routes."""
    settings = settings or get_settings()
    if rt is None:  # a composition root that hands in its runtime (tests, `osi webhooks replay`) checked already
        settings.require("gateway")
    plugins = plugins or (rt.registry if rt is not None else registry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_rt = rt is None
        if own_rt:
            await asyncio.to_thread(on_start, settings.database_url, settings.migrate_on_start)
        app.state.rt = rt or Runtime(settings, registry=plugins)
        # One Temporal client per process, connected at start-up (never per request).
        app.state.temporal = temporal or await connect(settings)
        app.state.rt.attach_temporal(app.state.temporal)
        if app.state.rt.alert_hook is None:  # alerts raised here (connection tests) wake their delivery
            app.state.rt.alert_hook = waker(app.state.temporal, settings.task_queue)
        yield
        if own_rt:
            await app.state.rt.close()

    app = FastAPI(title="OpenSyte Integrations gateway", lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(LimitsMiddleware, settings=settings)  # sizes and depth checked before any route runs
    # This app's own collectors (connection health from its store); process-wide metrics live in REGISTRY.
    own_metrics = CollectorRegistry()
    own_metrics.register(ConnectionHealthCollector(lambda: app.state.rt.store.list_connections()))
    webhook_routes: dict[str, str] = {}  # route path template -> provider, for POSTs to plugin routes

    # Outermost, so refusals by LimitsMiddleware are measured too.
    app.add_middleware(MeasureMiddleware, webhook_routes=webhook_routes)

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

    app.include_router(dashboard.router())
    app.add_exception_handler(dashboard.SignInRequired, dashboard.sign_in_redirect)
    app.mount("/dashboard/static", StaticFiles(directory=Path(__file__).parent / "static"), name="dashboard-static")

    @app.get("/metrics")
    async def metrics() -> Response:
        body = generate_latest(REGISTRY) + await asyncio.to_thread(generate_latest, own_metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    for plugin in plugins:
        if plugin.routes is not None:
            router = plugin.routes()
            for r in router.routes:
                if isinstance(r, APIRoute) and "POST" in (r.methods or ()):
                    webhook_routes[r.path] = plugin.name
            app.include_router(router)
    return app
