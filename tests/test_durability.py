"""Durability and interoperability: kill -9 mid-send, and starting a workflow from plain JSON."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

import httpx

from activities.whatsapp.models import SendWhatsAppMessageResult
from tests import seed


def worker_env(settings, task_queue: str) -> dict[str, str]:
    return {**os.environ,
            "OSI_TEMPORAL_ADDRESS": settings.temporal_address, "OSI_VAULT_ADDR": settings.vault_addr,
            "OSI_VAULT_TOKEN": "root", "OSI_DATABASE_URL": settings.database_url,
            "OSI_WHATSAPP_BASE_URL": settings.sections["whatsapp"]["base_url"], "OSI_TASK_QUEUE": task_queue,
            "OSI_WORKER_METRICS_PORT": "0"}


async def test_kill_9_worker_mid_send_then_restart_completes(client, runtime, sandbox, settings):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    env = worker_env(settings, queue)
    first = subprocess.Popen([sys.executable, "-m", "worker"], env=env, start_new_session=True)
    async with httpx.AsyncClient() as http:
        await http.put(f"{sandbox.url}/_sandbox/faults/whatsapp", json={"latency_ms": 3000})
    handle = await client.start_workflow("SendWhatsAppMessage", {
        "organization_id": wa.organization_id, "to": ["+16505551234"], "text": "survive me"},
        id=f"kill-{uuid.uuid4().hex}", task_queue=queue, result_type=SendWhatsAppMessageResult)
    second = None
    try:
        # Wait until the send is in flight at the provider (the sandbox holds it for 3 s), then kill.
        for _ in range(600):
            if sandbox.state.inflight.get("whatsapp", 0) > 0:
                break
            await asyncio.sleep(0.02)
        assert sandbox.state.inflight.get("whatsapp", 0) > 0, "the send never reached the provider"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        async with httpx.AsyncClient() as http:
            await http.delete(f"{sandbox.url}/_sandbox/faults")
        second = subprocess.Popen([sys.executable, "-m", "worker"], env=env, start_new_session=True)
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
    assert result.results[0].status == "accepted"
    desc = await handle.describe()
    assert desc.status is not None and desc.status.name == "COMPLETED"
    hist = await handle.fetch_history()
    attempts = [e.activity_task_started_event_attributes.attempt for e in hist.events
                if e.HasField("activity_task_started_event_attributes")]
    assert attempts and max(attempts) >= 2, "the send was retried on the new worker"


async def test_start_from_plain_json_with_temporal_cli(worker, runtime, sandbox, settings, gateway, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    wid = f"cli-{uuid.uuid4().hex}"
    temporal = shutil.which("temporal") or os.path.join(os.path.dirname(sys.executable), "temporal")
    inp = json.dumps({"organization_id": wa.organization_id, "connection": "default",
                      "to": "+16505551234", "text": "started from JSON"})
    base = [temporal, "--address", settings.temporal_address]
    start = subprocess.run([*base[:1], "workflow", "start", *base[1:], "--type", "SendWhatsAppMessage",
                            "--task-queue", task_queue, "--workflow-id", wid, "--input", inp],
                           capture_output=True, text=True, timeout=60)
    assert start.returncode == 0, start.stderr
    res = await asyncio.to_thread(
        subprocess.run, [temporal, "workflow", "result", "--address", settings.temporal_address,
                         "--workflow-id", wid, "--codec-endpoint", f"{gateway}/codec", "-o", "json"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    text = json.dumps(out)
    assert '"accepted"' in text and "wamid." in text


async def test_worker_shuts_down_cleanly_on_sigterm(settings):
    env = worker_env(settings, f"term-{uuid.uuid4().hex[:8]}")
    proc = subprocess.Popen([sys.executable, "-m", "worker"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []

    def until_polling() -> None:
        # The log line comes after the signal handlers are installed: a SIGTERM before it would kill the
        # process the default way (-15), whatever the worker's own shutdown does.
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "worker polling task queue" in line:
                return

    try:
        await asyncio.wait_for(asyncio.to_thread(until_polling), timeout=120)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(lines) + proc.stderr.read()
    assert code == 0, stderr
    assert "shutting down" in stderr


async def test_invalid_json_input_fails_the_workflow_at_once(client, worker, task_queue):
    from temporalio.client import WorkflowFailureError

    handle = await client.start_workflow("SendWhatsAppMessage", {"to": ["+16505551234"], "text": "no org"},
                                         id=f"bad-{uuid.uuid4().hex}", task_queue=task_queue)
    try:
        await asyncio.wait_for(handle.result(), timeout=30)
        raise AssertionError("a workflow without recipients must fail")
    except WorkflowFailureError as err:
        assert "organization_id" in str(err.cause) and "Field required" in str(err.cause)
