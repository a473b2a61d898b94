"""`osi whatsapp`: phone status, request/verify code, register/deregister, templates, opt-ins, cost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from activities.whatsapp.cost import default_rates
from activities.whatsapp.store import WhatsAppStore
from tests.test_whatsapp_support import NAMED_TEMPLATE, wa_conn


async def osi(*args: str, stdin: str | None = None):
    """The CLI runs its own event loop (asyncio.run), so it is called from a thread."""
    from worker.cli import app

    # Wide enough that rich never wraps an error message inside its box.
    return await asyncio.to_thread(CliRunner(env={"COLUMNS": "400"}).invoke, app, ["whatsapp", *args], input=stdin)


def as_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


async def test_phone_commands(cli_env, runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url, sandbox={"code_verification_status": "UNVERIFIED"})
    ref = ["--org", wa.organization_id]
    status = as_json(await osi("phone", "status", *ref))
    assert status["verified_name"] == "OpenSyte Sandbox" and status["code_verification_status"] == "UNVERIFIED"
    assert status["quality_rating"] == "GREEN" and status["name_status"] == "APPROVED"
    assert status["messaging_limit_tier"] == "TIER_250"
    assert as_json(await osi("phone", "request-code", *ref, "--method", "voice"))["success"]
    async with httpx.AsyncClient() as http:
        code = (await http.get(f"{sandbox.url}/_sandbox/whatsapp/codes/{wa.phone_number_id}")).json()["code"]
    assert as_json(await osi("phone", "verify-code", *ref, "--code", code))["success"]
    assert as_json(await osi("phone", "status", *ref))["code_verification_status"] == "VERIFIED"
    assert as_json(await osi("phone", "deregister", *ref, "--yes"))["success"]
    assert as_json(await osi("phone", "status", *ref))["status"] == "DISCONNECTED"
    bad = await osi("phone", "register", *ref, "--pin-stdin", stdin="12\n")
    assert bad.exit_code != 0 and "exactly 6 digits" in bad.output
    ok = await osi("phone", "register", *ref, "--pin-stdin", stdin="424242\n")
    assert as_json(ok)["success"] and "424242" not in ok.output
    assert as_json(await osi("phone", "status", *ref))["status"] == "CONNECTED"
    wrong = await osi("phone", "verify-code", *ref, "--code", "000001")
    assert wrong.exit_code == 1 and json.loads(wrong.output)["error"]["code"] in (136025, "invalid_code")


async def test_templates_and_opt_ins(cli_env, runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[NAMED_TEMPLATE])
    ref = ["--org", wa.organization_id]
    listed = as_json(await osi("templates", "list", *ref, "--json"))
    assert {(t["name"], t["status"], t["category"]) for t in listed} == {
        ("hello_world", "APPROVED", "UTILITY"), ("welcome_named", "APPROVED", "MARKETING")}
    table = await osi("templates", "list", *ref)
    assert table.exit_code == 0 and "welcome_named" in table.output and "NAMED" in table.output
    added = await osi("optin", "add", *ref, "--phone", "+1 650-555-7100", "--phone", "+16505557101",
                      "--source", "checkout form")
    assert added.exit_code == 0 and "opted in 2" in added.output
    rejected = await osi("optin", "add", *ref, "--phone", "12", "--source", "x")
    assert rejected.exit_code != 0 and "--phone: '12' is not a phone number" in rejected.output
    rows = {r["wa_id"]: r for r in as_json(await osi("optin", "list", *ref, "--json"))}
    assert rows["16505557100"]["opted_in"] and rows["16505557100"]["opt_in_source"] == "checkout form"
    await osi("optin", "revoke", *ref, "--phone", "+16505557100", "--marketing-only")
    await osi("optin", "revoke", *ref, "--phone", "+16505557101", "--source", "phone call")
    rows = {r["wa_id"]: r for r in as_json(await osi("optin", "list", *ref, "--json"))}
    assert rows["16505557100"]["marketing_opted_out"] and rows["16505557100"]["opted_in"]
    assert rows["16505557101"]["opted_out"] and rows["16505557101"]["opt_out_source"] == "phone call"
    only_out = as_json(await osi("optin", "list", *ref, "--status", "opted_out", "--json"))
    assert [r["wa_id"] for r in only_out] == ["16505557101"]
    assert any(e.action == "whatsapp.optin.revoke" for e in runtime.store.audit_log(wa.organization_id))


async def test_cost_report_and_rate_table(cli_env, runtime, sandbox, tmp_path: Path) -> None:
    wa = await wa_conn(runtime, sandbox.url)
    ws = WhatsAppStore(runtime.store)
    rates = {("1", "utility"): (0.004, "USD")}
    pricing = {"billable": True, "category": "utility"}
    for i in range(3):
        for status in ("sent", "delivered"):
            ws.apply_status(wa.organization_id, wa.connection_id, wa.phone_number_id, f"wamid.cli{wa.connection_id}{i}",
                            status, 1_767_268_800, "16505550001", [], pricing, rates, "1")
    rows = as_json(await osi("cost", "report", "--org", wa.organization_id, "--json"))
    assert [(r["day"], r["category"], r["delivered"], r["billable"], r["cost_amount"]) for r in rows] == [
        ("2026-01-01", "utility", 3, 3, 0.012)]
    text = await osi("cost", "report", "--org", wa.organization_id, "--name", "default")
    assert text.exit_code == 0 and "0.0120 USD" in text.output
    # The operator replaces the rate card (rows for +1 kept as shipped so other tests see the same prices).
    card, _ = default_rates()
    card = [r for r in card if r["country_code"] != "44"] + [
        {"country_code": "44", "category": "marketing", "price": 0.0705, "currency": "USD"}]
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"rates": card}))
    loaded = await osi("cost", "rates-load", str(path), "--source", "Meta card 2026-07")
    assert loaded.exit_code == 0 and f"loaded {len(card)} rates" in loaded.output
    shown = as_json(await osi("cost", "rates-show", "--json"))
    assert {"country_code": "44", "category": "marketing", "price": 0.0705, "currency": "USD"} in shown
    assert not any(r["country_code"] == "44" and r["category"] == "utility" for r in shown)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"country_code": "1"}]))
    assert (await osi("cost", "rates-load", str(broken))).exit_code != 0
