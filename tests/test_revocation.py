"""Removing a connection revokes its grant at the provider first (Slack auth.revoke, Google's revoke endpoint)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from activities.slack.seed import create_workspace, direct_connection
from core.connections import remove_connection
from store.db import ConnectionNotFound
from store.models import ConnectionStatus, Health
from tests import calendar_seed as cal
from tests import seed
from vault.client import CredentialsMissing


async def slack_conn(runtime, sandbox):
    ws = await create_workspace(sandbox.url, name="Revoke", channels={"general": {}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    conn, issued = await direct_connection(runtime, sandbox.url, org, ws)
    return org, conn, issued["access_token"]


async def slack_auth_test(sandbox, token: str) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.post(f"{sandbox.url}/slack/api/auth.test",
                                headers={"Authorization": f"Bearer {token}"})).json()


def revoke_calls(sandbox, provider: str, suffix: str) -> int:
    return sum(1 for r in sandbox.state.recorder.dump(provider) if r["path"].endswith(suffix))


async def test_slack_token_is_revoked_before_the_connection_goes(runtime, sandbox, slack_app) -> None:
    org, conn, token = await slack_conn(runtime, sandbox)
    assert (await slack_auth_test(sandbox, token))["ok"] is True
    outcome = await remove_connection(runtime, org, "SLACK", "default", actor="admin:test")
    assert outcome == {"revoked": True}
    assert (await slack_auth_test(sandbox, token)) == {"ok": False, "error": "token_revoked"}
    with pytest.raises(CredentialsMissing):
        await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    with pytest.raises(ConnectionNotFound):
        runtime.store.find_connection(org, "SLACK", "default")
    event = next(e for e in runtime.store.audit_log(org) if e.action == "connection.remove")
    assert event.detail == {"revoked": True} and event.actor == "admin:test"
    assert any(e.action == "slack.revoke" and e.outcome == "ok" for e in runtime.store.audit_log(org))


async def test_nothing_to_revoke_when_the_provider_already_refused(runtime, sandbox, slack_app) -> None:
    org, conn, _ = await slack_conn(runtime, sandbox)
    runtime.store.set_health(conn.id, Health.UNHEALTHY, {"code": "token_revoked"}, ConnectionStatus.NEEDS_REAUTH)
    before = revoke_calls(sandbox, "slack", "/auth.revoke")
    outcome = await remove_connection(runtime, org, "SLACK", "default")
    assert outcome["revoked"] is False and "already refused" in outcome["note"]
    assert revoke_calls(sandbox, "slack", "/auth.revoke") == before


async def test_a_provider_outage_does_not_block_removal(runtime, sandbox, slack_app) -> None:
    org, _conn, token = await slack_conn(runtime, sandbox)
    async with httpx.AsyncClient() as http:
        await http.put(f"{sandbox.url}/_sandbox/faults/slack", json={"outage": True})
    try:
        outcome = await remove_connection(runtime, org, "SLACK", "default")
    finally:
        async with httpx.AsyncClient() as http:
            await http.delete(f"{sandbox.url}/_sandbox/faults")
    assert outcome["revoked"] is False and outcome["error"]
    with pytest.raises(ConnectionNotFound):
        runtime.store.find_connection(org, "SLACK", "default")
    # Not revoked, and the audit trail says so: an administrator can revoke it in Slack.
    event = next(e for e in runtime.store.audit_log(org) if e.action == "connection.remove")
    assert event.detail["revoked"] is False and (await slack_auth_test(sandbox, token))["ok"] is True


async def test_google_grant_is_revoked_with_its_access_tokens(runtime, sandbox) -> None:
    conn = await cal.google_connection(runtime, sandbox.url)
    outcome = await remove_connection(runtime, conn.organization_id, "GOOGLE_CALENDAR", conn.name)
    assert outcome == {"revoked": True}
    async with httpx.AsyncClient() as http:
        refresh = await http.post(f"{sandbox.url}/google/token", data={
            "grant_type": "refresh_token", "refresh_token": conn.refresh_token, "client_id": cal.google_client_id(),
            "client_secret": (await runtime.vault.read_app("google")).client_secret.get_secret_value()})
        assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
        calendar = await http.get(f"{sandbox.url}/google/calendar/v3/calendars/primary",
                                  headers={"Authorization": f"Bearer {conn.access_token}"})
        assert calendar.status_code == 401
        again = await http.post(f"{sandbox.url}/google/revoke", data={"token": conn.refresh_token})
        assert again.status_code == 400 and again.json()["error"] == "invalid_token"


async def test_an_already_revoked_google_grant_counts_as_revoked(runtime, sandbox) -> None:
    conn = await cal.google_connection(runtime, sandbox.url)
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{sandbox.url}/google/revoke", data={"token": conn.refresh_token})).status_code == 200
    outcome = await remove_connection(runtime, conn.organization_id, "GOOGLE_CALENDAR", conn.name)
    assert outcome["revoked"] is True and "already" in outcome["note"]
    assert not [n for n in runtime.store.notifications(conn.organization_id)]  # no alert about a removed connection


async def test_providers_without_a_revocation_api_say_so(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    outcome = await remove_connection(runtime, wa.organization_id, "WHATSAPP_BUSINESS", "default")
    assert outcome["revoked"] is False and "no revocation API" in outcome["note"]
    kept = await seed.whatsapp_connection(runtime, sandbox.url)
    outcome = await remove_connection(runtime, kept.organization_id, "WHATSAPP_BUSINESS", "default", revoke=False)
    assert outcome == {"revoked": False, "note": "not asked to revoke"}
