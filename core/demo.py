"""The `make run` demo's shared context; each plugin contributes `async def run(ctx: DemoContext)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from temporalio.client import Client

from core.links import workflow_link
from core.plugin import Registry
from core.runtime import Runtime
from core.settings import Settings

DEMO_ORG = "demo-org"


class DemoFailed(RuntimeError):
    """A demo step ran but did not do what it shows: `make run` must not print "ok" for it."""


@dataclass
class DemoContext:
    settings: Settings
    client: Client
    rt: Runtime
    sandbox_url: str
    gateway_url: str
    organization_id: str = DEMO_ORG
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    results: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        self.console.print(text)

    def expect(self, condition: object, what: str) -> None:
        """Fail the demo loudly when a step's outcome is not the one it demonstrates."""
        if not condition:
            raise DemoFailed(what)

    def workflow_link(self, workflow_id: str) -> str:
        return workflow_link(self.settings, workflow_id)


async def run_all(ctx: DemoContext, plugins: Registry) -> dict[str, str]:
    """Run every plugin's demo; one failing demo is reported and does not stop the others."""
    outcome: dict[str, str] = {}
    for plugin in plugins:
        if plugin.demo is None:
            continue
        ctx.say(f"\n[bold cyan]── {plugin.name} demo ──[/]")
        try:
            await plugin.demo(ctx)
            outcome[plugin.name] = "ok"
        except Exception as exc:
            ctx.say(f"[red]{plugin.name} demo failed: {type(exc).__name__}: {exc}[/]")
            outcome[plugin.name] = f"failed: {exc}"
    return outcome
