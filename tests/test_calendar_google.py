"""Google Calendar activities against the sandbox: events, etags, idempotency, notifications, freeBusy,
token refresh (google-auth), service accounts, quotas and every error class."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

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
from activities.google_calendar.activities import GoogleCalendarActivities
from activities.google_calendar.models import SyncInput
from activities.google_calendar.translate import event_id_for
from core.runtime import Runtime
from tests import calendar_seed as seed

KIND = "GOOGLE_CALENDAR"


def at(conn: seed.CalConn) -> dict[str, str]:
    """Which organization and calendar provider an activity input acts for."""
    return {"integration_type": KIND, "organization_id": conn.organization_id}


def acts(rt: Runtime) -> CalendarActivities:
    return CalendarActivities(rt)


def spec(**kw) -> EventSpec:
    base = {"title": "Planning", "startTime": "2030-03-04T09:00:00", "endTime": "2030-03-04T10:00:00",
            "timezone": "America/New_York"}
    return EventSpec.model_validate({**base, **kw})


def app_error(exc: BaseException) -> dict:
    assert isinstance(exc, ApplicationError), exc
    return exc.details[0]


async def events_of(sandbox, email: str) -> list[dict]:
    return await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/calendars/{email}/events")


async def notifications(sandbox, event_id: str) -> list[dict]:
    return await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/notifications",
                                   params={"event_id": event_id})


async def test_create_get_patch_delete_round_trip(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url)
    a = acts(runtime)
    res = await a.create_event(CreateEventInput(
        **at(c), event=spec(attendees=["ann@partner.org", {"email": "bob@example.com",
                                                                                      "optional": True}],
                                                      description="Agenda", location="Room 1",
                                                      reminders=[{"method": "popup", "minutes": 10}]),
        idempotency_key="k1"))
    ev = res.event
    key = f"{c.organization_id}:{c.connection_id}:google_calendar.create_event:k1"
    assert res.created and ev.id == event_id_for(key)
    assert ev.start.date_time == datetime(2030, 3, 4, 14, tzinfo=UTC) and ev.time_zone == "America/New_York"
    assert [a.email for a in ev.attendees] == ["ann@partner.org", "bob@example.com"] and ev.attendees[1].optional
    assert ev.reminders.overrides[0].minutes == 10 and not ev.reminders.use_default
    # What Google received: RFC 3339 with the offset AND the IANA zone.
    stored = (await events_of(sandbox, c.email))[0]
    assert stored["start"] == {"dateTime": "2030-03-04T09:00:00-05:00", "timeZone": "America/New_York"}
    got = await a.get_event(GetEventInput(**at(c), event_id=ev.id))
    assert got.writable() == ev.writable() and got.etag == ev.etag
    upd = await a.update_event(UpdateEventInput(**at(c), event_id=ev.id,
                                                changes=EventPatch(title="Planning (moved)",
                                                                   startTime="2030-03-05T11:00:00",
                                                                   endTime="2030-03-05T12:00:00"),
                                                etag=ev.etag))
    assert upd.event.title == "Planning (moved)" and upd.event.etag != ev.etag
    assert upd.notification == "update" and set(upd.notified) == {"ann@partner.org", "bob@example.com"}
    d1 = await a.delete_event(DeleteEventInput(**at(c), event_id=ev.id))
    assert d1.deleted and not d1.already_deleted and set(d1.notified) == {"ann@partner.org", "bob@example.com"}
    # Deleting twice is a success: Google answers 410 deleted the second time.
    d2 = await a.delete_event(DeleteEventInput(**at(c), event_id=ev.id))
    assert not d2.deleted and d2.already_deleted and d2.notified == []
    statuses = [q["status"] for q in sandbox.state.recorder.dump("google")
                if q["method"] == "DELETE" and ev.id in q["path"]]
    assert statuses == [204, 410]
    # An id that never existed: 404, also a successful delete.
    d3 = await a.delete_event(DeleteEventInput(**at(c), event_id="neverexisted00"))
    assert d3.already_deleted


async def test_stale_etag_is_a_clear_permanent_error(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url)
    a = acts(runtime)
    ev = (await a.create_event(CreateEventInput(**at(c), event=spec()))).event
    await a.update_event(UpdateEventInput(**at(c), event_id=ev.id,
                                          changes=EventPatch(title="first change")))
    with pytest.raises(ApplicationError) as info:
        await a.update_event(UpdateEventInput(**at(c), event_id=ev.id,
                                              changes=EventPatch(title="second change"), etag=ev.etag))
    err = app_error(info.value)
    assert info.value.type == "PermanentError" and info.value.non_retryable
    assert err["code"] == "etag_mismatch" and "changed since its etag" in err["message"]
    got = await a.get_event(GetEventInput(**at(c), event_id=ev.id))
    assert got.title == "first change"


async def test_idempotent_create_under_retries(runtime, sandbox):
    """The same key twice → one event (409 duplicate → the existing one); a lost answer → the retry finds it."""
    c = await seed.google_connection(runtime, sandbox.url)
    a = acts(runtime)
    inp = CreateEventInput(**at(c), event=spec(attendees=["x@partner.org"]),
                           idempotency_key="retry-me")
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/fail_after_commit", json={"count": 1})
    with pytest.raises(ApplicationError) as info:
        await a.create_event(inp)  # Google created it, but the answer was a 503
    assert info.value.type == "TemporaryError"
    second = await a.create_event(inp)  # Temporal's retry
    third = await a.create_event(inp)
    assert not second.created and not third.created and second.event.id == third.event.id
    assert len(await events_of(sandbox, c.email)) == 1
    assert len(await notifications(sandbox, second.event.id)) == 1  # invited once
    codes = [q["status"] for q in sandbox.state.recorder.dump("google")
             if q["method"] == "POST" and isinstance(q["body"], dict)
             and q["body"].get("id") == second.event.id]
    assert codes == [503, 409, 409]


async def test_send_updates_notifications_match_what_google_sent(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, settings={"google_domains": ["example.com"]})
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/google_domains", json={"domains": ["example.com"]})
    a = acts(runtime)
    people = ["in@example.com", "out@partner.org", {"email": "room1@resource.example.com", "resource": True}]
    for mode, expected in (("all", {"in@example.com", "out@partner.org"}), ("externalOnly", {"out@partner.org"}),
                           ("none", set())):
        res = await a.create_event(CreateEventInput(**at(c), send_updates=mode,
                                                    event=spec(attendees=people)))
        sent = {n["recipient"] for n in await notifications(sandbox, res.event.id)}
        assert set(res.notified) == expected == sent, mode
    req = [q for q in sandbox.state.recorder.dump("google") if q["method"] == "POST" and "events" in q["path"]][-1]
    assert req["query"]["sendUpdates"] == "none"


async def test_all_day_multi_day_event_has_exclusive_end(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, time_zone="Europe/Berlin")
    a = acts(runtime)
    res = await a.create_event(CreateEventInput(**at(c), event=EventSpec(
        title="Offsite", startTime="2030-06-01", endTime="2030-06-03", isAllDay=True, timezone="Europe/Berlin")))
    stored = (await events_of(sandbox, c.email))[0]
    assert stored["start"] == {"date": "2030-06-01", "timeZone": "Europe/Berlin"}
    assert stored["end"] == {"date": "2030-06-04", "timeZone": "Europe/Berlin"}
    assert res.event.all_day and str(res.event.end.date) == "2030-06-04"
    # Listing June 3 (Berlin) finds it; listing from June 4 00:00 Berlin does not (exclusive bounds).
    lst = await a.list_events(ListEventsInput(**at(c), time_min="2030-06-03T00:00:00+02:00",
                                              time_max="2030-06-03T23:00:00+02:00"))
    assert [e.title for e in lst.events] == ["Offsite"]
    lst = await a.list_events(ListEventsInput(**at(c), time_min="2030-06-04T00:00:00+02:00",
                                              time_max="2030-06-05T00:00:00+02:00"))
    assert lst.events == []


async def test_weekly_series_across_dst_expands_at_the_same_wall_time(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, time_zone="America/New_York")
    a = acts(runtime)
    res = await a.create_event(CreateEventInput(**at(c), event=spec(
        startTime="2030-03-04T09:00:00", endTime="2030-03-04T09:30:00",
        recurrence=["RRULE:FREQ=WEEKLY;UNTIL=20300318"])))  # DST starts 2030-03-10 in New York
    stored = (await events_of(sandbox, c.email))[0]
    assert stored["recurrence"] == ["RRULE:FREQ=WEEKLY;UNTIL=20300319T035959Z;BYDAY=MO"]
    assert stored["start"]["timeZone"] == "America/New_York"
    window = {"time_min": "2030-03-01T00:00:00Z", "time_max": "2030-04-01T00:00:00Z"}
    lst = await a.list_events(ListEventsInput(**at(c), **window))
    starts = [e.start.date_time for e in lst.events]
    assert [s.strftime("%H:%M%z") for s in starts] == ["09:00-0500", "09:00-0400", "09:00-0400"]
    assert all(e.recurring_event_id == res.event.id for e in lst.events)
    inst = await a.list_instances(InstancesInput(**at(c), event_id=res.event.id, **window))
    assert [e.id for e in inst.events] == [e.id for e in lst.events]
    assert inst.events[1].original_start is not None


async def test_spring_forward_gap_rejected_or_shifted(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url)
    a = acts(runtime)
    gap = spec(startTime="2030-03-10T02:30:00", endTime="2030-03-10T03:30:00")
    with pytest.raises(ApplicationError) as info:
        await a.create_event(CreateEventInput(**at(c), event=gap))
    err = app_error(info.value)
    assert err["code"] == "dst_gap" and "does not exist in America/New_York" in err["message"]
    assert await events_of(sandbox, c.email) == []  # refused before any call
    res = await a.create_event(CreateEventInput(**at(c), event=gap, dst_gap_policy="shift"))
    # Shifted forward by the gap, keeping the hour the caller asked for.
    assert res.event.start.date_time.isoformat() == "2030-03-10T03:30:00-04:00"
    assert res.event.end.date_time.isoformat() == "2030-03-10T04:30:00-04:00"


async def test_free_busy_and_slots_across_time_zones(runtime, sandbox):
    org = seed.uid("org_")
    boss = await seed.google_connection(runtime, sandbox.url, org=org, time_zone="America/New_York")
    tokyo, berlin = f"{seed.uid('t')}@example.com", f"{seed.uid('b')}@example.com"
    await seed.google_user(sandbox.url, tokyo, "Asia/Tokyo")
    await seed.google_user(sandbox.url, berlin, "Europe/Berlin")
    # Berlin is busy 09:00-10:00 New York time on the day.
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/calendars/{berlin}/events", json={
        "summary": "busy", "start": {"dateTime": "2030-05-06T15:00:00+02:00"},
        "end": {"dateTime": "2030-05-06T16:00:00+02:00"}})
    res = await acts(runtime).find_availability(AvailabilityInput(
        integration_type=KIND, organization_id=org, time_zone="America/New_York", duration_minutes=30,
        window_start="2030-05-06T00:00:00", window_end="2030-05-08T00:00:00",
        participants=[Participant(email=boss.email, time_zone="America/New_York"),
                      Participant(email=berlin, time_zone="Europe/Berlin"),
                      Participant(email=tokyo, time_zone="Asia/Tokyo", required=False),
                      Participant(email="ghost@nowhere.example", required=True)]))
    by = {p.email: p for p in res.participants}
    assert by["ghost@nowhere.example"].error == "notFound"
    assert [(b.start.isoformat(), b.end.isoformat()) for b in by[berlin].busy] == [
        ("2030-05-06T13:00:00+00:00", "2030-05-06T14:00:00+00:00")]
    # New York 09:00-17:00 ∩ Berlin 09:00-17:00 (03:00-11:00 NY) = 09:00-11:00 NY, minus Berlin's 09:00-10:00.
    first = res.slots[0]
    assert first.start == datetime(2030, 5, 6, 14, tzinfo=UTC) and first.end - first.start == timedelta(minutes=30)
    assert first.start.utcoffset() == timedelta(hours=-4)  # shown in the organizer's zone
    assert all(datetime(2030, 5, 6, 14, tzinfo=UTC) <= s.start and s.end <= datetime(2030, 5, 6, 15, tzinfo=UTC)
               for s in res.slots if s.start.date() == first.start.date())
    # Tokyo's working day (09:00-17:00 JST = 20:00-04:00 New York) does not meet it: optional, so not a blocker.
    assert res.slots[0].optional_free == []
    assert by[berlin].working_hours_source == "time_zone" and by[berlin].working_hours.time_zone == "Europe/Berlin"
    req = [q for q in sandbox.state.recorder.dump("google") if q["path"].endswith("/freeBusy")][-1]
    assert req["body"]["timeMin"] == "2030-05-06T04:00:00Z"


async def test_user_token_is_refreshed_with_google_auth(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, expires_in=3599, store_expires_in=60)
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/tokens/expire",
                            json={"access_token": c.access_token})
    before = runtime.refresher.refresh_count
    res = await acts(runtime).create_event(CreateEventInput(**at(c), event=spec()))
    assert res.created and runtime.refresher.refresh_count == before + 1
    token_reqs = [q for q in sandbox.state.recorder.dump("google") if q["path"] == "/google/token"]
    assert "grant_type=refresh_token" in token_reqs[-1]["body"]
    creds = await runtime.vault.read(runtime.vault.connection_path(c.organization_id, "GOOGLE_CALENDAR", "default"),
                                     use_cache=False)
    assert creds.access_token.get_secret_value() != c.access_token
    assert creds.refresh_token.get_secret_value() == c.refresh_token  # Google does not rotate


async def test_expired_access_token_401_refreshes_once_and_retries(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url)
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/tokens/expire",
                            json={"access_token": c.access_token})
    res = await acts(runtime).list_events(ListEventsInput(
        **at(c), time_min="2030-01-01T00:00:00Z", time_max="2030-01-02T00:00:00Z"))
    assert res.events == []
    statuses = [q["status"] for q in sandbox.state.recorder.dump("google") if "/primary/events" in q["path"]][-2:]
    assert statuses == [401, 200]


async def test_invalid_grant_marks_needs_reauth_and_notifies_admins(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, store_expires_in=10)
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/tokens/revoke",
                            json={"refresh_token": c.refresh_token})
    with pytest.raises(ApplicationError) as info:
        await acts(runtime).create_event(CreateEventInput(**at(c), event=spec()))
    err = app_error(info.value)
    assert info.value.type == "ConfigurationError" and err["code"] == "invalid_grant"
    assert err["details"]["reauth"] is True and "Token has been expired or revoked" in err["message"]
    conn = runtime.store.get_connection(c.connection_id)
    assert conn.status == "needs_reauth"
    note = runtime.store.notifications(c.organization_id)[-1]
    assert note.kind == "reauth_required" and "/oauth/google_calendar/install" in (note.action_url or "")
    assert c.refresh_token not in note.message


async def test_token_endpoint_trouble_is_temporary_and_not_retried_inside(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, store_expires_in=10)
    before = len((await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/stats"))["token_grants"])
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/token_faults", json={"count": 1, "status": 503})
    with pytest.raises(ApplicationError) as info:
        await acts(runtime).create_event(CreateEventInput(**at(c), event=spec()))
    assert info.value.type == "TemporaryError" and app_error(info.value)["code"] == "token_endpoint_unavailable"
    after = len((await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/stats"))["token_grants"])
    assert after == before + 1  # google-auth's own retry loop is off: Temporal owns retries
    res = await acts(runtime).create_event(CreateEventInput(**at(c), event=spec()))
    assert res.created


async def test_service_account_with_domain_wide_delegation(runtime, sandbox):
    user = f"{seed.uid('dwd')}@example.com"
    other = f"{seed.uid('dwd')}@example.com"
    await seed.google_user(sandbox.url, user)
    await seed.google_user(sandbox.url, other)
    c = await seed.google_sa_connection(runtime, sandbox.url, subject=user)
    a = acts(runtime)
    res = await a.create_event(CreateEventInput(**at(c), event=spec()))
    assert res.created and len(await events_of(sandbox, user)) == 1
    # The organizer picks the impersonated user.
    res2 = await a.create_event(CreateEventInput(**at(c), event=spec(organizer=other)))
    assert res2.created and len(await events_of(sandbox, other)) == 1
    grants = (await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/stats"))["token_grants"]
    assert grants.count("urn:ietf:params:oauth:grant-type:jwt-bearer") >= 2
    # Without delegation for these scopes Google answers unauthorized_client: configuration, no re-consent.
    bad = await seed.google_sa_connection(runtime, sandbox.url, subject=user, delegation=False)
    with pytest.raises(ApplicationError) as info:
        await a.create_event(CreateEventInput(**at(bad), event=spec()))
    err = app_error(info.value)
    assert info.value.type == "ConfigurationError" and err["code"] == "unauthorized_client"
    assert "reauth" not in err.get("details", {})


async def test_quota_limiter_prevents_throttling(runtime, sandbox):
    """The sandbox allows 8 requests per 2 s per user; the connection's limiter says the same: no 403s."""
    c = await seed.google_connection(runtime, sandbox.url, settings={"quota_per_user": 8, "quota_period_seconds": 2})
    await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/google/quota", json={"per_user": 8, "period": 2})
    try:
        a = acts(runtime)
        window = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-01-02T00:00:00Z"}
        since = sandbox.state.recorder.seq
        results = await asyncio.gather(*(a.list_events(ListEventsInput(**at(c), **window))
                                         for _ in range(20)))
        assert len(results) == 20
        mine = [q for q in sandbox.state.recorder.dump("google", since) if "/primary/events" in q["path"]]
        assert len(mine) == 20 and {q["status"] for q in mine} == {200}
        # Control: with the limiter told a bigger budget than Google grants, Google throttles.
        loose = await seed.google_connection(runtime, sandbox.url, settings={"quota_per_user": 1000})
        outcomes = await asyncio.gather(*(a.list_events(ListEventsInput(**at(loose),
                                                                        **window)) for _ in range(12)),
                                        return_exceptions=True)
        throttled = [o for o in outcomes if isinstance(o, ApplicationError)]
        assert throttled and all(o.type == "TemporaryError" and app_error(o)["code"] == "userRateLimitExceeded"
                                 for o in throttled)
    finally:
        await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/google/quota", json={})


