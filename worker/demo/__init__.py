"""The `make run` demo: one module per integration, each `async def run(ctx: DemoContext)`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rich.console import Console
from temporalio.client import Client

from activities.runtime import Runtime
from worker.settings import Settings

# Each module exposes `async def run(ctx: DemoContext) -> None`; listed in demo order.
DEMO_MODULES = ["worker.demo.whatsapp", "worker.demo.slack", "worker.demo.calendar"]

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
    console: Console = field(default_factory=Console)
    results: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        self.console.print(text)

    def expect(self, condition: object, what: str) -> None:
        """Fail the demo loudly when a step's outcome is not the one it demonstrates."""
        if not condition:
            raise DemoFailed(what)

    def workflow_link(self, workflow_id: str) -> str:
        ui = self.settings.temporal_ui_url.rstrip("/")
        return f"{ui}/namespaces/{self.settings.temporal_namespace}/workflows/{quote(workflow_id, safe='')}"


def demo_modules() -> list[Any]:
    mods = []
    for name in DEMO_MODULES:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return mods


async def run_all(ctx: DemoContext) -> dict[str, str]:
    """Run every demo; one failing demo is reported and does not stop the others."""
    outcome: dict[str, str] = {}
    for mod in demo_modules():
        name = mod.__name__.rsplit(".", 1)[-1]
        ctx.say(f"\n[bold cyan]── {name} demo ──[/]")
        try:
            await mod.run(ctx)
            outcome[name] = "ok"
        except Exception as exc:
            ctx.say(f"[red]{name} demo failed: {type(exc).__name__}: {exc}[/]")
            outcome[name] = f"failed: {exc}"
    return outcome
