"""`osi calendar`: Google/Microsoft app secrets in Vault, connect links, service-account and app-only
connections, and quick reads (events, availability) through the same activities the workflows use."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from worker.settings import get_settings

T = TypeVar("T")
app = typer.Typer(help="Calendars (Google Calendar, Outlook): apps, connect links, connections, events",
                  no_args_is_help=True)
console = Console()
APPS = {"google": "google", "microsoft": "microsoft"}
TYPES = {"google": "GOOGLE_CALENDAR", "outlook": "OUTLOOK_CALENDAR", "GOOGLE_CALENDAR": "GOOGLE_CALENDAR",
         "OUTLOOK_CALENDAR": "OUTLOOK_CALENDAR"}


def _mask(value: str) -> str:
    return f"****({len(value)} chars, sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]})"


def _type(value: str) -> str:
    if value not in TYPES:
        raise typer.BadParameter(f"--type must be google or outlook (or GOOGLE_CALENDAR / OUTLOOK_CALENDAR), "
                                 f"got {value!r}")
    return TYPES[value]


def _secret(name: str, from_stdin: bool) -> str:
    if from_stdin:
        data = json.loads(sys.stdin.read() or "{}")
        value = str(data.get(name) or "") if isinstance(data, dict) else ""
    else:
        value = typer.prompt(name, hide_input=True)
    if not value:
        raise typer.BadParameter(f"{name} is required")
    return value


def _run(fn: Callable[[Any], Awaitable[T]]) -> T:
    from worker.cli import run_with_runtime

    return run_with_runtime(fn)


@app.command("app-set")
def app_set(
    provider: str = typer.Option(..., "--provider", help="google | microsoft"),
    client_id: str = typer.Option(..., "--client-id", help="the OAuth client / app registration id (not secret)"),
    secrets_stdin: bool = typer.Option(False, "--secrets-stdin", help='read {"client_secret": ...} from stdin'),
) -> None:
    """Store the OAuth app's client secret in Vault (prompted hidden, never echoed)."""
    from activities.runtime import make_vault
    from vault.credentials import AppSecrets

    if provider not in APPS:
        raise typer.BadParameter("--provider must be google or microsoft")
    secret = _secret("client_secret", secrets_stdin)
    vault = make_vault(get_settings())
    vault.write_app_sync(APPS[provider], AppSecrets(client_id=client_id, client_secret=SecretStr(secret)))
    console.print(f"stored the {provider} app {client_id} in Vault at {vault.app_path(APPS[provider])}")


@app.command("app-show")
def app_show(provider: str = typer.Option(..., "--provider", help="google | microsoft")) -> None:
    """The stored app, its secret masked (length and fingerprint only)."""
    from activities.runtime import make_vault

    if provider not in APPS:
        raise typer.BadParameter("--provider must be google or microsoft")
    found = make_vault(get_settings()).read_app_sync(APPS[provider])
    console.print_json(data={"client_id": found.client_id,
                             "client_secret": _mask(found.client_secret.get_secret_value())
                             if found.client_secret else None})


@app.command("connect-link")
def connect_link(
    type_: str = typer.Option(..., "--type", help="google | outlook"),
    org: str = typer.Option(..., "--org", help="OpenSyte organization id"),
    name: str = typer.Option("default", "--name", help="connection name (several calendars per organization)"),
    tenant: str | None = typer.Option(None, "--tenant", help="Microsoft tenant (id or domain; default common)"),
    login_hint: str | None = typer.Option(None, "--login-hint", help="the account to sign in with"),
    ttl_days: int = typer.Option(7, "--ttl-days", help="validity of a signed link (when an admin key is set)"),
) -> None:
    """The URL an administrator opens to connect (or reconnect) a calendar with OAuth (PKCE)."""
    from gateway.calendar_oauth import install_link

    provider = "google_calendar" if _type(type_) == "GOOGLE_CALENDAR" else "outlook"
    extra = {k: v for k, v in {"tenant": tenant, "login_hint": login_hint}.items() if v}
    console.print(install_link(get_settings(), provider, org, name, ttl_seconds=ttl_days * 86_400, **extra))


