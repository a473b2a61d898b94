"""Slack OAuth v2 install through the gateway, and token rotation (ahead of expiry, on token_expired,
refresh failures, two workers refreshing at once against one-shot refresh tokens)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.slack import oauth
from activities.slack import store as slack_store
from activities.slack.activities import SlackActivities
from activities.slack.models import AuthTestInput, PostMessageInput
from activities.slack.provider import PROVIDER
from activities.slack.seed import create_workspace, direct_connection, install_via_gateway
from activities.slack.settings import SlackSettings
from core.policies import SLACK_SEND
from core.runtime import Runtime
from sandbox.state import fingerprint
from store.models import ConnectionStatus
from tests.activity_env import activity_env
from vault.credentials import OAuth2Credentials


def env() -> ActivityEnvironment:
    return activity_env(options=SLACK_SEND)


def fake(sandbox):
    return sandbox.state.providers["slack"].state


def oauth_calls(sandbox) -> list[dict]:
    return [r for r in sandbox.state.recorder.dump("slack") if r["path"] == "/slack/api/oauth.v2.access"]


async def sandbox_patch_app(sandbox, slack_app, **patch) -> None:
    async with httpx.AsyncClient() as http:
        (await http.patch(f"{sandbox.url}/_sandbox/slack/apps/{slack_app.client_id}", json=patch)).raise_for_status()


# ---- install ---------------------------------------------------------------------------------
async def test_install_records_the_connection_and_rotating_tokens(runtime, sandbox, gateway, slack_app, settings):
    ws = await create_workspace(sandbox.url, name="Acme", users={"admin": {"email": "admin@acme.test"}},
                                channels={"general": {"members": ["admin"]}})
    org = f"org_{uuid.uuid4().hex[:8]}"
    resp = await install_via_gateway(gateway, org, "acme", ws.team_id)
    assert resp.status_code == 200 and "Slack connected" in resp.text and "Acme" in resp.text
    to_slack, back = resp.history
    assert to_slack.status_code == 302 and back.status_code == 302
    authorize = urlparse(to_slack.headers["location"])
    q = parse_qs(authorize.query)
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == settings.section(SlackSettings).authorize_url
    assert q["client_id"] == [slack_app.client_id] and q["team"] == [ws.team_id]
    assert q["redirect_uri"] == [f"{settings.gateway_public_url}/slack/oauth/callback"]
    assert set(q["scope"][0].split(",")) == set(oauth.scopes(settings)) and len(q["state"][0]) >= 32

    conn = runtime.store.find_connection(org, "SLACK", "acme")
    assert conn.settings["team_id"] == ws.team_id and conn.settings["bot_user_id"] == ws.bot_user_id
    assert set(conn.settings["scopes"]) == set(oauth.scopes(settings)) and conn.settings["token_rotation"] is True
    assert conn.settings["bot_id"] and conn.settings["installer_user_id"] == ws.users["admin"]
    assert conn.status == "active" and conn.health == "healthy" and conn.credentials_expire_at is not None
    creds = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    assert isinstance(creds, OAuth2Credentials)
    assert creds.access_token.get_secret_value().startswith("xoxe.xoxb-1-")
    assert creds.refresh_token and creds.refresh_token.get_secret_value().startswith("xoxe-1-")
    assert timedelta(hours=11, minutes=55) < creds.expires_at - datetime.now(UTC) <= timedelta(hours=12)
    assert creds.account["team_id"] == ws.team_id
    # Client credentials went by HTTP Basic, never in the form body; no secret in the connection row.
    (exchange,) = [r for r in oauth_calls(sandbox) if "code=" in (r["body"] or "")][-1:]
    assert exchange["headers"]["authorization"].startswith("Basic fp:") and "client_secret" not in exchange["body"]
    assert creds.access_token.get_secret_value() not in repr(conn.model_dump())
    # The token works.
    auth = await env().run(SlackActivities(runtime).auth_test, AuthTestInput(organization_id=org, connection="acme"))
    assert auth.team_id == ws.team_id


async def test_several_workspaces_per_organization(runtime, sandbox, gateway, slack_app):
    org = f"org_{uuid.uuid4().hex[:8]}"
    teams = []
    for name in ("sales", "support"):
        ws = await create_workspace(sandbox.url, name=name)
        teams.append(ws.team_id)
        assert (await install_via_gateway(gateway, org, name, ws.team_id)).status_code == 200
    conns = runtime.store.list_connections(org, "SLACK")
    assert sorted(c.settings["team_id"] for c in conns) == sorted(teams) and len(conns) == 2


async def test_state_is_checked_one_shot_and_expires(runtime, sandbox, gateway, slack_app):
    ws = await create_workspace(sandbox.url)
    org = f"org_{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as http:
        # Forged state: refused, nothing exchanged.
        before = len(oauth_calls(sandbox))
        r = await http.get(f"{gateway}/slack/oauth/callback", params={"state": "forged", "code": "123"})
        assert r.status_code == 400 and "expired" in r.text and len(oauth_calls(sandbox)) == before
        # A real round trip, then the same callback URL replayed: the state was consumed.
        start = await http.get(f"{gateway}/slack/install", params={"organization_id": org, "name": "x",
                                                                   "team": ws.team_id})
        code_redirect = await http.get(start.headers["location"])
        callback = code_redirect.headers["location"]
        assert (await http.get(callback)).status_code == 200
        again = await http.get(callback)
        assert again.status_code == 400 and len([c for c in oauth_calls(sandbox) if "code=" in (c["body"] or "")])
        # An expired state is refused even though it exists.
        slack_store.issue_state(runtime.store, "old-state-0123456789", org, "y", ttl_seconds=-1)
        r = await http.get(f"{gateway}/slack/oauth/callback", params={"state": "old-state-0123456789", "code": "1"})
        assert r.status_code == 400
    with pytest.raises(Exception, match="no SLACK connection named 'y'"):
        runtime.store.find_connection(org, "SLACK", "y")


async def test_denied_install_and_bad_codes(runtime, sandbox, gateway, slack_app):
    ws = await create_workspace(sandbox.url)
    org = f"org_{uuid.uuid4().hex[:8]}"
    await sandbox_patch_app(sandbox, slack_app, deny=True)
    try:
        r = await install_via_gateway(gateway, org, "denied", ws.team_id)
    finally:
        await sandbox_patch_app(sandbox, slack_app, deny=False)
    assert r.status_code == 400 and "access_denied" in r.text
    async with httpx.AsyncClient() as http:
        start = await http.get(f"{gateway}/slack/install", params={"organization_id": org, "name": "bad"})
        state = parse_qs(urlparse(start.headers["location"]).query)["state"][0]
        r = await http.get(f"{gateway}/slack/oauth/callback", params={"state": state, "code": "not-a-code"})
    assert r.status_code == 400 and "invalid_code" in r.text
    assert not runtime.store.list_connections(org, "SLACK")
    r = await install_via_gateway(gateway, "bad/org", "x", ws.team_id)
    assert r.status_code == 400


async def test_install_without_token_rotation(runtime, sandbox, gateway, slack_app):
    ws = await create_workspace(sandbox.url)
    org = f"org_{uuid.uuid4().hex[:8]}"
    await sandbox_patch_app(sandbox, slack_app, token_rotation=False)
    try:
        assert (await install_via_gateway(gateway, org, "plain", ws.team_id)).status_code == 200
    finally:
        await sandbox_patch_app(sandbox, slack_app, token_rotation=True)
    conn = runtime.store.find_connection(org, "SLACK", "plain")
    creds = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    assert creds.access_token.get_secret_value().startswith("xoxb-") and creds.refresh_token is None
    assert creds.expires_at is None and conn.settings["token_rotation"] is False


# ---- rotation --------------------------------------------------------------------------------
async def rotating(runtime, sandbox, *, expires_in: timedelta | None = None):
    ws = await create_workspace(sandbox.url, channels={"general": {}})
    org = f"org_{uuid.uuid4().hex[:8]}"
    conn, issued = await direct_connection(runtime, sandbox.url, org, ws)
    path = runtime.credentials_path(conn)
    if expires_in is not None:
        creds = await runtime.vault.read(path)
        await runtime.vault.write(path, creds.model_copy(update={"expires_at": datetime.now(UTC) + expires_in}))
    return org, ws, conn, issued, path


async def test_refresh_ahead_of_expiry(runtime, sandbox, slack_app):
    org, ws, conn, issued, path = await rotating(runtime, sandbox, expires_in=timedelta(seconds=90))
    refreshes = fake(sandbox).stats.get("refreshes", 0)
    ref = await env().run(SlackActivities(runtime).post_message,
                          PostMessageInput(organization_id=org, channel=ws.channels["general"], text="fresh"))
    assert ref.ts and fake(sandbox).stats["refreshes"] == refreshes + 1
    creds = await runtime.vault.read(path, use_cache=False)
    assert creds.access_token.get_secret_value() != issued["access_token"]
    assert creds.refresh_token.get_secret_value() != issued["refresh_token"]  # the new one replaced it
    assert creds.expires_at - datetime.now(UTC) > timedelta(hours=11)
    post = [r for r in sandbox.state.recorder.dump("slack") if r["path"].endswith("chat.postMessage")][-1]
    assert post["headers"]["authorization"] == f"Bearer fp:{fingerprint(creds.access_token.get_secret_value())}"
    assert fake(sandbox).refresh_tokens[issued["refresh_token"]].used  # one-shot: the old one is spent
    assert runtime.store.get_connection(conn.id).credentials_expire_at is not None


async def test_token_expired_answer_refreshes_once_and_retries(runtime, sandbox, slack_app):
    org, ws, conn, issued, _ = await rotating(runtime, sandbox)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/slack/tokens/expire", json={"token": issued["access_token"]})
    refreshes = fake(sandbox).stats.get("refreshes", 0)
    auth = await env().run(SlackActivities(runtime).auth_test, AuthTestInput(organization_id=org))
    assert auth.team_id == ws.team_id and fake(sandbox).stats["refreshes"] == refreshes + 1
    tests = [r for r in sandbox.state.recorder.dump("slack") if r["path"].endswith("/auth.test")][-2:]
    assert tests[0]["headers"]["authorization"] == f"Bearer fp:{fingerprint(issued['access_token'])}"
    assert tests[0]["headers"]["authorization"] != tests[1]["headers"]["authorization"]
    assert runtime.store.get_connection(conn.id).status == "active"


async def test_invalid_refresh_token_needs_reauth_with_the_install_link(runtime, sandbox, gateway, slack_app,
                                                                       settings):
    org, ws, conn, issued, _ = await rotating(runtime, sandbox)
    async with httpx.AsyncClient() as http:
        # Somebody else spent our refresh token, then the access token expired.
        app = await runtime.vault.read_app("slack")
        spent = await http.post(f"{sandbox.url}/slack/api/oauth.v2.access",
                                data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                                auth=(app.client_id, app.client_secret.get_secret_value()))
        assert spent.json()["ok"]
        await http.post(f"{sandbox.url}/_sandbox/slack/tokens/expire", json={"token": issued["access_token"]})
    with pytest.raises(ApplicationError) as exc:
        await env().run(SlackActivities(runtime).auth_test, AuthTestInput(organization_id=org))
    d = exc.value.details[0]
    assert exc.value.type == "ConfigurationError" and d["code"] == "invalid_refresh_token"
    assert d["details"]["reauth"] is True
    conn = runtime.store.get_connection(conn.id)
    assert conn.status == ConnectionStatus.NEEDS_REAUTH.value
    (note,) = runtime.store.notifications(connection_id=conn.id)
    link = note.action_url
    assert note.kind == "reauth_required" and link in note.message
    assert link.startswith(
        f"{settings.gateway_public_url}/slack/install?organization_id={org}&name=default&by=system&exp=")
    # The link in the notification starts a re-install, which puts the connection back to work.
    async with httpx.AsyncClient(follow_redirects=True) as http:
        r = await http.get(link + f"&team={ws.team_id}")
    assert r.status_code == 200 and "Slack connected" in r.text
    installs = [e for e in runtime.store.audit_log(org) if e.action == "slack.install"]
    assert installs[0].detail["requested_by"] == "system"  # who asked for the link, from the signed state
    conn = runtime.store.get_connection(conn.id)
    assert conn.status == "active" and conn.health == "healthy"
    auth = await env().run(SlackActivities(runtime).auth_test, AuthTestInput(organization_id=org))
    assert auth.team_id == ws.team_id


async def test_two_workers_refreshing_at_once_keep_one_valid_token(runtime, sandbox, slack_app, settings):
    """One-shot refresh tokens: a second refresh with the same token would fail and could clobber the good
    token. The Vault CAS claim lets exactly one worker refresh; the other uses its result."""
    _, _, conn, issued, path = await rotating(runtime, sandbox, expires_in=timedelta(seconds=30))
    before = dict(fake(sandbox).stats)
    workers = [Runtime(settings), Runtime(settings)]
    try:
        results = await asyncio.gather(*[w.credentials_for(PROVIDER, conn) for w in workers])
    finally:
        for w in workers:
            await w.close()
    assert fake(sandbox).stats.get("refreshes", 0) == before.get("refreshes", 0) + 1
    assert fake(sandbox).stats.get("refresh_failed", 0) == before.get("refresh_failed", 0)
    tokens = {r.access_token.get_secret_value() for r in results}
    assert len(tokens) == 1 and issued["access_token"] not in tokens
    stored = await runtime.vault.read(path, use_cache=False)
    assert stored.access_token.get_secret_value() in tokens
    assert not fake(sandbox).refresh_tokens[stored.refresh_token.get_secret_value()].used  # still usable
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox.url}/slack/api/auth.test",
                            headers={"Authorization": f"Bearer {stored.access_token.get_secret_value()}"})
    assert r.json()["ok"] is True


async def test_oauth_access_is_classified(runtime, sandbox, slack_app):
    app = await runtime.vault.read_app("slack")
    bad = app.model_copy(update={"client_secret": type(app.client_secret)("wrong")})
    with pytest.raises(Exception) as exc:
        await oauth.oauth_access(runtime, PROVIDER, bad, {"code": "x"})
    assert getattr(exc.value, "code", None) == "bad_client_secret"
    assert exc.value.error_class.value == "ConfigurationError"
    with pytest.raises(Exception) as exc:
        await oauth.oauth_access(runtime, PROVIDER, app, {"grant_type": "password"})
    assert exc.value.code == "invalid_grant_type"


async def test_install_links_are_signed_outside_dev_mode(runtime, settings, slack_app):
    """Nobody can bind their own workspace to another organization's connection name: links are signed with a
    key of their own from Vault (not the admin key), bound to organization, name and who asked, and expire."""
    from pydantic import SecretStr

    from activities.slack.routes import install_link
    from gateway.app import create_app

    keyed = settings.model_copy(update={"admin_api_key": SecretStr("k" * 32), "dev_mode": False})
    signed = install_link(keyed, "org1", "main", requested_by="admin:key:ops")
    assert "k" * 32 not in signed and "&by=admin%3Akey%3Aops&exp=" in signed
    link = urlparse(signed)
    app = create_app(keyed)
    app.state.rt = runtime  # lifespan does not run under ASGITransport
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        assert (await http.get(f"{link.path}?{link.query}")).status_code == 302
        unsigned = await http.get("/slack/install", params={"organization_id": "org1", "name": "main"})
        assert unsigned.status_code == 401
        tampered = await http.get(f"{link.path}?{link.query.replace('org1', 'org2')}")
        assert tampered.status_code == 401
        impostor = await http.get(f"{link.path}?{link.query.replace('admin%3Akey%3Aops', 'admin%3Akey%3Aeve')}")
        assert impostor.status_code == 401
        expired = urlparse(install_link(keyed, "org1", "main", ttl_seconds=-1))
        assert (await http.get(f"{expired.path}?{expired.query}")).status_code == 401
        bearer = await http.get("/slack/install", params={"organization_id": "org1", "name": "main"},
                                headers={"Authorization": "Bearer " + "k" * 32})
        assert bearer.status_code == 302
