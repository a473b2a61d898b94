"""OAuth connect flows in the gateway (Google and Microsoft): authorization code with PKCE and a one-shot
state, tokens into Vault, a working connection; replayed states, wrong verifiers and unsigned links refused."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from activities.calendar.activities import CalendarActivities
from activities.calendar.connect import pkce_pair
from activities.calendar.model import ListEventsInput
from activities.google_calendar.settings import GoogleCalendarSettings
from activities.outlook.settings import OutlookSettings
from core.links import connect_link, link_allowed
from core.settings import Settings
from tests import calendar_seed as seed
from vault.credentials import OAuth2Credentials

WINDOW = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-01-02T00:00:00Z"}


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_google_connect_flow(runtime, sandbox, gateway, settings):
    await seed.google_app(runtime, sandbox.url, gateway)
    email, org = f"{seed.uid('oa')}@example.com", seed.uid("org_")
    await seed.google_user(sandbox.url, email, "Europe/Paris")
    async with httpx.AsyncClient() as http:
        start = await http.get(f"{gateway}/oauth/google_calendar/install",
                               params={"organization_id": org, "name": "team", "login_hint": email})
        assert start.status_code == 302
        location = start.headers["location"]
        q = query(location)
        assert location.startswith(settings.section(GoogleCalendarSettings).authorize_url)
        assert q["client_id"] == seed.google_client_id() and q["code_challenge_method"] == "S256"
        assert q["access_type"] == "offline" and q["redirect_uri"] == f"{gateway}/oauth/google_calendar/callback"
        assert "calendar.events" in q["scope"]
        # The browser at Google's consent page (the sandbox's authorize endpoint).
        consent = await http.get(f"{sandbox.url}/google/authorize?{urlencode(q)}")
        assert consent.status_code == 302 and consent.headers["location"].startswith(q["redirect_uri"])
        done = await http.get(consent.headers["location"])
        assert done.status_code == 200 and "Calendar connected" in done.text and email in done.text
        replay = await http.get(consent.headers["location"])
        assert replay.status_code == 400 and "expired" in replay.text
    conn = runtime.store.find_connection(org, "GOOGLE_CALENDAR", "team")
    assert conn.settings["user"] == email and conn.settings["time_zone"] == "Europe/Paris"
    creds = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    assert isinstance(creds, OAuth2Credentials) and creds.refresh_token and creds.account["email"] == email
    assert creds.access_token.get_secret_value() not in str(conn.settings)
    listed = await CalendarActivities(runtime).list_events(ListEventsInput(
        integration_type="GOOGLE_CALENDAR", organization_id=org,
                                                                                 connection="team", **WINDOW))
    assert listed.events == []
    token_posts = [r for r in sandbox.state.recorder.dump("google") if r["path"] == "/google/token"
                   and "authorization_code" in str(r["body"])]
    assert "code_verifier=" in str(token_posts[-1]["body"])


async def test_google_flow_rejects_a_wrong_verifier(runtime, sandbox, gateway):
    await seed.google_app(runtime, sandbox.url, gateway)
    email = f"{seed.uid('oa')}@example.com"
    await seed.google_user(sandbox.url, email)
    async with httpx.AsyncClient() as http:
        start = await http.get(f"{gateway}/oauth/google_calendar/install",
                               params={"organization_id": seed.uid("org_"), "login_hint": email})
        q = query(start.headers["location"])
        # Someone else's challenge: the code can only be redeemed with that other verifier.
        q["code_challenge"] = pkce_pair("not-our-secret", q["state"])[1]
        consent = await http.get(f"{sandbox.url}/google/authorize?{urlencode(q)}")
        done = await http.get(consent.headers["location"])
        assert done.status_code == 400 and "Not connected" in done.text and "invalid_grant" in done.text
        unknown = await http.get(f"{gateway}/oauth/google_calendar/callback", params={"state": "forged",
                                                                                      "code": "x"})
        assert unknown.status_code == 400
        bad = await http.get(f"{gateway}/oauth/google_calendar/install", params={"organization_id": "a/b"})
        assert bad.status_code == 400


async def test_microsoft_connect_flow(runtime, sandbox, gateway, settings):
    await seed.microsoft_app(runtime, sandbox.url, gateway)
    email, org = f"{seed.uid('oa')}@contoso.com", seed.uid("org_")
    await seed.mailbox(sandbox.url, email, "Europe/Berlin")
    async with httpx.AsyncClient() as http:
        start = await http.get(f"{gateway}/oauth/outlook/install", params={
            "organization_id": org, "login_hint": email, "tenant": seed.MS_TENANT})
        assert start.status_code == 302
        location = start.headers["location"]
        q = query(location)
        route = settings.section(OutlookSettings).entra_http_route
        assert location.startswith(f"{route}/{seed.MS_TENANT}/oauth2/v2.0/authorize")
        assert "offline_access" in q["scope"] and "Calendars.ReadWrite" in q["scope"]
        assert q["code_challenge_method"] == "S256"
        consent = await http.get(location)
        assert consent.status_code == 302
        done = await http.get(consent.headers["location"])
        assert done.status_code == 200 and "Calendar connected" in done.text, done.text
    conn = runtime.store.find_connection(org, "OUTLOOK_CALENDAR", "default")
    assert conn.settings == {"tenant": seed.MS_TENANT, "mailbox": "me", "user": email}
    creds = await runtime.vault.read(runtime.credentials_path(conn), use_cache=False)
    assert isinstance(creds, OAuth2Credentials) and creds.refresh_token
    assert "offline_access" not in creds.scopes and "Calendars.ReadWrite" in creds.scopes
    listed = await CalendarActivities(runtime).list_events(ListEventsInput(
        integration_type="OUTLOOK_CALENDAR", organization_id=org, **WINDOW))
    assert listed.events == []
    grants = [r for r in sandbox.state.recorder.dump("entra") if r["method"] == "POST"
              and "authorization_code" in str(r["body"])]
    assert "code_verifier=" in str(grants[-1]["body"])


def test_connect_links_are_signed(settings: Settings) -> None:
    settings = settings.model_copy(update={"admin_api_key": SecretStr("k" * 32), "dev_mode": False,
                                           "gateway_public_url": "https://gw.example"})

    outlook, google = "/oauth/outlook/install", "/oauth/google_calendar/install"

    def allowed(url: str, path: str, org: str, auth: str | None = None) -> bool:
        query = dict(parse_qsl(urlsplit(url).query))
        return link_allowed(settings, path, org, "default", query, auth)

    link = connect_link(settings, outlook, "org1", "default")
    assert allowed(link, outlook, "org1")
    assert not allowed(link, google, "org1")  # bound to its provider's route
    assert not allowed(link, outlook, "org2")
    assert not allowed("https://gw.example/oauth/outlook/install?organization_id=org1", outlook, "org1")
    assert allowed("https://gw.example/x", outlook, "org1", auth="Bearer " + "k" * 32)
    expired = connect_link(settings, outlook, "org1", "default", ttl_seconds=-1)
    assert not allowed(expired, outlook, "org1")
