"""The Temporal client configuration (temporalio.envconfig + OSI_TEMPORAL_* overrides) against a TLS endpoint:
the dev server behind a TLS-terminating proxy that requires a client certificate (mTLS) or an API key."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from activities.whatsapp.models import SendWhatsAppMessageResult
from core.settings import Settings
from core.temporal import TemporalConfigError, client_config, connect, describe
from tests import seed
from tests.tls_proxy import SERVER_NAME, Pki, TlsProxy, make_pki
from worker.stack import free_port

ROOT = Path(__file__).resolve().parent.parent


def no_temporal_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "OSI_TEMPORAL_"))}


def base(settings: Settings) -> Settings:
    """The session's settings without an address or namespace override: envconfig decides."""
    return settings.model_copy(update={"temporal_address": None, "temporal_namespace": None})


def docs_toml(pki: Pki, address: str) -> str:
    """The self-hosted mTLS profile exactly as docs/deploy.md shows it, with this test's paths and address."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"<!-- test: mtls-profile -->\n```toml\n(.*?)```", text, re.S)
    assert block, "docs/deploy.md lost its mTLS temporal.toml example"
    toml = block.group(1)
    for placeholder, value in (("temporal.internal:7233", address), ('"temporal.internal"', f'"{SERVER_NAME}"'),
                               ("/run/secrets/temporal_ca.pem", str(pki.ca)),
                               ("/run/secrets/temporal_client.pem", str(pki.client_cert)),
                               ("/run/secrets/temporal_client.key", str(pki.client_key))):
        assert placeholder in toml, placeholder
        toml = toml.replace(placeholder, value)
    return toml


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mtls_proxy(pki: Pki, settings: Settings) -> Iterator[TlsProxy]:
    assert settings.temporal_address
    proxy = TlsProxy(pki, settings.temporal_address, require_client_cert=True).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def api_key_proxy(pki: Pki, settings: Settings) -> Iterator[TlsProxy]:
    assert settings.temporal_address
    proxy = TlsProxy(pki, settings.temporal_address, api_key="osi-test-" + uuid.uuid4().hex).start()
    yield proxy
    proxy.stop()


# ---- resolution and precedence (no server) ----------------------------------------------------------------

def test_precedence_profile_then_environment_then_osi_overrides(tmp_path: Path, settings: Settings) -> None:
    cfg = tmp_path / "temporal.toml"
    cfg.write_text('[profile.prod]\naddress = "file.example:7233"\nnamespace = "from-file"\n'
                   '[profile.prod.tls]\nserver_name = "file.example"\n')
    env = {"TEMPORAL_CONFIG_FILE": str(cfg), "TEMPORAL_PROFILE": "prod"}
    s = base(settings)
    got = client_config(s, env)
    assert (got["target_host"], got["namespace"]) == ("file.example:7233", "from-file")
    tls = got["tls"]
    assert not isinstance(tls, bool) and tls.domain == "file.example"
    got = client_config(s, {**env, "TEMPORAL_ADDRESS": "env.example:7233", "TEMPORAL_NAMESPACE": "from-env"})
    assert (got["target_host"], got["namespace"]) == ("env.example:7233", "from-env")
    got = client_config(s.model_copy(update={"temporal_address": "osi.example:7233", "temporal_namespace": "osi"}),
                        {**env, "TEMPORAL_ADDRESS": "env.example:7233"})
    assert (got["target_host"], got["namespace"]) == ("osi.example:7233", "osi")
    assert got["tls"] == tls  # the override changes where, not how


def test_defaults_api_key_and_metadata(settings: Settings) -> None:
    got = client_config(base(settings), {})
    assert got == {"target_host": "127.0.0.1:7233", "namespace": "default"}  # plaintext local dev server
    got = client_config(base(settings), {"TEMPORAL_ADDRESS": "us-east-1.aws.api.temporal.io:7233",
                                         "TEMPORAL_NAMESPACE": "osi-prod.a1b2c", "TEMPORAL_API_KEY": "s3cr3t",
                                         "TEMPORAL_GRPC_META_X_TEAM": "ops"})
    assert got["api_key"] == "s3cr3t" and got["tls"] is True  # an API key turns TLS on (system roots)
    assert got["rpc_metadata"] == {"x-team": "ops"}
    assert "s3cr3t" not in describe(got) and "api key" in describe(got) and "tls" in describe(got)
    # Settings read OSI_TEMPORAL_ADDRESS from the environment as the override.
    os.environ["OSI_TEMPORAL_ADDRESS"] = "osi-env.example:7233"
    try:
        assert client_config(Settings(_env_file=None), {})["target_host"] == "osi-env.example:7233"  # type: ignore[call-arg]
    finally:
        del os.environ["OSI_TEMPORAL_ADDRESS"]


def test_a_missing_config_file_or_profile_is_an_error_not_localhost(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(TemporalConfigError, match="does not exist"):
        client_config(base(settings), {"TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml")})
    cfg = tmp_path / "temporal.toml"
    cfg.write_text('[profile.default]\naddress = "a:1"\n')
    with pytest.raises(TemporalConfigError, match="cloud"):
        client_config(base(settings), {"TEMPORAL_CONFIG_FILE": str(cfg), "TEMPORAL_PROFILE": "cloud"})


# ---- against the TLS endpoint --------------------------------------------------------------------------------

def worker_process(settings: Settings, queue: str, env: dict[str, str], health_port: int) -> subprocess.Popen[bytes]:
    """`python -m worker` configured only through Temporal's variables (no OSI_TEMPORAL_*)."""
    return subprocess.Popen([sys.executable, "-m", "worker"], start_new_session=True, env={
        **no_temporal_env(), **env,
        "OSI_VAULT_ADDR": settings.vault_addr, "OSI_VAULT_TOKEN": "root", "OSI_DATABASE_URL": settings.database_url,
        "OSI_WHATSAPP_BASE_URL": str(settings.sections["whatsapp"]["base_url"]), "OSI_TASK_QUEUE": queue,
        "OSI_WORKER_METRICS_PORT": "0", "OSI_WORKER_HEALTH_PORT": str(health_port)})


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_ready(port: int, within: float = 60.0) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        for _ in range(int(within * 5)):
            try:
                r = await http.get(f"http://127.0.0.1:{port}/readyz")
                if r.status_code == 200:
                    return dict(r.json())
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"worker not ready on :{port}")


