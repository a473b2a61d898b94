"""Remote codec endpoint (`/codec/encode`, `/codec/decode`) for the Temporal Web UI, the CLI and OpenSyte's client.

Every request is authenticated with an admin API key as `Authorization: Bearer <key>` (what the Web UI sends with
"pass access token"): an organization's key decodes only that organization's payloads (others come back as they
went in, still encrypted) and encodes only for it; the operator key (`OSI_ADMIN_API_KEY`) decodes everything.
Only in development mode does a request without a key act as the operator (the local Web UI cannot send one).
The body is Temporal's codec JSON, `{"payloads": [{"metadata": {...}, "data": "<base64>"}]}`.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from gateway.admin import Principal, principal
from vault.codec import CodecError, VaultEnvelopeCodec, organization_of

ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, Authorization-Extras"


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
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Max-Age": "600",
    }


def _error(request: Request, status: int, message: str) -> JSONResponse:
    # CORS headers on errors too, so the Web UI can show why.
    return JSONResponse({"error": message}, status_code=status, headers=_cors(request))


async def _caller(request: Request) -> Principal:
    if request.app.state.settings.dev_mode and not request.headers.get("authorization"):
        return Principal("dev", None)
    return await principal(request)


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
            return _error(request, 404, f"unknown codec operation {op[:40]!r}: encode or decode")
        try:
            who = await _caller(request)
        except HTTPException as exc:
            return _error(request, exc.status_code, str(exc.detail))
        namespace = request.headers.get("x-namespace")
        client = getattr(request.app.state, "temporal", None)
        expected = client.namespace if client is not None else request.app.state.settings.namespace()
        if namespace and namespace != expected:
            return _error(request, 400, f"this codec serves namespace {expected!r}, not {namespace[:100]!r}")
        raw = await request.body()
        try:
            payloads = json_format.Parse(raw.decode("utf-8"), Payloads())
        except UnicodeDecodeError:
            return _error(request, 400, "malformed payloads: the body is not UTF-8")
        except (json_format.ParseError, ValueError, RecursionError) as exc:
            return _error(request, 400, f"malformed payloads: {str(exc)[:300]}")
        c = codec(request)
        try:
            if op == "encode":
                if who.organization_id is not None:
                    foreign = {o for p in payloads.payloads if (o := organization_of(p))} - {who.organization_id}
                    if foreign:
                        return _error(request, 403, "this key encodes only its own organization's payloads")
                out = await c.encode_scoped(payloads.payloads, who.organization_id)
            else:
                out = await c.decode_scoped(payloads.payloads, who.organization_id)
        except CodecError as exc:
            return _error(request, 400, str(exc))
        body = json_format.MessageToJson(Payloads(payloads=out))
        return Response(body, media_type="application/json", headers=_cors(request))

    return r
