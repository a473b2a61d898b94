"""Compliance: opt-in registry and policy, STOP keywords by webhook, the 24 h window (ours and Meta's
131047), marketing opt-out (131050), and asynchronous failures reaching outcome, ledger and health."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import SendTemplateInput, SendTextInput, Template
from activities.whatsapp.store import WhatsAppStore
from activities.whatsapp.webhooks import sign
from tests.test_whatsapp_support import ORDER_TEMPLATE, PROMO_TEMPLATE, customer_writes, env, eventually, wa_conn

CUSTOMER, WA_ID = "+16505552001", "16505552001"


async def text(runtime, wa, to: str = CUSTOMER, body: str = "hi"):
    return await env().run(WhatsAppActivities(runtime).send_text, SendTextInput(
        organization_id=wa.organization_id, to=to, text=body))


async def template(runtime, wa, tpl: Template, to: str = CUSTOMER):
    return await env().run(WhatsAppActivities(runtime).send_template, SendTemplateInput(
        organization_id=wa.organization_id, to=to, template=tpl))


async def refusal(coro) -> ApplicationError:
    with pytest.raises(ApplicationError) as exc:
        await coro
    assert exc.value.type == "PermanentError" and exc.value.non_retryable
    return exc.value


PROMO = Template(name="spring_promo", header=[{"type": "image", "image": {"link": "https://cdn.example/p.png"}}],
                 body=["Ada"])


async def test_opt_in_registry_and_policy(runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url)
    ws = WhatsAppStore(runtime.store)
    before = len(sandbox.state.recorder.dump("whatsapp"))
    err = await refusal(template(runtime, wa, Template(name="hello_world")))
    assert err.details[0]["code"] == "no_opt_in" and "no recorded opt-in" in err.message
    assert len(sandbox.state.recorder.dump("whatsapp")) == before + 1  # the template lookup, no send
    ws.opt_in(wa.organization_id, wa.phone_number_id, [WA_ID], "checkout form")
    row = ws.contact(wa.organization_id, wa.phone_number_id, WA_ID)
    assert row.opted_in and row.opt_in_source == "checkout form" and row.opted_in_at is not None
    assert (await template(runtime, wa, Template(name="hello_world"))).status == "accepted"
    ws.opt_out(wa.organization_id, wa.phone_number_id, WA_ID, "support ticket 42")
    err = await refusal(template(runtime, wa, Template(name="hello_world")))
    assert err.details[0]["code"] == "opted_out" and "support ticket 42" in err.message
    await customer_writes(sandbox.url, wa, CUSTOMER)  # even inside a window, an opted-out customer gets nothing
    assert (await refusal(text(runtime, wa))).details[0]["code"] == "opted_out"
    # The organization's policy can say otherwise (per connection).
    lax = await wa_conn(runtime, sandbox.url, org=wa.organization_id, name="lax",
                        settings={"require_opt_in": False, "allow_opted_out": True})
    ws.opt_out(lax.organization_id, lax.phone_number_id, WA_ID, "support")
    res = await env().run(WhatsAppActivities(runtime).send_template, SendTemplateInput(
        organization_id=lax.organization_id, connection="lax", to=CUSTOMER, template=Template(name="hello_world")))
    assert res.status == "accepted"


async def test_stop_keyword_by_webhook_opts_out(runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway, templates=[ORDER_TEMPLATE, PROMO_TEMPLATE])
    ws = WhatsAppStore(runtime.store)
    ws.opt_in(wa.organization_id, wa.phone_number_id, [WA_ID, "16505552002", "16505552003"], "signup")
    sent = await customer_writes(sandbox.url, wa, CUSTOMER, "  stop ")
    assert sent["deliveries"] == [200]
    row = ws.contact(wa.organization_id, wa.phone_number_id, WA_ID)
    assert row.opted_out and row.opt_out_source == "keyword:STOP" and not row.opted_in
    assert (await refusal(text(runtime, wa))).details[0]["code"] == "opted_out"
    # The template's quick reply "Stop promotions": marketing stops, utility still flows.
    await customer_writes(sandbox.url, wa, "+16505552002", "Stop promotions", type="button",
                          button_payload="STOP PROMOTIONS")
    row = ws.contact(wa.organization_id, wa.phone_number_id, "16505552002")
    assert row.marketing_opted_out and not row.opted_out
    assert (await refusal(template(runtime, wa, PROMO, to="+16505552002"))).details[0]["code"] == \
        "marketing_opted_out"
    utility = Template(name="order_update", header=["A-1"], body=["Ada", "A-1", "Mon", "$1"],
                       buttons=[{"index": 0, "sub_type": "url", "parameters": ["a1"]}])
    assert (await template(runtime, wa, utility, to="+16505552002")).status == "accepted"
    # Switched off by policy: STOP is just a message.
    quiet = await wa_conn(runtime, sandbox.url, gateway, org=wa.organization_id, name="quiet",
                          settings={"auto_opt_out": False})
    await customer_writes(sandbox.url, quiet, "+16505552003", "STOP")
    assert not ws.contact(quiet.organization_id, quiet.phone_number_id, "16505552003").opted_out


async def test_window_rule(runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, [WA_ID], "signup")
    await customer_writes(sandbox.url, wa, CUSTOMER, "old question", timestamp=int(time.time()) - 25 * 3600)
    before = len(sandbox.state.recorder.dump("whatsapp"))
    err = await refusal(text(runtime, wa))
    assert err.details[0]["code"] == "window_closed" and "24-hour customer service window" in err.message
    assert len(sandbox.state.recorder.dump("whatsapp")) == before  # refused before any call
    assert (await template(runtime, wa, Template(name="hello_world"))).status == "accepted"  # templates any time
    await customer_writes(sandbox.url, wa, CUSTOMER, "new question")
    assert (await text(runtime, wa)).status == "accepted"


async def test_strict_gate_and_meta_131047_when_we_do_not_know(runtime, sandbox, gateway) -> None:
    strict = await wa_conn(runtime, sandbox.url, gateway, settings={"window_gate": "strict"})
    assert (await refusal(text(runtime, strict, "+16505552010"))).details[0]["code"] == "window_closed"
    # Gate off: Meta accepts the call and reports 131047 by webhook; outcome, ledger and health learn it.
    wa = await wa_conn(runtime, sandbox.url, gateway, settings={"window_gate": "off"})
    res = await text(runtime, wa, "+16505552011")
    assert res.status == "accepted"
    ws = WhatsAppStore(runtime.store)
    rec = await eventually(lambda: ws.message(res.message_id), lambda r: r is not None and r.status == "failed")
    assert (rec.error_code, rec.category) == ("131047", "service")
    usage = [u for u in runtime.store.usage(connection_id=wa.connection_id) if u.reference == res.message_id]
    assert (usage[0].delivery_status, usage[0].error_code) == ("failed", "131047")
    assert await eventually(lambda: ws.failure_counts(wa.connection_id), bool) == {"131047": 1}


@pytest.mark.parametrize(("control", "code", "title"), [
    ("undeliverable", "131026", "Message undeliverable"),
    ("experiment", "130472", "User's number is part of an experiment"),
])
async def test_async_failures_update_outcome_ledger_and_health(runtime, sandbox, gateway, control, code, title):
    wa = await wa_conn(runtime, sandbox.url, gateway)
    to = "+1650555202" + code[-1]  # the fake's lists are per process: one customer per case
    await customer_writes(sandbox.url, wa, to)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/{control}", json={"numbers": [to]})
    res = await text(runtime, wa, to)
    assert res.status == "accepted"  # 200 means accepted, not delivered
    ws = WhatsAppStore(runtime.store)
    rec = await eventually(lambda: ws.message(res.message_id), lambda r: r is not None and r.status == "failed")
    assert (rec.error_code, rec.error_title) == (code, title)
    assert [s["status"] for s in rec.timeline] == ["accepted", "failed"]
    usage = next(u for u in runtime.store.usage(connection_id=wa.connection_id) if u.reference == res.message_id)
    assert (usage.delivery_status, usage.error_code, usage.delivered_at) == ("failed", code, None)
    assert await eventually(lambda: ws.failure_counts(wa.connection_id), bool) == {code: 1}
    assert runtime.store.get_connection(wa.connection_id).error_count >= 1


async def test_marketing_opt_out_at_meta_131050_is_remembered(runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway, templates=[PROMO_TEMPLATE])
    ws = WhatsAppStore(runtime.store)
    ws.opt_in(wa.organization_id, wa.phone_number_id, [WA_ID], "signup")
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/marketing_opt_out", json={"numbers": [CUSTOMER]})
    res = await template(runtime, wa, PROMO)
    rec = await eventually(lambda: ws.message(res.message_id), lambda r: r is not None and r.status == "failed")
    assert rec.error_code == "131050" and rec.category == "marketing"
    assert (await eventually(lambda: ws.contact(wa.organization_id, wa.phone_number_id, WA_ID),
                             lambda c: c.marketing_opted_out)).marketing_opted_out
    assert (await refusal(template(runtime, wa, PROMO))).details[0]["code"] == "marketing_opted_out"


async def test_account_level_error_webhook_degrades_health(runtime, sandbox, gateway) -> None:
    """`value.errors[]` (no message, no status): counted, the number degraded, admins told, 200 to Meta."""
    wa = await wa_conn(runtime, sandbox.url, gateway)
    doc = {"object": "whatsapp_business_account", "entry": [{"id": wa.waba_id, "changes": [{"field": "messages",
           "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": wa.phone_number_id},
                     "errors": [{"code": 130429, "title": "Rate limit hit", "message": "Rate limit hit",
                                 "error_data": {"details": "Message failed to send because there were too many "
                                                           "messages sent from this phone number"}}]}}]}]}
    raw = json.dumps(doc).encode()
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{gateway}/webhooks/whatsapp/{wa.connection_id}", content=raw,
                            headers={"X-Hub-Signature-256": sign(wa.app_secret, raw)})
    assert r.status_code == 200
    assert WhatsAppStore(runtime.store).failure_counts(wa.connection_id) == {"130429": 1}
    conn = runtime.store.get_connection(wa.connection_id)
    assert conn.health == "degraded" and conn.health_detail["last_async_failure"]["code"] == "130429"
    (note,) = runtime.store.notifications(connection_id=wa.connection_id)
    assert note.kind == "account_error" and "130429" in note.message