async def test_usage_limits_and_not_found(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, settings={"not_found_attempts": 1})
    a = acts(runtime)
    with pytest.raises(ApplicationError) as info:
        await a.get_event(GetEventInput(**at(c), event_id="missing000"))
    assert info.value.type == "PermanentError" and app_error(info.value)["code"] == "notFound"
    patient = await seed.google_connection(runtime, sandbox.url, settings={"not_found_attempts": 3})
    with pytest.raises(ApplicationError) as info:
        await a.get_event(GetEventInput(**at(patient), event_id="missing000"))
    # Outside an activity there is no attempt count: the last attempt's view applies.
    assert info.value.type == "PermanentError"
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/quota_exceeded", json={"email": c.email})
    with pytest.raises(ApplicationError) as info:
        await a.create_event(CreateEventInput(**at(c), event=spec()))
    err = app_error(info.value)
    assert info.value.type == "PermanentError" and err["code"] == "quotaExceeded" and "usage limits" in err["message"]


async def test_sync_token_expiry_restarts_a_full_sync(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url)
    a = acts(runtime)
    first = await a.create_event(CreateEventInput(**at(c), event=spec()))
    full = await GoogleCalendarActivities(runtime).sync_events(SyncInput(organization_id=c.organization_id))
    assert full.full_sync and [e.id for e in full.events] == [first.event.id] and full.next_sync_token
    await a.delete_event(DeleteEventInput(**at(c), event_id=first.event.id))
    sync = GoogleCalendarActivities(runtime).sync_events
    inc = await sync(SyncInput(organization_id=c.organization_id, sync_token=full.next_sync_token))
    assert not inc.full_sync and inc.deleted_ids == [first.event.id]
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/calendars/{c.email}/sync/invalidate")
    again = await sync(SyncInput(organization_id=c.organization_id, sync_token=inc.next_sync_token))
    assert again.full_sync
    gone = [q["status"] for q in sandbox.state.recorder.dump("google") if q["query"].get("syncToken")]
    assert 410 in gone


