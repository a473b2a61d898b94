"""Pipeline overhead: N WhatsApp sends through the full action pipeline vs a plain httpx loop, same run.

Prints the ratio (pipeline time / plain time). Starts OpenBao and the sandbox itself; no Temporal needed
(the pipeline is what is measured, not workflow scheduling). Usage: python bench/pipeline_overhead.py [N]
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import SendTextInput
from core.connections import add_connection
from core.runtime import Runtime
from core.settings import Settings
from sandbox.app import create_app
from vault.credentials import BearerTokenCredentials
from worker.migrate import upgrade
from worker.registry import registry
from worker.stack import ServerThread, Stack

CONCURRENCY = 50


async def main(n: int) -> None:
    stack = Stack()
    _, vport = stack.vault_on_free_port()
    sandbox = ServerThread(create_app()).start()  # binds its own socket: no port to race for
    tmp = Path(tempfile.mkdtemp())
    try:
        s = Settings(vault_addr=f"http://127.0.0.1:{vport}", database_url=f"sqlite:///{tmp / 'b.db'}",
                     sections={"whatsapp": {"base_url": f"{sandbox.url}/whatsapp"}}, _env_file=None)  # type: ignore[call-arg]
        upgrade(s.database_url)
        rt = Runtime(s, registry=registry())
        token, pid = "EAAbench" + secrets.token_hex(8), "123456789012345"
        mps = 100_000  # lift the per-number limit: this measures overhead, not throttling
        await add_connection(rt, "bench", "WHATSAPP_BUSINESS", "default", {"phone_number_id": pid,
                             "throughput_mps": mps}, BearerTokenCredentials(token=SecretStr(token)))
        async with httpx.AsyncClient() as http:
            await http.post(f"{sandbox.url}/_sandbox/whatsapp/phone_numbers", json={
                "phone_number_id": pid, "token": token, "app_secret": "x", "throughput_mps": mps,
                "status_delay_ms": 60_000})
        # Distinct recipients so the 6 s pair limit never applies (it is per customer).
        numbers = [f"+1650{5550000 + i:07d}" for i in range(n)]
        acts = WhatsAppActivities(rt)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def piped(to: str) -> None:
            async with sem:
                await acts.send_text(SendTextInput(organization_id="bench", to=to, text="bench"))

        async def plain(http: httpx.AsyncClient, to: str) -> None:
            async with sem:
                r = await http.post(f"{sandbox.url}/whatsapp/v23.0/{pid}/messages",
                                    headers={"Authorization": f"Bearer {token}"},
                                    json={"messaging_product": "whatsapp", "to": to.lstrip("+"), "type": "text",
                                          "text": {"body": "bench"}})
                r.raise_for_status()

        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as http:
            t0 = time.perf_counter()
            await asyncio.gather(*(plain(http, to) for to in numbers))
            base = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.gather(*(piped(to) for to in numbers))
        full = time.perf_counter() - t0
        await rt.close()
        print(f"sends: {n}  concurrency: {CONCURRENCY}")
        print(f"plain httpx:   {base:.2f}s  ({n / base:.0f}/s)")
        print(f"full pipeline: {full:.2f}s  ({n / full:.0f}/s)  "
              "[Vault (cached), gates, limiter, breaker, classify, usage+audit rows, idempotency]")
        print(f"ratio pipeline/plain: {full / base:.2f}x")
    finally:
        sandbox.stop()
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
