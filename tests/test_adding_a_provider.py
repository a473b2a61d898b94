"""docs/ARCHITECTURE.md's "Adding a provider" checklist, followed by a provider that lives only under tests/:
its folder and one registration give it an activity on the worker, a webhook route on the gateway and a
command in the CLI, without editing any other file."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from pydantic import SecretStr
from typer.testing import CliRunner

from core import settings as settings_mod
from core.connections import add_connection
from core.plugin import Registry
from core.runtime import Runtime
from gateway.app import create_app
from tests.echo_provider.plugin import PLUGIN, PingInput, PingResult
from tests.echo_provider.workflows import EchoWorkflow
from vault.credentials import ApiKeyCredentials
from worker.cli import build_cli
from worker.main import build_worker
from worker.registry import REGISTRATIONS, Registration


async def test_a_provider_is_its_folder_plus_one_registration(settings, runtime, client, sandbox, cli_env,
                                                               monkeypatch) -> None:
    registrations = [*REGISTRATIONS, Registration(PLUGIN, (EchoWorkflow,))]
    plugins = Registry([r.plugin for r in registrations])
    echo_settings = settings.model_copy(update={"sections": {**settings.sections,
                                                             "echo": {"base_url": f"{sandbox.url}/_sandbox/sink"}}})
    rt = Runtime(echo_settings, registry=plugins, store=runtime.store, vault=runtime.vault)
    org, sink = f"org_{uuid.uuid4().hex[:8]}", f"echo-{uuid.uuid4().hex[:8]}"
    await add_connection(rt, org, "ECHO_TEST", "default", {"sink": sink},
                         ApiKeyCredentials(api_key=SecretStr("k-echo")))

    # The worker runs its activity and workflow.
    queue = f"echo-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, rt, task_queue=queue, registrations=registrations):
        res = await client.execute_workflow(EchoWorkflow.run, PingInput(organization_id=org, text="hi"),
                                            id=f"echo-{uuid.uuid4().hex[:8]}", task_queue=queue)
        assert res == PingResult(status=200)

        # The gateway serves its webhook route, which starts the same workflow.
        app = create_app(echo_settings.model_copy(update={"task_queue": queue}), rt=rt, temporal=client,
                         plugins=plugins)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            started = (await http.post(f"/webhooks/echo/{org}", json={"id": 1, "text": "from a webhook"})).json()
        done = await client.get_workflow_handle(started["workflow_id"], result_type=PingResult).result()
        assert done.status == 200

    # The CLI has its command group.
    monkeypatch.setenv("OSI_ECHO_BASE_URL", f"{sandbox.url}/_sandbox/sink")
    settings_mod.get_settings.cache_clear()
    out = await asyncio.to_thread(CliRunner().invoke, build_cli(plugins), ["echo", "ping", "--org", org,
                                                                          "--text", "from the CLI"])
    assert out.exit_code == 0, out.output
    assert "echo answered 200" in out.output

    # Every call went through the pipeline: authenticated from Vault, recorded in the usage ledger.
    async with httpx.AsyncClient() as http:
        received = (await http.get(f"{sandbox.url}/_sandbox/sink/{sink}")).json()
    assert [r["body"] for r in received] == ['{"text":"hi"}', '{"text":"from a webhook"}', '{"text":"from the CLI"}']
    assert {r["headers"]["x-echo-key"] for r in received} == {"k-echo"}
    assert len(runtime.store.usage(organization_id=org, action="echo.ping")) == 3
