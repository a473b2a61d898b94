"""Session fixtures: a real Temporal dev server, real OpenBao, the sandbox, gateway and worker."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.slack.seed import ensure_app
from core.alerting import waker
from core.payloads import compact_data_converter
from core.runtime import Runtime
from core.settings import Settings
from core.temporal import connect
from gateway.app import create_app as create_gateway
from sandbox.app import create_app as create_sandbox
from sandbox.state import SandboxState
from tests.servers import ServerThread
from worker.main import build_worker
from worker.migrate import upgrade
from worker.registry import registry
from worker.stack import Stack, binary, reserve_port


@dataclass
class StackInfo:
    temporal_address: str
    vault_addr: str
    data_dir: Path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    data = tmp_path_factory.mktemp("stack")
    st = Stack()
    try:
        # Each retried on another port when its own log says the port was taken before it could bind it.
        _, tport = st.temporal_on_free_port(None, headless=True, log=data / "temporal.log")
        _, vport = st.vault_on_free_port(log=data / "bao.log")
    except BaseException:
        st.stop()
        raise
    try:
        yield StackInfo(f"127.0.0.1:{tport}", f"http://127.0.0.1:{vport}", data)
    finally:
        st.stop()


@dataclass
class SandboxHandle:
    url: str
    state: SandboxState


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHandle]:
    state = SandboxState()
    srv = ServerThread(create_sandbox(state)).start()  # binds a free port itself: nothing can take it
    yield SandboxHandle(srv.url, state)
    srv.stop()


@pytest.fixture(scope="session")
def gateway_socket() -> Iterator[socket.socket]:
    """The gateway's port, bound from the start (settings name it before the gateway starts) and handed over."""
    sock = reserve_port()
    yield sock
    sock.close()


@pytest.fixture(scope="session")
def gateway_port(gateway_socket: socket.socket) -> int:
    return int(gateway_socket.getsockname()[1])


@pytest.fixture(scope="session")
def settings(stack: StackInfo, sandbox: SandboxHandle, gateway_port: int) -> Settings:
    return Settings(
        data_dir=stack.data_dir,
        temporal_address=stack.temporal_address,
        task_queue=f"it-{uuid.uuid4().hex[:8]}",
        vault_addr=stack.vault_addr,
        vault_cache_ttl_seconds=300,
        database_url=f"sqlite:///{stack.data_dir / 'osi.db'}",
        gateway_port=gateway_port,
        gateway_public_url=f"http://127.0.0.1:{gateway_port}",
        sandbox_port=int(sandbox.url.rsplit(":", 1)[1]),
        # Event deliveries retry within a second in tests (production: seconds up to an hour, for days).
        sections={**sandbox_sections(sandbox.url), "events": {"initial_backoff_seconds": 0.2,
                                                               "max_backoff_seconds": 1.0}},
        breaker_failure_threshold=50,
        egress_private_hosts="127.0.0.1",
        dev_mode=True,
        _env_file=None,  # type: ignore[call-arg]
    )


def sandbox_sections(sandbox_url: str) -> dict[str, dict[str, object]]:
    """Every provider's settings section pointed at the sandbox."""
    return {p.provider.settings.section_name: p.provider.settings.sandbox_overrides(sandbox_url)
            for p in registry().providers() if p.provider is not None}


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    upgrade(settings.database_url)
    rt = Runtime(settings, registry=registry())
    rt.vault.ensure_engines(settings.vault_transit_key)
    yield rt
    await rt.close()


@pytest.fixture(scope="session")
async def client(settings: Settings, runtime: Runtime) -> Client:
    return await connect(settings)


@pytest.fixture(scope="session")
async def worker(client: Client, runtime: Runtime) -> AsyncIterator[Worker]:
    runtime.alert_hook = waker(client, runtime.settings.task_queue)
    w = build_worker(client, runtime)
    async with w:
        yield w


@pytest.fixture(scope="session")
def gateway(settings: Settings, runtime: Runtime, gateway_socket: socket.socket) -> Iterator[str]:
    srv = ServerThread(create_gateway(settings), gateway_socket).start()
    yield srv.url
    srv.stop()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`osi` commands in this process talk to the test stack (the same settings as the session's)."""
    from core import settings as settings_mod

    fields = ("temporal_address", "task_queue", "vault_addr", "database_url", "gateway_public_url",
              "egress_private_hosts")
    for name in fields:
        monkeypatch.setenv(f"OSI_{name.upper()}", str(getattr(settings, name) or ""))
    sandbox_url = settings.sections["whatsapp"]["base_url"].rsplit("/", 1)[0]
    for plugin in registry().providers():
        assert plugin.provider is not None
        for key, value in plugin.provider.settings.sandbox_env(sandbox_url).items():
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("OSI_VAULT_TOKEN", "root")
    settings_mod.get_settings.cache_clear()
    yield
    settings_mod.get_settings.cache_clear()


@pytest.fixture
def task_queue(settings: Settings) -> str:
    return settings.task_queue


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server with the worker's data converter: timers of hours or days pass in
    milliseconds while the test waits on a result (or calls `time_env.sleep`). One per test (it starts in about
    0.1 s): a workflow one test leaves running would otherwise move the next test's clock."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=compact_data_converter)
    yield env
    await env.shutdown()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OSI_PAYLOAD_ENCRYPTION", "true")
    os.environ.setdefault("OSI_DEV_MODE", "true")  # tests and the processes they start run in development mode
    # A developer's `make run` stack file (.data/stack.env) must not leak into the tests' settings.
    os.environ["OSI_STACK_FILE"] = ""



# Fixtures at the root of everything that needs running services: `stack` (Temporal, OpenBao; settings, runtime,
# client, worker, gateway, cli_env, task_queue all depend on it) and `sandbox`. A test using one, directly or
# through another fixture, is marked `stack`; `make test-fast` (`-m "not stack and not slow"`) runs the rest.
STACK_FIXTURES = frozenset({"stack", "sandbox"})
# Modules whose tests start such services or our processes themselves (an OpenBao server, Temporal, `make run`,
# worker/gateway processes, the fault and scale suites, the benchmarks, the TypeScript client against the stack).
SELF_STARTING = frozenset({"test_make_run", "test_faults", "test_scale_out", "test_bench", "test_vault_server",
                           "test_vault_renewal",
                           "test_stack_ports", "test_closed_by_default", "test_typescript_client",
                           "test_deploy_image_bytecode", "test_deploy_postgres_roles"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # `fixturenames` is the closure: fixtures requested through other fixtures are in it too.
        if (STACK_FIXTURES.intersection(getattr(item, "fixturenames", ()))
                or item.path.stem in SELF_STARTING):
            item.add_marker(pytest.mark.stack)


# Figures the fault suite measures (attempted, lost, sent twice…), printed after the run.
FAULT_FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FAULT_FIGURES:
        terminalreporter.section("fault suite: counted on the provider's side")
        for line in FAULT_FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
async def slack_app(runtime: Runtime, sandbox: SandboxHandle, gateway: str) -> Any:
    """The sandbox's Slack app, registered in Vault once, with the running gateway as its request URL."""
    return await ensure_app(runtime, sandbox.url, gateway)
