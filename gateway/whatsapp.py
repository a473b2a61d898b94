"""WhatsApp webhooks: GET challenge, POST verified on raw bytes, then dispatched."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from activities.whatsapp import webhooks
from activities.whatsapp.models import WebhookBatch
from store.models import Connection, IntegrationType, utcnow
from vault.client import CredentialsMissing
from vault.credentials import BearerTokenCredentials

log = logging.getLogger("osi.gateway.whatsapp")


async def _connection_secrets(request: Request, connection_id: str) -> tuple[Connection, BearerTokenCredentials] | None:
    rt = request.app.state.rt
    conn = await rt.store.run(rt.store.get_connection, connection_id)
    if conn is None or conn.integration_type != IntegrationType.WHATSAPP_BUSINESS.value:
        return None
    try:
        creds = await rt.vault.read(rt.credentials_path(conn))
    except CredentialsMissing:
        return None
    if not isinstance(creds, BearerTokenCredentials):
        return None
    return conn, creds


async def record_statuses(request: Request, batch: WebhookBatch) -> None:
    """Late outcomes: the usage row of each sent message learns its delivery status."""
    rt = request.app.state.rt
    for st in batch.statuses:
        fields: dict[str, Any] = {"delivery_status": st.status}
        if st.status == "delivered":
            fields["delivered_at"] = utcnow()
        if st.status == "failed" and st.errors:
            fields["error_code"] = str(st.errors[0].get("code"))
        await rt.store.run(rt.store.update_usage_by_reference, st.message_id, **fields)


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/{connection_id}")
    async def challenge(
        request: Request,
        connection_id: str,
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> Response:
        found = await _connection_secrets(request, connection_id)
        expected = found[1].verify_token.get_secret_value() if found and found[1].verify_token else None
        if mode == "subscribe" and token and expected and hmac.compare_digest(token, expected) and challenge:
            return PlainTextResponse(challenge)
        return PlainTextResponse("Forbidden", status_code=403)

    @r.post("/{connection_id}")
    async def receive(request: Request, connection_id: str) -> Response:
        raw = await request.body()  # verify the exact bytes Meta signed, before any parsing
        found = await _connection_secrets(request, connection_id)
        app_secret = found[1].app_secret.get_secret_value() if found and found[1].app_secret else ""
        if not webhooks.verify_signature(app_secret, raw, request.headers.get(webhooks.SIGNATURE_HEADER)):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        assert found is not None
        try:
            batch = webhooks.parse(raw)
        except webhooks.MalformedWebhook as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if batch.unknown:
            log.info("whatsapp webhook: ignoring unknown parts %s", batch.unknown)
        await dispatch(request, found[0], batch)
        return JSONResponse({"ok": True})

    return r


async def dispatch(request: Request, conn: Connection, batch: WebhookBatch) -> None:
    """Hand a verified batch to the rest of the service (statuses recorded against the send)."""
    await record_statuses(request, batch)
