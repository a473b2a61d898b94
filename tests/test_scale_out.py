"""Scale-out on one machine: three `python -m worker` processes and the gateway against one Temporal dev server,
a fresh PostgreSQL database, the Redis limiter and the sandbox in its own process.

A 1,000-recipient BulkSendWhatsAppTemplate and 200 concurrent SendWhatsAppMessage workflows share one number's
limit (80 msg/s, Meta's default) through Redis: the sandbox answers no 130429. One worker is killed with -9 in
the middle: every recipient is still accepted by the provider (counted on the sandbox). A rotating Slack token
that is about to expire is refreshed exactly once although all three workers send with it at once.

`make scale-test` runs this file alone and prints the measurements (docs/deploy.md "Sizing" quotes them);
OSI_SCALE_RECIPIENTS / OSI_SCALE_SINGLES / OSI_SCALE_MPS change the load.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle

from activities.slack.models import SendSlackMessageInput, SendSlackMessageResult
from activities.slack.seed import create_workspace, direct_connection, ensure_app
from activities.whatsapp.models import (
    BulkRecipient,
    BulkSendWhatsAppTemplateInput,
    BulkSendWhatsAppTemplateResult,
    SendWhatsAppMessageResult,
)
from activities.whatsapp.store import WhatsAppStore
from core.connections import add_connection
from core.runtime import Runtime
from core.settings import Settings
from core.temporal import connect
from tests.conftest import StackInfo, sandbox_sections
from vault.credentials import BearerTokenCredentials
from worker.migrate import upgrade
from worker.registry import registry
from worker.stack import free_port, proc_cpu_seconds, wait_port

pytestmark = [pytest.mark.scale]

# The lead's duplicate-send fix (a send whose worker died mid-call is reconciled with the provider instead of
# sent again) makes duplicates after kill -9 avoidable. Until it lands this test reports the duplicates it
# sees; flip this to True (or run with OSI_SCALE_STRICT_DUPLICATES=1) to make "duplicates nothing" an assertion.
STRICT_NO_DUPLICATES_AFTER_KILL = True

RECIPIENTS = int(os.environ.get("OSI_SCALE_RECIPIENTS", "1000"))
SINGLES = int(os.environ.get("OSI_SCALE_SINGLES", "200"))
MPS = int(os.environ.get("OSI_SCALE_MPS", "80"))  # one number's limit, in the sandbox and the connection
# No limit margin: the limiter holds each slot until the sandbox's answer (core.limiter.Limit), so a request
# delayed on its way (the sandbox process starved of CPU on a shared 2-core host, a worker's GC pause) keeps its
# slot for as long as it was delayed. OSI_SCALE_MARGIN=<seconds> still sets the connection's limit_margin_seconds.
# The sandbox's network adds lognormal arrival jitter (median OSI_SCALE_JITTER_MS), as a real network would.
MARGIN = os.environ.get("OSI_SCALE_MARGIN", "")
JITTER_MS = os.environ.get("OSI_SCALE_JITTER_MS", "2")
# Status webhooks to the gateway: off by default, because each status signal-with-starts the recipient's
# WhatsAppConversation (1,200 extra workflows: about 3x longer on a shared 2-core host). On whenever duplicates are
# asserted: reconciling a send whose worker died relies on the statuses' biz_opaque_callback_data.
WEBHOOKS = os.environ.get("OSI_SCALE_WEBHOOKS") == "1" or STRICT_NO_DUPLICATES_AFTER_KILL \
    or os.environ.get("OSI_SCALE_STRICT_DUPLICATES") == "1"
WORKERS = 3
KILL_AT = 0.3  # share of all WhatsApp messages accepted when worker-1 is killed
SLACK_CHANNELS, SLACK_PER_CHANNEL = 6, 3
REDIS_DB = 7
PG = "postgresql://postgres@127.0.0.1:5432"
TEMPLATE = {"name": "scale_notice", "language": "en_US", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hello {{1}}, your parcel is on its way."}]}


def strict_duplicates() -> bool:
    return STRICT_NO_DUPLICATES_AFTER_KILL or os.environ.get("OSI_SCALE_STRICT_DUPLICATES") == "1"


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    health_url: str
    metrics_url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Topology:
    settings: Settings
    sandbox_url: str
    gateway_url: str
    workers: list[Proc]
    logs: Path
    database: str
    redis_prefix: str
    procs: list[Proc] = field(default_factory=list)


def child_env(settings: Settings, sandbox_url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSI_", "TEMPORAL_"))}
    for plugin in registry().providers():
        assert plugin.provider is not None
        env |= plugin.provider.settings.sandbox_env(sandbox_url)
    return {**env, "OSI_DEV_MODE": "true", "OSI_STACK_FILE": "", "OSI_WORKER_METRICS_PORT": "0",
            "OSI_WORKER_SDK_METRICS_PORT": "0",
            "OSI_TEMPORAL_ADDRESS": str(settings.temporal_address), "OSI_TASK_QUEUE": settings.task_queue,
            "OSI_VAULT_ADDR": settings.vault_addr, "OSI_VAULT_TOKEN": "root",
            "OSI_DATABASE_URL": settings.database_url, "OSI_MIGRATE_ON_START": "false",
            "OSI_LIMITER_BACKEND": settings.limiter_backend, "OSI_LIMITER_KEY_PREFIX": prefix,
            "OSI_EGRESS_PRIVATE_HOSTS": "127.0.0.1",
            "OSI_BREAKER_FAILURE_THRESHOLD": "50", "OSI_PAYLOAD_ENCRYPTION": "true", "OSI_LOG_LEVEL": "WARNING",
            **extra}


def spawn(name: str, module: str, env: dict[str, str], logs: Path, health_url: str) -> Proc:
    out = open(logs / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return Proc(name, proc, health_url)


def stop(procs: list[Proc]) -> None:
    for p in procs:
        if p.proc.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.proc.wait()


async def wait_ready(procs: list[Proc], within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        for p in procs:
            while True:
                assert p.proc.poll() is None, f"{p.name} exited with {p.proc.returncode}"
                try:
                    if (await http.get(p.health_url)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{p.name} not ready at {p.health_url}"
                await asyncio.sleep(0.25)


@pytest.fixture
async def topology(stack: StackInfo, tmp_path: Path) -> AsyncIterator[Topology]:
    run = uuid.uuid4().hex[:8]
    database = f"osi_scale_{run}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    sport, gport = free_port(), free_port()
    sandbox_url, gateway_url = f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{gport}"
    settings = Settings(
        data_dir=tmp_path, temporal_address=stack.temporal_address, task_queue=f"scale-{run}",
        vault_addr=stack.vault_addr, database_url=f"{PG}/{database}", limiter_backend=f"redis://127.0.0.1:6379/{REDIS_DB}",
        gateway_port=gport, gateway_public_url=gateway_url, sections=sandbox_sections(sandbox_url),
        egress_private_hosts="127.0.0.1", _env_file=None)  # type: ignore[call-arg]
    prefix = f"osi:scale:{run}:"
    logs = Path(os.environ.get("OSI_SCALE_LOGS") or tmp_path) / f"scale-{run}"  # kept after the run when given
    logs.mkdir(parents=True)
    procs: list[Proc] = []
    try:
        upgrade(settings.database_url)  # the migrations job; the processes only check the revision
        sandbox = spawn("sandbox", "sandbox", {**os.environ, "OSI_SANDBOX_PORT": str(sport),
                                               "OSI_SANDBOX_JITTER_MS": JITTER_MS}, logs,
                        f"{sandbox_url}/_sandbox/healthz")
        procs.append(sandbox)
        wait_port("127.0.0.1", sport, 30, sandbox.proc)
        gateway = spawn("gateway", "gateway", child_env(settings, sandbox_url, prefix, OSI_GATEWAY_PORT=str(gport),
                                                        OSI_GATEWAY_PUBLIC_URL=gateway_url), logs,
                        f"{gateway_url}/readyz")
        procs.append(gateway)
        workers = []
        for i in range(1, WORKERS + 1):
            hport, mport = free_port(), free_port()
            w = spawn(f"worker-{i}", "worker", child_env(settings, sandbox_url, prefix,
                                                         OSI_WORKER_HEALTH_PORT=str(hport),
                                                         OSI_WORKER_METRICS_PORT=str(mport)),
                      logs, f"http://127.0.0.1:{hport}/readyz")
            w.metrics_url = f"http://127.0.0.1:{mport}/metrics"
            workers.append(w)
            procs.append(w)
        started = time.monotonic()
        await wait_ready(procs)
        print(f"\nscale topology ready in {time.monotonic() - started:.1f} s (logs {logs})")
        yield Topology(settings, sandbox_url, gateway_url, workers, logs, database, prefix, procs)
    finally:
        stop(procs)
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        r = aioredis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}")
        keys = [k async for k in r.scan_iter(f"{prefix}*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


# ---- seeding -------------------------------------------------------------------------------------------

@dataclass
class WhatsAppSeed:
    org: str
    phone_number_id: str
    bulk: list[str]
    singles: list[str]


async def seed_whatsapp(rt: Runtime, top: Topology) -> WhatsAppSeed:
    org = f"scale-{uuid.uuid4().hex[:8]}"
    pid, waba = str(10**14 + secrets.randbelow(10**14)), str(2 * 10**14 + secrets.randbelow(10**14))
    token, app_secret = "EAAscale" + secrets.token_hex(12), secrets.token_hex(16)
    conn = await add_connection(rt, org, "WHATSAPP_BUSINESS", "default",
                                {"phone_number_id": pid, "waba_id": waba, "throughput_mps": MPS,
                                 "messaging_limit": "unlimited",
                                 # A loaded 2-core machine may take seconds to ingest status webhooks.
                                 "reconcile_seconds": 20,
                                 **({"limit_margin_seconds": float(MARGIN)} if MARGIN else {})},
                                BearerTokenCredentials(token=SecretStr(token), app_secret=SecretStr(app_secret),
                                                       verify_token=SecretStr(secrets.token_hex(8))), actor="scale")
    bulk = [f"+1650{5550000 + i:07d}" for i in range(RECIPIENTS)]
    singles = [f"+1415{5550000 + i:07d}" for i in range(SINGLES)]
    async with httpx.AsyncClient() as http:
        (await http.post(f"{top.sandbox_url}/_sandbox/whatsapp/phone_numbers", json={
            "phone_number_id": pid, "token": token, "app_secret": app_secret, "waba_id": waba,
            "throughput_mps": MPS, "messaging_limit_tier": "TIER_UNLIMITED", "enforce_window": False,
            # Status webhooks ("sent" per message) to the gateway when asked: they double the sandbox's work.
            "webhook_url": f"{top.gateway_url}/webhooks/whatsapp/{conn.id}" if WEBHOOKS else None,
            "deliver": False})).raise_for_status()
        (await http.post(f"{top.sandbox_url}/_sandbox/whatsapp/templates", json={"waba_id": waba, **TEMPLATE})
         ).raise_for_status()
    await rt.store.run(WhatsAppStore(rt.store).opt_in, org, pid, [n.lstrip("+") for n in bulk + singles], "scale")
    return WhatsAppSeed(org, pid, bulk, singles)


async def seed_slack(rt: Runtime, top: Topology) -> tuple[str, list[str]]:
    """A workspace whose rotating bot token expires in a minute: every send first needs a refresh."""
    await ensure_app(rt, top.sandbox_url, top.gateway_url)
    ws = await create_workspace(top.sandbox_url, channels={f"scale-{i}": {} for i in range(SLACK_CHANNELS)})
    org = f"scale-slack-{uuid.uuid4().hex[:8]}"
    conn, _ = await direct_connection(rt, top.sandbox_url, org, ws, rotation=True)
    path = rt.credentials_path(conn)
    creds = await rt.vault.read(path, use_cache=False)
    await rt.vault.write(path, creds.model_copy(update={"expires_at": datetime.now(UTC) + timedelta(seconds=60)}))
    return org, list(ws.channels.values())


# ---- measuring -----------------------------------------------------------------------------------------

async def sample(top: Topology, peaks: dict[str, int], stop: asyncio.Event) -> None:
    """Peak PostgreSQL connections to this run's database and peak limiter keys under this run's prefix."""
    r = aioredis.from_url(top.settings.limiter_backend)
    async with await psycopg.AsyncConnection.connect(f"{PG}/postgres", autocommit=True) as conn:
        while not stop.is_set():
            row = await (await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                            [top.database])).fetchone()
            peaks["pg_connections_peak"] = max(peaks.get("pg_connections_peak", 0), int(row[0]) if row else 0)
            keys = len([k async for k in r.scan_iter(f"{top.redis_prefix}*")])
            peaks["redis_limiter_keys_peak"] = max(peaks.get("redis_limiter_keys_peak", 0), keys)
            await asyncio.sleep(0.5)
    await r.aclose()




async def limiter_waits(procs: list[Proc]) -> dict[str, float]:
    """WhatsApp sends that waited for a limiter slot and for how long, summed over the live workers."""
    out = {"sends": 0.0, "waited": 0.0, "seconds": 0.0}
    async with httpx.AsyncClient() as http:
        for p in procs:
            if p.proc.poll() is not None:
                continue
            for line in (await http.get(p.metrics_url)).text.splitlines():
                if 'provider="whatsapp"' not in line or line.startswith("#"):
                    continue
                name, value = line.split(" ")[0], float(line.split(" ")[-1])
                if name.startswith("osi_limiter_wait_seconds_count"):
                    out["sends"] += value
                elif name.startswith("osi_limiter_wait_seconds_sum"):
                    out["seconds"] += value
                elif name.startswith("osi_limiter_wait_seconds_bucket") and 'le="0.0"' in name:
                    out["waited"] -= value  # sends that did not wait (le=0); the count is added below
    out["waited"] += out["sends"]
    return {k: round(v, 1) for k, v in out.items()}


async def activity_identities(handles: list[WorkflowHandle[Any, Any]]) -> Counter[str]:
    """Which worker process (identity `pid@host`) started each activity attempt."""
    seen: Counter[str] = Counter()

    async def one(h: WorkflowHandle[Any, Any]) -> None:
        async for event in h.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                seen[event.activity_task_started_event_attributes.identity] += 1

    sem = asyncio.Semaphore(20)

    async def bounded(h: WorkflowHandle[Any, Any]) -> None:
        async with sem:
            await one(h)

    await asyncio.gather(*(bounded(h) for h in handles))
    return seen


# ---- the test ------------------------------------------------------------------------------------------

async def test_three_workers_share_one_number_survive_kill_9_and_refresh_a_rotating_token_once(
        topology: Topology) -> None:
    top = topology
    rt = Runtime(top.settings, registry=registry())
    rt.vault.ensure_engines(top.settings.vault_transit_key)  # KV v2 and the payload key on the dev server
    client: Client = await connect(top.settings)
    report: dict[str, Any] = {"workers": WORKERS, "recipients": RECIPIENTS, "singles": SINGLES, "limit_mps": MPS}
    try:
        wa = await seed_whatsapp(rt, top)
        slack_org, channels = await seed_slack(rt, top)
        async with httpx.AsyncClient(timeout=60) as http:
            slack_before = (await http.get(f"{top.sandbox_url}/_sandbox/slack/stats")).json()
            wa_before = (await http.get(f"{top.sandbox_url}/_sandbox/whatsapp/stats")).json()

        # 1. Slack: every worker sends with the expiring token at the same moment.
        slack = await asyncio.gather(*(client.start_workflow(
            "SendSlackMessage", SendSlackMessageInput(organization_id=slack_org, channel=c, message=f"scale {c} {k}"),
            id=f"scale-slack-{uuid.uuid4().hex}", task_queue=top.settings.task_queue,
            result_type=SendSlackMessageResult) for c in channels for k in range(SLACK_PER_CHANNEL)))
        slack_results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in slack)), 120)
        assert all(r.ts for r in slack_results)

        # 2. WhatsApp: the bulk send and the single sends at once, on one number.
        stop_sampling, peaks = asyncio.Event(), {}
        sampler = asyncio.create_task(sample(top, peaks, stop_sampling))
        t0, wall0 = time.monotonic(), time.time()
        bulk = await client.start_workflow(
            "BulkSendWhatsAppTemplate", BulkSendWhatsAppTemplateInput(
                organization_id=wa.org, template_name=TEMPLATE["name"], batch_size=50, concurrency=8,
                max_parallel_batches=6,
                recipients=[BulkRecipient(to=n, body=[f"customer {i}"]) for i, n in enumerate(wa.bulk)]),
            id=f"scale-bulk-{uuid.uuid4().hex}", task_queue=top.settings.task_queue,
            result_type=BulkSendWhatsAppTemplateResult)
        singles = await asyncio.gather(*(client.start_workflow(
            "SendWhatsAppMessage", {"organization_id": wa.org, "to": [n], "text": f"single {i}"},
            id=f"scale-single-{uuid.uuid4().hex}", task_queue=top.settings.task_queue,
            result_type=SendWhatsAppMessageResult) for i, n in enumerate(wa.singles)))

        # 3. kill -9 one worker once a share of the messages is out.
        total = RECIPIENTS + SINGLES
        async with httpx.AsyncClient(timeout=60) as http:
            while True:
                accepted = (await http.get(f"{top.sandbox_url}/_sandbox/whatsapp/messages",
                                           params={"phone_number_id": wa.phone_number_id})).json()["count"]
                if accepted >= KILL_AT * total:
                    break
                assert time.monotonic() - t0 < 120, f"only {accepted} messages after 120 s"
                await asyncio.sleep(0.1)
        victim = top.workers[0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.proc.wait(10)
        killed_at = time.monotonic()
        report["killed_at_second"] = round(killed_at - t0, 1)
        report["killed_after_accepted"] = accepted

        bulk_result = await asyncio.wait_for(bulk.result(), 240)
        single_results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in singles)), 240)
        elapsed = time.monotonic() - t0
        stop_sampling.set()
        await sampler
        report["seconds_after_kill"] = round(time.monotonic() - killed_at, 1)

        # ---- what the provider saw ----
        async with httpx.AsyncClient(timeout=60) as http:
            msgs = (await http.get(f"{top.sandbox_url}/_sandbox/whatsapp/messages",
                                   params={"phone_number_id": wa.phone_number_id})).json()["messages"]
            wa_after = (await http.get(f"{top.sandbox_url}/_sandbox/whatsapp/stats")).json()
            slack_after = (await http.get(f"{top.sandbox_url}/_sandbox/slack/stats")).json()
            log = (await http.get(f"{top.sandbox_url}/_sandbox/requests", params={"provider": "whatsapp"})).json()
        sends = [r for r in log if r["method"] == "POST" and r["path"].endswith(f"/{wa.phone_number_id}/messages")]
        rejected_130429 = wa_after["throughput_errors"] - wa_before["throughput_errors"]
        per_recipient = Counter("+" + m["to"] for m in msgs)
        lost = [n for n in wa.bulk + wa.singles if per_recipient[n] == 0]
        duplicates = {n: c for n, c in per_recipient.items() if c > 1}
        accepted_times = [float(m["accepted_at"]) for m in msgs]
        identities = await activity_identities([bulk, *singles, *slack])
        pids = {str(w.pid): w.name for w in top.workers}
        by_worker = Counter({pids.get(i.split("@")[0], i): n for i, n in identities.items()})
        report["limiter_waits_survivors"] = await limiter_waits(top.workers)
        report["cpu_seconds"] = {p.name: round(proc_cpu_seconds(p.pid), 1) for p in top.procs if p.proc.poll() is None}
        report |= {
            "seconds": round(elapsed, 1),
            "messages_accepted": len(msgs),
            "msg_per_s_overall": round(len(msgs) / elapsed, 1),
            # messages the provider accepted in each 10 s since the start (the kill's gap and the catch-up)
            "accepted_per_10s": list(Counter(int((t - wall0) // 10) for t in accepted_times).values()),
            "msg_per_s_while_sending": round(len(msgs) / max(1e-3, max(accepted_times) - min(accepted_times)), 1),
            "provider_400s": sum(1 for s in sends if s["status"] == 400),
            "rejected_130429": rejected_130429,
            "lost": len(lost), "duplicates": sum(c - 1 for c in duplicates.values()),
            "duplicate_recipients": len(duplicates),
            "activity_attempts_by_worker": dict(sorted(by_worker.items())),
            "slack_refreshes": slack_after.get("refreshes", 0) - slack_before.get("refreshes", 0),
            "slack_refresh_failed": slack_after.get("refresh_failed", 0) - slack_before.get("refresh_failed", 0),
            **peaks,
        }
        print("\nSCALE-OUT " + json.dumps(report))
        (top.logs / "report.json").write_text(json.dumps(report, indent=2))

        # ---- the claims ----
        assert rejected_130429 == 0 and report["provider_400s"] == 0, report
        assert not lost, f"never accepted by the provider: {lost[:10]} ({len(lost)})"
        assert bulk_result.sent == RECIPIENTS and bulk_result.failed == 0, bulk_result
        assert all(r.results[0].status == "accepted" for r in single_results)
        if strict_duplicates():
            assert not duplicates, f"sent twice after kill -9: {report['duplicates']} extra messages"
        # The load was shared: every worker ran activities (the victim until it died), the survivors after.
        assert set(by_worker) >= {w.name for w in top.workers}, by_worker
        assert report["slack_refreshes"] == 1 and report["slack_refresh_failed"] == 0, report
        slack_workers = await activity_identities(list(slack))
        assert len(slack_workers) >= 2, f"the Slack sends did not run on several workers: {slack_workers}"
        assert peaks["redis_limiter_keys_peak"] > 0  # the limiter state lived in Redis, under this run's prefix
    finally:
        await rt.close()
