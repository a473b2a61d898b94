"""VaultClient keeps working across short AppRole token TTLs, revocations and Agent token-file rotations."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest
from pydantic import SecretStr

from core.runtime import make_vault
from core.settings import Settings
from tests.test_vault_server import BaoServer, init_and_unseal_with_cli
from vault.bootstrap import bootstrap
from vault.client import VaultClient, VaultError
from vault.credentials import AppSecrets, BearerTokenCredentials

TTL = 3  # seconds: the AppRole token TTL of these tests
MAX_TTL = 7  # a token can be renewed up to this age; then only a new login helps


@dataclass
class Bao:
    addr: str
    root: hvac.Client
    role_id: str
    secret_id_file: Path
    path: str  # a connection secret the worker policy may read


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    tmp = tmp_path_factory.mktemp("bao-renewal")
    srv = BaoServer(tmp / "bao").start()
    try:
        _, root_token = init_and_unseal_with_cli(srv)
        root = hvac.Client(url=srv.addr, token=root_token)
        result = bootstrap(root, write_dir=tmp / "approle", token_ttl=f"{TTL}s", token_max_ttl=f"{MAX_TTL}s")
        path = f"osi/connections/org_{uuid.uuid4().hex[:8]}/SLACK/main"
        VaultClient(srv.addr, token=root_token).write_sync(path, BearerTokenCredentials(token=SecretStr("t0")))
        yield Bao(srv.addr, root, result.roles["osi-worker"].role_id, tmp / "approle" / "osi-worker" / "secret_id",
                  path)
    finally:
        srv.stop()


def worker(bao: Bao, **kw: object) -> VaultClient:
    return VaultClient(bao.addr, role_id=bao.role_id, secret_id_file=bao.secret_id_file, **kw)  # type: ignore[arg-type]


def read(v: VaultClient, path: str) -> str:
    creds = v.read_versioned_sync(path, use_cache=False).credentials
    assert isinstance(creds, BearerTokenCredentials)
    return creds.token.get_secret_value()


def test_renewal_is_lazy_and_happens_past_two_thirds_of_the_ttl(bao: Bao) -> None:
    """A controllable clock stands in for time: no waiting, and the server's answers are real."""
    now = [1000.0]
    v = worker(bao, clock=lambda: now[0])
    assert v.stats.logins == 0  # nothing happens before the first request
    assert read(v, bao.path) == "t0"
    assert (v.stats.logins, v.stats.renewals) == (1, 0)
    now[0] += TTL * 0.6  # before the renewal point: the token is used as is
    read(v, bao.path)
    assert (v.stats.logins, v.stats.renewals) == (1, 0)
    now[0] += TTL * 0.1  # past 2/3 of the TTL: the next request renews first, same token
    read(v, bao.path)
    assert (v.stats.logins, v.stats.renewals) == (1, 1)
    lookup = bao.root.auth.token.lookup_accessor(v.stats.token_accessors[0])["data"]
    assert lookup.get("last_renewal_time")  # the server really renewed it
    # The server refuses to renew a revoked token: the client logs in again instead of failing.
    bao.root.auth.token.revoke_accessor(v.stats.token_accessors[0])
    now[0] += TTL
    assert read(v, bao.path) == "t0"
    assert v.stats.logins == 2 and v.stats.relogins_on_forbidden == 0


def test_reads_continue_across_several_ttls_and_past_the_max_ttl(bao: Bao) -> None:
    v = worker(bao)
    start = time.monotonic()
    reads = 0
    while time.monotonic() - start < MAX_TTL + TTL:  # ~3 TTLs, beyond the first token's max TTL
        assert read(v, bao.path) == "t0"
        reads += 1
        time.sleep(0.25)  # a steady trickle of requests, as a worker makes them
    assert reads >= 30
    assert v.stats.renewals >= 1  # the first token was renewed ...
    assert v.stats.logins >= 2  # ... and replaced by a new login when it neared its max TTL
    assert len(set(v.stats.token_accessors)) == v.stats.logins
    # The first token is dead by now: the reads above outlived it.
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest), match="invalid accessor"):
        bao.root.auth.token.lookup_accessor(v.stats.token_accessors[0])


