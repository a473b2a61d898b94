"""Bulk WhatsApp benchmark: N template messages through BulkSendWhatsAppTemplate to the sandbox.

Prints throughput as a ratio of the configured per-number limit and of a plain httpx loop (one request
after another, no limiter, no Temporal) against the same sandbox in the same run. The limit is
configurable so the run finishes in reasonable time (10,000 messages at Meta's default 80 mps take
over two minutes). Starts Temporal (in memory), OpenBao and the sandbox itself.

Usage: python bench/whatsapp_bulk.py [--messages 10000] [--mps 500] [--batch-size 250]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from activities.whatsapp.models import BulkRecipient, BulkSendWhatsAppTemplateInput
from activities.whatsapp.store import WhatsAppStore
from core.connections import add_connection
from core.runtime import Runtime
from core.settings import Settings
from core.temporal import connect
from vault.credentials import BearerTokenCredentials
from worker.main import build_worker
from worker.migrate import upgrade
from worker.registry import registry
from worker.stack import Stack, free_port, wait_port
from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate

TEMPLATE = {"name": "bench_notice", "language": "en_US", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hello {{1}}, your parcel is on its way."}]}


def recipients(n: int) -> list[str]:
    """Distinct customers, so the per-customer pair limit never applies (it is not what is measured)."""
    return [f"+1650{5550000 + i:07d}" if i < 10_000 else f"+1415{5550000 + i - 10_000:07d}" for i in range(n)]


async def _seed_number(http: httpx.AsyncClient, sandbox_url: str, **cfg: Any) -> None:
    r = await http.post(f"{sandbox_url}/_sandbox/whatsapp/phone_numbers", json=cfg)
    r.raise_for_status()


async def run_bench(client: Client, rt: Runtime, sandbox_url: str, task_queue: str, *, messages: int = 10_000,
                    mps: int = 500, batch_size: int = 250, concurrency: int | None = None,
                    limit_margin_seconds: float | None = None) -> dict[str, Any]:
    """Seed a connection limited to `mps`, send `messages` through the workflow, then the plain loop."""
    org = f"bench-{uuid.uuid4().hex[:8]}"
    pid, plain_pid = (str(10**14 + secrets.randbelow(10**14)) for _ in range(2))
    waba, token = str(2 * 10**14 + secrets.randbelow(10**14)), "EAAbench" + secrets.token_hex(12)
    await add_connection(rt, org, "WHATSAPP_BUSINESS", "default",
                         {"phone_number_id": pid, "waba_id": waba, "throughput_mps": mps,
                          "messaging_limit": "unlimited",
                          **({} if limit_margin_seconds is None else {"limit_margin_seconds": limit_margin_seconds})},
                         BearerTokenCredentials(token=SecretStr(token)), actor="bench", replace=True)
    numbers = recipients(messages)
    async with httpx.AsyncClient() as http:
        # No webhook URL: the benchmark measures sending; status webhooks are exercised by the tests.
        await _seed_number(http, sandbox_url, phone_number_id=pid, token=token, app_secret="bench", waba_id=waba,
                           throughput_mps=mps, messaging_limit_tier="TIER_UNLIMITED")
        await _seed_number(http, sandbox_url, phone_number_id=plain_pid, token=token, app_secret="bench",
                           waba_id=waba, throughput_mps=10**9, messaging_limit_tier="TIER_UNLIMITED")
        (await http.post(f"{sandbox_url}/_sandbox/whatsapp/templates", json={"waba_id": waba, **TEMPLATE}))\
            .raise_for_status()
        before = (await http.get(f"{sandbox_url}/_sandbox/whatsapp/stats")).json()["throughput_errors"]
    await rt.store.run(WhatsAppStore(rt.store).opt_in, org, pid, [n.lstrip("+") for n in numbers], "bench")
    inp = BulkSendWhatsAppTemplateInput(
        organization_id=org, template_name="bench_notice", batch_size=batch_size,
        concurrency=concurrency or min(16, max(4, mps // 50)),
        recipients=[BulkRecipient(to=n, body=[f"customer {i}"]) for i, n in enumerate(numbers)])
    t0 = time.perf_counter()
    res = await client.execute_workflow(BulkSendWhatsAppTemplate.run, inp, id=f"bench-bulk-{uuid.uuid4().hex}",
                                        task_queue=task_queue)
    ours = time.perf_counter() - t0

    async with httpx.AsyncClient() as http:
        url = f"{sandbox_url}/whatsapp/v23.0/{plain_pid}/messages"
        headers = {"Authorization": f"Bearer {token}"}
        t0 = time.perf_counter()
        for i, to in enumerate(numbers):
            body = {"messaging_product": "whatsapp", "to": to.lstrip("+"), "type": "template", "template": {
                "name": "bench_notice", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": f"customer {i}"}]}]}}
            (await http.post(url, json=body, headers=headers)).raise_for_status()
        plain = time.perf_counter() - t0
        after = (await http.get(f"{sandbox_url}/_sandbox/whatsapp/stats")).json()["throughput_errors"]

    ours_mps, plain_mps = res.sent / ours, messages / plain
    report = {"messages": messages, "sent": res.sent, "failed": res.failed, "limit_mps": mps,
              "ours_seconds": round(ours, 2), "ours_mps": round(ours_mps, 1),
              "plain_seconds": round(plain, 2), "plain_mps": round(plain_mps, 1),
              "ratio_to_limit": round(ours_mps / mps, 3), "ratio_to_plain_loop": round(ours_mps / plain_mps, 3),
              "throughput_errors": after - before}
    print(f"BulkSendWhatsAppTemplate: {res.sent}/{messages} sent in {ours:.2f} s = {ours_mps:.1f} msg/s "
          f"(limit {mps} msg/s per number, batch {batch_size}, concurrency {inp.concurrency})")
    print(f"plain httpx loop (no limiter, no Temporal): {messages} in {plain:.2f} s = {plain_mps:.1f} msg/s")
    print(f"ratio to the per-number limit: {report['ratio_to_limit']:.3f}")
    print(f"ratio to a plain httpx loop:   {report['ratio_to_plain_loop']:.3f}")
    print(f"130429 rejections from the sandbox during the run: {report['throughput_errors']}")
    return report


async def main(messages: int, mps: int, batch_size: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="osi-bench-"))
    stack = Stack()
    tport, vport, sport = free_port(), free_port(), free_port()
    try:
        stack.temporal(tport, free_port(), None, headless=True, log=tmp / "temporal.log")
        stack.vault(vport, log=tmp / "bao.log")
        settings = Settings(data_dir=tmp, temporal_address=f"127.0.0.1:{tport}", vault_addr=f"http://127.0.0.1:{vport}",
                            database_url=f"sqlite:///{tmp / 'bench.db'}", sandbox_port=sport,
                            sections={"whatsapp": {"base_url": f"http://127.0.0.1:{sport}/whatsapp"}},
                            task_queue=f"bench-{uuid.uuid4().hex[:6]}", _env_file=None)  # type: ignore[call-arg]
        # The sandbox in its own process, as in `make run`: it must not share our event loop or GIL.
        proc = stack.python("sandbox", {"OSI_SANDBOX_PORT": str(sport)}, tmp / "sandbox.log")
        wait_port("127.0.0.1", sport, 30, proc)
        upgrade(settings.database_url)
        rt = Runtime(settings, registry=registry())
        rt.vault.ensure_engines(settings.vault_transit_key)
        client = await connect(settings)
        async with build_worker(client, rt):
            await run_bench(client, rt, f"http://127.0.0.1:{sport}", settings.task_queue, messages=messages,
                            mps=mps, batch_size=batch_size)
        await rt.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--mps", type=int, default=500, help="the per-number throughput limit (Meta: 80 default)")
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.mps, args.batch_size))
