"""Admin API and dashboard: authentication, organization scoping, audit, usage summary, metrics."""

from __future__ import annotations

import httpx

from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from tests import seed


async def test_admin_api_is_scoped_authenticated_and_audited(client, worker, runtime, sandbox, gateway, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    other = await seed.whatsapp_connection(runtime, sandbox.url)
    key = runtime.store.issue_admin_key(wa.organization_id, "alice")
    await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to="+16505551234", text="hi"), id=f"adm-{wa.connection_id}",
        task_queue=task_queue, result_type=SendWhatsAppMessageResult)
    base = f"{gateway}/admin/orgs/{wa.organization_id}"
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/connections")).status_code == 401
        assert (await http.get(f"{base}/connections", headers={"Authorization": "Bearer osk_nope"})).status_code == 401
        denied = await http.get(f"{gateway}/admin/orgs/{other.organization_id}/connections", headers=auth)
        assert denied.status_code == 403
        conns = (await http.get(f"{base}/connections", headers=auth)).json()
        assert [c["name"] for c in conns] == ["default"] and conns[0]["request_count"] >= 1
        usage = (await http.get(f"{base}/usage", headers=auth)).json()["rows"]
        send = next(u for u in usage if u["action"] == "whatsapp.send_text")
        assert send["calls"] == 1 and send["outcomes"] == {"ok": 1} and send["latency_ms_p95"] > 0
        tested = (await http.post(f"{base}/connections/WHATSAPP_BUSINESS/default/test", headers=auth)).json()
        assert tested["ok"] is True
        audit = (await http.get(f"{base}/audit", headers=auth)).json()
        actors = {a["actor"] for a in audit}
        assert "admin:key:alice" in actors
        assert any(a["action"] == "whatsapp.test_connection" and a["actor"] == "admin:key:alice" for a in audit)
        page = await http.get(f"{gateway}/dashboard")
        assert page.status_code == 200 and 'action="/dashboard/login"' in page.text
        metrics = (await http.get(f"{gateway}/metrics")).text
        assert "osi_provider_calls_total" in metrics


async def test_notifications_can_be_acknowledged_only_in_scope(runtime, gateway):
    n = runtime.store.notify_admins("org_ack", "configuration_error", "boom")
    key = runtime.store.issue_admin_key("org_ack", "bob")
    other_key = runtime.store.issue_admin_key("org_elsewhere", "eve")
    async with httpx.AsyncClient() as http:
        url = f"{gateway}/admin/orgs/org_ack/notifications/{n.id}/ack"
        assert (await http.post(url, headers={"Authorization": f"Bearer {other_key}"})).status_code == 403
        assert (await http.post(url, headers={"Authorization": f"Bearer {key}"})).json() == {"ok": True}
    assert runtime.store.notifications("org_ack")[0].acknowledged


async def test_connections_can_be_added_and_removed_through_the_admin_api(runtime, sandbox, gateway):
    import secrets
    import uuid

    org = f"org_{uuid.uuid4().hex[:10]}"
    key = runtime.store.issue_admin_key(org, "carol")
    eve = runtime.store.issue_admin_key(f"org_{uuid.uuid4().hex[:8]}", "eve")
    token, app_secret = "EAAadmin" + secrets.token_hex(12), secrets.token_hex(16)
    body = {"integration_type": "WHATSAPP_BUSINESS", "name": "sales",
            "settings": {"phone_number_id": "123456789012345", "waba_id": "999"},
            "secrets": {"token": token, "app_secret": app_secret}}
    base = f"{gateway}/admin/orgs/{org}/connections"
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient() as http:
        assert (await http.post(base, json=body, headers={"Authorization": f"Bearer {eve}"})).status_code == 403
        made = await http.post(base, json=body, headers=auth)
        assert made.status_code == 201 and token not in made.text and app_secret not in made.text
        conn = runtime.store.find_connection(org, "WHATSAPP_BUSINESS", "sales")
        stored = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
        assert stored.token.get_secret_value() == token
        again = await http.post(base, json={**body, "secrets": {"token": "EAAother"}}, headers=auth)
        assert again.status_code == 409
        assert (await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)).token.get_secret_value() \
            == token
        missing = await http.post(base, json={**body, "name": "x", "settings": {}}, headers=auth)
        assert missing.status_code == 422 and "phone_number_id" in missing.text
        bad = await http.post(base, json={**body, "name": "y", "secrets": {"app_secret": app_secret}}, headers=auth)
        assert bad.status_code == 422 and "token" in bad.text and app_secret not in bad.text
        slack = await http.post(base, json={"integration_type": "SLACK", "name": "ops"}, headers=auth)
        assert slack.status_code == 422 and "/slack/install?" in slack.json()["detail"]["install_url"]
        removed = await http.delete(f"{base}/WHATSAPP_BUSINESS/sales", headers=auth)
        assert removed.status_code == 200 and removed.json()["revoked"] is False
        assert (await http.delete(f"{base}/WHATSAPP_BUSINESS/sales", headers=auth)).status_code == 404
    actions = {(e.action, e.actor) for e in runtime.store.audit_log(org)}
    assert {("connection.add", "admin:key:carol"), ("connection.remove", "admin:key:carol")} <= actions
