"""`osi calendar`: connect links, events and availability for any calendar provider (Google Calendar, Outlook)."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import typer
from pydantic import SecretStr
from rich.table import Table

from activities.calendar.activities import CalendarActivities
from activities.calendar.model import AvailabilityInput, ListEventsInput, Participant
from core.cli import console, registry, run_with_runtime
from core.links import connect_link
from core.runtime import make_vault
from core.settings import get_settings
from vault.credentials import AppSecrets

app = typer.Typer(name="calendar", help="Calendars (Google Calendar, Outlook): connect links, events, availability",
                  no_args_is_help=True)
TYPE = typer.Option(..., "--type", help="GOOGLE_CALENDAR | OUTLOOK_CALENDAR (or google_calendar | outlook)")


def _type(value: str) -> str:
    """The integration type of a registered calendar provider named by type or provider name."""
    try:
        plugin = registry().plugin_for(value)
    except KeyError as exc:
        raise typer.BadParameter(exc.args[0]) from None
    if plugin.provider is None or "calendar" not in plugin.capabilities:
        raise typer.BadParameter(f"{value!r} is not a calendar provider")
    return plugin.provider.integration_type


@app.command("connect-link")
def connect_link_cmd(
    type_: str = TYPE,
    org: str = typer.Option(..., "--org", help="OpenSyte organization id"),
    name: str = typer.Option("default", "--name", help="connection name (several calendars per organization)"),
    tenant: str | None = typer.Option(None, "--tenant", help="Microsoft tenant (id or domain; default common)"),
    login_hint: str | None = typer.Option(None, "--login-hint", help="the account to sign in with"),
    ttl_days: int = typer.Option(7, "--ttl-days", help="validity of the signed link"),
) -> None:
    """The URL an administrator opens to connect (or reconnect) a calendar with OAuth (PKCE)."""
    provider = registry().provider_for(_type(type_))
    assert provider.spec.install_path is not None
    extra = {k: v for k, v in {"tenant": tenant, "login_hint": login_hint}.items() if v}
    console.print(connect_link(get_settings(), provider.spec.install_path, org, name,
                               ttl_seconds=ttl_days * 86_400, requested_by="operator:cli", **extra))


@app.command("events")
def events(
    type_: str = TYPE,
    org: str = typer.Option(..., "--org"),
    name: str = typer.Option("default", "--name"),
    time_min: str = typer.Option(..., "--from", help="RFC 3339, e.g. 2030-05-06T00:00:00Z"),
    time_max: str = typer.Option(..., "--to"),
    time_zone: str | None = typer.Option(None, "--tz", help="show times in this IANA zone"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Events in a window (recurring series expanded), through the pipeline."""
    itype = _type(type_)

    async def go(rt: Any) -> Any:
        return await CalendarActivities(rt).list_events(ListEventsInput(
            organization_id=org, integration_type=itype, connection=name, time_min=time_min, time_max=time_max,
            time_zone=time_zone))

    result = run_with_runtime(go)
    if as_json:
        console.print_json(data=result.model_dump(mode="json"))
        return
    table = Table("start", "end", "title", "attendees", "id")
    for ev in result.events:
        start = ev.start.date_time.isoformat() if ev.start.date_time else str(ev.start.date)
        end = ev.end.date_time.isoformat() if ev.end.date_time else str(ev.end.date)
        table.add_row(start, end, ev.title, str(len(ev.attendees)), ev.id or "")
    console.print(table)


@app.command("availability")
def availability(
    type_: str = TYPE,
    org: str = typer.Option(..., "--org"),
    name: str = typer.Option("default", "--name"),
    who: str = typer.Option(..., "--who", help="comma-separated emails (optional ones end with ?)"),
    window_start: str = typer.Option(..., "--from"),
    window_end: str = typer.Option(..., "--to"),
    duration: int = typer.Option(30, "--duration", help="minutes"),
    time_zone: str = typer.Option("UTC", "--tz", help="the organizer's IANA zone"),
) -> None:
    """Free slots for everyone (working hours in each person's zone) and each person's busy times."""
    itype = _type(type_)
    people = [Participant(email=p.strip().rstrip("?"), required=not p.strip().endswith("?"))
              for p in who.split(",") if p.strip()]

    async def go(rt: Any) -> Any:
        return await CalendarActivities(rt).find_availability(AvailabilityInput(
            organization_id=org, integration_type=itype, connection=name, participants=people,
            window_start=window_start,
            window_end=window_end, duration_minutes=duration, time_zone=time_zone))

    console.print_json(data=run_with_runtime(go).model_dump(mode="json"))


def _mask(value: str) -> str:
    return f"****({len(value)} chars, sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]})"


def _secret(name: str, from_stdin: bool) -> str:
    if from_stdin:
        data = json.loads(sys.stdin.read() or "{}")
        value = str(data.get(name) or "") if isinstance(data, dict) else ""
    else:
        value = typer.prompt(name, hide_input=True)
    if not value:
        raise typer.BadParameter(f"{name} is required")
    return value


def app_secret_commands(group: typer.Typer, vault_app: str, label: str) -> None:
    """`app-set` / `app-show` on a calendar provider's group: its OAuth app (client id + secret) in Vault."""

    @group.command("app-set")
    def app_set(
        client_id: str = typer.Option(..., "--client-id", help="the OAuth client / app registration id (not secret)"),
        secrets_stdin: bool = typer.Option(False, "--secrets-stdin", help='read {"client_secret": ...} from stdin'),
    ) -> None:
        """Store the OAuth app's client secret in Vault (prompted hidden, never echoed)."""
        secret = _secret("client_secret", secrets_stdin)
        vault = make_vault(get_settings())
        vault.write_app_sync(vault_app, AppSecrets(client_id=client_id, client_secret=SecretStr(secret)))
        console.print(f"stored the {label} app {client_id} in Vault at {vault.app_path(vault_app)}")

    @group.command("app-show")
    def app_show() -> None:
        """The stored app, its secret masked (length and fingerprint only)."""
        found = make_vault(get_settings()).read_app_sync(vault_app)
        console.print_json(data={"client_id": found.client_id,
                                 "client_secret": _mask(found.client_secret.get_secret_value())
                                 if found.client_secret else None})


def client_secret(from_stdin: bool) -> str:
    """A client secret prompted hidden or read as {"client_secret": …} from stdin."""
    return _secret("client_secret", from_stdin)
