"""Remote codec endpoint (`/codec/encode`, `/codec/decode`) so the Web UI and CLI can read payloads."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from vault.codec import VaultEnvelopeCodec


def _allowed_origins(ui_url: str) -> set[str]:
    """The Web UI's origin, in both loopback spellings: a UI opened at localhost:8233 is the same local UI as
    127.0.0.1:8233 (a browser sends whichever the operator typed)."""
    origin = ui_url.rstrip("/")
    out = {origin}
    for a, b in (("//127.0.0.1:", "//localhost:"), ("//localhost:", "//127.0.0.1:")):
        if a in origin:
            out.add(origin.replace(a, b))
    return out


def _cors(request: Request) -> dict[str, str]:
    allowed = _allowed_origins(request.app.state.settings.temporal_ui_url)
    given = request.headers.get("origin", "")
    origin = given if given in allowed else request.app.state.settings.temporal_ui_url.rstrip("/")
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, X-Namespace, Authorization",
        "Access-Control-Allow-Credentials": "true",
    }


def _authorized(request: Request) -> bool:
    """Decoding reveals PII: when an admin API key is configured, require it."""
    key = request.app.state.settings.admin_api_key
    if key is None:
        return True
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bool(given) and hmac.compare_digest(given, key.get_secret_value())


def router() -> APIRouter:
    r = APIRouter()

    def codec(request: Request) -> VaultEnvelopeCodec:
        if getattr(request.app.state, "codec", None) is None:
            s = request.app.state.settings
            request.app.state.codec = VaultEnvelopeCodec(request.app.state.rt.vault, s.vault_transit_key)
        return request.app.state.codec

    @r.options("/{op}")
    async def preflight(request: Request, op: str) -> Response:
        return Response(status_code=204, headers=_cors(request))

    @r.post("/{op}")
    async def run(request: Request, op: str) -> Response:
        if op not in ("encode", "decode"):
            return JSONResponse({"error": f"unknown codec operation {op!r}"}, status_code=404)
        if not _authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers=_cors(request))
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError as exc:
            return JSONResponse({"error": f"malformed payloads: {exc}"}, status_code=400)
        c = codec(request)
        out = await (c.encode(payloads.payloads) if op == "encode" else c.decode(payloads.payloads))
        body = json_format.MessageToJson(Payloads(payloads=out))
        return Response(body, media_type="application/json", headers=_cors(request))

    return r
