"""The network between a client and the provider fakes: latency, arrival jitter and lost answers."""

# Everything here happens in the sandbox's HTTP middleware, around the provider's own handling:
#
# 1. The request is received. `latency_ms` plus, for a `jitter_inbound_fraction` share of requests,
#    a random `jitter_ms` sample pass before the provider "sees" it. The instant it is seen is its
#    *arrival* (`SandboxState.arrival()`): every limiter of every fake counts the request at that
#    instant, not when its body was parsed or validated. So a client that paces exactly at a limit
#    sees the occasional rejection that real arrival jitter causes.
# 2. The provider handles it (faults, auth, limits, state changes).
# 3. For a send the provider *accepted* (see LOSABLE), `lose_answer_next` / `lose_answer_rate` may
#    lose the answer: the request stays processed (the message exists, its webhooks follow), it is
#    recorded with `lost_answer: true` and the answer it would have had, and the answer is held for
#    `hang_after_accept_ms`, longer than a client waits (it ends early when the client hangs up).
# 4. The other requests' jitter delays the answer only (after the limiters counted them).

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.state import NetworkConfig, RecordedRequest, SandboxState

# Header set on requests the sandbox makes to itself (Graph $batch members): the outer request
# already crossed the network, so the members get no latency of their own.
INTERNAL_HEADER = "x-sandbox-internal"

# The sends whose answer can be lost: (provider, method, path pattern). Each creates something
# (WhatsApp read receipts share the messages endpoint and are losable too). A Graph $batch member
# that loses its answer holds the whole batch answer, as a lost batch response would.
LOSABLE: list[tuple[str, str, re.Pattern[str]]] = [
    ("whatsapp", "POST", re.compile(r"^/whatsapp/v[0-9]+\.[0-9]+/[^/]+/messages$")),
    ("slack", "POST", re.compile(r"^/slack/api/chat\.postMessage$")),
    ("google", "POST", re.compile(r"^/google/calendar/v3/calendars/[^/]+/events$")),
    ("graph", "POST", re.compile(r"^/graph/v1\.0/(me|users/[^/]+)/(calendar/|calendars/[^/]+/)?events$")),
]
DISCONNECT_POLL_SECONDS = 0.05


def losable(provider: str, method: str, path: str) -> bool:
    return any(p == provider and m == method and rx.match(path) for p, m, rx in LOSABLE)


def sample_jitter(cfg: NetworkConfig, state: SandboxState, provider: str) -> float:
    """One jitter sample in seconds (0 when jitter is off)."""
    if cfg.jitter_ms <= 0:
        return 0.0
    rng = state.rngs[provider]
    if cfg.jitter_dist == "lognormal":
        # Median jitter_ms; capped so one unlucky draw cannot stall a test for minutes.
        return min(cfg.jitter_ms * math.exp(rng.gauss(0.0, cfg.jitter_sigma)), cfg.jitter_ms * 50) / 1000
    return rng.uniform(0.0, cfg.jitter_ms) / 1000


def plan_delays(state: SandboxState, provider: str) -> tuple[float, float]:
    """(inbound, outbound) delay in seconds for one request."""
    faults = state.faults.get(provider)
    cfg: NetworkConfig = faults if faults is not None and (faults.latency_ms or faults.jitter_ms) else state.network
    jitter = sample_jitter(cfg, state, provider)
    if jitter and state.rngs[provider].random() < cfg.jitter_inbound_fraction:
        return cfg.latency_ms / 1000 + jitter, 0.0
    return cfg.latency_ms / 1000, jitter


def take_loss(state: SandboxState, provider: str) -> bool:
    """Whether this accepted send loses its answer (consumes `lose_answer_next`)."""
    cfg = state.faults.get(provider)
    if cfg is None:
        return False
    if cfg.lose_answer_next > 0:
        cfg.lose_answer_next -= 1
        return True
    return bool(cfg.lose_answer_rate) and state.rngs[provider].random() < cfg.lose_answer_rate


def accepted(provider: str, status: int, body: Any) -> bool:
    """Did the provider accept the send? Slack answers HTTP 200 for refusals too, with ok:false."""
    if not 200 <= status < 300:
        return False
    return provider != "slack" or (isinstance(body, dict) and body.get("ok") is True)


async def buffered(response: Response) -> tuple[Response, Any]:
    """Read a streamed answer so it can be inspected, and rebuild it byte for byte."""
    raw = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    rebuilt = Response(content=raw, status_code=response.status_code, headers=dict(response.headers),
                       background=response.background)
    return rebuilt, doc


async def hold(request: Request, seconds: float) -> None:
    """Keep the answer back for `seconds`, or until the client has hung up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(DISCONNECT_POLL_SECONDS, left))


async def settle(state: SandboxState, provider: str, request: Request, rec: RecordedRequest,
                 response: Response) -> Response:
    """Count the answer of a losable send and, if the fault says so, lose it (after recording it)."""
    response, doc = await buffered(response)
    if not accepted(provider, response.status_code, doc):
        return response
    state.answers[provider]["accepted"] += 1
    if not take_loss(state, provider):
        return response
    state.answers[provider]["lost"] += 1
    rec.status, rec.response, rec.lost_answer = response.status_code, doc, True
    state.recorder.add(rec)  # now: the client will never see this answer, the record must show it
    cfg = state.faults.get(provider)
    await hold(request, (cfg.hang_after_accept_ms if cfg else 0.0) / 1000)
    return response
