"""Routing by the payload's number: Meta posts every number of an app to one callback URL, so each change runs
under the connection owning its `metadata.phone_number_id` — never under the URL's connection by default."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from activities.whatsapp import apps, conversation_ids, webhooks
from activities.whatsapp.models import ConversationView
from activities.whatsapp.store import WhatsAppStore
from tests import seed
from tests.test_whatsapp_support import customer_writes, eventually
from workflows.whatsapp_conversation import WhatsAppConversation


async def register_app(runtime) -> tuple[str, str, str]:
    app_id = str(10**14 + secrets.randbelow(10**14))
    secret, verify = secrets.token_hex(16), secrets.token_hex(8)
    await apps.set_app(runtime, app_id, secret, verify, label="OpenSyte test app")
    return app_id, secret, verify


async def app_number(runtime, sandbox, gateway, app_id: str, secret: str, *, org: str | None = None,
                     name: str = "default") -> seed.WhatsAppConn:
    """A connection of the app: its number posts to the app's URL, signed with the app's secret."""
    return await seed.whatsapp_connection(
        runtime, sandbox.url, gateway, org=org, name=name, settings={"app_id": app_id},
        sandbox_overrides={"webhook_url": f"{gateway}/webhooks/whatsapp/app/{app_id}", "app_secret": secret,
                           "status_delay_ms": 5})


async def view(client: Client, runtime, wa: seed.WhatsAppConn, customer: str) -> ConversationView:
    wid = await conversation_ids.workflow_id(runtime, wa.organization_id, wa.phone_number_id, customer)
    return await client.get_workflow_handle(wid).query(WhatsAppConversation.view)


def text_change(pid: str, customer: str, body: str) -> dict[str, Any]:
    return {"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": pid},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": customer}],
        "messages": [{"from": customer, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": body}}]}}


async def post(gateway: str, path: str, secret: str, changes: list[dict[str, Any]]) -> httpx.Response:
    raw = json.dumps({"object": "whatsapp_business_account",
                      "entry": [{"id": "419561257915477", "changes": changes}]}).encode()
    async with httpx.AsyncClient() as http:
        return await http.post(f"{gateway}{path}", content=raw,
                               headers={"X-Hub-Signature-256": webhooks.sign(secret, raw)})


async def test_a_two_number_app_routes_each_change_to_its_own_connection(client, worker, runtime, sandbox,
                                                                         gateway) -> None:
    app_id, secret, verify = await register_app(runtime)
    org = f"org_{uuid.uuid4().hex[:10]}"
    sales = await app_number(runtime, sandbox, gateway, app_id, secret, org=org, name="sales")
    support = await app_number(runtime, sandbox, gateway, app_id, secret, org=org, name="support")
    # Meta's verification of the app's one callback URL.
    async with httpx.AsyncClient() as http:
        ok = await http.get(f"{gateway}/webhooks/whatsapp/app/{app_id}", params={
            "hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "1158201444"})
        bad = await http.get(f"{gateway}/webhooks/whatsapp/app/{app_id}", params={
            "hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.text, bad.status_code) == (200, "1158201444", 403)

    # The sandbox posts both numbers' customers to the same app URL.
    await customer_writes(sandbox.url, sales, "+16505559001", "a question for sales")
    await customer_writes(sandbox.url, support, "+16505559002", "my order is broken")
    v1 = await eventually(lambda: view(client, runtime, sales, "16505559001"), lambda v: len(v.messages) == 1)
    v2 = await eventually(lambda: view(client, runtime, support, "16505559002"), lambda v: len(v.messages) == 1)
    assert (v1.connection, v1.phone_number_id, v1.messages[0].text) == ("sales", sales.phone_number_id,
                                                                        "a question for sales")
    assert (v2.connection, v2.phone_number_id, v2.messages[0].text) == ("support", support.phone_number_id,
                                                                        "my order is broken")

    # One delivery with changes of both numbers: each part under its owner.
    r = await post(gateway, f"/webhooks/whatsapp/app/{app_id}", secret, [
        text_change(support.phone_number_id, "16505559003", "to support"),
        text_change(sales.phone_number_id, "16505559004", "to sales")])
    assert r.status_code == 200
    v3 = await eventually(lambda: view(client, runtime, support, "16505559003"), lambda v: len(v.messages) == 1)
    v4 = await eventually(lambda: view(client, runtime, sales, "16505559004"), lambda v: len(v.messages) == 1)
    assert (v3.connection, v3.messages[0].text, v4.connection, v4.messages[0].text) == (
        "support", "to support", "sales", "to sales")
    # Replies leave from the owning number.
    sent = [r["path"] for r in sandbox.state.recorder.dump("whatsapp") if r["path"].endswith("/messages")]
    assert not any(p.endswith(f"/{sales.phone_number_id}/messages") for p in sent if "16505559003" in p)


async def test_an_unknown_number_is_recorded_and_alerted_never_run(client, worker, runtime, sandbox, gateway) -> None:
    app_id, secret, _ = await register_app(runtime)
    known = await app_number(runtime, sandbox, gateway, app_id, secret)
    stranger_pid = str(10**14 + secrets.randbelow(10**14))
    r = await post(gateway, f"/webhooks/whatsapp/app/{app_id}", secret,
                   [text_change(stranger_pid, "16505559010", "who gets this?")])
    assert r.status_code == 200  # acknowledged: Meta's retries would not make it routable
    rows = [u for u in WhatsAppStore(runtime.store).unrouted(50) if u.phone_number_id == stranger_pid]
    assert len(rows) == 1 and rows[0].reason == "unknown_number" and rows[0].app_id == app_id
    assert rows[0].body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "who gets this?"
    alerts = [n for n in runtime.store.notifications(apps.OPERATOR_ORG) if stranger_pid in n.message]
    assert len(alerts) == 1 and alerts[0].kind == "whatsapp_unrouted"
    for conn in (known,):
        wid = await conversation_ids.workflow_id(runtime, conn.organization_id, stranger_pid, "16505559010")
        with pytest.raises(RPCError):
            await client.get_workflow_handle(wid).describe()
    # Forged (another secret) and unknown apps are refused before anything is read.
    forged = await post(gateway, f"/webhooks/whatsapp/app/{app_id}", "not-the-secret",
                        [text_change(known.phone_number_id, "16505559011", "forged")])
    nobody = await post(gateway, "/webhooks/whatsapp/app/999", secret,
                        [text_change(known.phone_number_id, "16505559011", "unknown app")])
    assert (forged.status_code, nobody.status_code) == (401, 401)


async def test_the_per_connection_url_routes_within_the_organization_and_app_only(client, worker, runtime, sandbox,
                                                                                  gateway) -> None:
    app_id, secret, _ = await register_app(runtime)
    org = f"org_{uuid.uuid4().hex[:10]}"
    support = await app_number(runtime, sandbox, gateway, app_id, secret, org=org, name="support")
    sales = await app_number(runtime, sandbox, gateway, app_id, secret, org=org, name="sales")
    other_org = await app_number(runtime, sandbox, gateway, app_id, secret)
    other_app_id, other_secret, _ = await register_app(runtime)
    other_app = await app_number(runtime, sandbox, gateway, other_app_id, other_secret, org=org, name="other-app")
    url = f"/webhooks/whatsapp/{support.connection_id}"  # an older setup: the app posts to support's URL
    r = await post(gateway, url, secret, [
        text_change(sales.phone_number_id, "16505559020", "sales's customer"),
        text_change(other_org.phone_number_id, "16505559021", "another organization's customer"),
        text_change(other_app.phone_number_id, "16505559022", "another app's customer"),
        text_change(support.phone_number_id, "16505559023", "support's own customer")])
    assert r.status_code == 200
    v = await eventually(lambda: view(client, runtime, sales, "16505559020"), lambda v: len(v.messages) == 1)
    assert v.connection == "sales"  # routed to its owner, not run under support
    own = await eventually(lambda: view(client, runtime, support, "16505559023"), lambda v: len(v.messages) == 1)
    assert own.connection == "support"
    reasons = {u.phone_number_id: u.reason for u in WhatsAppStore(runtime.store).unrouted(50)
               if u.via_connection_id == support.connection_id}
    assert reasons == {other_org.phone_number_id: "other_organization", other_app.phone_number_id: "other_app"}
    for conn, customer in ((other_org, "16505559021"), (support, "16505559021"), (other_app, "16505559022"),
                           (support, "16505559022")):
        wid = await conversation_ids.workflow_id(runtime, conn.organization_id, conn.phone_number_id, customer)
        with pytest.raises(RPCError):
            await client.get_workflow_handle(wid).describe()
