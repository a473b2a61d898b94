"""WhatsApp webhooks: GET challenge; POST verified on raw bytes, each number's part routed to the connection owning
that number (`routing`), recorded, then signal-with-start per customer.

Two callback URLs: `/webhooks/whatsapp/app/{app_id}` (one per Meta app, the way Meta configures webhooks:
every number of the app posts there) and `/webhooks/whatsapp/{connection_id}` (older setups; a part for
another number runs only under its owner in the same organization and app).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from temporalio.client import Client
from temporalio.service import RPCError

from activities.whatsapp import apps, conversation_ids, inbound, routing, webhooks
from activities.whatsapp.models import ConversationEvents, ConversationInput, WebhookBatch
from activities.whatsapp.phone import is_bsuid
from activities.whatsapp.settings import WhatsAppSettings
from activities.whatsapp.spec import SPEC
from core.inbox import is_replay, refuse
from store.models import Connection
from vault.client import CredentialsMissing
from vault.credentials import BearerTokenCredentials

log = logging.getLogger("osi.gateway.whatsapp")

PREFIX = "/webhooks/whatsapp"
CONVERSATION_WORKFLOW = "WhatsAppConversation"  # workflows/whatsapp_conversation.py, started by name


async def _connection_secrets(request: Request, connection_id: str
                              ) -> tuple[Connection, BearerTokenCredentials | None] | None:
    rt = request.app.state.rt
    conn = await rt.store.connection(connection_id)  # cached: no query per webhook (Store.connection)
    if conn is None or conn.integration_type != SPEC.integration_type:
        return None
    try:
        creds = await rt.vault.read(rt.credentials_path(conn))
    except CredentialsMissing:
        return None
    return conn, creds if isinstance(creds, BearerTokenCredentials) else None


def _challenge(expected: str | None, mode: str | None, token: str | None, challenge: str | None) -> Response:
    if (mode == "subscribe" and token and expected and challenge
            and hmac.compare_digest(token.encode(), expected.encode())):
        return PlainTextResponse(challenge)
    return PlainTextResponse("Forbidden", status_code=403)


def router() -> APIRouter:
    r = APIRouter()

    @r.get(f"{PREFIX}/app/{{app_id}}")
    async def app_challenge(
        request: Request,
        app_id: str,
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> Response:
        keys = await apps.keys(request.app.state.rt, app_id)
        return _challenge(keys.verify_token if keys else None, mode, token, challenge)

    @r.post(f"{PREFIX}/app/{{app_id}}")
    async def app_receive(request: Request, app_id: str) -> Response:
        raw = await request.body()  # verify the exact bytes Meta signed, before any parsing
        rt = request.app.state.rt
        keys = await apps.keys(rt, app_id)
        if not (is_replay(request) and keys) and not webhooks.verify_signature(
                keys.app_secret if keys else "", raw, request.headers.get(webhooks.SIGNATURE_HEADER)):
            return JSONResponse({"error": "invalid signature"}, status_code=401)

        async def owner(pid: str) -> Connection | routing.Unroutable:
            return await routing.owner_for_app(rt, app_id, pid)

        return await _route(request, raw, owner, app_id=app_id)

    @r.get(f"{PREFIX}/{{connection_id}}")
    async def challenge(
        request: Request,
        connection_id: str,
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> Response:
        found = await _connection_secrets(request, connection_id)
        creds = found[1] if found else None
        expected = creds.verify_token.get_secret_value() if creds and creds.verify_token else None
        if found and not expected and found[0].settings.get("app_id"):
            keys = await apps.keys(request.app.state.rt, str(found[0].settings["app_id"]))
            expected = keys.verify_token if keys else None
        return _challenge(expected, mode, token, challenge)

    @r.post(f"{PREFIX}/{{connection_id}}")
    async def receive(request: Request, connection_id: str) -> Response:
        raw = await request.body()  # verify the exact bytes Meta signed, before any parsing
        rt = request.app.state.rt
        found = await _connection_secrets(request, connection_id)
        signature = request.headers.get(webhooks.SIGNATURE_HEADER)
        secret = await routing.app_secret_of(rt, found[0], found[1]) if found else ""
        if not (is_replay(request) and found) and not webhooks.verify_signature(secret, raw, signature):
            # The app secret may have been rotated since we cached it (`osi connections rotate` elsewhere).
            if found is None or not await rt.vault.recheck(rt.credentials_path(found[0])):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
            rt.store.forget_connection(connection_id)  # its app_id may have changed too
            found = await _connection_secrets(request, connection_id)
            secret = await routing.app_secret_of(rt, found[0], found[1]) if found else ""
            if not webhooks.verify_signature(secret, raw, signature):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
        assert found is not None
        conn = found[0]

        async def owner(pid: str) -> Connection | routing.Unroutable:
            return await routing.owner_for_connection(rt, conn, secret, pid)

        return await _route(request, raw, owner, via=conn)

    return r


async def _route(request: Request, raw: bytes, owner: Any, *, app_id: str | None = None,
                 via: Connection | None = None) -> Response:
    """Each number's part under the connection owning it; the rest recorded and alerted (acknowledged: Meta's
    retries would not make it routable). A verified delivery we cannot parse or process is kept for replay."""
    rt = request.app.state.rt
    try:
        parts, unknown = webhooks.split_by_number(raw)
        batches = {pid: webhooks.parse(doc) for pid, doc in parts.items()}
    except webhooks.MalformedWebhook as exc:
        return await refuse(rt, "whatsapp", request, raw, f"malformed delivery: {exc}")
    if unknown:
        log.info("whatsapp webhook: ignoring unknown parts %s", unknown)
    for pid, batch in batches.items():
        found = await owner(pid)
        if isinstance(found, routing.Unroutable):
            await routing.record_unroutable(rt, found, parts[pid], pid, app_id=app_id, via=via)
            continue
        if batch.unknown:
            log.info("whatsapp webhook: ignoring unknown parts %s", batch.unknown)
        try:
            await dispatch(request, found, batch)
        except RPCError as exc:
            # Temporal unreachable: a 5xx makes Meta redeliver; the store side is idempotent.
            log.warning("whatsapp webhook: could not signal conversations: %s", exc.status)
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
        except Exception as exc:  # a signed delivery we cannot process is kept, not lost (and not a 500)
            log.exception("whatsapp webhook: processing failed")
            return await refuse(rt, "whatsapp", request, raw, f"could not process: {type(exc).__name__}", 422)
    return JSONResponse({"ok": True})


async def dispatch(request: Request, conn: Connection, batch: WebhookBatch) -> None:
    """Record the delivery (idempotent), then signal-with-start each customer's conversation.

    Redelivered messages are signalled again: the conversation dedupes them, and a delivery whose
    signal failed the first time (503 above) still reaches it on Meta's retry.
    """
    rt = request.app.state.rt
    per_customer = await inbound.record(rt, conn, batch)
    client: Client = request.app.state.temporal
    settings = request.app.state.settings
    section = settings.section(WhatsAppSettings)
    for (pid, customer), events in per_customer.items():
        wid = await conversation_ids.workflow_id(rt, conn.organization_id, pid, customer)
        user_id = next((e.inbound.user_id for e in events if e.inbound is not None and e.inbound.user_id), None)
        await client.start_workflow(
            CONVERSATION_WORKFLOW,
            ConversationInput(organization_id=conn.organization_id, connection=conn.name, phone_number_id=pid,
                              wa_id=None if is_bsuid(customer) else customer,
                              user_id=customer if is_bsuid(customer) else user_id,
                              idle_timeout_seconds=section.conversation_idle_hours * 3600,
                              history_limit=section.conversation_history_limit),
            id=wid, task_queue=settings.task_queue,
            start_signal="events", start_signal_args=[ConversationEvents(events=events)],
        )
