"""`osi slack`: the Slack app's secrets in Vault, install links, and a test post through Temporal."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import uuid
from typing import Any

import typer
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.slack.models import SendSlackMessageInput, SendSlackMessageResult
from activities.slack.oauth import APP
from activities.slack.routes import install_link
from core.cli import console, errors, fail
from core.links import workflow_link
from core.runtime import make_vault
from core.settings import get_settings
from core.temporal import connect
from vault.credentials import AppSecrets

app = typer.Typer(name="slack", help="Slack: app secrets, install links, test messages", no_args_is_help=True)


def _mask(value: str) -> str:
    return f"****({len(value)} chars, sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]})"


@app.command("app-set")
def app_set(
    client_id: str = typer.Option(..., "--client-id", help="the app's client id (not secret)"),
    secrets_stdin: bool = typer.Option(False, "--secrets-stdin",
                                       help='read {"client_secret": ..., "signing_secret": ...} from stdin'),
) -> None:
    """Store the Slack app's client secret and signing secret in Vault (prompted hidden, never echoed)."""
    if secrets_stdin:
        data = json.loads(sys.stdin.read() or "{}")
    else:
        data = {k: typer.prompt(k, hide_input=True) for k in ("client_secret", "signing_secret")}
    missing = [k for k in ("client_secret", "signing_secret") if not data.get(k)]
    if missing:
        raise typer.BadParameter(f"missing {', '.join(missing)}")
    vault = make_vault(get_settings())
    vault.write_app_sync(APP, AppSecrets(client_id=client_id, client_secret=SecretStr(str(data["client_secret"])),
                                         signing_secret=SecretStr(str(data["signing_secret"]))))
    console.print(f"stored Slack app {client_id} in Vault at {vault.app_path(APP)}")


@app.command("app-show")
def app_show() -> None:
    """The Slack app as stored in Vault, secrets masked (length and fingerprint only)."""
    vault = make_vault(get_settings())
    found = vault.read_app_sync(APP)
    out: dict[str, Any] = {"client_id": found.client_id}
    for key in ("client_secret", "signing_secret"):
        value = getattr(found, key)
        out[key] = _mask(value.get_secret_value()) if value else None
    console.print_json(data=out)


@app.command("install-link")
def install_link_cmd(
    org: str = typer.Option(..., "--org", help="OpenSyte organization id"),
    name: str = typer.Option("default", "--name", help="connection name (several workspaces per organization)"),
    ttl_days: int = typer.Option(7, "--ttl-days", help="validity of the signed link"),
) -> None:
    """The URL an administrator opens to install (or re-install) the Slack app for a connection."""
    console.print(install_link(get_settings(), org, name, ttl_seconds=ttl_days * 86_400, requested_by="operator:cli"))


@app.command("post")
def post(
    org: str = typer.Option(..., "--org"),
    channel: str = typer.Option(..., "--channel", help="conversation ID (C…, G… or D…)"),
    text: str = typer.Option(..., "--text"),
    name: str = typer.Option("default", "--name"),
    fallback_admin: bool = typer.Option(True, "--fallback-admin/--no-fallback-admin",
                                        help="record an admin notification if Slack refuses the message"),
) -> None:
    """Run SendSlackMessage on Temporal and print which route delivered it. Exit 0 when the channel got it;
    when only the administrators were notified (the admin fallback) it was not delivered: exit 1."""
    inp = SendSlackMessageInput(organization_id=org, connection=name, channel=channel, message=text,
                                fallback=[{"kind": "admin"}] if fallback_admin else [])
    settings = get_settings()
    wf_id = f"cli-slack-{uuid.uuid4().hex[:12]}"

    async def go() -> SendSlackMessageResult:
        client = await connect(settings)
        try:
            return await client.execute_workflow("SendSlackMessage", inp, id=wf_id, task_queue=settings.task_queue,
                                                 result_type=SendSlackMessageResult,
                                                 static_summary="`osi slack post`")
        except WorkflowFailureError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError) or not cause.details:
                raise
            info = cause.details[0]
            if not isinstance(info, dict) or "result" not in info:
                raise
            res = SendSlackMessageResult.model_validate(info["result"])
            console.print_json(data=res.model_dump(mode="json", exclude_none=True))
            raise fail(f"not delivered: {cause.message} — {workflow_link(settings, wf_id)}") from None

    res = asyncio.run(go())
    console.print_json(data=res.model_dump(mode="json", exclude_none=True))
    if res.fallback:
        errors.print(f"delivered through the fallback route {res.route}, not to {channel}", markup=False)
