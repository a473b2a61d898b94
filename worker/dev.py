"""`make run`: the whole local stack, a seeded demo organization and a demo of every integration."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import httpx

from core.alerting import waker
from core.demo import DemoContext, run_all
from core.runtime import Runtime, make_vault
from core.settings import Settings, get_settings
from core.temporal import connect
from worker.migrate import upgrade
from worker.registry import registry
from worker.schedules import ensure_schedules
from worker.stack import Stack, port_open, wait_port

log = logging.getLogger("osi.dev")


def child_env(s: Settings) -> dict[str, str]:
    """Environment for the sandbox, gateway and worker: provider URLs point at the sandbox."""
    sandbox = f"http://{s.host}:{s.sandbox_port}"
    env = {
        "OSI_DATA_DIR": str(s.data_dir),
        "OSI_TEMPORAL_ADDRESS": s.temporal_address,
        "OSI_VAULT_ADDR": s.vault_addr,
        "OSI_DATABASE_URL": s.database_url,
        "OSI_GATEWAY_PORT": str(s.gateway_port),
        "OSI_GATEWAY_PUBLIC_URL": s.gateway_public_url,
        "OSI_SANDBOX_PORT": str(s.sandbox_port),
        "OSI_TASK_QUEUE": s.task_queue,
    }
    if s.sandbox_enabled:
        for plugin in registry().providers():
            assert plugin.provider is not None
            env |= plugin.provider.settings.sandbox_env(sandbox)
        # Media uploads may fetch the sandbox's files (it is not a public host).
        env["OSI_EGRESS_PRIVATE_HOSTS"] = s.host
    if s.vault_token is not None:
        env["OSI_VAULT_TOKEN"] = s.vault_token.get_secret_value()
    return env


def _transit_backup(s: Settings) -> Path:
    return s.data_dir / "vault-transit-key.backup"


def prepare_vault(s: Settings) -> None:
    """Enable KV v2 + transit on the in-memory dev server and keep the payload key across restarts.

    The dev server forgets everything on exit; restoring the transit key from the data folder keeps
    earlier workflows' encrypted payloads readable in the Web UI after `make run` is restarted.
    (Local development only: production Vault persists its own keys.)
    """
    vault = make_vault(s)
    client = vault._client  # the dev-only backup/restore calls are not part of VaultClient's API
    backup = _transit_backup(s)
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if f"{s.vault_transit_mount}/" not in mounts:
        client.sys.enable_secrets_engine("transit", path=s.vault_transit_mount)
    if backup.exists():
        try:
            client.secrets.transit.restore_key(backup=backup.read_text().strip(), name=s.vault_transit_key,
                                               mount_point=s.vault_transit_mount)
        except Exception as exc:  # an existing key is fine; anything else is worth a line
            log.debug("transit restore skipped: %s", exc)
    vault.ensure_engines(s.vault_transit_key)
    client.secrets.transit.update_key_configuration(
        name=s.vault_transit_key, exportable=True, allow_plaintext_backup=True, mount_point=s.vault_transit_mount)
    data = client.secrets.transit.backup_key(name=s.vault_transit_key, mount_point=s.vault_transit_mount)
    backup.write_text(data["data"]["backup"])
    backup.chmod(0o600)


async def wait_ready(url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {within}s")


async def demo(s: Settings) -> dict[str, str]:
    upgrade(s.database_url)
    rt = Runtime(s, registry=registry())
    client = await connect(s)
    rt.alert_hook = waker(client, s.task_queue)
    try:
        ctx = DemoContext(settings=s, client=client, rt=rt, sandbox_url=f"http://{s.host}:{s.sandbox_port}",
                          gateway_url=s.gateway_public_url)
        created = await ensure_schedules(client, s)
        if created:
            ctx.say(f"created the Temporal schedule {', '.join(created)} (hourly connection health sweep)")
        return await run_all(ctx, rt.registry)
    finally:
        await rt.close()


def start(s: Settings, stack: Stack) -> None:
    data = s.data_dir
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    tport = s.temporal_address.rsplit(":", 1)[1]
    busy = [p for p in (int(tport), s.temporal_ui_port, int(s.vault_addr.rsplit(":", 1)[1]), s.gateway_port,
                        s.sandbox_port) if port_open("127.0.0.1", p)]
    if busy:
        raise SystemExit(f"ports already in use: {busy} (is another `make run` up? set OSI_* ports to move)")
    print(f"starting Temporal dev server (UI {s.temporal_ui_url}, data {data / 'temporal.db'})")
    # The Web UI decrypts payloads through the gateway's codec endpoint.
    stack.temporal(int(tport), s.temporal_ui_port, data / "temporal.db", log=logs / "temporal.log",
                   codec_endpoint=f"{s.gateway_public_url}/codec")
    print(f"starting OpenBao dev server at {s.vault_addr}")
    stack.vault(int(s.vault_addr.rsplit(":", 1)[1]), log=logs / "bao.log")
    prepare_vault(s)
    env = child_env(s)
    if s.sandbox_enabled:
        print(f"starting sandbox on :{s.sandbox_port}")
        proc = stack.python("sandbox", env, logs / "sandbox.log")
        wait_port(s.host, s.sandbox_port, 30, proc)
    print(f"starting gateway on :{s.gateway_port} and the worker on task queue {s.task_queue!r}")
    proc = stack.python("gateway", env, logs / "gateway.log")
    wait_port(s.host, s.gateway_port, 30, proc)
    stack.python("worker", env, logs / "worker.log")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    base = get_settings()
    # Children must see exactly the URLs the demo uses: re-read settings with the child env applied.
    os.environ.update(child_env(base))
    s = Settings()
    stack = Stack()

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the stack exactly like Ctrl-C

    signal.signal(signal.SIGTERM, _stop)
    try:
        start(s, stack)
        asyncio.run(wait_ready(f"{s.gateway_public_url}/readyz"))
        outcome = asyncio.run(demo(s))
        print("\nDemo summary: " + json.dumps(outcome))
        print(f"Temporal Web UI: {s.temporal_ui_url}   gateway: {s.gateway_public_url}   "
              f"sandbox: http://{s.host}:{s.sandbox_port}/_sandbox/docs   logs: {s.data_dir / 'logs'}")
        if os.environ.get("OSI_DEMO_EXIT") == "1":
            return
        print("Stack is up. Press Ctrl-C to stop.")
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…")
        stack.stop()
        print("stopped.")




if __name__ == "__main__":
    main()
