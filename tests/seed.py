"""Create sandbox-backed connections for tests (store + Vault + the fake's own records)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from core.connections import add_connection
from core.runtime import Runtime
from vault.credentials import BearerTokenCredentials


@dataclass
class WhatsAppConn:
    organization_id: str
    name: str
    connection_id: str
    phone_number_id: str
    token: str
    app_secret: str
    verify_token: str
    waba_id: str


async def whatsapp_connection(
    rt: Runtime, sandbox_url: str, gateway_url: str | None = None, *, org: str | None = None,
    name: str = "default", throughput_mps: int = 80, sandbox_overrides: dict | None = None,
    token: str | None = None, settings: dict | None = None,
) -> WhatsAppConn:
    org = org or f"org_{uuid.uuid4().hex[:10]}"
    pid = str(100_000_000_000_000 + secrets.randbelow(10**14))
    waba = str(200_000_000_000_000 + secrets.randbelow(10**14))
    token = token or "EAAsandbox" + secrets.token_hex(16)
    app_secret, verify = secrets.token_hex(16), secrets.token_hex(8)
    conn = await add_connection(
        rt, org, "WHATSAPP_BUSINESS", name,
        {"phone_number_id": pid, "waba_id": waba, "throughput_mps": throughput_mps, **(settings or {})},
        BearerTokenCredentials(token=SecretStr(token), app_secret=SecretStr(app_secret),
                               verify_token=SecretStr(verify)),
    )
    webhook = f"{gateway_url}/webhooks/whatsapp/{conn.id}" if gateway_url else None
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/whatsapp/phone_numbers", json={
            "phone_number_id": pid, "token": token, "app_secret": app_secret, "waba_id": waba,
            "webhook_url": webhook, "throughput_mps": throughput_mps,
            # The fake enforces the 24 h window like Meta; these shared tests send free-form text to
            # customers who never wrote, so they opt out (WhatsApp tests that test the window opt in).
            "enforce_window": False, **(sandbox_overrides or {})})
        r.raise_for_status()
    return WhatsAppConn(org, name, conn.id, pid, token, app_secret, verify, waba)
