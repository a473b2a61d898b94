"""Administrators' alerts delivered to Slack and signed webhooks, through Temporal, with retries and dedupe."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest

from activities.admin.alerts import AlertDeliveryInput, RouteSpec, add_route, remove_route, sign, verify
from activities.slack.seed import channel_state, create_workspace, direct_connection
from core.alerting import ALERT_WORKFLOW, WAKE_SIGNAL, alert_workflow_id
from core.errors import PermanentError
from store.alerts import AlertDelivery, AlertStore
from store.db import ConnectionNotFound
from store.models import AdminNotification
from tests.test_cli import ainvoke
from vault.client import CredentialsMissing


async def slack_org(runtime, sandbox) -> tuple[str, str, dict[str, str]]:
    ws = await create_workspace(sandbox.url, name="Alerts", users={"ann": {"email": "ann@example.com"}},
                                channels={"ops": {"members": ["ann"]}, "old": {"is_archived": True}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    await direct_connection(runtime, sandbox.url, org, ws)
    return org, ws.team_id, ws.channels


def sink_url(sandbox, name: str) -> str:
    return f"{sandbox.url}/_sandbox/sink/{name}"


async def received(sandbox, name: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        return list((await http.get(sink_url(sandbox, name))).json())


async def sink_answers(sandbox, name: str, status: int) -> None:
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sink_url(sandbox, name)}/status/{status}")).raise_for_status()


async def start_delivery(client, task_queue, org: str, **kw) -> None:
    """Start the organization's delivery workflow with test-sized retries (later wakes signal this one)."""
    await client.start_workflow(ALERT_WORKFLOW, AlertDeliveryInput(organization_id=org, **kw),
                                id=alert_workflow_id(org), task_queue=task_queue, start_signal=WAKE_SIGNAL)


async def delivery(runtime, notification_id: int, route_id: str, *statuses: str,
                   min_attempts: int = 0) -> AlertDelivery:
    """Wait until the delivery of this alert on this route reaches one of `statuses`."""
    for _ in range(300):
        found = {d.route_id: d for d in AlertStore(runtime.store).deliveries(notification_id)}.get(route_id)
        if found is not None and found.status in statuses and found.attempts >= min_attempts:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery of {notification_id} on {route_id} never reached {statuses}: {found}")


async def test_alerts_reach_slack_and_a_signed_webhook_once(client, worker, runtime, sandbox, slack_app, task_queue):
    org, team, ch = await slack_org(runtime, sandbox)
    sink = f"ops-{uuid.uuid4().hex[:8]}"
    slack, _ = await add_route(runtime, org, RouteSpec(kind="slack", connection="default", channel=ch["ops"]),
                               actor="t")
    hook, secret = await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink),
                                                           min_severity="error"), actor="t")
    assert secret and secret.startswith("whsec_")
    # Recording an alert wakes the organization's AdminAlertDelivery workflow (signal-with-start): no schedule.
    err = await runtime.notify_admins(org, "reauth_required", "SLACK connection 'crm': token_revoked",
                                      action_url="https://osi.example/slack/install?o=1")
    warn = await runtime.notify_admins(org, "credentials_expiring", "key expires Friday", severity="warning")
    info = await runtime.notify_admins(org, "note", "nothing to do", severity="info")

    # error → Slack and the webhook; warning → Slack only; info → below both routes' thresholds.
    await delivery(runtime, err.id, slack.id, "delivered")
    await delivery(runtime, err.id, hook.id, "delivered")
    await delivery(runtime, warn.id, slack.id, "delivered")
    assert list(AlertStore(runtime.store).deliveries(info.id)) == []
    assert [d.route_id for d in AlertStore(runtime.store).deliveries(warn.id)] == [slack.id]
    texts = [m["text"] for m in (await channel_state(sandbox.url, team, ch["ops"]))["messages"]]
    assert any("token_revoked" in t and "<https://osi.example/slack/install?o=1|Fix it here>" in t for t in texts)
    assert any("key expires Friday" in t for t in texts) and not any("nothing to do" in t for t in texts)
    got = await received(sandbox, sink)
    assert len(got) == 1
    headers, body = got[0]["headers"], got[0]["body"].encode()
    assert verify(secret, headers["x-osi-timestamp"], body, headers["x-osi-signature"])
    assert not verify("whsec_wrong", headers["x-osi-timestamp"], body, headers["x-osi-signature"])
    assert headers["x-osi-delivery"] == f"{err.id}:{hook.id}"
    doc = json.loads(body)
    assert (doc["id"], doc["kind"], doc["severity"], doc["organization_id"]) == (err.id, "reauth_required", "error",
                                                                                  org)

    # One long-lived workflow per organization: a later alert wakes the same run, and what was delivered is
    # never sent again.
    runs = {runtime_run async for runtime_run in _runs(client, org)}
    later = await runtime.notify_admins(org, "configuration_error", "a second problem")
    await delivery(runtime, later.id, hook.id, "delivered")
    await delivery(runtime, later.id, slack.id, "delivered")
    assert [json.loads(g["body"])["id"] for g in await received(sandbox, sink)] == [err.id, later.id]
    assert {r async for r in _runs(client, org)} == runs and len(runs) == 1
    state = await client.get_workflow_handle(alert_workflow_id(org)).query("state")
    assert state["delivered"] == 5 and state["failed"] == 0


