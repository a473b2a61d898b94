"""Closed by default: dev defaults exist only in development mode; otherwise processes refuse to start and say
which settings are missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import SecretStr

from core.settings import Settings
from gateway.app import create_app

VAULT = "OSI_VAULT_TOKEN or OSI_VAULT_TOKEN_FILE or OSI_VAULT_ROLE_ID+OSI_VAULT_SECRET_ID"


def bare(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.fixture
def no_osi_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OSI_"):
            monkeypatch.delenv(name)


def test_dev_defaults_exist_only_in_dev_mode(no_osi_env) -> None:
    assert bare(dev_mode=True).vault_token == SecretStr("root")
    assert bare().vault_token is None and bare().admin_api_key is None
    assert bare(dev_mode=True).missing_for("gateway") == []
    assert bare().missing_for("gateway") == [VAULT, "OSI_ADMIN_API_KEY"]
    assert bare().missing_for("worker") == [VAULT]
    assert bare(vault_role_id="r", vault_secret_id_file="/run/x").missing_for("worker") == []
    assert bare(vault_token_file="/run/t", admin_api_key=SecretStr("k")).missing_for("gateway") == []
    with pytest.raises(SystemExit, match="OSI_ADMIN_API_KEY"):
        create_app(bare(vault_token=SecretStr("t")))


@pytest.mark.parametrize("argv,missing", [
    (["-m", "gateway"], [VAULT, "OSI_ADMIN_API_KEY"]),
    (["-m", "worker"], [VAULT]),
    (["-c", "from worker.cli import app; app()", "connections", "list"], [VAULT]),
])
def test_processes_refuse_to_start_naming_what_is_missing(argv: list[str], missing: list[str], tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSI_", "VAULT_"))}
    env |= {"OSI_DEV_MODE": "false", "OSI_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "OSI_WORKER_METRICS_PORT": "0"}
    res = subprocess.run([sys.executable, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    line = [ln for ln in res.stderr.splitlines() if "refusing to start" in ln]
    assert len(line) == 1, res.stderr[-2000:]
    for name in missing:
        assert name in line[0]
