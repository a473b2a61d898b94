"""OpenSyte's TypeScript package (clients/typescript): installed with npm ci, built, and run by `node --test`
against this suite's stack with payload encryption on; its generated types must match docs/schemas."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from core.runtime import Runtime
from core.settings import Settings
from gateway.app import create_app as create_gateway
from tests.contract_seed import contract_org
from tests.servers import ServerThread
from vault.codec import VaultEnvelopeCodec
from worker.stack import reserve_port

PACKAGE = Path(__file__).resolve().parent.parent / "clients" / "typescript"
OPERATOR_KEY = "osi-operator-" + os.urandom(8).hex()


def npm(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are required (.ci/run installs them): the TypeScript client is part of the build")
    return subprocess.run(["npm", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


async def npm_async(*args: str, timeout: float, env: dict[str, str]) -> tuple[int, str]:
    """npm without blocking the event loop: this suite's worker runs on it and serves the test's workflows."""
    proc = await asyncio.create_subprocess_exec("npm", *args, cwd=PACKAGE, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -1, out.decode(errors="replace") + f"\n(timed out after {timeout} s)"
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.fixture(scope="module")
def built() -> None:
    """`npm ci` once (node_modules is kept between runs while the lock file is unchanged), then a strict build."""
    stamp = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        out = npm("ci", "--no-audit", "--no-fund")
        assert out.returncode == 0, out.stdout + out.stderr
    out = npm("run", "build")
    assert out.returncode == 0, out.stdout + out.stderr


def test_lock_file_names_no_registry() -> None:
    """Reproducible, mirror-independent installs: npm is told not to write `resolved` URLs."""
    assert "omit-lockfile-registry-resolved=true" in (PACKAGE / ".npmrc").read_text()
    lock = (PACKAGE / "package-lock.json").read_text()
    assert '"resolved"' not in lock and "registry" not in lock
    assert json.loads(lock)["lockfileVersion"] >= 3


def test_generated_types_match_the_schemas(built: None) -> None:
    """src/generated is what `npm run generate` makes from docs/schemas (the drift test)."""
    out = npm("run", "check-generated")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def keyed_gateway(settings: Settings) -> Iterator[str]:
    """A gateway whose codec endpoint requires a key (the operator key, or an organization's admin key)."""
    sock = reserve_port()
    keyed = settings.model_copy(update={"dev_mode": False, "admin_api_key": SecretStr(OPERATOR_KEY),
                                        "gateway_port": int(sock.getsockname()[1])})
    srv = ServerThread(create_gateway(keyed), sock).start()
    yield srv.url
    srv.stop()


async def codec_key(gateway_url: str, runtime: Runtime, settings: Settings, org: str) -> tuple[str, str]:
    """An organization admin key when the codec endpoint decodes that organization's payloads with it;
    otherwise, explicitly, the operator key (the endpoint accepted only the operator key before org scoping)."""
    org_key: str = await runtime.store.run(runtime.store.issue_admin_key, org, "typescript-client-test")
    codec = VaultEnvelopeCodec(runtime.vault, settings.vault_transit_key)
    sample = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'{"probe": 1}')])
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in sample]}
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{gateway_url}/codec/decode", json=body,
                            headers={"Authorization": f"Bearer {org_key}", "X-Namespace": settings.namespace()})
    if r.status_code == 200:
        return org_key, "organization"
    warnings.warn(f"the codec endpoint refused an organization admin key ({r.status_code}): the TypeScript test "
                  "falls back to the operator key", stacklevel=1)
    return OPERATOR_KEY, "operator"


async def test_every_workflow_through_the_typescript_client(
        built: None, client, worker, runtime: Runtime, sandbox, gateway: str, keyed_gateway: str,
        settings: Settings, tmp_path: Path) -> None:
    assert settings.payload_encryption, "the TypeScript client must read encrypted payloads"
    org = await contract_org(runtime, sandbox.url, gateway)
    key, kind = await codec_key(keyed_gateway, runtime, settings, org.organization_id)
    fixture = tmp_path / "contract-org.json"
    fixture.write_text(json.dumps(org.as_json()))
    code, report = await npm_async("test", timeout=300, env={
        "OSI_TEMPORAL_ADDRESS": settings.temporal_address, "OSI_TEMPORAL_NAMESPACE": settings.namespace(),
        "OSI_TASK_QUEUE": settings.task_queue, "OSI_GATEWAY_URL": keyed_gateway, "OSI_CODEC_KEY": key,
        "OSI_CODEC_KEY_KIND": kind, "OSI_CONTRACT_ORG": str(fixture), "OSI_REQUIRE_STACK": "1"})
    assert code == 0, report[-8000:]
    assert "# fail 0" in report and "# skipped 0" in report, report[-4000:]
