"""The sandbox HTTP app: every provider fake under its prefix, plus /_sandbox controls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from sandbox.google import GoogleFake
from sandbox.graph import EntraFake, GraphFake
from sandbox.slack import SlackFake
from sandbox.state import FaultConfig, RecordedRequest, SandboxState, fingerprint, now, parse_body
from sandbox.whatsapp import WhatsAppFake

# (provider name, API prefix, fake class). Each fake exposes `router()` (the provider API under
# the prefix) and `control_router()` (test/demo controls under /_sandbox/<name>).
FAKES: list[tuple[str, str, Callable[[SandboxState], Any]]] = [
    ("whatsapp", "/whatsapp", WhatsAppFake),
    ("slack", "/slack", SlackFake),
    ("google", "/google", GoogleFake),
    ("graph", "/graph", GraphFake),
    ("entra", "/entra", EntraFake),
]
PREFIXES = {prefix: name for name, prefix, _ in FAKES}


def _provider_of(path: str) -> str | None:
    for prefix, name in PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


def create_app(state: SandboxState | None = None) -> FastAPI:
    state = state or SandboxState()
    app = FastAPI(title="OpenSyte Integrations sandbox", docs_url="/_sandbox/docs")
    app.state.sandbox = state

    for name, prefix, fake_cls in FAKES:
        fake = fake_cls(state)
        state.providers[name] = fake
        app.include_router(fake.router(), prefix=prefix)
        app.include_router(fake.control_router(), prefix=f"/_sandbox/{name}")

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        provider = _provider_of(request.url.path)
        if provider is None:
            return await call_next(request)
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.pop("authorization", None)
        if auth:
            # The provider sees the token; the record keeps only a fingerprint of it.
            headers["authorization"] = f"{auth.split(' ', 1)[0]} fp:{fingerprint(auth.split(' ', 1)[-1])}"
        rec = RecordedRequest(
            seq=state.recorder.next_seq(), at=now(), provider=provider, method=request.method,
            path=request.url.path, query=dict(request.query_params), headers=headers,
            body=parse_body(raw, headers.get("content-type", "")),
        )
        state.inflight[provider] = state.inflight.get(provider, 0) + 1
        try:
            response = await call_next(request)
        finally:
            state.inflight[provider] -= 1
        rec.status = response.status_code
        state.recorder.add(rec)
        return response

    @app.get("/_sandbox/requests")
    async def requests(provider: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return state.recorder.dump(provider, since)

    @app.delete("/_sandbox/requests")
    async def clear() -> dict[str, Any]:
        state.recorder.requests.clear()
        return {"ok": True}

    @app.put("/_sandbox/faults/{provider}")
    async def set_faults(provider: str, cfg: FaultConfig) -> dict[str, Any]:
        state.set_faults(provider, cfg)
        return {"ok": True}

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return {"ok": True}

    # A webhook receiver (an operator's alerting endpoint, say): records what it gets; its answer is settable.
    @app.post("/_sandbox/sink/{name}")
    async def sink(name: str, request: Request) -> Response:
        box = state.sinks.setdefault(name, {"status": 200, "received": []})
        box["received"].append({"headers": {k.lower(): v for k, v in request.headers.items()},
                                "body": (await request.body()).decode(errors="replace")})
        return Response(status_code=box["status"])

    @app.put("/_sandbox/sink/{name}/status/{status}")
    async def sink_status(name: str, status: int) -> dict[str, Any]:
        state.sinks.setdefault(name, {"status": 200, "received": []})["status"] = status
        return {"ok": True}

    @app.get("/_sandbox/sink/{name}")
    async def sink_received(name: str) -> list[dict[str, Any]]:
        return list(state.sinks.get(name, {}).get("received", []))

    # Files served over HTTP (what an OpenSyte storage URL would be): media uploads fetch them.
    @app.put("/_sandbox/files/{name}")
    async def put_file(name: str, request: Request) -> dict[str, Any]:
        state.files[name] = (await request.body(), request.headers.get("content-type", ""))
        return {"ok": True, "size": len(state.files[name][0])}

    @app.get("/_sandbox/files/{name}")
    async def get_file(name: str) -> Response:
        if name not in state.files:
            return Response(status_code=404)
        data, mime = state.files[name]
        return Response(data, media_type=mime or None)

    @app.get("/_sandbox/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
