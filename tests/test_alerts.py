"""Administrators' alerts delivered to Slack and signed webhooks, through Temporal, with retries and dedupe."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest

from activities.admin.alerts import DeliverInput, DeliverResult, RouteSpec, add_route, remove_route, sign, verify
from activities.slack.seed import channel_state, create_workspace, direct_connection, ensure_app
from core.errors import PermanentError
from store.alerts import AlertStore
from store.db import ConnectionNotFound
from store.models import AdminNotification
from tests.test_cli import ainvoke
from vault.client import CredentialsMissing


@pytest.fixture(scope="module")
async def slack_app(runtime, sandbox, settings):
    return await ensure_app(runtime, sandbox.url, settings.gateway_public_url)


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


async def deliver(client, task_queue, org: str, **kw) -> DeliverResult:
    return await client.execute_workflow("DeliverAdminNotifications", DeliverInput(organization_id=org, **kw),
                                         id=f"alerts-{uuid.uuid4().hex[:10]}", task_queue=task_queue,
                                         result_type=DeliverResult)


async def test_alerts_reach_slack_and_a_signed_webhook_once(client, worker, runtime, sandbox, slack_app, task_queue):
    org, team, ch = await slack_org(runtime, sandbox)
    sink = f"ops-{uuid.uuid4().hex[:8]}"
    await add_route(runtime, org, RouteSpec(kind="slack", connection="default", channel=ch["ops"]), actor="t")
    hook, secret = await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink),
                                                           min_severity="error"), actor="t")
    assert secret and secret.startswith("whsec_")
    err = runtime.store.notify_admins(org, "reauth_required", "SLACK connection 'crm': token_revoked",
                                      action_url="https://osi.example/slack/install?o=1")
    runtime.store.notify_admins(org, "credentials_expiring", "key expires Friday", severity="warning")
    runtime.store.notify_admins(org, "note", "nothing to do", severity="info")

    res = await deliver(client, task_queue, org)
    # error → Slack and the webhook; warning → Slack only; info → below both routes' thresholds.
    assert (res.delivered, res.failed) == (3, 0), res.errors
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

    again = await deliver(client, task_queue, org)
    assert (again.delivered, again.failed) == (0, 0)  # delivered alerts are never sent twice
    assert len(await received(sandbox, sink)) == 1
    assert len((await channel_state(sandbox.url, team, ch["ops"]))["messages"]) == len(texts)


async def test_a_failing_route_is_retried_then_given_up_without_blocking_others(
        client, worker, runtime, sandbox, slack_app, task_queue):
    org, _team, ch = await slack_org(runtime, sandbox)
    sink = f"flaky-{uuid.uuid4().hex[:8]}"
    await sink_answers(sandbox, sink, 503)
    archived, _ = await add_route(runtime, org, RouteSpec(kind="slack", connection="default", channel=ch["old"]),
                                  actor="t")
    await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink)), actor="t")
    n = runtime.store.notify_admins(org, "retries_exhausted", "whatsapp.send_text failed after 8 attempts")
    before = len(runtime.store.notifications(org))

    first = await deliver(client, task_queue, org, max_attempts=3)
    assert (first.delivered, first.failed, first.gave_up) == (0, 2, 0)
    assert any("503" in e for e in first.errors) and any("is_archived" in e for e in first.errors)
    await sink_answers(sandbox, sink, 200)
    second = await deliver(client, task_queue, org, max_attempts=3)
    assert (second.delivered, second.failed, second.gave_up) == (1, 1, 0)  # the webhook recovered
    third = await deliver(client, task_queue, org, max_attempts=3)
    assert (third.delivered, third.failed, third.gave_up) == (0, 1, 1)  # Slack: third strike
    fourth = await deliver(client, task_queue, org, max_attempts=3)
    assert (fourth.delivered, fourth.failed) == (0, 0)
    states = {d.route_id: d for d in AlertStore(runtime.store).deliveries(n.id)}
    assert states[archived.id].status == "failed" and "is_archived" in (states[archived.id].last_error or "")
    assert len(await received(sandbox, sink)) == 2  # one refused (503), one accepted
    # Failing deliveries raise no alerts about themselves.
    assert len(runtime.store.notifications(org)) == before


async def test_an_unreachable_receiver_fails_its_route_only(client, worker, runtime, sandbox, task_queue) -> None:
    org = f"org_{uuid.uuid4().hex[:10]}"
    sink = f"ok-{uuid.uuid4().hex[:8]}"
    dead, _ = await add_route(runtime, org, RouteSpec(kind="webhook", url="http://127.0.0.1:9/hook"), actor="t")
    await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink)), actor="t")
    n = runtime.store.notify_admins(org, "configuration_error", "the receiver of one route is down")
    res = await deliver(client, task_queue, org)
    assert (res.delivered, res.failed) == (1, 1) and "unreachable" in res.errors[0]
    assert len(await received(sandbox, sink)) == 1
    states = {d.route_id: d for d in AlertStore(runtime.store).deliveries(n.id)}
    assert states[dead.id].status == "pending" and states[dead.id].attempts == 1


async def test_acknowledged_and_pre_existing_alerts_are_not_delivered(client, worker, runtime, sandbox, task_queue):
    org = f"org_{uuid.uuid4().hex[:10]}"
    old = runtime.store.notify_admins(org, "configuration_error", "raised a day before the route existed")
    with runtime.store.session() as s:  # backdate it
        row = s.get(AdminNotification, old.id)
        row.at = row.at - timedelta(hours=20)
        s.add(row)
        s.commit()
    sink = f"quiet-{uuid.uuid4().hex[:8]}"
    await add_route(runtime, org, RouteSpec(kind="webhook", url=sink_url(sandbox, sink)), actor="t")
    acked = runtime.store.notify_admins(org, "configuration_error", "acknowledged before delivery")
    runtime.store.acknowledge_notification(org, acked.id)
    res = await deliver(client, task_queue, org)
    assert (res.delivered, res.failed) == (0, 0) and await received(sandbox, sink) == []
    fresh = runtime.store.notify_admins(org, "configuration_error", "raised now")
    res = await deliver(client, task_queue, org)
    assert res.delivered == 1 and json.loads((await received(sandbox, sink))[0]["body"])["id"] == fresh.id


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
    n = runtime.store.notify_admins(org, "retries_exhausted", "calendar quota exhausted")
    done = await ainvoke("alerts", "deliver", "--org", org)
    assert done.exit_code == 0 and json.loads(done.output)["delivered"] == 1
    got = (await received(sandbox, sink))[0]
    assert verify(secret, got["headers"]["x-osi-timestamp"], got["body"].encode(), got["headers"]["x-osi-signature"])
    assert json.loads(got["body"])["id"] == n.id
    assert (await ainvoke("alerts", "remove", org, route_id)).exit_code == 0
    assert (await ainvoke("alerts", "remove", org, route_id)).exit_code == 1
