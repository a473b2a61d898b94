"""`osi google-calendar`: the Google OAuth app, and connections through a service account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr

from activities.calendar.cli import app_secret_commands
from activities.google_calendar.auth import APP
from activities.google_calendar.spec import SPEC
from core.cli import console, run_with_runtime
from core.connections import add_connection
from vault.credentials import ServiceAccountCredentials

app = typer.Typer(name="google-calendar", help="Google Calendar: the OAuth app, service-account connections",
                  no_args_is_help=True)
app_secret_commands(app, APP, "Google")


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
    conn = run_with_runtime(lambda rt: add_connection(rt, org, SPEC.integration_type, name, settings, creds,
                                                      replace=True))
    console.print(f"added GOOGLE_CALENDAR/{conn.name} for {org} acting as {subject} (id {conn.id})")
