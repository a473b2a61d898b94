"""Test services get their ports race-free: a port taken after it was chosen is retried, never mistaken for ours."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from worker import stack as stack_mod
from worker.stack import PortTaken, ServerThread, Stack, reserve_port, wait_port


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield int(sock.getsockname()[1])
    sock.close()


def _first_taken(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """`free_port` answers `port` once (as if another process took it right after), then really free ones."""
    real = stack_mod.free_port
    answers = iter([port])
    monkeypatch.setattr(stack_mod, "free_port", lambda: next(answers, None) or real())


def _ours(proc: subprocess.Popen[bytes], port: int) -> bool:
    inodes = stack_mod._listening_inodes(port)
    return inodes is None or bool(inodes & stack_mod._socket_inodes(proc.pid))


def test_vault_retries_on_a_port_taken_before_it_binds(occupied: int, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    _first_taken(monkeypatch, occupied)
    st, log = Stack(), tmp_path / "bao.log"
    try:
        proc, port = st.vault_on_free_port(log=log)
        assert port != occupied
        assert "address already in use" in log.read_text()  # the first attempt hit the taken port and exited
        assert _ours(proc, port)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/sys/health").status_code == 200
        assert st.procs == [proc]  # the failed attempt is not left among the stack's processes
    finally:
        st.stop()


def test_temporal_retries_on_a_port_taken_before_it_binds(occupied: int, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    _first_taken(monkeypatch, occupied)
    st, log = Stack(), tmp_path / "temporal.log"
    try:
        proc, port = st.temporal_on_free_port(None, log=log)
        assert port != occupied
        assert "address already in use" in log.read_text()
        assert _ours(proc, port)
    finally:
        st.stop()


def test_a_port_someone_else_listens_on_is_not_taken_for_our_process(occupied: int) -> None:
    """The old wait accepted any listener: a child that never listens must not pass because the port answers."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(TimeoutError):
            wait_port("127.0.0.1", occupied, 1.0, idle)
    finally:
        idle.kill()
        idle.wait()


def test_a_child_that_cannot_bind_is_reported_as_port_taken(occupied: int, tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    code = f"import socket; socket.socket().bind(('127.0.0.1', {occupied}))"
    with open(log, "wb") as out:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    with pytest.raises(PortTaken, match=r"Errno 98|address already in use"):
        wait_port("127.0.0.1", occupied, 10.0, child, log)


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("ours"))])


def test_server_thread_binds_its_own_socket_and_serves_on_it() -> None:
    srv = ServerThread(_app()).start()
    try:
        assert httpx.get(srv.url).text == "ours"
        with pytest.raises(OSError), socket.socket() as other:  # the port is held from construction on
            other.bind(("127.0.0.1", srv.port))
    finally:
        srv.stop()


def test_a_reserved_socket_is_served_as_handed_over() -> None:
    sock = reserve_port()
    srv = ServerThread(_app(), sock).start()
    try:
        assert srv.port == sock.getsockname()[1]
        assert httpx.get(srv.url).text == "ours"
    finally:
        srv.stop()


def test_server_thread_on_a_taken_port_fails_in_the_caller(occupied: int) -> None:
    with pytest.raises(OSError):
        ServerThread(_app(), occupied)
