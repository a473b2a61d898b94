"""Outlook (Graph) activities against the sandbox: MSAL through the routed HTTP client, rotating refresh tokens,
concurrent refresh, AADSTS re-auth, app-only tokens, etags, transactionId, calendarView, getSchedule, the
per-mailbox budget and concurrency, and Graph's throttling answers."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import msal
import pytest
from temporalio.exceptions import ApplicationError

from activities.calendar.activities import CalendarActivities
from activities.calendar.model import (
    AvailabilityInput,
    CreateEventInput,
    DeleteEventInput,
    EventPatch,
    EventSpec,
    GetEventInput,
    InstancesInput,
    ListEventsInput,
    Participant,
    UpdateEventInput,
)
from activities.outlook import auth as ms_auth
from activities.outlook.settings import OutlookSettings
from core.runtime import Runtime
from tests import calendar_seed as seed
from vault.credentials import OAuth2Credentials

KIND = "OUTLOOK_CALENDAR"


def at(conn: seed.CalConn) -> dict[str, str]:
    """Which organization and calendar provider an activity input acts for."""
    return {"integration_type": KIND, "organization_id": conn.organization_id}


def acts(rt: Runtime) -> CalendarActivities:
    return CalendarActivities(rt)


def spec(**kw) -> EventSpec:
    base = {"title": "Review", "startTime": "2030-03-04T09:00:00", "endTime": "2030-03-04T10:00:00",
            "timezone": "America/Los_Angeles", "reminders": [{"method": "popup", "minutes": 10}]}
    return EventSpec.model_validate({**base, **kw})


def app_error(exc: BaseException) -> dict:
    assert isinstance(exc, ApplicationError), exc
    return exc.details[0]


async def mailbox_events(sandbox, email: str) -> list[dict]:
    return await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/mailboxes/{email}/events")


async def stored_creds(rt: Runtime, c: seed.CalConn) -> OAuth2Credentials:
    creds = await rt.vault.read(rt.vault.connection_path(c.organization_id, "OUTLOOK_CALENDAR", c.name),
                                use_cache=False)
    assert isinstance(creds, OAuth2Credentials)
    return creds


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def entra_requests(sandbox, since: int = 0) -> list[dict]:
    return sandbox.state.recorder.dump("entra", since)


async def test_msal_needs_https_so_its_http_client_is_routed_to_the_sandbox(runtime, sandbox, settings):
    # MSAL refuses a plain-http authority outright: the local fake cannot be used as-is.
    with pytest.raises(ValueError, match="https"):
        msal.ConfidentialClientApplication("x", client_credential="y", authority=f"{sandbox.url}/entra/t")
    c = await seed.outlook_app_connection(runtime, sandbox.url)
    creds = await runtime.vault.read(runtime.vault.connection_path(c.organization_id, "OUTLOOK_CALENDAR", "default"))
    since = sandbox.state.recorder.seq
    token = await ms_auth.app_only_token(runtime, creds)  # type: ignore[arg-type]
    again = await ms_auth.app_only_token(runtime, creds)  # type: ignore[arg-type]
    assert token == again  # MSAL's own cache
    reqs = entra_requests(sandbox, since)
    # MSAL believed it talked to https://login.microsoftonline.com: discovery first, then one token call.
    assert [(q["method"], q["path"]) for q in reqs] == [
        ("GET", f"/entra/{seed.MS_TENANT}/v2.0/.well-known/openid-configuration"),
        ("POST", f"/entra/{seed.MS_TENANT}/oauth2/v2.0/token")]
    assert reqs[1]["body"].count("grant_type=client_credentials") == 1
    assert settings.section(OutlookSettings).entra_authority_host.startswith("https://")


async def test_create_get_patch_delete_with_etags(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url)
    a = acts(runtime)
    res = await a.create_event(CreateEventInput(**at(c), event=spec(
        attendees=["ann@partner.org", {"email": "bob@contoso.com", "optional": True}], location="Room 7",
        description="Agenda"), idempotency_key="k"))
    ev = res.event
    assert res.created and res.notified == ["ann@partner.org", "bob@contoso.com"] and res.notification == "invitation"
    assert ev.start.date_time == datetime(2030, 3, 4, 17, tzinfo=UTC) and ev.time_zone == "America/Los_Angeles"
    assert ev.etag and ev.etag.startswith('W/"') and ev.attendees[1].optional
    post = [q for q in sandbox.state.recorder.dump("graph") if q["method"] == "POST"][-1]
    assert post["body"]["start"] == {"dateTime": "2030-03-04T09:00:00", "timeZone": "Pacific Standard Time"}
    assert post["headers"]["prefer"] == 'outlook.timezone="Pacific Standard Time"' and post["body"]["transactionId"]
    got = await a.get_event(GetEventInput(**at(c), event_id=ev.id,
                                          time_zone="Asia/Kolkata"))
    assert got.writable() == ev.writable()  # the same event, whatever zone Graph answered in
    raw = (await mailbox_events(sandbox, c.email))[0]
    assert raw["start"]["dateTime"] == "2030-03-04T17:00:00.0000000"  # UTC without Prefer, 7 digits, no offset
    upd = await a.update_event(UpdateEventInput(**at(c), event_id=ev.id, etag=ev.etag,
                                                changes=EventPatch(location="Room 9")))
    assert upd.event.location == "Room 9" and upd.event.etag != ev.etag
    assert set(upd.notified) == {"ann@partner.org", "bob@contoso.com"}
    patch = [q for q in sandbox.state.recorder.dump("graph") if q["method"] == "PATCH"][-1]
    assert patch["headers"]["if-match"] == ev.etag and patch["body"] == {"location": {"displayName": "Room 9"}}
    # Reminder-only change: Graph sends no meeting update.
    quiet = await a.update_event(UpdateEventInput(**at(c), event_id=ev.id,
                                                  changes=EventPatch(reminders=[{"minutes": 30}])))
    assert quiet.notified == [] and quiet.notification == "none"
    with pytest.raises(ApplicationError) as info:
        await a.update_event(UpdateEventInput(**at(c), event_id=ev.id, etag=ev.etag,
                                              changes=EventPatch(title="stale")))
    assert info.value.type == "PermanentError" and app_error(info.value)["code"] == "etag_mismatch"
    d1 = await a.delete_event(DeleteEventInput(**at(c), event_id=ev.id))
    d2 = await a.delete_event(DeleteEventInput(**at(c), event_id=ev.id))
    assert d1.deleted and set(d1.notified) == {"ann@partner.org", "bob@contoso.com"}
    assert d2.already_deleted and not d2.deleted
    assert [q["status"] for q in sandbox.state.recorder.dump("graph") if q["method"] == "DELETE"][-2:] == [204, 404]
    sent = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/notifications", params={"event_id": ev.id})
    assert [n["kind"] for n in sent] == ["invitation"] * 2 + ["update"] * 2 + ["cancellation"] * 2


async def test_transaction_id_makes_create_idempotent(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url)
    a = acts(runtime)
    inp = CreateEventInput(**at(c), event=spec(attendees=["x@partner.org"]),
                           idempotency_key="once")
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/graph/fail_after_commit", json={"count": 1})
    with pytest.raises(ApplicationError) as info:
        await a.create_event(inp)
    assert info.value.type == "TemporaryError"
    r1 = await a.create_event(inp)
    r2 = await a.create_event(inp)
    assert r1.event.id == r2.event.id and len(await mailbox_events(sandbox, c.email)) == 1
    sent = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/notifications",
                                   params={"event_id": r1.event.id})
    assert len(sent) == 1


async def test_calendar_view_expands_a_series_across_dst(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url, time_zone="America/Los_Angeles")
    a = acts(runtime)
    res = await a.create_event(CreateEventInput(**at(c), event=spec(
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=3"])))  # DST starts 2030-03-10 in Los Angeles
    master = (await mailbox_events(sandbox, c.email))[0]
    assert master["recurrence"] == {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "monday"},
        "range": {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2030-03-04",
                  "recurrenceTimeZone": "Pacific Standard Time"}}
    assert res.event.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO"]  # back from Graph, same text
    view = await a.list_events(ListEventsInput(**at(c), time_zone="America/Los_Angeles",
                                               time_min="2030-03-01T00:00:00-08:00", time_max="2030-04-01T00:00:00Z"))
    assert [e.start.date_time.strftime("%m-%d %H:%M%z") for e in view.events] == [
        "03-04 09:00-0800", "03-11 09:00-0700", "03-18 09:00-0700"]
    assert all(e.recurring_event_id == res.event.id for e in view.events)
    req = [q for q in sandbox.state.recorder.dump("graph") if q["path"].endswith("/calendarView")][-1]
    assert req["headers"]["prefer"] == 'outlook.timezone="Pacific Standard Time"'
    inst = await a.list_instances(InstancesInput(**at(c), event_id=res.event.id,
                                                 time_min="2030-03-10T00:00:00Z", time_max="2030-04-01T00:00:00Z"))
    assert len(inst.events) == 2 and inst.events[0].original_start is not None
    # Paging: Graph's @odata.nextLink is followed only on our own base URL.
    page = await a.list_events(ListEventsInput(**at(c), max_results=2,
                                               time_min="2030-03-01T00:00:00Z", time_max="2030-04-01T00:00:00Z"))
    assert len(page.events) == 2 and page.next_page_token
    rest = await a.list_events(ListEventsInput(**at(c), page_token=page.next_page_token,
                                               time_min="2030-03-01T00:00:00Z", time_max="2030-04-01T00:00:00Z"))
    assert len(rest.events) == 1 and rest.next_page_token is None
    with pytest.raises(ApplicationError) as info:
        await a.list_events(ListEventsInput(**at(c), page_token="https://evil.example/x",
                                            time_min="2030-03-01T00:00:00Z", time_max="2030-04-01T00:00:00Z"))
    assert app_error(info.value)["code"] == "invalid_page_token"


async def test_get_schedule_uses_each_mailboxs_working_hours_and_zone(runtime, sandbox):
    org = seed.uid("org_")
    la = await seed.outlook_connection(runtime, sandbox.url, org=org, time_zone="America/Los_Angeles")
    london = f"{seed.uid('l')}@contoso.com"
    await seed.mailbox(sandbox.url, london, "Europe/London", working_hours={
        "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"], "startTime": "08:00:00.0000000",
        "endTime": "18:00:00.0000000", "timeZone": {"name": "GMT Standard Time"}})
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/graph/mailboxes/{london}/events", json={
        "subject": "busy", "showAs": "tentative", "start": {"dateTime": "2030-05-06T16:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-05-06T17:00:00", "timeZone": "UTC"}})
    res = await acts(runtime).find_availability(AvailabilityInput(
        integration_type=KIND, organization_id=org, time_zone="America/Los_Angeles", duration_minutes=60,
        window_start="2030-05-06T00:00:00", window_end="2030-05-07T00:00:00",
        participants=[Participant(email=la.email), Participant(email=london),
                      Participant(email="nobody@contoso.com")]))
    by = {p.email: p for p in res.participants}
    assert by[london].working_hours_source == "provider" and by[london].working_hours.time_zone == "Europe/London"
    assert by[london].busy[0].status == "tentative" and "1" in (by[london].availability_view or "")
    assert by["nobody@contoso.com"].error == "ErrorMailRecipientNotFound"
    # LA 08:00-17:00 PDT (15:00-24:00 UTC) ∩ London 08:00-18:00 BST (07:00-17:00 UTC) = 15:00-17:00 UTC,
    # minus London's tentative 16:00-17:00 → 15:00-16:00 UTC = 08:00 PDT.
    assert [s.start for s in res.slots] == [datetime(2030, 5, 6, 15, tzinfo=UTC)]
    req = [q for q in sandbox.state.recorder.dump("graph") if q["path"].endswith("/getSchedule")][-1]
    assert req["body"]["startTime"] == {"dateTime": "2030-05-06T07:00:00", "timeZone": "UTC"}
    with pytest.raises(ApplicationError) as info:
        await acts(runtime).find_availability(AvailabilityInput(
            integration_type=KIND, organization_id=org, window_start="2030-05-06T00:00:00Z",
            window_end="2030-05-07T00:00:00Z",
            participants=[Participant(email=f"p{i}@contoso.com") for i in range(21)]))
    assert app_error(info.value)["code"] == "too_many_participants" and "at most 20" in app_error(info.value)["message"]


async def test_refresh_rotates_the_refresh_token_in_vault(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url, store_expires_in=30)
    a = acts(runtime)
    window = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-01-02T00:00:00Z"}
    await a.list_events(ListEventsInput(**at(c), **window))
    first = await stored_creds(runtime, c)
    assert first.refresh_token.get_secret_value() != c.refresh_token  # rotated and stored
    assert first.access_token.get_secret_value() != c.access_token
    # The old refresh token is spent (the fake enforces one-shot use): only the stored one works.
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/graph/tokens/expire",
                            json={"access_token": first.access_token.get_secret_value()})
    await a.list_events(ListEventsInput(**at(c), **window))
    second = await stored_creds(runtime, c)
    assert second.refresh_token.get_secret_value() not in (c.refresh_token, first.refresh_token.get_secret_value())
    stats = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/entra/stats")
    used = [t["refresh_token_fp"] for t in stats["token_requests"] if t["grant_type"] == "refresh_token"]
    # The second refresh presented the rotated token, never the original one again.
    assert used.count(fingerprint(c.refresh_token)) == 1
    assert used.count(fingerprint(first.refresh_token.get_secret_value())) == 1


async def test_concurrent_callers_refresh_once(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url, store_expires_in=30)
    since = sandbox.state.recorder.seq
    window = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-01-02T00:00:00Z"}
    results = await asyncio.gather(*(acts(runtime).list_events(ListEventsInput(
        **at(c), **window)) for _ in range(8)))
    assert len(results) == 8
    refreshes = [q for q in entra_requests(sandbox, since) if q["method"] == "POST"
                 and "grant_type=refresh_token" in str(q["body"])]
    assert len(refreshes) == 1


@pytest.mark.parametrize("aadsts", [70008, 700082, 50173, 65001])
async def test_aadsts_reauth_errors_mark_the_connection(aadsts, runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url, store_expires_in=30)
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/entra/refresh_tokens/revoke",
                            json={"refresh_token": c.refresh_token, "aadsts": aadsts})
    with pytest.raises(ApplicationError) as info:
        await acts(runtime).create_event(CreateEventInput(**at(c), event=spec()))
    err = app_error(info.value)
    assert info.value.type == "ConfigurationError" and err["code"] == f"AADSTS{aadsts}"
    assert err["details"]["reauth"] is True
    assert runtime.store.get_connection(c.connection_id).status == "needs_reauth"
    note = runtime.store.notifications(c.organization_id)[-1]
    assert note.kind == "reauth_required" and "/oauth/outlook/install" in (note.action_url or "")


async def test_app_only_connection_acts_on_its_mailbox(runtime, sandbox):
    c = await seed.outlook_app_connection(runtime, sandbox.url, time_zone="Europe/Berlin")
    a = acts(runtime)
    since = sandbox.state.recorder.seq
    res = await a.create_event(CreateEventInput(**at(c), event=spec(
        timezone="Europe/Berlin", attendees=["guest@partner.org"])))
    await a.get_event(GetEventInput(**at(c), event_id=res.event.id))
    assert res.event.organizer and res.event.organizer.email == c.email
    paths = {q["path"] for q in sandbox.state.recorder.dump("graph", since)}
    assert f"/graph/v1.0/users/{c.email}/events" in paths
    grants = [q for q in entra_requests(sandbox, since) if q["method"] == "POST"]
    assert len(grants) == 1 and "client_credentials" in str(grants[0]["body"])


async def test_throttling_limits_and_retry_after(runtime, sandbox):
    """Budget 6 per 2 s and 4 concurrent per mailbox at the fake, the same in the limiter: no 429s."""
    await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/graph/limits",
                            json={"budget": 6, "period": 2, "concurrency": 4, "hold_ms": 60})
    try:
        c = await seed.outlook_connection(runtime, sandbox.url, settings={"quota_per_10_minutes": 6,
                                                                          "quota_period_seconds": 2})
        window = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-01-02T00:00:00Z"}
        since = sandbox.state.recorder.seq
        await asyncio.gather(*(acts(runtime).list_events(ListEventsInput(**at(c),
                                                                         **window)) for _ in range(14)))
        mine = [q for q in sandbox.state.recorder.dump("graph", since) if q["path"].endswith("/calendarView")]
        assert len(mine) == 14 and {q["status"] for q in mine} == {200}
        stats = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/stats")
        assert max(v for k, v in stats["max_inflight"].items() if c.email in k) <= 4
        # Control: a limiter that allows 10 in flight meets Graph's MailboxConcurrency answer.
        await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/graph/limits",
                                json={"concurrency": 4, "hold_ms": 150, "retry_after": "2.128"})
        loose = await seed.outlook_connection(runtime, sandbox.url, settings={"concurrency": 10})
        outcomes = await asyncio.gather(*(acts(runtime).list_events(ListEventsInput(
            **at(loose), **window)) for _ in range(10)), return_exceptions=True)
        throttled = [o for o in outcomes if isinstance(o, ApplicationError)]
        assert throttled and all(o.type == "TemporaryError" for o in throttled)
        err = app_error(throttled[0])
        assert err["code"] == "ApplicationThrottled" and err["retry_after"] == 2.128
        assert throttled[0].next_retry_delay == timedelta(seconds=2.128)
        # Without Retry-After, the delay is our own jittered backoff. (Another mailbox: the limiter now paces
        # `loose`'s after its throttled answers, so it would not meet the concurrency limit again.)
        await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/graph/limits",
                                json={"concurrency": 4, "hold_ms": 150, "retry_after": None})
        looser = await seed.outlook_connection(runtime, sandbox.url, settings={"concurrency": 10})
        outcomes = await asyncio.gather(*(acts(runtime).list_events(ListEventsInput(
            **at(looser), **window)) for _ in range(10)), return_exceptions=True)
        throttled = [o for o in outcomes if isinstance(o, ApplicationError)]
        assert throttled and app_error(throttled[0])["retry_after"] is None
    finally:
        await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/graph/limits", json={})


async def test_what_graph_cannot_express_is_refused_before_any_call(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url)
    a = acts(runtime)
    since = sandbox.state.recorder.seq
    cases = [
        (spec(reminders=[{"method": "email", "minutes": 30}]), {}, "reminders"),
        (spec(recurrence=["RRULE:FREQ=DAILY;BYHOUR=9,15"]), {}, "recurrence"),
        (spec(recurrence=["RRULE:FREQ=WEEKLY", "EXDATE;TZID=America/Los_Angeles:20300311T090000"]), {},
         "recurrence"),
        (spec(attendees=["a@partner.org"]), {"send_updates": "none"}, "send_updates"),
        (spec(startTime="2030-11-03T01:30:00-08:00", endTime="2030-11-03T02:30:00-08:00"), {}, "startTime"),
    ]
    for event, extra, field in cases:
        with pytest.raises(ApplicationError) as info:
            await a.create_event(CreateEventInput(**at(c), event=event, **extra))
        err = app_error(info.value)
        assert info.value.type == "PermanentError" and err["code"] == "unsupported_by_provider", field
        assert err["details"]["field"] == field
    assert [q for q in sandbox.state.recorder.dump("graph", since) if q["method"] == "POST"] == []


async def test_mailbox_and_organizer_problems(runtime, sandbox):
    c = await seed.outlook_connection(runtime, sandbox.url)
    a = acts(runtime)
    with pytest.raises(ApplicationError) as info:
        await a.create_event(CreateEventInput(**at(c),
                                              event=spec(organizer="someone.else@contoso.com")))
    assert app_error(info.value)["code"] == "organizer_mismatch"
    box = sandbox.state.providers["graph"].state.mailboxes[c.email.lower()]
    box["rest_enabled"] = False
    try:
        with pytest.raises(ApplicationError) as info:
            await a.create_event(CreateEventInput(**at(c), event=spec()))
        assert info.value.type == "ConfigurationError"
        assert app_error(info.value)["code"] == "MailboxNotEnabledForRESTAPI"
    finally:
        box["rest_enabled"] = True
