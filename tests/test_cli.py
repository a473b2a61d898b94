"""`osi` CLI: connections add/list/show/test/remove against the real stack; schema export."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid

import httpx
from typer.testing import CliRunner


def invoke(*args: str, stdin: str | None = None):
    from worker.cli import app

    return CliRunner().invoke(app, list(args), input=stdin)


async def ainvoke(*args: str, stdin: str | None = None):
    """The CLI runs its own event loop (asyncio.run), so async tests call it from a thread."""
    return await asyncio.to_thread(invoke, *args, stdin=stdin)


async def test_connections_lifecycle(cli_env, sandbox, runtime):
    org, pid = f"org_{uuid.uuid4().hex[:8]}", str(uuid.uuid4().int)[:15]
    token = "EAAcli" + secrets.token_hex(12)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/phone_numbers",
                        json={"phone_number_id": pid, "token": token, "app_secret": "s" * 16})
    common = ["--org", org, "--type", "WHATSAPP_BUSINESS", "--name", "main"]
    add = await ainvoke("connections", "add", *common, "--setting", f"phone_number_id={pid}", "--secrets-stdin",
                 stdin=json.dumps({"token": token, "app_secret": "s" * 16}))
    assert add.exit_code == 0, add.output
    assert token not in add.output
    # The same name again is refused before Vault is touched: the live connection keeps its token.
    again = await ainvoke("connections", "add", *common, "--setting", f"phone_number_id={pid}", "--secrets-stdin",
                          stdin=json.dumps({"token": "EAAother" + secrets.token_hex(8), "app_secret": "x" * 16}))
    assert again.exit_code == 2 and "already exists" in again.output
    conn = runtime.store.find_connection(org, "WHATSAPP_BUSINESS", "main")
    stored = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    assert stored.token.get_secret_value() == token
    listed = json.loads((await ainvoke("connections", "list", "--org", org, "--json")).output)
    assert [(c["name"], c["integration_type"]) for c in listed] == [("main", "WHATSAPP_BUSINESS")]
    shown = await ainvoke("connections", "show", *common)
    assert shown.exit_code == 0 and token not in shown.output and "ssss" not in shown.output
    masked = json.loads(shown.output)["credentials"]["token"]
    assert masked.startswith("****(") and hashlib.sha256(token.encode()).hexdigest()[:8] in masked
    tested = await ainvoke("connections", "test", *common)
    assert tested.exit_code == 0, tested.output
    assert json.loads(tested.output)["ok"] is True
    conn = runtime.store.find_connection(org, "WHATSAPP_BUSINESS", "main")
    assert conn.health == "healthy" and conn.last_health_check is not None
    # A revoked token: the test fails, says why, and records the health.
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": token})
    runtime.vault.invalidate(runtime.credentials_path(conn))
    failed = await ainvoke("connections", "test", *common)
    assert failed.exit_code == 1 and "190" in failed.output and token not in failed.output
    removed = await ainvoke("connections", "remove", *common, "--yes")
    assert removed.exit_code == 0 and "not revoked at the provider" in removed.output
    assert "no revocation API" in removed.output
    assert json.loads((await ainvoke("connections", "list", "--org", org, "--json")).output) == []


def test_add_rejects_missing_settings_and_unknown_type(cli_env):
    bad = invoke("connections", "add", "--org", "o", "--type", "WHATSAPP_BUSINESS", "--secrets-stdin",
                 stdin=json.dumps({"token": "t"}))
    assert bad.exit_code == 2 and "phone_number_id" in bad.output  # a clear message, not a traceback
    unknown = invoke("connections", "add", "--org", "o", "--type", "FAX", "--secrets-stdin", stdin="{}")
    assert unknown.exit_code != 0


def test_schema_export(tmp_path):
    out = invoke("schema", "export", "--out", str(tmp_path))
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "SendWhatsAppMessage.input.schema.json").read_text())
    snake, camel = (doc["$defs"][ref["$ref"].rsplit("/", 1)[1]] for ref in doc["anyOf"])
    assert "organization_id" in snake["properties"] and "to_numbers" in snake["properties"]
    assert "organizationId" in camel["properties"] and "toNumbers" in camel["properties"]


def test_committed_schemas_match_the_models(tmp_path):
    """docs/schemas is what OpenSyte's TypeScript starters read: it must follow the models (`make schemas`)."""
    from pathlib import Path

    from worker.schemas import export_schemas

    committed = Path(__file__).resolve().parent.parent / "docs" / "schemas"
    fresh = {p.name: p.read_text() for p in export_schemas(tmp_path)}
    on_disk = {p.name: p.read_text() for p in committed.glob("*.schema.json")}
    assert sorted(on_disk) == sorted(fresh), "run `make schemas`: workflows were added or removed"
    stale = [name for name, text in fresh.items() if on_disk[name] != text]
    assert not stale, f"run `make schemas`: these schemas are out of date: {stale}"
