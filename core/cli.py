"""What every `osi` command group shares: one Runtime per command over the composition's registry, printing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from temporalio.exceptions import ApplicationError

from core.alerting import lazy_waker
from core.plugin import Registry
from core.runtime import Runtime
from core.settings import get_settings
from core.temporal import connect

T = TypeVar("T")
# soft_wrap: long lines (links, ids) are printed whole, so they can be copied or captured with $(…).
console = Console(soft_wrap=True)


_current = Registry(())


def use(plugins: Registry) -> None:
    """Called by the root command before any subcommand runs: the plugins every command works with."""
    global _current
    _current = plugins


def registry() -> Registry:
    """The registry the root command was started with (an empty one outside the `osi` command tree)."""
    return _current


def run_with_runtime(fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """Build one Runtime for this command, run `fn(rt)`, close it."""

    async def main() -> T:
        settings = get_settings()
        rt = Runtime(settings, registry=registry())
        rt.alert_hook = lazy_waker(settings, connect)  # an alert this command raises wakes its delivery
        try:
            return await fn(rt)
        finally:
            await rt.close()

    return asyncio.run(main())


def run_classified(fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """`run_with_runtime`, printing a classified provider failure as JSON and exiting 1."""
    try:
        return run_with_runtime(fn)
    except ApplicationError as err:
        details = err.details[0] if err.details and isinstance(err.details[0], dict) else {}
        console.print_json(data={"ok": False, "error": {"type": err.type, "message": err.message,
                                                        "code": details.get("code")}})
        raise typer.Exit(1) from None


def ignore(_: Any) -> None:
    """For commands whose result is printed elsewhere."""
