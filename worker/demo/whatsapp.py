"""WhatsApp demo: a text message through Temporal, Vault and the sandbox, with status webhooks."""

from __future__ import annotations

import asyncio
import time

import httpx
from pydantic import SecretStr

from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from vault.credentials import BearerTokenCredentials
from worker.connections import add_connection
from worker.demo import DemoContext

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "419561257915477"


async def seed(ctx: DemoContext) -> str:
    """Create (or refresh) the demo WhatsApp connection and the sandbox's matching number."""
    import secrets

    token = "EAAsandbox" + secrets.token_hex(16)
    app_secret, verify = secrets.token_hex(16), secrets.token_hex(8)
    conn = await add_connection(
        ctx.rt, ctx.organization_id, "WHATSAPP_BUSINESS", "default",
        {"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID},
        BearerTokenCredentials(token=SecretStr(token), app_secret=SecretStr(app_secret),
                               verify_token=SecretStr(verify)),
        actor="demo", replace=True,
    )
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{ctx.sandbox_url}/_sandbox/whatsapp/phone_numbers", json={
            "phone_number_id": PHONE_NUMBER_ID, "token": token, "app_secret": app_secret, "waba_id": WABA_ID,
            "webhook_url": f"{ctx.gateway_url}/webhooks/whatsapp/{conn.id}", "status_delay_ms": 200})
        r.raise_for_status()
    ctx.say(f"seeded WhatsApp connection {conn.id} (token in Vault at {ctx.rt.credentials_path(conn)})")
    return conn.id


async def run(ctx: DemoContext) -> None:
    conn_id = await seed(ctx)
    wf_id = f"demo-whatsapp-text-{int(time.time())}"
    res: SendWhatsAppMessageResult = await ctx.client.execute_workflow(
        "SendWhatsAppMessage",
        SendWhatsAppMessageInput(organization_id=ctx.organization_id, to="+16505551234",
                                 text="Hello from OpenSyte Integrations"),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=SendWhatsAppMessageResult,
    )
    r = res.results[0]
    ctx.say(f"SendWhatsAppMessage → {r.status} {r.message_id}")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")
    for _ in range(50):
        rows = await ctx.rt.store.run(ctx.rt.store.usage, connection_id=conn_id, action="whatsapp.send_text")
        if rows and rows[-1].delivery_status == "read":
            break
        await asyncio.sleep(0.1)
    ctx.say(f"  delivery status from signed webhooks: {rows[-1].delivery_status if rows else 'none'}")
