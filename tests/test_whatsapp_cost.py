"""Cost: per delivered message from the status webhook's pricing and the rate table, aggregated per
organization, connection, category and day; redeliveries and failures never count."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.cost import as_rates, default_rates, parse_rate_file
from activities.whatsapp.models import SendTemplateInput, SendTextInput, Template
from activities.whatsapp.store import WhatsAppStore, rate_for
from tests.test_whatsapp_support import ORDER_TEMPLATE, PROMO_TEMPLATE, customer_writes, env, eventually, wa_conn

DEFAULT = as_rates(default_rates()[0])
ORDER = Template(name="order_update", header=["A-1"], body=["Ada", "A-1", "Mon", "$1"],
                 buttons=[{"index": 0, "sub_type": "url", "parameters": ["a1"]}])
PROMO = Template(name="spring_promo", header=[{"type": "image", "image": {"link": "https://cdn.example/p.png"}}],
                 body=["Ada"])


async def test_cost_per_delivered_message_by_category_and_day(runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway, templates=[ORDER_TEMPLATE, PROMO_TEMPLATE])
    ws, acts, org = WhatsAppStore(runtime.store), WhatsAppActivities(runtime), wa.organization_id
    ws.opt_in(org, wa.phone_number_id, ["16505557001", "16505557002", "16505557003", "16505557004"], "signup")
    await customer_writes(sandbox.url, wa, "+16505557003", "is my order on its way?")
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/undeliverable", json={"numbers": ["+16505557004"]})

    async def tpl(to: str, t: Template):
        return await env().run(acts.send_template, SendTemplateInput(organization_id=org, to=to, template=t))

    sent = [
        await tpl("+16505557001", PROMO),  # marketing, billable
        await tpl("+16505557002", ORDER),  # utility outside a window, billable
        await tpl("+16505557003", ORDER),  # utility inside the window: free
        await env().run(acts.send_text, SendTextInput(organization_id=org, to="+16505557003", text="yes, today")),
        await tpl("+16505557004", ORDER),  # accepted, then failed: never charged
    ]
    final = {"read", "failed"}
    for s in sent:
        await eventually(lambda s=s: ws.message(s.message_id), lambda r: r is not None and r.status in final)
    report = {r.category: (r.delivered, r.billable, round(r.cost_amount, 6), r.currency)
              for r in ws.cost_report(org)}
    assert report == {"marketing": (1, 1, DEFAULT[("1", "marketing")][0], "USD"),
                      "utility": (2, 1, DEFAULT[("1", "utility")][0], "USD"),
                      "service": (1, 0, 0.0, "USD")}
    (row,) = [r for r in ws.cost_report(org) if r.category == "marketing"]
    assert row.connection_id == wa.connection_id and len(row.day) == 10
    usage = {u.reference: u for u in runtime.store.usage(connection_id=wa.connection_id) if u.reference}
    assert usage[sent[0].message_id].cost_amount == DEFAULT[("1", "marketing")][0]
    assert usage[sent[2].message_id].cost_amount == 0.0
    assert usage[sent[4].message_id].cost_amount is None and usage[sent[4].message_id].delivery_status == "failed"
    async with httpx.AsyncClient() as http:  # Meta redelivers every status: nothing is charged twice
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/redeliver", json={"count": 16})
    again = {r.category: (r.delivered, r.billable, round(r.cost_amount, 6), r.currency)
             for r in ws.cost_report(org)}
    assert again == report


def test_daily_aggregation_and_rate_lookup(runtime) -> None:
    ws = WhatsAppStore(runtime.store)
    rates = {("1", "marketing"): (0.02, "USD"), ("*", "marketing"): (0.05, "USD")}
    pricing = {"billable": True, "category": "marketing", "pricing_model": "PMP"}
    day1, day2 = 1_767_268_800, 1_767_268_800 + 86_400  # 2026-01-01 and 2026-01-02 12:00 UTC
    for mid, ts, cc in (("wamid.c1", day1, "1"), ("wamid.c2", day1, "44"), ("wamid.c3", day2, "1")):
        for status in ("sent", "delivered", "read"):
            ws.apply_status("org-cost", "conn-cost", "pid", mid, status, ts, "16505550001", [], pricing, rates, cc)
    rows = [(r.day, r.delivered, round(r.cost_amount, 4)) for r in ws.cost_report("org-cost")]
    assert rows == [("2026-01-01", 2, 0.07), ("2026-01-02", 1, 0.02)]
    assert [(r.day, r.cost_amount) for r in ws.cost_report("org-cost", since="2026-01-02")] == [("2026-01-02", 0.02)]
    assert rate_for(rates, "44", "marketing") == (0.05, "USD")
    assert rate_for(rates, "44", "utility") == (None, None)


def test_rate_files(tmp_path: Path) -> None:
    csv = tmp_path / "card.csv"
    csv.write_text("country_code,category,price,currency\n+55,MARKETING,0.0625,usd\n*,utility,0.008,USD\n")
    assert parse_rate_file(csv) == [
        {"country_code": "55", "category": "marketing", "price": 0.0625, "currency": "USD"},
        {"country_code": "*", "category": "utility", "price": 0.008, "currency": "USD"}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rates": [{"country_code": "1", "category": "marketing"}]}))
    with pytest.raises(ValueError, match="rate row 0"):
        parse_rate_file(bad)
    rows, source = default_rates()
    assert "replace" in source and {(r["country_code"], r["category"]) for r in rows} >= {
        ("1", "marketing"), ("1", "utility"), ("1", "authentication"), ("*", "service")}
