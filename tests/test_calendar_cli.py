"""`osi calendar`: app secrets stored masked, connect links, a service-account connection, events and
availability through the pipeline (real Vault, store and sandbox)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from typer.testing import CliRunner

from core import settings as settings_mod
from tests import calendar_seed as seed


@pytest.fixture
def cli_env(cli_env, monkeypatch):
    """Install links printed by the CLI name the public gateway URL."""

    monkeypatch.setenv("OSI_GATEWAY_PUBLIC_URL", "https://gw.example")
    settings_mod.get_settings.cache_clear()


async def invoke(*args: str, stdin: str | None = None, group: str = "calendar"):
    from worker.cli import app

    return await asyncio.to_thread(CliRunner().invoke, app, [group, *args], input=stdin)


async def test_app_secrets_are_stored_and_shown_masked(cli_env, runtime, sandbox):
    secret = await seed.google_app(runtime, sandbox.url)  # the same secret again: other tests keep working
    out = await invoke("app-set", "--client-id", seed.google_client_id(), "--secrets-stdin",
                       stdin=json.dumps({"client_secret": secret}), group="google-calendar")
    assert out.exit_code == 0, out.output
    assert secret not in out.output
    shown = await invoke("app-show", group="google-calendar")
    assert shown.exit_code == 0 and secret not in shown.output
    assert hashlib.sha256(secret.encode()).hexdigest()[:8] in json.loads(shown.output)["client_secret"]
    bad = await invoke("app-show", group="yahoo-calendar")
    assert bad.exit_code != 0


async def test_connect_link(cli_env):
    out = await invoke("connect-link", "--type", "outlook", "--org", "org1", "--tenant", "contoso-tenant")
    assert out.exit_code == 0
    link = out.output.replace("\n", "")
    assert link.startswith("https://gw.example/oauth/outlook/install?") and "tenant=contoso-tenant" in link


async def test_service_account_connection_events_and_availability(cli_env, runtime, sandbox, tmp_path):
    user = f"{seed.uid('cli')}@example.com"
    await seed.google_user(sandbox.url, user, "Europe/Madrid")
    client_email = f"{seed.uid('sa')}@sandbox-project.iam.gserviceaccount.com"
    info, public_pem = seed.service_account_key(client_email)
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/service_accounts",
                            json={"client_email": client_email, "public_key_pem": public_pem})
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/calendars/{user}/events", json={
        "summary": "Standup", "start": {"dateTime": "2030-05-06T09:00:00+02:00"},
        "end": {"dateTime": "2030-05-06T09:15:00+02:00"}})
    key = tmp_path / "sa.json"
    key.write_text(info)
    org = seed.uid("org_")
    added = await invoke("add-service-account", "--org", org, "--key-file", str(key), "--subject", user,
                         group="google-calendar")
    assert added.exit_code == 0, added.output
    assert "BEGIN PRIVATE KEY" not in added.output
    conn = runtime.store.find_connection(org, "GOOGLE_CALENDAR", "default")
    assert "private_key" not in json.dumps(conn.settings)
    listed = await invoke("events", "--type", "google_calendar", "--org", org, "--from", "2030-05-06T00:00:00Z",
                          "--to", "2030-05-07T00:00:00Z", "--json")
    assert listed.exit_code == 0, listed.output
    assert [e["title"] for e in json.loads(listed.output)["events"]] == ["Standup"]
    free = await invoke("availability", "--type", "google_calendar", "--org", org, "--who", user, "--from",
                        "2030-05-06T00:00:00", "--to", "2030-05-07T00:00:00", "--tz", "Europe/Madrid")
    assert free.exit_code == 0, free.output
    data = json.loads(free.output)
    assert data["participants"][0]["busy"] and data["slots"][0]["start"] == "2030-05-06T09:15:00+02:00"
    bad = await invoke("events", "--type", "yahoo", "--org", org, "--from", "x", "--to", "y")
    assert bad.exit_code != 0
