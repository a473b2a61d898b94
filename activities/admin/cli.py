"""`osi alerts`: where administrators' alerts go (Slack, signed webhooks), and a delivery round now."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from activities.admin.alerts import RouteSpec, add_route, remove_route
from core.alerting import wake
from core.cli import console, run_with_runtime
from core.errors import IntegrationError
from core.links import workflow_link
from core.settings import get_settings
from core.temporal import connect
from store.alerts import AlertStore
from store.db import ConnectionNotFound

app = typer.Typer(name="alerts", help="Alert routes: deliver administrators' notifications to Slack or a webhook",
                  no_args_is_help=True)
SEVERITY_HELP = "the least severe alert this route receives: info, warning or error"


def _add(org: str, **fields: Any) -> None:
    try:
        spec = RouteSpec(**fields)
        route, secret = run_with_runtime(lambda rt: add_route(rt, org, spec, actor="operator"))
    except (IntegrationError, ConnectionNotFound, ValidationError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"route {route.id}: {route.kind} {route.target} (severity ≥ {route.min_severity})")
    if secret:
        # Shown once: the receiver needs it to check X-OSI-Signature; Vault keeps the only other copy.
        console.print(f"signing secret (shown once): {secret}")


@app.command("add-slack")
def add_slack(
    org: str = typer.Argument(..., help="organization id"),
    connection: str = typer.Option("default", "--connection", help="the organization's Slack connection name"),
    channel: str | None = typer.Option(None, "--channel", help="conversation ID (C…)"),
    user_id: str | None = typer.Option(None, "--user-id", help="a person's user ID, for a DM instead"),
    min_severity: str = typer.Option("warning", "--min-severity", help=SEVERITY_HELP),
) -> None:
    """Deliver the organization's alerts to a Slack channel or DM through one of its Slack connections."""
    _add(org, kind="slack", connection=connection, channel=channel, user_id=user_id, min_severity=min_severity)


@app.command("add-webhook")
def add_webhook(
    org: str = typer.Argument(..., help="organization id"),
    url: str = typer.Argument(..., help="https URL that receives signed JSON alerts"),
    min_severity: str = typer.Option("warning", "--min-severity", help=SEVERITY_HELP),
) -> None:
    """Deliver alerts as signed JSON POSTs (X-OSI-Signature: v1=HMAC-SHA256 of "timestamp.body")."""
    _add(org, kind="webhook", url=url, min_severity=min_severity)


@app.command("list")
def list_routes(org: str = typer.Argument(..., help="organization id"),
                as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The organization's alert routes."""
    async def go(rt: Any) -> Any:
        return await rt.store.run(AlertStore(rt.store).routes, org)

    routes = run_with_runtime(go)
    if as_json:
        console.print_json(data=[r.model_dump(mode="json") for r in routes])
        return
    table = Table("id", "kind", "target", "min severity", "created")
    for r in routes:
        table.add_row(r.id, r.kind, str(r.target), r.min_severity, r.created_at.isoformat(timespec="seconds"))
    console.print(table)


@app.command("remove")
def remove(org: str = typer.Argument(...), route_id: str = typer.Argument(...)) -> None:
    """Remove a route (a webhook's signing secret is deleted from Vault)."""
    if not run_with_runtime(lambda rt: remove_route(rt, org, route_id, actor="operator")):
        console.print(f"[red]no route {route_id} in organization {org}[/]")
        raise typer.Exit(1)
    console.print(f"removed route {route_id}")


@app.command("deliver")
def deliver(org: str | None = typer.Option(None, "--org", help="only this organization")) -> None:
    """Wake the alert delivery workflow of the organization (or of every organization with alerts still due).

    A recorded alert wakes it by itself; this is for an alert recorded while Temporal was unreachable."""
    async def go(rt: Any) -> list[str]:
        orgs = [org] if org else await rt.store.run(AlertStore(rt.store).pending_organizations, timedelta(hours=24))
        settings = get_settings()
        client = await connect(settings)
        return [await wake(client, settings.task_queue, o) for o in orgs]

    woken = run_with_runtime(go)
    console.print_json(data={"woken": woken, "links": [workflow_link(get_settings(), w) for w in woken]})


@app.command("status")
def status(org: str = typer.Argument(..., help="organization id"),
           as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Recent alerts and what each route did with them (delivered, retrying with its last error, given up)."""
    async def go(rt: Any) -> list[dict[str, Any]]:
        alerts = AlertStore(rt.store)
        rows = []
        for n in list(await rt.store.run(rt.store.notifications, org))[-50:]:
            for d in await rt.store.run(alerts.deliveries, n.id or 0):
                rows.append({"alert": n.id, "at": n.at.isoformat(timespec="seconds"), "kind": n.kind,
                             "route": d.route_id, "status": d.status, "attempts": d.attempts,
                             "last_error": d.last_error})
        return rows

    rows = run_with_runtime(go)
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("alert", "raised", "kind", "route", "status", "attempts", "last error")
    for r in rows:
        table.add_row(str(r["alert"]), r["at"], r["kind"], r["route"], r["status"], str(r["attempts"]),
                      r["last_error"] or "")
    console.print(table)