@app.command("add-service-account")
def add_service_account(
    org: str = typer.Option(..., "--org"),
    name: str = typer.Option("default", "--name"),
    key_file: Path = typer.Option(..., "--key-file", exists=True, dir_okay=False,
                                  help="the service account's JSON key (read once, stored in Vault)"),
    subject: str = typer.Option(..., "--subject", help="the Workspace user to act as (domain-wide delegation)"),
    domains: str = typer.Option("", "--google-domains", help="comma-separated domains whose users are Google users"),
) -> None:
    """A Google connection through a service account with domain-wide delegation."""
    from vault.credentials import ServiceAccountCredentials
    from worker.connections import add_connection

    raw = key_file.read_text()
    try:
        info = json.loads(raw)
        missing = [k for k in ("client_email", "private_key") if not info.get(k)]
    except ValueError:
        missing = ["valid JSON"]
    if missing:
        raise typer.BadParameter(f"the key file lacks {', '.join(missing)}")
    settings: dict[str, Any] = {"calendar_id": "primary", "user": subject, "project_id": info.get("project_id") or
                                "default"}
    if domains:
        settings["google_domains"] = [d.strip() for d in domains.split(",") if d.strip()]
    creds = ServiceAccountCredentials(service_account_json=SecretStr(raw), subject=subject)
    conn = _run(lambda rt: add_connection(rt, org, "GOOGLE_CALENDAR", name, settings, creds, replace=True))
    console.print(f"added GOOGLE_CALENDAR/{conn.name} for {org} acting as {subject} (id {conn.id})")


@app.command("add-app-only")
def add_app_only(
    org: str = typer.Option(..., "--org"),
    name: str = typer.Option("default", "--name"),
    client_id: str = typer.Option(..., "--client-id"),
    tenant: str = typer.Option(..., "--tenant"),
    mailbox: str = typer.Option(..., "--mailbox", help="the mailbox (UPN) the app acts on"),
    secrets_stdin: bool = typer.Option(False, "--secrets-stdin", help='read {"client_secret": ...} from stdin'),
) -> None:
    """An Outlook connection with application permissions (client credentials) on one mailbox."""
    from vault.credentials import ClientCredentials
    from worker.connections import add_connection

    secret = _secret("client_secret", secrets_stdin)
    creds = ClientCredentials(client_id=client_id, client_secret=SecretStr(secret), tenant=tenant)
    conn = _run(lambda rt: add_connection(rt, org, "OUTLOOK_CALENDAR", name, {"mailbox": mailbox, "tenant": tenant},
                                          creds, replace=True))
    console.print(f"added OUTLOOK_CALENDAR/{conn.name} for {org} on mailbox {mailbox} (id {conn.id})")


def _activities(rt: Any, itype: str) -> Any:
    if itype == "GOOGLE_CALENDAR":
        from activities.google_calendar.activities import GoogleCalendarActivities

        return GoogleCalendarActivities(rt)
    from activities.outlook.activities import OutlookActivities

    return OutlookActivities(rt)


@app.command("events")
def events(
    type_: str = typer.Option(..., "--type", help="google | outlook"),
    org: str = typer.Option(..., "--org"),
    name: str = typer.Option("default", "--name"),
    time_min: str = typer.Option(..., "--from", help="RFC 3339, e.g. 2030-05-06T00:00:00Z"),
    time_max: str = typer.Option(..., "--to"),
    time_zone: str | None = typer.Option(None, "--tz", help="show times in this IANA zone"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Events in a window (recurring series expanded), through the pipeline."""
    from activities.calendar.model import ListEventsInput

    itype = _type(type_)

    async def go(rt: Any) -> Any:
        return await _activities(rt, itype).list_events(ListEventsInput(
            organization_id=org, connection=name, time_min=time_min, time_max=time_max, time_zone=time_zone))

    result = _run(go)
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
    type_: str = typer.Option(..., "--type", help="google | outlook"),
    org: str = typer.Option(..., "--org"),
    name: str = typer.Option("default", "--name"),
    who: str = typer.Option(..., "--who", help="comma-separated emails (optional ones end with ?)"),
    window_start: str = typer.Option(..., "--from"),
    window_end: str = typer.Option(..., "--to"),
    duration: int = typer.Option(30, "--duration", help="minutes"),
    time_zone: str = typer.Option("UTC", "--tz", help="the organizer's IANA zone"),
) -> None:
    """Free slots for everyone (working hours in each person's zone) and each person's busy times."""
    from activities.calendar.model import AvailabilityInput, Participant

    itype = _type(type_)
    people = [Participant(email=p.strip().rstrip("?"), required=not p.strip().endswith("?"))
              for p in who.split(",") if p.strip()]

    async def go(rt: Any) -> Any:
        return await _activities(rt, itype).find_availability(AvailabilityInput(
            organization_id=org, connection=name, participants=people, window_start=window_start,
            window_end=window_end, duration_minutes=duration, time_zone=time_zone))

    console.print_json(data=_run(go).model_dump(mode="json"))
