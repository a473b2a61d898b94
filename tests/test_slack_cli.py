"""`osi slack`: app secrets to Vault and back (masked), install links."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from activities.slack.seed import ensure_app


async def invoke(*args: str, stdin: str | None = None):
    from worker.cli import app

    return await asyncio.to_thread(CliRunner().invoke, app, list(args), input=stdin)


async def test_app_secrets_round_trip_masked(cli_env, runtime, sandbox, settings):
    await ensure_app(runtime, sandbox.url, settings.gateway_public_url)
    app = await runtime.vault.read_app("slack")
    secrets = {"client_secret": app.client_secret.get_secret_value(),
               "signing_secret": app.signing_secret.get_secret_value()}
    res = await invoke("slack", "app-set", "--client-id", app.client_id, "--secrets-stdin", stdin=json.dumps(secrets))
    assert res.exit_code == 0, res.output
    assert not any(v in res.output for v in secrets.values())
    runtime.vault.invalidate(runtime.vault.app_path("slack"))
    again = await runtime.vault.read_app("slack")
    assert again.client_id == app.client_id and again.signing_secret.get_secret_value() == secrets["signing_secret"]
    shown = await invoke("slack", "app-show")
    assert shown.exit_code == 0 and app.client_id in shown.output and "chars, sha256:" in shown.output
    assert not any(v in shown.output for v in secrets.values())
    bad = await invoke("slack", "app-set", "--client-id", "x", "--secrets-stdin", stdin="{}")
    assert bad.exit_code != 0


async def test_install_link(cli_env, settings):
    res = await invoke("slack", "install-link", "--org", "org-1", "--name", "sales")
    assert res.exit_code == 0
    assert res.output.strip().startswith(
        f"{settings.gateway_public_url}/slack/install?organization_id=org-1&name=sales&by=operator%3Acli&exp=")