@pytest.fixture
async def org(runtime, sandbox) -> AsyncIterator[seed.WhatsAppConn]:
    yield await seed.whatsapp_connection(runtime, sandbox.url)


async def send_through(settings: Settings, env: dict[str, str], queue: str, wa: seed.WhatsAppConn) -> str:
    client = await connect(base(settings), env)
    result = await client.execute_workflow(
        "SendWhatsAppMessage", {"organization_id": wa.organization_id, "to": ["+16505551234"], "text": "over tls"},
        id=f"tls-{uuid.uuid4().hex}", task_queue=queue, result_type=SendWhatsAppMessageResult,
        execution_timeout=timedelta(seconds=60))
    return result.results[0].status


async def test_worker_and_client_over_mtls_with_the_documented_profile(
        pki: Pki, mtls_proxy: TlsProxy, settings: Settings, org: seed.WhatsAppConn, tmp_path: Path) -> None:
    cfg = tmp_path / "temporal.toml"
    cfg.write_text(docs_toml(pki, mtls_proxy.address))
    env = {"TEMPORAL_CONFIG_FILE": str(cfg), "TEMPORAL_PROFILE": "selfhosted"}
    queue, port = f"mtls-{uuid.uuid4().hex[:8]}", free_port()
    proc = worker_process(settings, queue, env, port)
    try:
        ready = await wait_ready(port)
        assert ready["checks"] == {"task_queue": "ok", "vault": "ok", "store": "ok"}
        assert await send_through(settings, env, queue, org) == "accepted"
    finally:
        stop(proc)
    assert mtls_proxy.seen.connections >= 2 and mtls_proxy.seen.client_subjects  # worker and test client
    assert set(mtls_proxy.seen.client_subjects) == {"osi-worker"}
    assert any(r["path"].endswith("/PollWorkflowTaskQueue") for r in mtls_proxy.seen.requests)


