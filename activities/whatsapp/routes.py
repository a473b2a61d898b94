"""WhatsApp webhooks: GET challenge; POST verified on raw bytes, recorded, then signal-with-start per customer."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from temporalio.client import Client
from temporalio.service import RPCError

from activities.whatsapp import inbound, webhooks
from activities.whatsapp.models import (
    ConversationEvents,
    ConversationInput,
    WebhookBatch,
    conversation_workflow_id,
)
from activities.whatsapp.settings import WhatsAppSettings
from activities.whatsapp.spec import SPEC
from core.inbox import is_replay, refuse
from store.models import Connection
from vault.client import CredentialsMissing
from vault.credentials import BearerTokenCredentials

log = logging.getLogger("osi.gateway.whatsapp")

PREFIX = "/webhooks/whatsapp"
CONVERSATION_WORKFLOW = "WhatsAppConversation"  # workflows/whatsapp_conversation.py, started by name


async def _connection_secrets(request: Request, connection_id: str) -> tuple[Connection, BearerTokenCredentials] | None:
    rt = request.app.state.rt
    conn = await rt.store.run(rt.store.get_connection, connection_id)
    if conn is None or conn.integration_type != SPEC.integration_type:
        return None
    try:
        creds = await rt.vault.read(rt.credentials_path(conn))
    except CredentialsMissing:
        return None
    if not isinstance(creds, BearerTokenCredentials):
        return None
    return conn, creds


def _verified(found: tuple[Connection, BearerTokenCredentials] | None, raw: bytes, signature: str | None) -> bool:
    app_secret = found[1].app_secret.get_secret_value() if found and found[1].app_secret else ""
    return webhooks.verify_signature(app_secret, raw, signature)


def router() -> APIRouter:
    r = APIRouter()

    @r.get(f"{PREFIX}/{{connection_id}}")
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

    @r.post(f"{PREFIX}/{{connection_id}}")
    async def receive(request: Request, connection_id: str) -> Response:
        raw = await request.body()  # verify the exact bytes Meta signed, before any parsing
        found = await _connection_secrets(request, connection_id)
        signature = request.headers.get(webhooks.SIGNATURE_HEADER)
        if not (is_replay(request) and found) and not _verified(found, raw, signature):
            # The app secret may have been rotated since we cached it (`osi connections rotate` elsewhere).
            rt = request.app.state.rt
            if found is None or not await rt.vault.recheck(rt.credentials_path(found[0])):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
            found = await _connection_secrets(request, connection_id)
            if not _verified(found, raw, signature):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
        assert found is not None
        rt = request.app.state.rt
        try:
            batch = webhooks.parse(raw)
        except webhooks.MalformedWebhook as exc:
            return await refuse(rt, "whatsapp", request, raw, f"malformed delivery: {exc}")
        if batch.unknown:
            log.info("whatsapp webhook: ignoring unknown parts %s", batch.unknown)
        try:
            await dispatch(request, found[0], batch)
        except RPCError as exc:
            # Temporal unreachable: a 5xx makes Meta redeliver; the store side is idempotent.
            log.warning("whatsapp webhook: could not signal conversations: %s", exc.status)
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
        except Exception as exc:  # a signed delivery we cannot process is kept, not lost (and not a 500)
            log.exception("whatsapp webhook: processing failed")
            return await refuse(rt, "whatsapp", request, raw, f"could not process: {type(exc).__name__}", 422)
        return JSONResponse({"ok": True})

    return r


async def dispatch(request: Request, conn: Connection, batch: WebhookBatch) -> None:
    """Record the delivery (idempotent), then signal-with-start each customer's conversation.

    Redelivered events are signalled again: the conversation dedupes them, and a delivery whose
    signal failed the first time (503 above) still reaches it on Meta's retry.
    """
    rt = request.app.state.rt
    per_customer = await inbound.record(rt, conn, batch)
    client: Client = request.app.state.temporal
    settings = request.app.state.settings
    section = settings.section(WhatsAppSettings)
    for (pid, wa_id), events in per_customer.items():
        wid = conversation_workflow_id(conn.organization_id, pid, wa_id)
        await client.start_workflow(
            CONVERSATION_WORKFLOW,
            ConversationInput(organization_id=conn.organization_id, connection=conn.name, phone_number_id=pid,
                              wa_id=wa_id, idle_timeout_seconds=section.conversation_idle_hours * 3600,
                              history_limit=section.conversation_history_limit),
            id=wid, task_queue=settings.task_queue,
            start_signal="events", start_signal_args=[ConversationEvents(events=events)],
        )
