"""Webhook ingest: signed WhatsApp inbound messages against the real gateway vs a verify-only endpoint, same run.

Per round: E events over C customers (half of them already have a running conversation, started before the
clock; the other half start theirs during the run), K concurrent senders, in random order. The gateway runs as
`python -m gateway` and the worker as `python -m worker` (own processes, as deployed); the baseline is
bench/verify_only.py, served the same way. Reports events/s, ack latency p50/p95/p99 and lost messages
(sent vs recorded in the store and vs seen by the conversation workflows). Target: >= 400 events/s, p99 < 100 ms,
0 lost.

Usage: python bench/webhook_ingest.py [--events 3000] [--customers 300] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlmodel import col
from temporalio.service import RPCError

from activities.whatsapp import conversation_ids
from activities.whatsapp.store import WhatsAppMessageRecord
from bench.common import (
    ROOT,
    BenchStack,
    bench_stack,
    emit,
    median,
    percentile,
    proc_cpu_seconds,
)
from core.connections import add_connection
from vault.credentials import BearerTokenCredentials
from worker.stack import child_on_free_port


def delivery(pid: str, waba: str, wa_id: str, text: str) -> dict[str, Any]:
    """One inbound text message in Meta's webhook shape."""
    msg = {"from": wa_id, "id": f"wamid.bench.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
           "type": "text", "text": {"body": text}}
    return {"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001111", "phone_number_id": pid},
        "contacts": [{"profile": {"name": f"Customer {wa_id[-4:]}"}, "wa_id": wa_id}], "messages": [msg]}}]}]}


def signed(app_secret: str, doc: dict[str, Any]) -> tuple[bytes, str]:
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return raw, "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