async def test_bad_input_is_refused_before_any_call(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url)
    a = acts(runtime)
    since = sandbox.state.recorder.seq
    cases = [
        (spec(timezone="Mars/Olympus"), "unknown_time_zone"),
        (spec(endTime="2030-03-04T08:00:00"), "invalid_time_range"),
        (spec(startTime="2030-03-04"), "invalid_time"),
        (spec(title="Hi {name}", variables={"other": 1}), "missing_variable"),
        (spec(recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TU"]), "invalid_recurrence"),
        (spec(attendees=["a@x.org", "A@x.org"]), "duplicate_attendee"),
    ]
    for event, code in cases:
        with pytest.raises(ApplicationError) as info:
            await a.create_event(CreateEventInput(**at(c), event=event))
        assert info.value.type == "PermanentError" and app_error(info.value)["code"] == code, code
    assert [q for q in sandbox.state.recorder.dump("google", since) if "/calendar/" in q["path"]] == []


async def test_concurrent_callers_refresh_once(runtime, sandbox):
    c = await seed.google_connection(runtime, sandbox.url, store_expires_in=10)
    since = sandbox.state.recorder.seq
    window = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-01-02T00:00:00Z"}
    done = await asyncio.gather(*(acts(runtime).list_events(ListEventsInput(**at(c),
                                                                            **window)) for _ in range(8)))
    assert len(done) == 8
    grants = [q for q in sandbox.state.recorder.dump("google", since) if q["path"] == "/google/token"]
    assert len(grants) == 1 and "grant_type=refresh_token" in grants[0]["body"]
