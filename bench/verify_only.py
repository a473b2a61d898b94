"""The baseline of bench/webhook_ingest.py: an endpoint that only verifies Meta's signature, served like the gateway.

Same framework (FastAPI), same server (uvicorn, one process) and the same verification function as the gateway's
`/webhooks/whatsapp/{connection_id}`; nothing recorded, nothing signalled. Port and app secret from the
environment: BENCH_PORT, BENCH_APP_SECRET.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from activities.whatsapp.webhooks import SIGNATURE_HEADER, verify_signature


def create_app(app_secret: str) -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/whatsapp/{connection_id}")
    async def receive(request: Request, connection_id: str) -> Response:
        raw = await request.body()
        if not verify_signature(app_secret, raw, request.headers.get(SIGNATURE_HEADER)):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        return JSONResponse({"ok": True})

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(os.environ["BENCH_APP_SECRET"]), host="127.0.0.1", port=int(os.environ["BENCH_PORT"]),
                log_level="warning")
