"""The sandbox HTTP app: every provider fake under its prefix, plus /_sandbox controls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from sandbox import docs, transport
from sandbox.google import GoogleFake
from sandbox.graph import EntraFake, GraphFake
from sandbox.slack import SlackFake
from sandbox.state import (
    ARRIVAL,
    FaultConfig,
    NetworkConfig,
    RecordedRequest,
    SandboxState,
    fingerprint,
    now,
    parse_body,
)
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
    # The stock docs pages load Swagger UI / ReDoc from a CDN (blank offline): ours is self-contained.
    app = FastAPI(title="OpenSyte Integrations sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = state
    docs.mount(app)

    for name, prefix, fake_cls in FAKES:
        fake = fake_cls(state)
        state.providers[name] = fake
        app.include_router(fake.router(), prefix=prefix)
        app.include_router(fake.control_router(), prefix=f"/_sandbox/{name}")

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Record every provider request and play the network around it (see sandbox.transport)."""
        provider = _provider_of(request.url.path)
        if provider is None:
            return await call_next(request)
        received = state.clock()
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
        internal = transport.INTERNAL_HEADER in headers
        inbound, outbound = (0.0, 0.0) if internal else transport.plan_delays(state, provider)
        state.inflight[provider] = state.inflight.get(provider, 0) + 1
        # Arrival = reception + the inbound delay, computed rather than measured so a test clock works.
        token = ARRIVAL.set(received + inbound)
        try:
            if inbound:
                await asyncio.sleep(inbound)
            response = await call_next(request)
            if transport.losable(provider, request.method, request.url.path):
                response = await transport.settle(state, provider, request, rec, response)
        finally:
            ARRIVAL.reset(token)
            state.inflight[provider] -= 1
        if rec.lost_answer:
            return response  # already recorded, when the answer was lost
        rec.status = response.status_code
        state.recorder.add(rec)
        if outbound:
            await asyncio.sleep(outbound)
        return response

    @app.get("/_sandbox/requests")
    async def requests(provider: str | None = None, since: int = 0,
                       lost_answer: bool | None = None) -> list[dict[str, Any]]:
        return state.recorder.dump(provider, since, lost_answer)

    @app.get("/_sandbox/answers")
    async def answers() -> dict[str, dict[str, int]]:
        """Per provider: sends accepted (whether or not the client got the answer) and answers lost."""
        return {name: dict(counts) for name, counts in state.answers.items()}

    @app.delete("/_sandbox/answers")
    async def clear_answers() -> dict[str, Any]:
        state.answers.clear()
        return {"ok": True}

    @app.delete("/_sandbox/requests")
    async def clear() -> dict[str, Any]:
        state.recorder.requests.clear()
        return {"ok": True}

    @app.put("/_sandbox/faults/{provider}")
    async def set_faults(provider: str, cfg: FaultConfig) -> dict[str, Any]:
        state.set_faults(provider, cfg)
        return {"ok": True}

    @app.put("/_sandbox/network")
    async def set_network(cfg: NetworkConfig) -> dict[str, Any]:
        """Latency and jitter for every provider whose faults do not set their own."""
        state.network = cfg
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
                                "body": (await request.body()).decode(errors="replace"), "answered": box["status"]})
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