async def fire(url: str, bodies: list[tuple[bytes, str]], concurrency: int) -> tuple[float, list[float], int]:
    """POST every body with `concurrency` senders; wall seconds, ack latencies (s) and failed attempts (non-2xx
    answers and dropped connections)."""
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    errors = 0

    async def sender(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            raw, sig = queue.get_nowait()
            for attempt in range(3):  # a dropped connection is redelivered, as Meta does (counted as an error)
                t0 = time.perf_counter()
                try:
                    r = await http.post(url, content=raw, headers={"Content-Type": "application/json",
                                                                   "X-Hub-Signature-256": sig})
                except httpx.TransportError:
                    errors += 1
                    if attempt == 2:
                        raise
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                break

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender(http) for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies, errors


class Org:
    """One organization's WhatsApp connection, seeded through the project (credentials in Vault)."""

    def __init__(self, bs: BenchStack) -> None:
        self.bs = bs
        self.org = f"bench-{uuid.uuid4().hex[:8]}"
        self.pid = str(10**14 + secrets.randbelow(10**14))
        self.waba = str(2 * 10**14 + secrets.randbelow(10**14))
        self.secret = secrets.token_hex(16)
        self.connection_id = ""

    async def create(self) -> None:
        conn = await add_connection(self.bs.rt, self.org, "WHATSAPP_BUSINESS", "default",
                                    {"phone_number_id": self.pid, "waba_id": self.waba},
                                    BearerTokenCredentials(token=SecretStr("EAAbench" + secrets.token_hex(8)),
                                                           app_secret=SecretStr(self.secret)), actor="bench")
        self.connection_id = conn.id


def customers(start: int, n: int) -> list[str]:
    return [f"1650{5_550_000 + start + i:07d}" for i in range(n)]


async def counted(bs: BenchStack, org: Org, sent: dict[str, set[str]]) -> tuple[int, int]:
    """Of the messages sent (wamids by customer): how many the store recorded, how many the conversations hold."""
    def recorded() -> int:
        with bs.rt.store.session() as s:
            q = select(func.count()).select_from(WhatsAppMessageRecord).where(
                col(WhatsAppMessageRecord.organization_id) == org.org, col(WhatsAppMessageRecord.direction) == "in")
            return int(s.execute(q).scalar_one())

    in_store = await bs.rt.store.run(recorded)
    sem = asyncio.Semaphore(16)

    async def one(customer: str, mine: set[str]) -> int:
        wid = await conversation_ids.workflow_id(bs.rt, org.org, org.pid, customer)
        async with sem:
            try:
                view = await bs.client.get_workflow_handle(wid).query("view")
            except RPCError:
                return 0
        return len(mine & {m["message_id"] for m in view["messages"] if m["direction"] == "in"})

    seen = sum(await asyncio.gather(*(one(c, ms) for c, ms in sent.items())))
    return in_store, seen


async def run(events: int, n_customers: int, concurrency: int, rounds: int) -> dict[str, Any]:
    async with bench_stack(gateway=True) as bs:
        worker_env = {**bs.env(), "OSI_WORKER_HEALTH_PORT": "0"}  # not read here: no port to race for
        worker_pid = bs.stack.python("worker", worker_env, bs.tmp / "worker.log").pid
        gateway_url = f"http://127.0.0.1:{bs.settings.gateway_port}"
        org = Org(bs)
        await org.create()
        _, vport = child_on_free_port(lambda port: bs.stack.spawn(
            [sys.executable, str(ROOT / "bench" / "verify_only.py")], bs.tmp / "verify.log",
            {"BENCH_PORT": str(port), "BENCH_APP_SECRET": org.secret, "PYTHONPATH": str(ROOT)}))
        gateway_pid, temporal_pid = int(bs.extra["gateway_pid"]), bs.temporal_pid
        path = f"/webhooks/whatsapp/{org.connection_id}"
        rng = random.Random(14)
        sent: dict[str, set[str]] = {}
        figures: dict[str, list[dict[str, float]]] = {"gateway": [], "verify_only": []}
        errors = 0
        next_customer = 0

        def bodies(people: list[str], per: int) -> list[tuple[bytes, str, str, str]]:
            out = []
            for c in people:
                for k in range(per):
                    doc = delivery(org.pid, org.waba, c, f"message {k}")
                    raw, sig = signed(org.secret, doc)
                    out.append((raw, sig, c, doc["entry"][0]["changes"][0]["value"]["messages"][0]["id"]))
            rng.shuffle(out)
            return out

        # Warm-up (untimed): both servers' first requests, the conversation-id key.
        warm = bodies(customers(4_000_000, 4), 1)
        for b in warm:
            sent.setdefault(b[2], set()).add(b[3])
        for url in (gateway_url + path, f"http://127.0.0.1:{vport}{path}"):
            errors += (await fire(url, [(b[0], b[1]) for b in warm], 4))[2]

        for r in range(rounds):
            people = customers(next_customer, n_customers)
            next_customer += n_customers
            running = people[: n_customers // 2]
            # Half the customers already talk to us: their conversations are running before the clock starts.
            opening = bodies(running, 1)
            for b in opening:
                sent.setdefault(b[2], set()).add(b[3])
            _, _, e = await fire(gateway_url + path, [(b[0], b[1]) for b in opening], concurrency)
            errors += e
            per = max(1, events // n_customers)
            load = bodies(people, per)[:events]
            order = ("gateway", "verify_only") if r % 2 == 0 else ("verify_only", "gateway")
            for which in order:
                if which == "gateway":
                    for b in load:
                        sent.setdefault(b[2], set()).add(b[3])
                    g0, t0 = proc_cpu_seconds(gateway_pid), proc_cpu_seconds(temporal_pid)
                    w0 = proc_cpu_seconds(worker_pid)
                    wall, lat, e = await fire(gateway_url + path, [(b[0], b[1]) for b in load], concurrency)
                    errors += e
                    # The worker's share is what it did during the run (signals it had not applied yet are not in).
                    cpu = {"gateway_cpu_ms": (proc_cpu_seconds(gateway_pid) - g0) / len(load) * 1000,
                           "temporal_cpu_ms": (proc_cpu_seconds(temporal_pid) - t0) / len(load) * 1000,
                           "worker_cpu_ms": (proc_cpu_seconds(worker_pid) - w0) / len(load) * 1000}
                else:
                    wall, lat, e = await fire(f"http://127.0.0.1:{vport}{path}", [(b[0], b[1]) for b in load],
                                              concurrency)
                    errors += e
                    cpu = {}
                figures[which].append({"rate": len(load) / wall, "p50": percentile(lat, 50) * 1000,
                                       "p95": percentile(lat, 95) * 1000, "p99": percentile(lat, 99) * 1000, **cpu})

        total = sum(len(v) for v in sent.values())
        # Acknowledged means recorded and signalled; give the worker time to apply the signals before counting.
        deadline = time.monotonic() + 120
        while True:
            in_store, in_conversations = await counted(bs, org, sent)
            if (in_store >= total and in_conversations >= total) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)

    def med(which: str, key: str) -> float:
        return round(median([f[key] for f in figures[which]]), 1)

    out: dict[str, Any] = {
           "bench": "webhook_ingest", "events": events, "customers": n_customers, "concurrency": concurrency,
           "rounds": rounds, "gateway_events_per_s": med("gateway", "rate"),
           "gateway_p50_ms": med("gateway", "p50"), "gateway_p95_ms": med("gateway", "p95"),
           "gateway_p99_ms": med("gateway", "p99"),
           "gateway_cpu_ms_per_event": med("gateway", "gateway_cpu_ms"),
           "temporal_cpu_ms_per_event": med("gateway", "temporal_cpu_ms"),
           "worker_cpu_ms_per_event": med("gateway", "worker_cpu_ms"),
           "verify_only_events_per_s": med("verify_only", "rate"), "verify_only_p50_ms": med("verify_only", "p50"),
           "verify_only_p99_ms": med("verify_only", "p99"),
           "sent": total, "recorded": in_store, "signalled": in_conversations,
           "lost": total - min(in_store, in_conversations), "failed_attempts": errors,
           "targets": {"events_per_s": 400, "p99_ms": 100, "lost": 0}}
    out["ratio_gateway_to_verify_only"] = round(out["gateway_events_per_s"] / out["verify_only_events_per_s"], 3)
    print(f"{events} signed inbound messages over {n_customers} customers (half with running conversations), "
          f"{concurrency} concurrent, median of {rounds} rounds:")
    print(f"  gateway:     {out['gateway_events_per_s']:.0f} events/s, ack p50 {out['gateway_p50_ms']} ms, "
          f"p95 {out['gateway_p95_ms']} ms, p99 {out['gateway_p99_ms']} ms; CPU per event: gateway "
          f"{out['gateway_cpu_ms_per_event']} ms, Temporal server {out['temporal_cpu_ms_per_event']} ms, "
          f"worker {out['worker_cpu_ms_per_event']} ms")
    print(f"  verify-only: {out['verify_only_events_per_s']:.0f} events/s, ack p50 {out['verify_only_p50_ms']} ms, "
          f"p99 {out['verify_only_p99_ms']} ms")
    print(f"  lost: {out['lost']} of {total} (recorded {in_store}, in conversations {in_conversations}), "
          f"failed attempts (non-2xx or dropped): {errors}")
    print(f"ratio gateway/verify-only: {out['ratio_gateway_to_verify_only']:.3f}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    emit(asyncio.run(run(args.events, args.customers, args.concurrency, args.rounds)))
