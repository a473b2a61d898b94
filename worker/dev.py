"""`make run`: the whole local stack, a seeded demo organization and a demo of every integration."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from core.alerting import waker
from core.demo import DemoContext, run_all
from core.runtime import Runtime, make_vault
from core.settings import STACK_FILE_NAME, Settings, get_settings
from core.temporal import client_config, connect
from worker.migrate import on_start
from worker.registry import registry
from worker.schedules import ensure_schedules
from worker.stack import Stack, port_open, wait_port

log = logging.getLogger("osi.dev")


def child_env(s: Settings) -> dict[str, str]:
    """Environment for the sandbox, gateway and worker (and the stack file `osi` reads): every setting the
    stack was started with, paths absolute, provider URLs pointing at the sandbox."""
    sandbox = f"http://{s.host}:{s.sandbox_port}"
    env = {
        "OSI_DEV_MODE": "true",
        "OSI_DATA_DIR": str(s.data_dir.resolve()),
        "OSI_HOST": s.host,
        # The local dev server listens where the client configuration (envconfig, then OSI_*) points.
        "OSI_TEMPORAL_ADDRESS": client_config(s)["target_host"],
        "OSI_TEMPORAL_NAMESPACE": client_config(s)["namespace"],
        "OSI_TEMPORAL_UI_URL": s.temporal_ui_url,
        "OSI_TEMPORAL_UI_PORT": str(s.temporal_ui_port),
        "OSI_VAULT_ADDR": s.vault_addr,
        "OSI_DATABASE_URL": absolute_sqlite(s.database_url),
        "OSI_GATEWAY_PORT": str(s.gateway_port),
        "OSI_GATEWAY_PUBLIC_URL": s.gateway_public_url,
        "OSI_SANDBOX_PORT": str(s.sandbox_port),
        "OSI_SANDBOX_ENABLED": str(s.sandbox_enabled).lower(),
        "OSI_TASK_QUEUE": s.task_queue,
        "OSI_WORKER_METRICS_PORT": str(s.worker_metrics_port),
        "OSI_WORKER_SDK_METRICS_PORT": str(s.worker_sdk_metrics_port),
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


def absolute_sqlite(url: str) -> str:
    """A SQLite URL with an absolute path, so the stack file works from any folder."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url.removeprefix("sqlite:///")).resolve())
    return url


def write_stack_file(s: Settings, env: dict[str, str]) -> Path:
    """The settings of the stack just started, read by `osi` from any shell (environment variables win).
    The file holds the local dev Vault's root token: it is the developer's own, mode 0600, under .data/."""
    path = s.data_dir / STACK_FILE_NAME
    lines = [f"# Written by `make run` at {time.strftime('%Y-%m-%d %H:%M:%S')}: the settings of the local stack.",
             "# `osi` reads this file (environment variables win); delete it to stop targeting this stack."]
    lines += [f"{k}={json.dumps(v)}" for k, v in sorted(env.items())]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def port_plan(s: Settings) -> list[tuple[int, str]]:
    """Every port `make run` binds, with the variable that moves it."""
    plan = [(temporal_port(s), "OSI_TEMPORAL_PORT (or OSI_TEMPORAL_ADDRESS)"),
            (s.temporal_ui_port, "OSI_TEMPORAL_UI_PORT"),
            (_port(s.vault_addr), "OSI_VAULT_PORT (or OSI_VAULT_ADDR)"),
            (_port(s.vault_addr) + 1, "OSI_VAULT_PORT (OpenBao also listens on the next port)"),
            (s.gateway_port, "OSI_GATEWAY_PORT")]
    if s.sandbox_enabled:
        plan.append((s.sandbox_port, "OSI_SANDBOX_PORT"))
    if s.worker_metrics_port:
        plan.append((s.worker_metrics_port, "OSI_WORKER_METRICS_PORT"))
    if s.worker_sdk_metrics_port:
        plan.append((s.worker_sdk_metrics_port, "OSI_WORKER_SDK_METRICS_PORT"))
    return plan


def temporal_port(s: Settings) -> int:
    """The port of the Temporal address the client configuration resolves to (the dev server listens there)."""
    return _port(str(client_config(s)["target_host"]))


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def check_ports(s: Settings) -> None:
    """Refuse to start when a port is taken, naming the variable to change (or one base to move them all)."""
    busy = [(port, var) for port, var in port_plan(s) if port_open("127.0.0.1", port)]
    if busy:
        lines = [f"  port {port} is in use: set {var}" for port, var in busy]
        raise SystemExit("cannot start the local stack (is another `make run` up?):\n" + "\n".join(lines)
                         + "\n  or move every port at once, e.g. OSI_PORT_BASE=9100 make run")


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


async def wait_ready(url: str, stack: Stack | None = None, within: float = 60.0) -> None:
    """Wait for the gateway's readiness (Temporal, Vault, store); say what is missing when it never comes."""
    deadline = time.monotonic() + within
    last = "no answer"
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if stack is not None and (dead := stack.dead()):
                raise SystemExit(dead)
            try:
                resp = await http.get(url)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code} {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.2)
    raise SystemExit(f"the gateway was not ready at {url} within {within:.0f} s (last: {last}); "
                     "see .data/logs/gateway.log")


async def demo(s: Settings) -> dict[str, str]:
    on_start(s.database_url, True)
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
    tport = temporal_port(s)
    check_ports(s)
    print(f"starting Temporal dev server (UI {s.temporal_ui_url}, data {data / 'temporal.db'})")
    # The Web UI decrypts payloads through the gateway's codec endpoint.
    stack.temporal(tport, s.temporal_ui_port, data / "temporal.db", log=logs / "temporal.log",
                   codec_endpoint=f"{s.gateway_public_url}/codec")
    print(f"starting OpenBao dev server at {s.vault_addr}")
    stack.vault(_port(s.vault_addr), log=logs / "bao.log")
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
    print(f"settings of this stack written to {write_stack_file(s, env)} (`osi` reads them from any shell)")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    os.environ["OSI_DEV_MODE"] = "true"  # the local stack is development mode: dev defaults exist only here
    # `make run` takes its settings from the environment and .env only: a previous run's stack file would pin
    # the old ports over a new OSI_PORT_BASE. It writes a new one once the stack is up.
    os.environ["OSI_STACK_FILE"] = ""
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
        asyncio.run(wait_ready(f"{s.gateway_public_url}/readyz", stack))
        watch(stack)
        outcome = asyncio.run(demo(s))
        print("\nDemo summary: " + json.dumps(outcome))
        print(f"Temporal Web UI: {s.temporal_ui_url}   gateway: {s.gateway_public_url}   "
              f"sandbox: http://{s.host}:{s.sandbox_port}/_sandbox/docs   logs: {s.data_dir / 'logs'}")
        if os.environ.get("OSI_DEMO_EXIT") == "1":
            return
        print("Stack is up. Press Ctrl-C to stop.")
        while not stack.dead():
            time.sleep(0.5)
        print(stack.dead())
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…")
        stack.stop()
        print("stopped.")




def watch(stack: Stack) -> None:
    """A child that dies (a busy port, a crash) stops `make run` with its log's last lines instead of
    leaving the demo waiting on a worker that is gone."""

    def run() -> None:
        while stack.procs:
            if dead := stack.dead():
                print(dead, flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.5)

    threading.Thread(target=run, daemon=True, name="stack-watch").start()


if __name__ == "__main__":
    main()
