"""Bulk WhatsApp benchmark: BulkSendWhatsAppTemplate at Meta's default 80 msg/s and at a high limit.

For each limit, prints throughput as a ratio of the per-number limit and of a plain sequential httpx loop (one
request after another, no limiter, no Temporal) against the same sandbox, behind the same network (latency +
lognormal jitter: a limiter too close to the limit meets 130429), in the same run; rejections are counted on
the sandbox's side. `ratio_to_limit` is end to end (workflow start to result); `provider_side_ratio` is the rate
the sandbox admitted between its first and last arrival (the pacing alone, without the workflow's start-up).
Starts Temporal (in memory), OpenBao and the sandbox itself.

The last line is `RESULT {json}`: {"bench": "whatsapp_bulk", "rows": [one per limit and round, with keys
limit_mps, messages, sent, ours_mps, plain_mps, ratio_to_limit, ratio_to_plain_loop, provider_side_ratio,
rejected_130429, plain_rejected_130429, ...], "median": {limit_mps: {ratio_to_limit, ratio_to_plain_loop,
rejected_130429}}}.

Usage: python bench/whatsapp_bulk.py [--messages 2000] [--mps 80,500] [--rounds 1] [--jitter-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import statistics
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
from worker.stack import Stack, child_on_free_port
from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate

TEMPLATE = {"name": "bench_notice", "language": "en_US", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hello {{1}}, your parcel is on its way."}]}


def recipients(n: int) -> list[str]:
    """Distinct customers, so the per-customer pair limit never applies (it is not what is measured)."""
    return [f"+1650{5550000 + i:07d}" if i < 10_000 else f"+1415{5550000 + i - 10_000:07d}" for i in range(n)]


async def _seed_number(http: httpx.AsyncClient, sandbox_url: str, **cfg: Any) -> None:
    r = await http.post(f"{sandbox_url}/_sandbox/whatsapp/phone_numbers", json=cfg)
    r.raise_for_status()


async def number_stats(http: httpx.AsyncClient, sandbox_url: str, pid: str) -> dict[str, Any]:
    numbers = (await http.get(f"{sandbox_url}/_sandbox/whatsapp/stats")).json().get("numbers") or {}
    return dict(numbers.get(pid) or {"admitted": 0, "rejected_130429": 0, "first": 0.0, "last": 0.0})


async def plain_loop(sandbox_url: str, numbers: list[str], token: str, waba: str) -> tuple[float, int]:
    """The baseline: the same sends one after another with bare httpx, to a number without a limit."""
    pid = str(10**14 + secrets.randbelow(10**14))
    async with httpx.AsyncClient() as http:
        await _seed_number(http, sandbox_url, phone_number_id=pid, token=token, app_secret="bench", waba_id=waba,
                           throughput_mps=10**9, messaging_limit_tier="TIER_UNLIMITED")
        url = f"{sandbox_url}/whatsapp/v23.0/{pid}/messages"
        headers = {"Authorization": f"Bearer {token}"}
        t0 = time.perf_counter()
        for i, to in enumerate(numbers):
            body = {"messaging_product": "whatsapp", "to": to.lstrip("+"), "type": "template", "template": {
                "name": "bench_notice", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": f"customer {i}"}]}]}}
            (await http.post(url, json=body, headers=headers)).raise_for_status()
        seconds = time.perf_counter() - t0
        return seconds, int((await number_stats(http, sandbox_url, pid))["rejected_130429"])


def auto_concurrency(mps: int, rtt: float) -> int:
    """Sends in flight per batch (two batches run at once): throughput x a 40 ms round trip, 16 to 32. Fewer
    leave the limiter waiting on answers at 80 msg/s (8: 0.67 of the limit here, 16: 0.84); more only add CPU
    contention on a small host (100 in flight at 500 msg/s ran at 0.08 of the limit)."""
    return max(16, min(32, math.ceil(mps * max(rtt, 0.04))))


async def run_bench(client: Client, rt: Runtime, sandbox_url: str, task_queue: str, *, messages: int = 2000,
                    mps: int = 80, batch_size: int = 250, concurrency: int | None = None, rtt: float = 0.03,
                    limit_margin_seconds: float | None = None, plain: bool = True) -> dict[str, Any]:
    """Seed a connection limited to `mps`, send `messages` through the workflow, then the plain loop."""
    org = f"bench-{uuid.uuid4().hex[:8]}"
    pid = str(10**14 + secrets.randbelow(10**14))
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
        (await http.post(f"{sandbox_url}/_sandbox/whatsapp/templates", json={"waba_id": waba, **TEMPLATE}))\
            .raise_for_status()
    await rt.store.run(WhatsAppStore(rt.store).opt_in, org, pid, [n.lstrip("+") for n in numbers], "bench")
    inp = BulkSendWhatsAppTemplateInput(
        organization_id=org, template_name="bench_notice", batch_size=batch_size,
        concurrency=concurrency or auto_concurrency(mps, rtt),
        recipients=[BulkRecipient(to=n, body=[f"customer {i}"]) for i, n in enumerate(numbers)])
    waited0 = rt.limiter.waited_total
    t0 = time.perf_counter()
    res = await client.execute_workflow(BulkSendWhatsAppTemplate.run, inp, id=f"bench-bulk-{uuid.uuid4().hex}",
                                        task_queue=task_queue)
    ours = time.perf_counter() - t0
    async with httpx.AsyncClient() as http:
        seen = await number_stats(http, sandbox_url, pid)
    plain_seconds, plain_rejected = await plain_loop(sandbox_url, numbers, token, waba) if plain else (0.0, 0)

    ours_mps = res.sent / ours
    # Round trips the limiter measured (slot start to answer, so our own event-loop delays are in them).
    rtts = sorted(rt.limiter.rtt.recent("whatsapp.throughput"))
    plain_mps = messages / plain_seconds if plain_seconds else 0.0
    span = seen["last"] - seen["first"]
    provider_mps = (seen["admitted"] - 1) / span if span > 0 else 0.0
    report = {"limit_mps": mps, "messages": messages, "sent": res.sent, "failed": res.failed,
              "batch_size": batch_size, "concurrency": inp.concurrency,
              "ours_seconds": round(ours, 2), "ours_mps": round(ours_mps, 1),
              "plain_seconds": round(plain_seconds, 2), "plain_mps": round(plain_mps, 1),
              "ratio_to_limit": round(ours_mps / mps, 3),
              "ratio_to_plain_loop": round(ours_mps / plain_mps, 3) if plain_mps else None,
              "provider_side_mps": round(provider_mps, 1), "provider_side_ratio": round(provider_mps / mps, 3),
              "rejected_130429": int(seen["rejected_130429"]), "plain_rejected_130429": plain_rejected,
              "limiter_waited_s": round(rt.limiter.waited_total - waited0, 2),
              "rtt_ms_min_p50_p99": [round(1000 * rtts[int(q * (len(rtts) - 1))], 1) for q in (0, 0.5, 0.99)]
              if rtts else None}
    print(f"[{mps} msg/s] BulkSendWhatsAppTemplate: {res.sent}/{messages} sent in {ours:.2f} s = {ours_mps:.1f} "
          f"msg/s (batch {batch_size}, concurrency {inp.concurrency}); the sandbox admitted "
          f"{provider_mps:.1f} msg/s between its first and last arrival")
    if plain:
        print(f"[{mps} msg/s] plain sequential httpx loop: {messages} in {plain_seconds:.2f} s = {plain_mps:.1f} msg/s")
    print(f"[{mps} msg/s] ratio to the limit {report['ratio_to_limit']:.3f} (provider side "
          f"{report['provider_side_ratio']:.3f}), to the plain loop {report['ratio_to_plain_loop']}, "
          f"130429 from the sandbox: {report['rejected_130429']}; round trips (ms, min/p50/p99) "
          f"{report['rtt_ms_min_p50_p99']}, limiter waits {report['limiter_waited_s']} s in all")
    return report


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mps in sorted({r["limit_mps"] for r in rows}):
        mine = [r for r in rows if r["limit_mps"] == mps]
        out[str(mps)] = {
            "ratio_to_limit": statistics.median(r["ratio_to_limit"] for r in mine),
            "provider_side_ratio": statistics.median(r["provider_side_ratio"] for r in mine),
            "ratio_to_plain_loop": statistics.median(r["ratio_to_plain_loop"] or 0.0 for r in mine),
            "rejected_130429": sum(r["rejected_130429"] for r in mine), "rounds": len(mine)}
    return out


async def main(messages: int, limits: list[int], batch_size: int, rounds: int, latency_ms: float,
               jitter_ms: float, concurrency: int | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="osi-bench-"))
    stack = Stack()
    rows: list[dict[str, Any]] = []
    try:
        _, tport = stack.temporal_on_free_port(None, headless=True, log=tmp / "temporal.log")
        _, vport = stack.vault_on_free_port(log=tmp / "bao.log")
        # The sandbox in its own process, as in `make run`: it must not share our event loop or GIL. Every
        # request crosses its network: `latency_ms` plus lognormal jitter (median `jitter_ms`, long tail).
        _, sport = child_on_free_port(lambda port: stack.python(
            "sandbox", {"OSI_SANDBOX_PORT": str(port), "OSI_SANDBOX_LATENCY_MS": str(latency_ms),
                        "OSI_SANDBOX_JITTER_MS": str(jitter_ms)}, tmp / "sandbox.log"))
        settings = Settings(data_dir=tmp, temporal_address=f"127.0.0.1:{tport}", vault_addr=f"http://127.0.0.1:{vport}",
                            database_url=f"sqlite:///{tmp / 'bench.db'}", sandbox_port=sport,
                            sections={"whatsapp": {"base_url": f"http://127.0.0.1:{sport}/whatsapp"}},
                            task_queue=f"bench-{uuid.uuid4().hex[:6]}", _env_file=None)  # type: ignore[call-arg]
        upgrade(settings.database_url)
        rt = Runtime(settings, registry=registry())
        rt.vault.ensure_engines(settings.vault_transit_key)
        client = await connect(settings)
        rtt = (2 * latency_ms + 4 * jitter_ms) / 1000
        async with build_worker(client, rt):
            for _ in range(rounds):  # interleaved: every limit once per round
                for mps in limits:
                    rows.append(await run_bench(client, rt, f"http://127.0.0.1:{sport}", settings.task_queue,
                                                messages=messages, mps=mps, batch_size=batch_size,
                                                concurrency=concurrency, rtt=rtt))
        await rt.close()
    finally:
        stack.stop()
    result = {"bench": "whatsapp_bulk", "latency_ms": latency_ms, "jitter_ms": jitter_ms, "rows": rows,
              "median": summarize(rows)}
    for mps, m in result["median"].items():
        print(f"median over {m['rounds']} round(s) at {mps} msg/s: ratio to the limit {m['ratio_to_limit']:.3f} "
              f"(provider side {m['provider_side_ratio']:.3f}), to the plain loop {m['ratio_to_plain_loop']:.3f}, "
              f"130429: {m['rejected_130429']}")
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--mps", default="80,500", help="per-number limits to run, comma-separated (Meta: 80)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the sandbox network's fixed delay")
    parser.add_argument("--jitter-ms", type=float, default=2.0, help="median of its lognormal jitter")
    parser.add_argument("--concurrency", type=int, default=None, help="sends in flight per batch (default: auto)")
    args = parser.parse_args()
    asyncio.run(main(args.messages, [int(m) for m in args.mps.split(",")], args.batch_size, args.rounds,
                     args.latency_ms, args.jitter_ms, args.concurrency))