def test_a_revoked_token_is_replaced_once_and_the_request_repeated(bao: Bao) -> None:
    v = worker(bao)
    read(v, bao.path)
    bao.root.auth.token.revoke_accessor(v.stats.token_accessors[-1])
    assert read(v, bao.path) == "t0"  # 403 -> one login -> the same read again
    assert v.stats.relogins_on_forbidden == 1 and v.stats.logins == 2
    # A policy refusal is not a dead token: no login, no repeat, the refusal is reported.
    with pytest.raises(VaultError):
        v.write_app_sync("slack", AppSecrets(client_id="x"))
    assert v.stats.relogins_on_forbidden == 1 and v.stats.logins == 2


def test_agent_token_file_is_reread_when_it_changes(bao: Bao, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Vault Agent / OpenBao Agent renews and rewrites the sink file; the client follows it."""
    def token() -> str:
        return str(bao.root.auth.token.create(policies=["osi-worker"], ttl="1h")["auth"]["client_token"])

    sink = tmp_path / "agent-token"
    sink.write_text(token() + "\n")
    monkeypatch.setenv("OSI_VAULT_TOKEN_FILE", str(sink))  # how the container configures it
    v = make_vault(Settings(vault_addr=bao.addr, vault_token=SecretStr("root-from-settings-default"),
                            _env_file=None))  # type: ignore[call-arg]
    assert v.auth_mode == "file" and v.is_ready()
    assert read(v, bao.path) == "t0" and v.stats.token_file_reads == 1
    read(v, bao.path)
    assert v.stats.token_file_reads == 1  # unchanged file: not read again
    old = sink.read_text().strip()
    # The agent writes a new token (to a temp file renamed over the sink) and the old one is revoked.
    tmp = tmp_path / "agent-token.tmp"
    tmp.write_text(token() + "\n")
    os.replace(tmp, sink)
    bao.root.auth.token.revoke(old)
    assert read(v, bao.path) == "t0"
    assert v.stats.token_file_reads == 2 and v.stats.logins == 0


def test_a_token_file_rewritten_in_place_is_picked_up_after_a_403(bao: Bao, tmp_path: Path) -> None:
    """Even when the change is not visible in the file's stat (same size, mtime granularity), a 403
    makes the client read the file again before giving up."""
    first = str(bao.root.auth.token.create(policies=["osi-worker"], ttl="1h")["auth"]["client_token"])
    second = str(bao.root.auth.token.create(policies=["osi-worker"], ttl="1h")["auth"]["client_token"])
    assert len(first) == len(second)
    sink = tmp_path / "agent-token"
    sink.write_text(first)
    v = VaultClient(bao.addr, token_file=sink)
    read(v, bao.path)
    st = sink.stat()
    sink.write_text(second)
    os.utime(sink, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime as before
    bao.root.auth.token.revoke(first)
    assert read(v, bao.path) == "t0"
    assert v.stats.token_file_reads == 2


def test_approle_from_settings_with_a_secret_id_file(bao: Bao, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's way: OSI_VAULT_ROLE_ID and OSI_VAULT_SECRET_ID_FILE are settings; the static token
    default is ignored once AppRole is configured."""
    monkeypatch.setenv("OSI_VAULT_ROLE_ID", bao.role_id)
    monkeypatch.setenv("OSI_VAULT_SECRET_ID_FILE", str(bao.secret_id_file))
    s = Settings(vault_addr=bao.addr, _env_file=None)  # type: ignore[call-arg]
    assert s.vault_secret_id_file == bao.secret_id_file
    v = make_vault(s)
    assert v.auth_mode == "approle"
    assert read(v, bao.path) == "t0" and v.stats.logins == 1
