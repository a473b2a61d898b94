"""What every `osi` command group shares: one Runtime per command over the composition's registry, printing, and
the one error handler (a user's mistake or an unreachable service is one line, never a traceback)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import OperationalError, ProgrammingError
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from core.alerting import lazy_waker
from core.errors import IntegrationError
from core.plugin import Registry
from core.runtime import Runtime
from core.settings import Settings, get_settings, stack_file
from core.temporal import connect
from store.db import ConnectionExists, ConnectionNotFound
from vault.client import CredentialsMissing, VaultError

T = TypeVar("T")
# soft_wrap: long lines (links, ids) are printed whole, so they can be copied or captured with $(…); output that
# is not a terminal is never wrapped (tables included).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 100_000)
errors = Console(stderr=True, soft_wrap=True, highlight=False)

EXIT_FAILURE = 1
EXIT_USAGE = 2

_current = Registry(())
_debug = False


def use(plugins: Registry, *, debug: bool = False) -> None:
    """Called by the root command before any subcommand runs: the plugins every command works with."""
    global _current, _debug
    _current = plugins
    _debug = debug


def registry() -> Registry:
    """The registry the root command was started with (an empty one outside the `osi` command tree)."""
    return _current


class UserError(Exception):
    """A mistake or a missing precondition, said in one line: what, which setting or argument, what to do."""

    def __init__(self, message: str, *, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _check_store(settings: Settings) -> None:
    """A read against a SQLite file that does not exist would create an empty store and report nothing."""
    url = settings.database_url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise UserError(f"no store at {path} (OSI_DATABASE_URL): start the local stack with `make run` "
                            "(its settings reach `osi` through .data/stack.env), point OSI_DATA_DIR or "
                            "OSI_DATABASE_URL at yours, or create one with `osi db upgrade`")


def run_with_runtime(fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """Build one Runtime for this command, run `fn(rt)`, close it."""

    async def main() -> T:
        settings = get_settings()
        _check_store(settings)
        rt = Runtime(settings, registry=registry())
        rt.alert_hook = lazy_waker(settings, connect)  # an alert this command raises wakes its delivery
        try:
            return await fn(rt)
        finally:
            await rt.close()

    return asyncio.run(main())


def run_classified(fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """`run_with_runtime` for commands that answer in JSON: a classified provider failure is printed as a JSON
    error object (`ok: false`, type, message, code) and exits 1."""
    try:
        return run_with_runtime(fn)
    except ApplicationError as err:
        details = err.details[0] if err.details and isinstance(err.details[0], dict) else {}
        console.print_json(data={"ok": False, "error": {"type": err.type, "message": err.message,
                                                        "code": details.get("code")}})
        raise typer.Exit(EXIT_FAILURE) from None


def ignore(_: Any) -> None:
    """For commands whose result is printed elsewhere."""


def _validation(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "__root__")
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _classified(err: ApplicationError) -> str:
    info = err.details[0] if err.details and isinstance(err.details[0], dict) else {}
    code = info.get("code")
    text = f"{err.type or 'error'}: {info.get('message') or err.message}" + (f" (code {code})" if code else "")
    if info.get("error_class") == "ConfigurationError" or err.type == "ConfigurationError":
        text += " — an administrator must act: `osi diagnose <org>` shows the fix"
    return text


def explain(exc: BaseException, settings: Settings | None = None) -> tuple[str, int]:
    """One line and an exit code for an exception that reached the command line."""
    s = settings or _safe_settings()
    origin = f" (settings from {stack_file()})" if stack_file() is not None and stack_file().is_file() else ""  # type: ignore[union-attr]
    if isinstance(exc, UserError):
        return str(exc), exc.code
    if isinstance(exc, ValidationError):
        return f"invalid input: {_validation(exc)}", EXIT_USAGE
    if isinstance(exc, ConnectionNotFound):
        return f"{exc} — `osi connections list` shows the connections there are", EXIT_USAGE
    if isinstance(exc, ConnectionExists):
        return f"{exc} — change it with `osi connections update` or `osi connections rotate`", EXIT_USAGE
    if isinstance(exc, CredentialsMissing):
        return f"no secret stored in Vault at {exc} — store it with `osi connections rotate`", EXIT_FAILURE
    if isinstance(exc, VaultError):
        return (f"Vault at {s.vault_addr if s else '?'} (OSI_VAULT_ADDR){origin}: {exc} — is it running and "
                "unsealed? (`make run` starts a local one)", EXIT_FAILURE)
    if isinstance(exc, WorkflowFailureError):
        cause = exc.cause
        while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError) and cause.cause:
            cause = cause.cause
        if isinstance(cause, ApplicationError):
            return f"workflow failed: {_classified(cause)}", EXIT_FAILURE
        return f"workflow failed: {cause}", EXIT_FAILURE
    if isinstance(exc, ApplicationError):
        return _classified(exc), EXIT_FAILURE
    if isinstance(exc, IntegrationError):
        return f"{exc.error_class.value}: {exc.message}" + (f" (code {exc.code})" if exc.code else ""), EXIT_FAILURE
    if isinstance(exc, RPCError) or (isinstance(exc, RuntimeError) and "client connect" in str(exc)):
        first = str(exc).splitlines()[0][:200]
        where = (s.temporal_address or os.environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233") if s else "?"
        return (f"Temporal at {where} (OSI_TEMPORAL_ADDRESS or TEMPORAL_ADDRESS){origin}: {first} — is "
                "it running? (`make run` starts a local one)", EXIT_FAILURE)
    if isinstance(exc, OperationalError | ProgrammingError):
        first = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0][:200]
        return (f"the store at {s.database_url if s else '?'} (OSI_DATABASE_URL){origin}: {first} — is it "
                "reachable and migrated? (`osi db upgrade`)", EXIT_FAILURE)
    if isinstance(exc, httpx.HTTPError):
        where = str(exc.request.url) if _has_request(exc) else "a service"
        return f"could not reach {where}: {type(exc).__name__}", EXIT_FAILURE
    if isinstance(exc, KeyError | ValueError):
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return str(text), EXIT_USAGE
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"unexpected {type(exc).__name__}: {first} (run `osi --debug …` for the traceback)", EXIT_FAILURE


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error carries no request
    except RuntimeError:
        return False
    return True


def _safe_settings() -> Settings | None:
    try:
        return get_settings()
    except Exception:
        return None


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print one error line; `raise fail(...)` ends the command with `code`."""
    errors.print(f"error: {message}", markup=False)
    return typer.Exit(code)


class OsiGroup(TyperGroup):
    """The root command group: every exception a command lets out is printed as one line (or, with `--debug`,
    as the traceback) with exit code 2 for usage mistakes and 1 for failures."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):  # typer's own: usage errors, explicit exits
            raise
        except Exception as exc:
            if _debug:
                raise
            message, code = explain(exc)
            raise fail(message, code) from None
