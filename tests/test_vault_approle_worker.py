"""A worker process on AppRole with a short token TTL keeps sending across several TTLs and past the max TTL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import hvac

from activities.whatsapp.models import SendWhatsAppMessageResult
from core.settings import Settings
from tests import seed
from vault.bootstrap import bootstrap
from worker.stack import free_port

TTL, MAX_TTL = 4, 10  # seconds: renewed past 2/3 of 4 s, a new login after 10 s
ROLE = f"osi-worker-ttl-{uuid.uuid4().hex[:6]}"


def approle_tokens(root: hvac.Client, seen: dict[str, dict[str, object]]) -> None:
    """Every live token of ROLE (by accessor, with its renewal time): what the worker obtained so far."""
    for accessor in root.auth.token.list_accessors()["data"]["keys"]:
        if accessor in seen:
            continue
        try:
            data = root.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.VaultError:
            continue  # expired between list and lookup
        if (data.get("meta") or {}).get("role_name") == ROLE:
            seen[accessor] = data
    for accessor, data in seen.items():
        try:
            data.update(root.auth.token.lookup_accessor(accessor)["data"])
        except hvac.exceptions.VaultError:
            pass


async def test_worker_on_approle_keeps_sending_across_token_ttls(settings: Settings, runtime, sandbox, client,
                                                                 tmp_path: Path) -> None:
    root = hvac.Client(url=settings.vault_addr, token="root")
    creds = bootstrap(root, roles={ROLE: "osi-worker"}, write_dir=tmp_path / "approle", token_ttl=f"{TTL}s",
                      token_max_ttl=f"{MAX_TTL}s").roles[ROLE]
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    queue, port = f"approle-{uuid.uuid4().hex[:8]}", free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OSI_", "TEMPORAL_", "VAULT_"))},
           "OSI_TEMPORAL_ADDRESS": str(settings.temporal_address), "OSI_VAULT_ADDR": settings.vault_addr,
           "OSI_VAULT_ROLE_ID": creds.role_id,
           "OSI_VAULT_SECRET_ID_FILE": str(tmp_path / "approle" / ROLE / "secret_id"),
           # Every send reads its credentials from Vault (no 5-minute cache hiding an expired token).
           "OSI_VAULT_CACHE_TTL_SECONDS": "0.2", "OSI_DATABASE_URL": settings.database_url,
           "OSI_WHATSAPP_BASE_URL": str(settings.sections["whatsapp"]["base_url"]), "OSI_TASK_QUEUE": queue,
           "OSI_WORKER_METRICS_PORT": "0", "OSI_WORKER_HEALTH_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "worker"], env=env, start_new_session=True)
    tokens: dict[str, dict[str, object]] = {}
    try:
        statuses = []
        started = time.monotonic()
        while time.monotonic() - started < 2.5 * MAX_TTL:  # six TTLs, past the max TTL twice
            res = await client.execute_workflow(
                "SendWhatsAppMessage",
                {"organization_id": wa.organization_id, "to": ["+16505551234"], "text": f"t+{len(statuses)}"},
                id=f"approle-{uuid.uuid4().hex}", task_queue=queue, result_type=SendWhatsAppMessageResult)
            statuses.append(res.results[0].status)
            approle_tokens(root, tokens)
            await asyncio.sleep(1.0)
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"http://127.0.0.1:{port}/readyz")).json()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert statuses and set(statuses) == {"accepted"}, statuses
    assert ready["checks"]["vault"] == "ok"
    # Several logins (each token lives at most MAX_TTL) and renewals in between (lazily, past 2/3 of the TTL).
    assert len(tokens) >= 2, tokens.keys()
    assert any(t.get("last_renewal_time") for t in tokens.values()), "no token was ever renewed"
