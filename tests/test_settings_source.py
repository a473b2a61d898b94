"""One settings source: `make run` writes its stack's settings, `osi` reads them (environment wins); ports move
together; every port is checked before start with the variable to change named."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from activities.slack.settings import SlackSettings
from activities.whatsapp.settings import WhatsAppSettings
from core.settings import Settings, stack_file
from core.temporal import client_config
from worker import dev


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("OSI_DATA_DIR", "OSI_PORT_BASE", "OSI_GATEWAY_PORT", "OSI_GATEWAY_PUBLIC_URL", "OSI_DATABASE_URL",
                 "OSI_TEMPORAL_ADDRESS", "OSI_VAULT_ADDR", "OSI_WHATSAPP_BASE_URL", "OSI_TEMPORAL_UI_URL",
                 "TEMPORAL_ADDRESS", "TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_urls_follow_their_ports_and_one_base_moves_every_port(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("OSI_STACK_FILE", "")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    # Without a local port, Temporal's own client configuration (envconfig) decides the address.
    assert s.temporal_address is None and client_config(s, {})["target_host"] == "127.0.0.1:7233"
    assert (s.temporal_ui_url, s.vault_addr, s.gateway_public_url) == (
        "http://127.0.0.1:8233", "http://127.0.0.1:8200", "http://127.0.0.1:8080")
    monkeypatch.setenv("OSI_GATEWAY_PORT", "18080")
    assert Settings(_env_file=None).gateway_public_url == "http://127.0.0.1:18080"  # type: ignore[call-arg]
    monkeypatch.delenv("OSI_GATEWAY_PORT")
    monkeypatch.setenv("OSI_PORT_BASE", "19100")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.temporal_address, s.temporal_ui_url, s.gateway_public_url, s.sandbox_port, s.worker_metrics_port,
            s.worker_sdk_metrics_port, s.vault_addr) == (
        "127.0.0.1:19100", "http://127.0.0.1:19101", "http://127.0.0.1:19102", 19103, 19104, 19105,
        "http://127.0.0.1:19106")
    # An explicit URL (a proxy in front of the gateway) is kept.
    monkeypatch.setenv("OSI_GATEWAY_PUBLIC_URL", "https://osi.example.com")
    assert Settings(_env_file=None).gateway_public_url == "https://osi.example.com"  # type: ignore[call-arg]


def test_the_store_lives_in_the_data_folder(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("OSI_STACK_FILE", "")
    monkeypatch.setenv("OSI_DATA_DIR", "/srv/osi-data")
    assert Settings(_env_file=None).database_url == "sqlite:////srv/osi-data/osi.db"  # type: ignore[call-arg]


def test_osi_reads_the_stack_file_of_make_run_and_the_environment_wins(clean_env, monkeypatch) -> None:
    data = clean_env / "data"
    data.mkdir()
    monkeypatch.setenv("OSI_STACK_FILE", "")
    monkeypatch.setenv("OSI_PORT_BASE", "19200")
    monkeypatch.setenv("OSI_DATA_DIR", str(data))
    started = Settings(_env_file=None)  # type: ignore[call-arg]
    env = dev.child_env(started)
    path = dev.write_stack_file(started, env)
    assert path == data / "stack.env" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env["OSI_DATABASE_URL"] == f"sqlite:///{data.resolve() / 'osi.db'}"

    # A new shell in another folder: only the stack's data folder is known (or the checkout's .data is found).
    for name in ("OSI_STACK_FILE", "OSI_PORT_BASE"):
        monkeypatch.delenv(name)
    elsewhere = clean_env / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert stack_file() == data / "stack.env"
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.gateway_port, s.gateway_public_url, s.database_url) == (
        19202, "http://127.0.0.1:19202", f"sqlite:///{data.resolve() / 'osi.db'}")
    # Provider sections point at the stack's sandbox, exactly like make run's children.
    assert s.section(WhatsAppSettings).base_url == env["OSI_WHATSAPP_BASE_URL"]
    assert "127.0.0.1:19203" in s.section(SlackSettings).base_url
    # The environment still wins over the file.
    monkeypatch.setenv("OSI_GATEWAY_PORT", "19999")
    assert Settings(_env_file=None).gateway_port == 19999  # type: ignore[call-arg]
    # And OSI_STACK_FILE="" ignores it (make run itself, and the tests).
    monkeypatch.setenv("OSI_STACK_FILE", "")
    assert Settings(_env_file=None).section(WhatsAppSettings).base_url == "https://graph.facebook.com"  # type: ignore[call-arg]


def test_a_busy_port_is_named_with_its_variable_before_anything_starts(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("OSI_STACK_FILE", "")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        monkeypatch.setenv("OSI_GATEWAY_PORT", str(port))
        with pytest.raises(SystemExit) as exc:
            dev.check_ports(Settings(_env_file=None))  # type: ignore[call-arg]
    message = str(exc.value)
    assert f"port {port} is in use: set OSI_GATEWAY_PORT" in message and "OSI_PORT_BASE" in message


def test_a_child_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    """`make run` stops with the dead child's exit code and last log lines instead of waiting on it silently."""
    import sys

    from worker.stack import Stack

    stack = Stack()
    log = tmp_path / "worker.log"
    proc = stack.spawn([sys.executable, "-c", "import sys; print('metrics port 9464 is busy'); sys.exit(3)"], log)
    proc.wait(timeout=30)
    report = stack.dead()
    assert report is not None and "exited with code 3" in report and "metrics port 9464 is busy" in report
    stack.stop()
    assert stack.dead() is None  # stopping on purpose is not a death to report