async def _runs(client, org: str):
    async for w in client.list_workflows(f"WorkflowId = '{alert_workflow_id(org)}'"):
        yield w.run_id


async def test_a_failing_route_is_retried_by_temporal_and_never_blocks_another(
        client, worker, runtime, sandbox, slack_app, task_queue):
    org, _team, ch = await slack_org(runtime, sandbox)
    sink = f"flaky-{uuid.uuid4().hex[:8]}"
    await sink_answers(sandbox, sink, 503)
    archived, _ = await add_route(runtime, org, RouteSpec(kind="slack", connection="default", channel=ch["old"]),
                                  actor="t")
    hook, _ = await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink)), actor="t")
    await start_delivery(client, task_queue, org, max_attempts=5, max_interval_seconds=1)
    before = len(runtime.store.notifications(org))
    n = await runtime.notify_admins(org, "retries_exhausted", "whatsapp.send_text failed after 8 attempts")

    # The archived channel is a permanent refusal: given up at once, with Slack's reason.
    gone = await delivery(runtime, n.id, archived.id, "failed")
    assert "is_archived" in (gone.last_error or "")
    # The webhook answers 503: Temporal retries it; each attempt shows on the delivery.
    retrying = await delivery(runtime, n.id, hook.id, "pending", min_attempts=1)
    assert "503" in (retrying.last_error or "")
    await sink_answers(sandbox, sink, 200)
    done = await delivery(runtime, n.id, hook.id, "delivered")
    assert done.attempts >= 1 and done.last_error is None
    assert len(await received(sandbox, sink)) >= 2  # refused (503) at least once, then accepted
    # Failing deliveries raise no alerts about themselves.
    assert len(runtime.store.notifications(org)) == before + 1


async def test_an_unreachable_receiver_fails_its_route_only(client, worker, runtime, sandbox, task_queue) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    sink = f"ok-{uuid.uuid4().hex[:8]}"
    dead, _ = await add_route(runtime, org, RouteSpec(kind="webhook", url="http://127.0.0.1:9/hook"), actor="t")
    ok, _ = await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink)), actor="t")
    await start_delivery(client, task_queue, org, max_attempts=2, max_interval_seconds=1)
    n = await runtime.notify_admins(org, "configuration_error", "the receiver of one route is down")
    await delivery(runtime, n.id, ok.id, "delivered")
    assert len(await received(sandbox, sink)) == 1
    failed = await delivery(runtime, n.id, dead.id, "failed")
    assert failed.attempts == 2 and "unreachable" in (failed.last_error or "")


async def test_acknowledged_and_pre_existing_alerts_are_not_delivered(client, worker, runtime, sandbox, task_queue):
    org = f"org_{uuid.uuid4().hex[:10]}"
    old = runtime.store.notify_admins(org, "configuration_error", "raised a day before the route existed")
    with runtime.store.session() as s:  # backdate it
        row = s.get(AdminNotification, old.id)
        row.at = row.at - timedelta(hours=20)
        s.add(row)
        s.commit()
    sink = f"quiet-{uuid.uuid4().hex[:8]}"
    route, _ = await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink)), actor="t")
    acked = runtime.store.notify_admins(org, "configuration_error", "acknowledged before delivery")
    runtime.store.acknowledge_notification(org, acked.id)
    fresh = await runtime.notify_admins(org, "configuration_error", "raised now")
    await delivery(runtime, fresh.id, route.id, "delivered")
    assert [json.loads(g["body"])["id"] for g in await received(sandbox, sink)] == [fresh.id]
    assert list(AlertStore(runtime.store).deliveries(old.id)) == []
    assert list(AlertStore(runtime.store).deliveries(acked.id)) == []


def test_the_same_unacknowledged_alert_is_recorded_once(runtime) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    msg = "SLACK connection 'x': missing_scope"
    a = runtime.store.notify_admins(org, "configuration_error", msg, connection_id="c1")
    b = runtime.store.notify_admins(org, "configuration_error", msg, connection_id="c1")
    other = runtime.store.notify_admins(org, "configuration_error", "SLACK connection 'y': missing_scope",
                                        connection_id="c2")
    assert a.id == b.id and other.id != a.id
    runtime.store.acknowledge_notification(org, a.id)
    c = runtime.store.notify_admins(org, "configuration_error", msg, connection_id="c1")
    assert c.id != a.id  # once acknowledged, a recurrence is news again
    assert len(runtime.store.notifications(org)) == 3
    # Alerts about no particular connection are deduplicated too.
    assert runtime.store.notify_admins(org, "note", "n").id == runtime.store.notify_admins(org, "note", "n").id


