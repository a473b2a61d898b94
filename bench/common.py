"""Shared benchmark setup: the stack started as tests/conftest.py and worker/stack.py do, and measuring helpers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from temporalio.client import Client

from core.runtime import Runtime
from core.settings import Settings
from core.temporal import connect
from worker.dev import child_env
from worker.migrate import upgrade
from worker.registry import registry
from worker.stack import Stack, child_on_free_port, free_port
from worker.stack import proc_cpu_seconds as proc_cpu_seconds  # re-exported for the benchmarks

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def pg_database(prefix: str = "osi_bench") -> Iterator[str]:
    """A fresh PostgreSQL database (own name, so a concurrent test run is not touched), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class BenchStack:
    """Temporal (in memory), OpenBao and the sandbox as child processes; the runtime and a client in this one."""

    tmp: Path
    stack: Stack
    settings: Settings
    rt: Runtime
    client: Client
    temporal_pid: int
    sandbox_url: str
    extra: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment a gateway or worker child process of this stack gets (as `make run` gives it)."""
        return {**child_env(self.settings), "OSI_LOG_LEVEL": "WARNING", "OSI_WORKER_METRICS_PORT": "0",
                "OSI_WORKER_SDK_METRICS_PORT": "0"}

    def start_gateway(self) -> str:
        """`python -m gateway` in its own process, as deployed; returns its URL once it listens."""
        def start(port: int) -> subprocess.Popen[bytes]:
            self.settings = self.settings.model_copy(update={"gateway_port": port,
                                                             "gateway_public_url": f"http://127.0.0.1:{port}"})
            return self.stack.python("gateway", self.env(), self.tmp / "gateway.log")

        proc, _port = child_on_free_port(start)
        self.extra["gateway_pid"] = proc.pid
        return self.settings.gateway_public_url




@asynccontextmanager
async def on_database(bs: BenchStack, database_url: str) -> AsyncIterator[BenchStack]:
    """The same Temporal, OpenBao and sandbox with another store (and a task queue of its own)."""
    settings = bs.settings.model_copy(update={"database_url": database_url,
                                              "task_queue": f"bench-{uuid.uuid4().hex[:6]}"})
    upgrade(database_url)
    rt = Runtime(settings, registry=registry())
    try:
        yield replace(bs, settings=settings, rt=rt)
    finally:
        await rt.close()


@asynccontextmanager
async def bench_stack(database_url: str | None = None, *, gateway: bool = False) -> AsyncIterator[BenchStack]:
    """Start everything; `database_url` None is the embedded SQLite default in a fresh temporary folder."""
    tmp = Path(tempfile.mkdtemp(prefix="osi-bench-"))
    stack = Stack()
    gport = free_port()  # start_gateway picks its own when asked to start one
    try:
        temporal, tport = stack.temporal_on_free_port(None, headless=True, log=tmp / "temporal.log")
        _, vport = stack.vault_on_free_port(log=tmp / "bao.log")
        # The sandbox in its own process, as in `make run`: it must not share our event loop or GIL.
        _, sport = child_on_free_port(lambda port: stack.python(
            "sandbox", {"OSI_SANDBOX_PORT": str(port), "OSI_LOG_LEVEL": "WARNING"}, tmp / "sandbox.log"))
        sandbox_url = f"http://127.0.0.1:{sport}"
        settings = Settings(
            data_dir=tmp, temporal_address=f"127.0.0.1:{tport}", vault_addr=f"http://127.0.0.1:{vport}",
            database_url=database_url or f"sqlite:///{tmp / 'bench.db'}", sandbox_port=sport,
            gateway_port=gport, gateway_public_url=f"http://127.0.0.1:{gport}",
            sections={p.provider.settings.section_name: p.provider.settings.sandbox_overrides(sandbox_url)
                      for p in registry().providers() if p.provider is not None},
            task_queue=f"bench-{uuid.uuid4().hex[:6]}", dev_mode=True, egress_private_hosts="127.0.0.1",
            breaker_failure_threshold=10_000, _env_file=None)
        upgrade(settings.database_url)
        rt = Runtime(settings, registry=registry())
        rt.vault.ensure_engines(settings.vault_transit_key)
        client = await connect(settings)
        bs = BenchStack(tmp, stack, settings, rt, client, temporal.pid, sandbox_url)
        if gateway:
            bs.start_gateway()
        try:
            yield bs
        finally:
            await rt.close()
    finally:
        stack.stop()




def self_cpu_seconds() -> float:
    """CPU time of this process (every thread: event loop, store threads, the SDK's Rust core)."""
    t = os.times()
    return t.user + t.system


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """What the figures were measured on (cores, RAM, Python, Temporal CLI)."""
    import platform
    import subprocess

    from worker.stack import binary

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        temporal = subprocess.run([binary("temporal"), "--version"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        temporal = "unknown"
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu or platform.processor(), "ram_gb": round(mem_kb / 1024 / 1024, 1),
            "python": sys.version.split()[0], "temporal_cli": temporal, "os": platform.platform()}


def emit(result: dict[str, Any]) -> None:
    """The last line of every benchmark: one JSON object (bench/report.py reads it)."""
    print(json.dumps(result, separators=(",", ":")), flush=True)
