"""The whole of a test-only provider ("echo"): facts, settings section, an activity, a webhook route, a CLI command.

Its API is the sandbox's webhook sink, which records what it gets; nothing outside this folder names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import typer
from fastapi import APIRouter, Request
from pydantic import BaseModel
from temporalio import activity

from core.cli import console, run_with_runtime
from core.errors import IntegrationError, PermanentError, TemporaryError
from core.plugin import Plugin, Provider, ProviderSpec, RateLimitSpec
from core.runtime import Runtime
from core.settings import ApiSettings, section_config
from vault.credentials import ApiKeyCredentials, Credentials

SPEC = ProviderSpec(name="echo", integration_type="ECHO_TEST", auth_kind="api_key",
                    rate_limits={"calls": RateLimitSpec("echo.calls", 50, 1.0, "calls per second per connection")},
                    secret_settings=("api_key",), required_settings=("sink",))


class EchoSettings(ApiSettings):
    model_config = section_config("OSI_ECHO_")
    section_name: ClassVar[str] = "echo"
    base_url: str = "https://echo.invalid"


def classify(status: int, headers: Mapping[str, str], body: Any) -> IntegrationError | None:
    if 200 <= status < 300:
        return None
    return TemporaryError(f"HTTP {status}") if status >= 500 else PermanentError(f"HTTP {status}")


def auth_headers(creds: Credentials) -> dict[str, str]:
    assert isinstance(creds, ApiKeyCredentials)
    return {"X-Echo-Key": creds.api_key.get_secret_value()}


PROVIDER = Provider(spec=SPEC, settings=EchoSettings, classify=classify, auth_headers=auth_headers)


class PingInput(BaseModel):
    organization_id: str
    connection: str = "default"
    text: str


class PingResult(BaseModel):
    status: int


async def ping(rt: Runtime, inp: PingInput) -> PingResult:
    async with rt.action(PROVIDER, inp.organization_id, inp.connection, "echo.ping") as act:
        resp = await act.call("POST", f"{act.base_url().rstrip('/')}/{act.settings['sink']}", json={"text": inp.text},
                              limits=[SPEC.rate_limits["calls"].window(act.connection.id)])
        return PingResult(status=resp.status_code)


class EchoActivities:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @activity.defn(name="echo.ping")
    async def ping(self, inp: PingInput) -> PingResult:
        return await ping(self.rt, inp)


async def test_connection(act: Any) -> dict[str, Any]:
    return {"ok": True, "problems": []}


def routes() -> APIRouter:
    r = APIRouter()

    @r.post("/webhooks/echo/{organization_id}")
    async def webhook(organization_id: str, request: Request) -> dict[str, Any]:
        """Starts the echo workflow by name, as provider webhooks do."""
        body = await request.json()
        handle = await request.app.state.temporal.start_workflow(
            "EchoWorkflow", PingInput(organization_id=organization_id, text=str(body.get("text"))),
            id=f"echo-{organization_id}-{body.get('id')}", task_queue=request.app.state.settings.task_queue)
        return {"workflow_id": handle.id}

    return r


cli = typer.Typer(name="echo", help="The test-only echo provider", no_args_is_help=True)


@cli.command("ping")
def ping_cmd(org: str = typer.Option(..., "--org"), text: str = typer.Option(..., "--text")) -> None:
    result = run_with_runtime(lambda rt: ping(rt, PingInput(organization_id=org, text=text)))
    console.print(f"echo answered {result.status}")


PLUGIN = Plugin(name="echo", provider=PROVIDER, activities=lambda rt: [EchoActivities(rt).ping],
                test_connection=test_connection, routes=routes, cli=lambda: cli)
