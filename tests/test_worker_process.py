"""The worker process as deployed: /healthz and /readyz (OSI_WORKER_HEALTH_PORT), Worker Versioning settings."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import VersioningBehavior

from activities.whatsapp.models import SendWhatsAppMessageResult
from core.settings import Settings
from tests import seed
from worker.stack import free_port


def env_for(settings: Settings, queue: str, health_port: int, **extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "OSI_"))},
            "OSI_TEMPORAL_ADDRESS": str(settings.temporal_address), "OSI_VAULT_ADDR": settings.vault_addr,
            "OSI_VAULT_TOKEN": "root", "OSI_DATABASE_URL": settings.database_url,
            "OSI_WHATSAPP_BASE_URL": str(settings.sections["whatsapp"]["base_url"]), "OSI_TASK_QUEUE": queue,
            "OSI_WORKER_METRICS_PORT": "0", "OSI_WORKER_HEALTH_PORT": str(health_port), **extra}


@pytest.fixture
def spawn() -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "worker"], env=env, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def probe(port: int, path: str, until: Any, within: float = 60.0) -> httpx.Response:
    """GET until the answer satisfies `until` (a positive event), or fail."""
    last: httpx.Response | None = None
    async with httpx.AsyncClient() as http:
        for _ in range(int(within * 5)):
            try:
                last = await http.get(f"http://127.0.0.1:{port}{path}")
                if until(last):
                    return last
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{path} on :{port} never matched; last answer {last and last.text}")


async def test_readyz_reports_each_dependency_and_healthz_is_liveness(settings: Settings, spawn: Any) -> None:
    """A worker whose Vault is unreachable polls its queue but is not ready; the healthy one is."""
    dead_vault = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    spawn(env_for(settings, f"health-{uuid.uuid4().hex[:8]}", port, OSI_VAULT_ADDR=dead_vault))
    r = await probe(port, "/readyz", lambda r: r.json()["checks"]["task_queue"] == "ok")
    assert r.status_code == 503 and r.json()["status"] == "not ready"
    assert r.json()["checks"]["vault"].startswith("error") and r.json()["checks"]["store"] == "ok"
    live = await probe(port, "/healthz", lambda r: True)
    assert live.status_code == 200 and live.json() == {"status": "ok"}

    port = free_port()
    spawn(env_for(settings, f"health-{uuid.uuid4().hex[:8]}", port))
    r = await probe(port, "/readyz", lambda r: r.status_code == 200)
    assert r.json() == {"status": "ready", "checks": {"task_queue": "ok", "vault": "ok", "store": "ok"}}


async def test_readyz_is_not_ready_when_the_queue_is_polled_by_others_only(settings: Settings, spawn: Any,
                                                                            client: Any) -> None:
    """The check asks the Temporal server for *this* process's poller, not any poller of the queue."""
    from worker.health import WorkerHealth

    queue = f"health-{uuid.uuid4().hex[:8]}"
    port = free_port()
    spawn(env_for(settings, queue, port))
    await probe(port, "/readyz", lambda r: r.status_code == 200)
    rt = type("Rt", (), {})()
    other = WorkerHealth(client, rt, queue, identity="somebody-else@nowhere", running=lambda: True)
    assert (await other._polling()).startswith("error: not polling")
    me = WorkerHealth(client, rt, queue, identity="x", running=lambda: False)
    assert await me._polling() == "error: worker not running"


@pytest.mark.skipif(shutil.which("temporal") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "temporal")), reason="temporal CLI")
async def test_worker_versioning_pins_sends_to_the_build_they_started_on(
        settings: Settings, spawn: Any, client: Any, runtime: Any, sandbox: Any) -> None:
    """docs/deploy.md "Upgrades": the worker joins a Worker Deployment as a build; the operator makes the build
    current with the temporal CLI; a send runs pinned to it."""
    temporal = shutil.which("temporal") or os.path.join(os.path.dirname(sys.executable), "temporal")
    deployment, build = f"osi-{uuid.uuid4().hex[:6]}", "0.1.0-b1"
    queue, port = f"ver-{uuid.uuid4().hex[:8]}", free_port()
    spawn(env_for(settings, queue, port, OSI_WORKER_DEPLOYMENT_NAME=deployment, OSI_WORKER_BUILD_ID=build))
    await probe(port, "/readyz", lambda r: r.status_code == 200)
    cmd = [temporal, "worker", "deployment", "set-current-version", "--address", str(settings.temporal_address),
           "--deployment-name", deployment, "--build-id", build, "--yes"]
    for _ in range(50):  # the server learns of the version from the worker's polls
        done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            break
        await asyncio.sleep(0.2)
    assert done.returncode == 0, done.stderr
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    handle = await client.start_workflow(
        "SendWhatsAppMessage", {"organization_id": wa.organization_id, "to": ["+16505551234"], "text": "pinned"},
        id=f"ver-{uuid.uuid4().hex}", task_queue=queue, result_type=SendWhatsAppMessageResult)
    assert (await asyncio.wait_for(handle.result(), 60)).results[0].status == "accepted"
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
    assert (info.deployment_version.deployment_name, info.deployment_version.build_id) == (deployment, build)


def test_deployment_name_and_build_id_go_together() -> None:
    from temporalio.common import VersioningBehavior as Behavior

    from worker.main import deployment_config
    from worker.registry import workflows

    assert deployment_config(Settings(_env_file=None)) is None  # type: ignore[call-arg]
    auto = deployment_config(Settings(_env_file=None, worker_deployment_name="osi", worker_build_id="b2",  # type: ignore[call-arg]
                                      worker_versioning_behavior="auto_upgrade"))
    assert auto is not None and auto.default_versioning_behavior == Behavior.AUTO_UPGRADE
    # A definition's own behaviour is sent even by an unversioned worker, and the server refuses every task of
    # such a workflow ("versioning behavior cannot be specified without deployment options"): none may have one.
    for wf in workflows():
        defn = wf.__temporal_workflow_definition  # type: ignore[attr-defined]
        assert defn.versioning_behavior == Behavior.UNSPECIFIED, defn.name
    with pytest.raises(ValueError, match="go together"):
        deployment_config(Settings(_env_file=None, worker_build_id="b1"))  # type: ignore[call-arg]
