"""A CLI that fits habits: one line and exit 2/1 instead of tracebacks, --debug for them, hints, unwrapped URLs,
`connections update`, structured secrets, `osi diagnose`, `osi whatsapp send` and `bulk send --watch`,
Slack posts that say when only a fallback got the message."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from activities.slack.seed import create_workspace, direct_connection, ensure_app
from core.cli import EXIT_FAILURE, EXIT_USAGE
from tests import seed
from tests.test_cli import ainvoke, invoke
from tests.test_whatsapp_bulk import GREETING, numbers, opt_in
from tests.test_whatsapp_support import wa_conn
from vault.credentials import OAuth2Credentials


def one_line_error(result, code: int) -> str:
    """The command failed with `code` and said why in one line: no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


async def test_everyday_mistakes_are_one_line(cli_env, runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    org = wa.organization_id
    line = one_line_error(await ainvoke("connections", "show", "--org", org, "--type", "WHATSAPP_BUSINESS",
                                        "--name", "nope"), EXIT_USAGE)
    assert "no WHATSAPP_BUSINESS connection named 'nope'" in line and "osi connections list" in line
    line = one_line_error(await ainvoke("connections", "show", "--org", "org_unknown", "--type", "SLACK"), EXIT_USAGE)
    assert "organization org_unknown" in line
    bad_type = await ainvoke("connections", "show", "--org", org, "--type", "TELEGRAM")
    assert bad_type.exit_code == EXIT_USAGE and "unknown integration type 'TELEGRAM'" in bad_type.output
    assert "Traceback" not in bad_type.output
    line = one_line_error(await ainvoke("slack", "post", "--org", org, "--channel", "XNOPE", "--text", "hi"),
                          EXIT_USAGE)
    assert line.startswith("error: invalid input: channel:") and "XNOPE" in line
    # An unknown organization: an empty list says so and names the organizations there are.
    typo = org[:-1] + ("x" if org[-1] != "x" else "y")
    empty = await ainvoke("connections", "list", "--org", typo)
    assert empty.exit_code == 0 and f"no connections in organization '{typo}'" in empty.output
    assert f"did you mean {org}" in empty.output


async def test_vault_down_is_one_line_naming_the_setting_and_debug_shows_the_traceback(
        cli_env, runtime, sandbox, monkeypatch) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    from core import settings as settings_mod
    from worker.stack import free_port

    monkeypatch.setenv("OSI_VAULT_ADDR", f"http://127.0.0.1:{free_port()}")
    settings_mod.get_settings.cache_clear()
    args = ["connections", "show", "--org", wa.organization_id, "--type", "WHATSAPP_BUSINESS"]
    line = one_line_error(await ainvoke(*args), EXIT_FAILURE)
    assert "Vault at http://127.0.0.1:" in line and "(OSI_VAULT_ADDR)" in line and "make run" in line
    debug = await ainvoke("--debug", *args)
    assert debug.exit_code != 0 and debug.exception is not None and type(debug.exception).__name__ == "VaultError"


async def test_a_missing_store_is_not_created_silently(cli_env, monkeypatch, tmp_path) -> None:
    from core import settings as settings_mod

    monkeypatch.setenv("OSI_DATABASE_URL", f"sqlite:///{tmp_path / 'nothing' / 'osi.db'}")
    settings_mod.get_settings.cache_clear()
    line = one_line_error(await ainvoke("connections", "list"), EXIT_FAILURE)
    assert "no store at" in line and "OSI_DATABASE_URL" in line and "make run" in line
    assert not (tmp_path / "nothing" / "osi.db").exists()


async def test_links_are_printed_whole(cli_env) -> None:
    org = "org_" + "x" * 60  # the link is far wider than 80 columns
    out = await ainvoke("calendar", "connect-link", "--type", "GOOGLE_CALENDAR", "--org", org, "--name", "team")
    assert out.exit_code == 0, out.output
    (line,) = out.output.strip().splitlines()
    assert line.startswith("http") and org in line and len(line) > 120


async def test_update_settings_in_place_and_structured_secrets(cli_env, runtime, sandbox, settings) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    common = ["--org", wa.organization_id, "--type", "WHATSAPP_BUSINESS", "--name", wa.name]
    updated = await ainvoke("connections", "update", *common, "--setting", "throughput_mps=250",
                            "--setting", 'display={"label": "Support"}', "--json")
    assert updated.exit_code == 0, updated.output
    got = json.loads(updated.output)["settings"]
    assert got["throughput_mps"] == 250 and got["display"] == {"label": "Support"}
    assert got["phone_number_id"] == wa.phone_number_id  # the rest is kept
    # A required setting cannot be dropped; the secret in Vault was never touched.
    line = one_line_error(await ainvoke("connections", "update", *common, "--unset", "phone_number_id"), EXIT_USAGE)
    assert "needs settings: phone_number_id" in line
    assert any(e.action == "connection.update" for e in runtime.store.audit_log(wa.organization_id))

    # Secrets given as JSON keep their structure: a Slack grant's scopes stay a list (scope pre-checks use it).
    await ensure_app(runtime, sandbox.url, settings.gateway_public_url)
    ws = await create_workspace(sandbox.url, users={"ann": {"email": "ann@example.com"}},
                                channels={"general": {"members": ["ann"]}})
    org = f"org_{uuid.uuid4().hex[:8]}"
    conn, _ = await direct_connection(runtime, sandbox.url, org, ws)
    stored = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    assert isinstance(stored, OAuth2Credentials)
    secrets = {"access_token": stored.access_token.get_secret_value(), "scopes": ["chat:write", "channels:read"],
               "account": {"team_id": ws.team_id}}
    added = await ainvoke("connections", "add", "--org", org, "--type", "SLACK", "--name", "second",
                          "--setting", f"team_id={ws.team_id}", "--secrets-stdin", stdin=json.dumps(secrets))
    assert added.exit_code == 0, added.output
    second = runtime.store.find_connection(org, "SLACK", "second")
    creds = await runtime.vault.read(runtime.credentials_path(second), use_cache=False)
    assert isinstance(creds, OAuth2Credentials)
    assert creds.scopes == ["chat:write", "channels:read"] and creds.account == {"team_id": ws.team_id}


async def test_diagnose_names_the_problem_and_the_fix(cli_env, client, worker, runtime, sandbox, task_queue,
                                                      monkeypatch) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from core import settings as settings_mod
    from core.metrics import BreakerCollector
    from worker.stack import free_port

    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    # The breaker lives in the worker process: diagnose reads it from the worker's metrics endpoint.
    registry = CollectorRegistry()
    registry.register(BreakerCollector(runtime.breakers.snapshot))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    monkeypatch.setenv("OSI_WORKER_METRICS_PORT", str(port))
    settings_mod.get_settings.cache_clear()
    breaker = runtime.breakers.get("whatsapp", wa.connection_id)
    try:
        ok = await ainvoke("diagnose", wa.organization_id, "--json")
        assert ok.exit_code == 0, ok.output
        (report,) = json.loads(ok.output)
        checks = {c["name"]: c for c in report["checks"]}
        assert checks["connectivity"]["ok"] and checks["credentials"]["data"]["kind"] == "bearer"
        assert checks["breaker"]["ok"] and checks["breaker"]["data"] == {"state": "closed"}
        for _ in range(breaker.failure_threshold):
            breaker.record(healthy=False)
        opened = json.loads((await ainvoke("diagnose", wa.organization_id, "--json")).output)[0]
        assert {c["name"]: c for c in opened["checks"]}["breaker"]["data"] == {"state": "open"}
        assert any("circuit to close" in f for f in opened["fixes"])
    finally:
        breaker.record(healthy=True)
        server.shutdown()
        thread.join(timeout=5)
    # The token is revoked at Meta: the test fails, and the fix is to replace it.
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": wa.token})
    runtime.vault.invalidate(runtime.vault.connection_path(wa.organization_id, "WHATSAPP_BUSINESS", wa.name))
    bad = await ainvoke("diagnose", wa.organization_id, f"WHATSAPP_BUSINESS/{wa.name}")
    assert bad.exit_code == 1, bad.output
    assert "✗ connectivity: ConfigurationError" in bad.output and "190" in bad.output
    assert f"osi connections rotate --org {wa.organization_id} --type WHATSAPP_BUSINESS" in bad.output
    assert "failed workflows (24 h) in the Web UI:" in bad.output and "OsiOutcome" in bad.output
    assert "Traceback" not in bad.output
    none = await ainvoke("diagnose", wa.organization_id, "nope")
    assert none.exit_code == 1 and "no connection nope" in none.output


async def test_whatsapp_send_and_bulk_send_with_progress(cli_env, client, worker, runtime, sandbox, tmp_path: Path,
                                                        task_queue) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    sent = await ainvoke("whatsapp", "send", "--org", wa.organization_id, "--to", "+16505551234", "--text", "Hi")
    assert sent.exit_code == 0, sent.output
    assert "accepted" in sent.output and "wamid." in sent.output
    bad = await ainvoke("whatsapp", "send", "--org", wa.organization_id, "--to", "12")
    assert bad.exit_code == EXIT_USAGE and "Traceback" not in bad.output

    tw = await wa_conn(runtime, sandbox.url, templates=[GREETING])
    people = numbers(300, 6)
    opt_in(runtime, tw, people)
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("to,p1,p2\n" + "".join(f"{n},Customer {i},C{i:03d}\n" for i, n in enumerate(people)))
    watched = await ainvoke("whatsapp", "bulk", "send", "--org", tw.organization_id, str(csv_file),
                            "--template", "greeting", "--batch-size", "2", "--watch")
    assert watched.exit_code == 0, watched.output
    assert "completed: 6 sent, 0 failed" in watched.output
    assert "6/6" in watched.output  # the progress bar, fed by the workflow's progress query


@pytest.mark.parametrize("args", [["connections", "update", "--org", "o", "--type", "SLACK"]])
def test_usage_mistakes_exit_2(cli_env, args) -> None:
    res = invoke(*args)
    assert res.exit_code == EXIT_USAGE and "Traceback" not in res.output


async def test_slack_post_reports_a_fallback_as_not_delivered(cli_env, client, worker, runtime, sandbox,
                                                              settings, task_queue) -> None:
    await ensure_app(runtime, sandbox.url, settings.gateway_public_url)
    ws = await create_workspace(sandbox.url, users={"ann": {"email": "ann@example.com"}},
                                channels={"general": {"members": ["ann"]}, "old": {"is_archived": True}})
    org = f"org_{uuid.uuid4().hex[:8]}"
    await direct_connection(runtime, sandbox.url, org, ws)
    ok = await ainvoke("slack", "post", "--org", org, "--channel", ws.channels["general"], "--text", "hi")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["delivered"] is True
    only_admins = await ainvoke("slack", "post", "--org", org, "--channel", ws.channels["old"], "--text", "hi")
    assert only_admins.exit_code == EXIT_FAILURE, only_admins.output
    result = json.loads(only_admins.output[:only_admins.output.index("\nerror:")])
    assert result["delivered"] is False and result["route"] == "fallback[0]:admin" and result["notification_id"]
    assert "error: not delivered:" in only_admins.output and "administrators notified" in only_admins.output
