"""`osi outlook`: the Microsoft app registration, and app-only (client credentials) connections."""

from __future__ import annotations

import typer
from pydantic import SecretStr

from activities.calendar.cli import app_secret_commands, client_secret
from activities.outlook.auth import APP
from activities.outlook.spec import SPEC
from core.cli import console, run_with_runtime
from core.connections import add_connection
from vault.credentials import ClientCredentials

app = typer.Typer(name="outlook", help="Outlook (Microsoft Graph): the app registration, app-only connections",
                  no_args_is_help=True)
app_secret_commands(app, APP, "Microsoft")


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
    secret = client_secret(secrets_stdin)
    creds = ClientCredentials(client_id=client_id, client_secret=SecretStr(secret), tenant=tenant)
    settings = {"mailbox": mailbox, "tenant": tenant}
    conn = run_with_runtime(lambda rt: add_connection(rt, org, SPEC.integration_type, name, settings,
                                          creds, replace=True))
    console.print(f"added OUTLOOK_CALENDAR/{conn.name} for {org} on mailbox {mailbox} (id {conn.id})")