def test_webhook_signatures_reject_tampering_and_replays() -> None:
    secret, body = "whsec_test", b'{"id":1}'
    ts = str(int(time.time()))
    sig = sign(secret, ts, body)
    assert sig.startswith("v1=") and verify(secret, ts, body, sig)
    assert not verify(secret, ts, b'{"id":2}', sig)
    old = str(int(time.time()) - 3600)
    assert not verify(secret, old, body, sign(secret, old, body))  # a replay of an hour-old delivery
    assert not verify(secret, "not-a-time", body, sig)


async def test_routes_are_validated_scoped_audited_and_removed_with_their_secret(runtime, sandbox, slack_app,
                                                                                  gateway) -> None:
    org, _team, ch = await slack_org(runtime, sandbox)
    with pytest.raises(PermanentError, match="https"):
        await add_route(runtime, org, RouteSpec(kind="webhook", url="http://alerts.example.com/hook"), actor="t")
    with pytest.raises(PermanentError, match="exactly one of channel or user_id"):
        await add_route(runtime, org, RouteSpec(kind="slack", connection="default"), actor="t")
    with pytest.raises(ConnectionNotFound):
        await add_route(runtime, org, RouteSpec(kind="slack", connection="nope", channel=ch["ops"]), actor="t")

    key = runtime.store.issue_admin_key(org, "ops-lead")
    other = runtime.store.issue_admin_key(f"org_{uuid.uuid4().hex[:8]}", "eve")
    base = f"{gateway}/admin/orgs/{org}/alert-routes"
    async with httpx.AsyncClient() as http:
        auth = {"Authorization": f"Bearer {key}"}
        bad = await http.post(base, json={"kind": "webhook", "url": "ftp://x"}, headers=auth)
        assert bad.status_code == 422 and "http(s)" in bad.text
        made = await http.post(base, json={"kind": "webhook", "url": "https://alerts.example.com/hook",
                                           "min_severity": "error"}, headers=auth)
        assert made.status_code == 201 and made.json()["signing_secret"].startswith("whsec_")
        route_id = made.json()["id"]
        listed = (await http.get(base, headers=auth)).json()
        assert [r["id"] for r in listed] == [route_id] and "signing_secret" not in json.dumps(listed)
        assert (await http.get(base, headers={"Authorization": f"Bearer {other}"})).status_code == 403
        path = runtime.vault.alert_route_path(org, route_id)
        assert (await runtime.vault.read(path, use_cache=False)).api_key.get_secret_value() == \
            made.json()["signing_secret"]
        assert (await http.delete(f"{base}/{route_id}", headers=auth)).json() == {"ok": True}
        assert (await http.delete(f"{base}/{route_id}", headers=auth)).status_code == 404
    with pytest.raises(CredentialsMissing):
        await runtime.vault.read(path, use_cache=False)
    actions = [(e.action, e.actor) for e in runtime.store.audit_log(org)]
    assert ("alerts.add_route", "admin:key:ops-lead") in actions
    assert ("alerts.remove_route", "admin:key:ops-lead") in actions
    assert not await remove_route(runtime, org, route_id, actor="t")


async def test_cli_adds_lists_delivers_and_removes(cli_env, client, worker, runtime, sandbox,
                                                   task_queue) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    sink = f"cli-{uuid.uuid4().hex[:8]}"
    bad = await ainvoke("alerts", "add-webhook", org, "http://alerts.example.com/x")
    assert bad.exit_code == 2 and "https" in bad.output
    added = await ainvoke("alerts", "add-webhook", org, sink_url(sandbox, sink), "--min-severity", "error")
    assert added.exit_code == 0, added.output
    secret = added.output.split("signing secret (shown once): ")[1].split()[0]
    route_id = added.output.split()[1].rstrip(":")
    listed = await ainvoke("alerts", "list", org, "--json")
    assert [r["id"] for r in json.loads(listed.output)] == [route_id] and secret not in listed.output
    # Recorded while nothing woke the delivery workflow (Temporal down, say): `osi alerts deliver` wakes it.
    n = runtime.store.notify_admins(org, "retries_exhausted", "calendar quota exhausted")
    done = await ainvoke("alerts", "deliver", "--org", org)
    assert done.exit_code == 0, done.output
    woken = json.loads(done.output)
    assert woken["woken"] == [alert_workflow_id(org)] and woken["links"][0].endswith(f"/workflows/osi-alerts-{org}")
    await delivery(runtime, n.id, route_id, "delivered")
    status = json.loads((await ainvoke("alerts", "status", org, "--json")).output)
    assert [(r["alert"], r["route"], r["status"]) for r in status] == [(n.id, route_id, "delivered")]
    got = (await received(sandbox, sink))[0]
    assert verify(secret, got["headers"]["x-osi-timestamp"], got["body"].encode(), got["headers"]["x-osi-signature"])
    assert json.loads(got["body"])["id"] == n.id
    assert (await ainvoke("alerts", "remove", org, route_id)).exit_code == 0
    assert (await ainvoke("alerts", "remove", org, route_id)).exit_code == 1
