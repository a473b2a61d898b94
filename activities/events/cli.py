"""`osi events`: an organization's event subscriptions (signed webhooks to OpenSyte) and what was delivered."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from activities.events import service
from activities.events.models import SubscriptionSpec, SweepInput, SweepResult
from core.cli import console, run_with_runtime
from core.errors import IntegrationError
from core.settings import get_settings
from core.temporal import connect
from store.events import EVENT_TYPES, EventStore

app = typer.Typer(name="events", help="Events to OpenSyte: per-organization subscriptions receiving signed JSON",
                  no_args_is_help=True)


@app.command("types")
def types() -> None:
    """The event types a subscription can choose ("*" for all)."""
    for t in EVENT_TYPES:
        console.print(t)


@app.command("add")
def add(org: str = typer.Argument(..., help="organization id"),
        url: str = typer.Argument(..., help="https URL receiving signed JSON events"),
        event_type: list[str] = typer.Option(["*"], "--type", help="an event type; repeat for several (default: all)"),
        description: str = typer.Option("", "--description")) -> None:
    """Subscribe a URL; prints the signing secret once (Vault keeps the only other copy)."""
    try:
        spec = SubscriptionSpec(url=url, event_types=event_type, description=description)
        sub, secret = run_with_runtime(lambda rt: service.add_subscription(rt, org, spec, actor="operator"))
    except (IntegrationError, ValidationError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"subscription {sub.id}: {sub.url} ({', '.join(sub.event_types)})")
    # Shown once: the receiver checks X-OSI-Signature with it.
    console.print(f"signing secret (shown once): {secret}")


@app.command("list")
def list_subscriptions(org: str = typer.Argument(..., help="organization id"),
                       as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The organization's subscriptions."""
    async def go(rt: Any) -> Any:
        return await rt.store.run(EventStore(rt.store).subscriptions, org)

    subs = run_with_runtime(go)
    if as_json:
        console.print_json(data=[s.model_dump(mode="json") for s in subs])
        return
    table = Table("id", "url", "types", "description", "created")
    for s in subs:
        table.add_row(s.id, s.url, ", ".join(s.event_types), s.description, s.created_at.isoformat(timespec="seconds"))
    console.print(table)


@app.command("remove")
def remove(org: str = typer.Argument(...), subscription_id: str = typer.Argument(...)) -> None:
    """Remove a subscription (its secret is deleted from Vault, its undelivered events cancelled)."""
    if not run_with_runtime(lambda rt: service.remove_subscription(rt, org, subscription_id, actor="operator")):
        console.print(f"[red]no subscription {subscription_id} in organization {org}[/]")
        raise typer.Exit(1)
    console.print(f"removed subscription {subscription_id}")


@app.command("rotate-secret")
def rotate(org: str = typer.Argument(...), subscription_id: str = typer.Argument(...)) -> None:
    """A new signing secret, printed once."""
    secret = run_with_runtime(lambda rt: service.rotate_secret(rt, org, subscription_id, actor="operator"))
    if secret is None:
        console.print(f"[red]no subscription {subscription_id} in organization {org}[/]")
        raise typer.Exit(1)
    console.print(f"signing secret (shown once): {secret}")


@app.command("test")
def test(org: str = typer.Argument(...), subscription_id: str = typer.Argument(...)) -> None:
    """Queue a `ping` event for one subscription (delivered like any other; see `osi events deliveries`)."""
    if not run_with_runtime(lambda rt: service.send_test(rt, org, subscription_id)):
        console.print(f"[red]no subscription {subscription_id} in organization {org}[/]")
        raise typer.Exit(1)
    run_sweep(0)
    console.print("ping queued")


@app.command("deliveries")
def deliveries(org: str = typer.Argument(...),
               subscription_id: str | None = typer.Option(None, "--subscription"),
               status: str | None = typer.Option(None, "--status", help="pending, delivered, failed or cancelled"),
               limit: int = typer.Option(50, "--limit"),
               as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Recent events and their delivery state (newest first)."""
    async def go(rt: Any) -> Any:
        return await rt.store.run(EventStore(rt.store).deliveries, org, subscription_id, status, limit)

    rows = run_with_runtime(go)
    if as_json:
        console.print_json(data=[r.model_dump(mode="json", exclude={"payload"}) for r in rows])
        return
    table = Table("event", "type", "subscription", "status", "attempts", "last answer", "created")
    for r in rows:
        table.add_row(r.event_id, r.type, r.subscription_id, r.status, str(r.attempts),
                      str(r.last_status_code or r.last_error or ""), r.created_at.isoformat(timespec="seconds"))
    console.print(table)


def run_sweep(older_than: float) -> SweepResult:
    async def go() -> SweepResult:
        settings = get_settings()
        client = await connect(settings)
        return await client.execute_workflow(
            "SweepEventOutbox", SweepInput(older_than_seconds=older_than), id=f"cli-events-{uuid.uuid4().hex[:12]}",
            task_queue=settings.task_queue, result_type=SweepResult)

    return asyncio.run(go())


@app.command("sweep")
def sweep(older_than: float = typer.Option(60.0, "--older-than", help="seconds an event may wait unnudged")) -> None:
    """Start the delivery of every subscription with events waiting (the schedule does this every minute)."""
    console.print_json(data=run_sweep(older_than).model_dump())