async def test_mtls_refuses_a_client_without_a_trusted_certificate(
        pki: Pki, mtls_proxy: TlsProxy, settings: Settings) -> None:
    common = {"TEMPORAL_ADDRESS": mtls_proxy.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
              "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME}
    for extra in ({}, {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.stranger_cert),
                       "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.stranger_key)}):
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(connect(base(settings), {**common, **extra}), timeout=60)
    assert mtls_proxy.seen.client_subjects == []  # nobody got through the handshake
    # The same variables with the right certificate connect.
    client = await connect(base(settings), {**common, "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
                                            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key)})
    assert client.namespace == "default" and mtls_proxy.seen.client_subjects == ["osi-worker"]


async def test_a_server_certificate_for_another_name_is_refused(pki: Pki, mtls_proxy: TlsProxy,
                                                                settings: Settings) -> None:
    env = {"TEMPORAL_ADDRESS": mtls_proxy.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
           "TEMPORAL_TLS_SERVER_NAME": "someone-else.test", "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
           "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key)}
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(connect(base(settings), env), timeout=60)


async def test_api_key_reaches_the_server_as_bearer_metadata_and_a_wrong_key_is_refused(
        pki: Pki, api_key_proxy: TlsProxy, settings: Settings, org: seed.WhatsAppConn) -> None:
    key = api_key_proxy.api_key
    assert key
    env = {"TEMPORAL_ADDRESS": api_key_proxy.address, "TEMPORAL_API_KEY": key,
           "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca), "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME}
    queue, port = f"apikey-{uuid.uuid4().hex[:8]}", free_port()
    proc = worker_process(settings, queue, env, port)
    try:
        await wait_ready(port)
        assert await send_through(settings, env, queue, org) == "accepted"
    finally:
        stop(proc)
    calls = api_key_proxy.seen.requests
    assert len(calls) >= 5 and api_key_proxy.seen.refused == 0
    assert {c["authorization"] for c in calls} == {f"Bearer {key}"}
    assert any(c["path"].endswith("/StartWorkflowExecution") for c in calls)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(connect(base(settings), {**env, "TEMPORAL_API_KEY": "wrong"}), timeout=60)
    assert api_key_proxy.seen.refused >= 1


# ---- docs/deploy.md 5.2, the Temporal Cloud steps, as far as they go without a Cloud account ------------------

def docs_block(marker: str) -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(rf"<!-- test: {marker} -->\n\s*```\w*\n(.*?)```", text, re.S)
    assert block, f"docs/deploy.md lost its {marker} example"
    return "\n".join(line.strip() for line in block.group(1).splitlines())


def test_cloud_api_key_variables_from_the_docs_through_the_entrypoint(tmp_path: Path, settings: Settings) -> None:
    import yaml

    variables = yaml.safe_load(docs_block("cloud-api-key"))
    secret = tmp_path / "temporal_api_key"
    secret.write_text("tmprl-key-from-a-compose-secret\n")
    env = {**no_temporal_env(), **{k: str(v) for k, v in variables.items()},
           "TEMPORAL_API_KEY_FILE": str(secret)}  # /run/secrets/... in the container
    out = subprocess.run(["sh", str(ROOT / "deploy" / "docker-entrypoint.sh"), "env"], env=env,
                         capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    got = client_config(base(settings), seen)
    assert got["target_host"] == "us-east-1.aws.api.temporal.io:7233" and got["namespace"] == "osi-prod.a1b2c"
    assert got["api_key"] == "tmprl-key-from-a-compose-secret" and got["tls"] is True


def test_cloud_mtls_profile_from_the_docs(pki: Pki, tmp_path: Path, settings: Settings) -> None:
    toml = docs_block("cloud-mtls-profile")
    toml = toml.replace("/run/secrets/temporal_client_cert", str(pki.client_cert))
    toml = toml.replace("/run/secrets/temporal_client_key", str(pki.client_key))
    cfg = tmp_path / "temporal.toml"
    cfg.write_text(toml)
    got = client_config(base(settings), {"TEMPORAL_CONFIG_FILE": str(cfg), "TEMPORAL_PROFILE": "cloud"})
    assert got["target_host"] == "osi-prod.a1b2c.tmprl.cloud:7233" and got["namespace"] == "osi-prod.a1b2c"
    tls = got["tls"]
    assert not isinstance(tls, bool) and tls.client_cert == pki.client_cert.read_bytes()
    assert tls.client_private_key == pki.client_key.read_bytes() and tls.server_root_ca_cert is None
