"""Calendar workflows end to end (real Temporal, real OpenBao, the sandbox): CalendarAction create with each
conflict policy, ScheduleMeeting across time zones on both providers, updates and cancellations with the
notifications they caused, and idempotent creation when Temporal retries after a lost answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.calendar.model import (
    CalendarActionInput,
    CancelCalendarEventInput,
    CancelCalendarEventResult,
    CreateCalendarEventResult,
    EventPatch,
    MeetingAttendee,
    ScheduleMeetingInput,
    ScheduleMeetingResult,
    UpdateCalendarEventInput,
    UpdateCalendarEventResult,
)
from tests import calendar_seed as seed

PROVIDERS = ["GOOGLE_CALENDAR", "OUTLOOK_CALENDAR"]


async def run(client: Client, task_queue: str, name: str, inp, result_type):
    return await client.execute_workflow(name, inp, id=f"cal-{uuid.uuid4().hex}", task_queue=task_queue,
                                         result_type=result_type)


async def connect(kind: str, runtime, sandbox, **kw) -> seed.CalConn:
    if kind == "GOOGLE_CALENDAR":
        return await seed.google_connection(runtime, sandbox.url, **kw)
    return await seed.outlook_connection(runtime, sandbox.url, **kw)


async def add_person(kind: str, sandbox, email: str, tz: str) -> None:
    if kind == "GOOGLE_CALENDAR":
        await seed.google_user(sandbox.url, email, tz)
    else:
        await seed.mailbox(sandbox.url, email, tz, working_hours={
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "09:00:00.0000000", "endTime": "17:00:00.0000000", "timeZone": {"name": tz}})


async def busy(kind: str, sandbox, email: str, start: str, end: str) -> None:
    """A busy block (UTC instants) in someone's calendar, seeded straight into the fake."""
    if kind == "GOOGLE_CALENDAR":
        await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/calendars/{email}/events", json={
            "summary": "busy", "start": {"dateTime": start}, "end": {"dateTime": end}})
    else:
        await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/graph/mailboxes/{email}/events", json={
            "subject": "busy", "start": {"dateTime": start.removesuffix("Z"), "timeZone": "UTC"},
            "end": {"dateTime": end.removesuffix("Z"), "timeZone": "UTC"}})


async def sent(kind: str, sandbox, event_id: str) -> list[dict]:
    fake = "google" if kind == "GOOGLE_CALENDAR" else "graph"
    return await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/{fake}/notifications", params={"event_id": event_id})


async def stored_events(kind: str, sandbox, email: str) -> list[dict]:
    if kind == "GOOGLE_CALENDAR":
        return await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/calendars/{email}/events")
    return await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/mailboxes/{email}/events")


def failure(err: WorkflowFailureError) -> ApplicationError:
    cause = err.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    assert isinstance(cause, ApplicationError)
    return cause


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_conflict_policies(kind, client, worker, runtime, sandbox, task_queue):
    org = seed.uid("org_")
    c = await connect(kind, runtime, sandbox, org=org, time_zone="America/New_York")
    colleague = f"{seed.uid('c')}@example.com"
    await add_person(kind, sandbox, colleague, "America/New_York")
    # The colleague is busy 10:00-11:00 New York on 2030-05-06 (a Monday).
    await busy(kind, sandbox, colleague, "2030-05-06T14:00:00Z", "2030-05-06T15:00:00Z")
    base = dict(organization_id=org, integration_type=kind, title="Design review", startTime="2030-05-06T10:30:00",
                endTime="2030-05-06T11:00:00", timezone="America/New_York",
                attendees=[colleague, {"email": "opt@partner.org", "optional": True}])
    with pytest.raises(WorkflowFailureError) as info:
        await run(client, task_queue, "CreateCalendarEvent", CalendarActionInput(**base, conflict_policy="fail"),
                  CreateCalendarEventResult)
    err = failure(info.value)
    assert err.type == "PermanentError" and err.non_retryable and colleague in err.message
    assert err.details[0]["code"] == "calendar_conflict"
    assert await stored_events(kind, sandbox, c.email) == []
    moved = await run(client, task_queue, "CreateCalendarEvent",
                      CalendarActionInput(**base, conflict_policy="next_free_slot"), CreateCalendarEventResult)
    assert moved.decision == "moved" and moved.conflicts[0].email == colleague
    assert moved.event.start.date_time == datetime(2030, 5, 6, 15, tzinfo=UTC)  # 11:00 New York, right after
    assert moved.moved_from == "2030-05-06T10:30:00-04:00"
    kept = await run(client, task_queue, "CreateCalendarEvent", CalendarActionInput(**base), CreateCalendarEventResult)
    assert kept.decision == "unchecked" and kept.event.start.date_time == datetime(2030, 5, 6, 14, 30, tzinfo=UTC)
    assert set(kept.notified) == {colleague, "opt@partner.org"}
    assert {n["recipient"] for n in await sent(kind, sandbox, kept.event.id)} == set(kept.notified)


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_schedule_meeting_across_time_zones(kind, client, worker, runtime, sandbox, task_queue):
    org = seed.uid("org_")
    c = await connect(kind, runtime, sandbox, org=org, time_zone="America/New_York")
    berlin, tokyo = f"{seed.uid('b')}@example.com", f"{seed.uid('t')}@example.com"
    await add_person(kind, sandbox, berlin, "Europe/Berlin")
    await add_person(kind, sandbox, tokyo, "Asia/Tokyo")
    # Berlin's working day overlaps New York's 09:00-11:00 (EDT); Berlin is busy 09:00-10:00 New York.
    await busy(kind, sandbox, berlin, "2030-05-06T13:00:00Z", "2030-05-06T14:00:00Z")
    inp = ScheduleMeetingInput(
        organization_id=org, integration_type=kind, title="Quarterly planning", organizer=c.email,
        timezone="America/New_York", duration_minutes=45, window_start="2030-05-06T00:00:00",
        window_end="2030-05-08T00:00:00",
        attendees=[MeetingAttendee(email=berlin, time_zone="Europe/Berlin"),
                   MeetingAttendee(email=tokyo, time_zone="Asia/Tokyo", optional=True)])
    res = await run(client, task_queue, "ScheduleMeeting", inp, ScheduleMeetingResult)
    if kind == "GOOGLE_CALENDAR":
        # Google has no working hours: the defaults (09:00-17:00 in each zone) leave 10:00 New York.
        assert res.slot.start == datetime(2030, 5, 6, 14, tzinfo=UTC)
    else:
        # Graph reports the organizer's mailbox hours (08:00-17:00 New York): 08:00-08:45 fits first.
        assert res.slot.start == datetime(2030, 5, 6, 12, tzinfo=UTC)
        assert {p.email: p.working_hours_source for p in res.availability}[c.email] == "provider"
    assert res.event.start.date_time == res.slot.start and res.event.end.date_time == res.slot.end
    assert res.event.time_zone == "America/New_York" and res.alternatives
    assert set(res.notified) == {berlin, tokyo}
    assert {n["recipient"] for n in await sent(kind, sandbox, res.event.id)} == {berlin, tokyo}
    by = {p.email: p for p in res.availability}
    assert by[berlin].working_hours and by[berlin].working_hours.time_zone == "Europe/Berlin"
    # A later change notifies as the provider does, and the result says who heard of it.
    upd = await run(client, task_queue, "UpdateCalendarEvent", UpdateCalendarEventInput(
        organization_id=org, integration_type=kind, eventId=res.event.id,
        changes=EventPatch(location="Room 42", attendees=[berlin])), UpdateCalendarEventResult)
    assert upd.notification == "update" and set(upd.notified) == {berlin, tokyo}  # tokyo: removed, cancelled
    kinds = {(n["recipient"], n["kind"]) for n in await sent(kind, sandbox, res.event.id)}
    assert {(berlin, "update"), (tokyo, "cancellation")} <= kinds
    gone = await run(client, task_queue, "CancelCalendarEvent", CancelCalendarEventInput(
        organization_id=org, integration_type=kind, eventId=res.event.id), CancelCalendarEventResult)
    again = await run(client, task_queue, "CancelCalendarEvent", CancelCalendarEventInput(
        organization_id=org, integration_type=kind, eventId=res.event.id), CancelCalendarEventResult)
    assert gone.deleted and gone.notified == [berlin] and again.already_deleted and again.notified == []


async def test_google_update_without_notifications(client, worker, runtime, sandbox, task_queue):
    c = await seed.google_connection(runtime, sandbox.url)
    made = await run(client, task_queue, "CreateCalendarEvent", CalendarActionInput(
        organization_id=c.organization_id, integration_type="GOOGLE_CALENDAR", title="1:1",
        startTime="2030-05-06T10:00:00Z", endTime="2030-05-06T10:30:00Z", attendees=["pat@partner.org"]),
        CreateCalendarEventResult)
    quiet = await run(client, task_queue, "UpdateCalendarEvent", UpdateCalendarEventInput(
        organization_id=c.organization_id, integration_type="GOOGLE_CALENDAR", eventId=made.event.id,
        send_updates="none", changes=EventPatch(title="1:1 (moved)", startTime="2030-05-06T11:00:00Z",
                                                 endTime="2030-05-06T11:30:00Z")), UpdateCalendarEventResult)
    assert quiet.notified == [] and quiet.notification == "none" and quiet.event.title == "1:1 (moved)"
    assert [n["kind"] for n in await sent("GOOGLE_CALENDAR", sandbox, made.event.id)] == ["invitation"]
    with pytest.raises(WorkflowFailureError) as info:
        await run(client, task_queue, "UpdateCalendarEvent", UpdateCalendarEventInput(
            organization_id=c.organization_id, integration_type="GOOGLE_CALENDAR", eventId=made.event.id,
            etag=made.event.etag, changes=EventPatch(title="stale")), UpdateCalendarEventResult)
    assert failure(info.value).details[0]["code"] == "etag_mismatch"


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_temporal_retry_after_a_lost_answer_creates_one_event(kind, client, worker, runtime, sandbox,
                                                                    task_queue):
    c = await connect(kind, runtime, sandbox)
    fake = "google" if kind == "GOOGLE_CALENDAR" else "graph"
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/{fake}/fail_after_commit", json={"count": 1})
    res = await run(client, task_queue, "CreateCalendarEvent", CalendarActionInput(
        organization_id=c.organization_id, integration_type=kind, title="Once", startTime="2030-05-06T10:00:00Z",
        endTime="2030-05-06T10:30:00Z", attendees=["guest@partner.org"]), CreateCalendarEventResult)
    events = await stored_events(kind, sandbox, c.email)
    assert len(events) == 1 and events[0]["id"] == res.event.id
    assert len(await sent(kind, sandbox, res.event.id)) == 1
    action = "google_calendar.create_event" if kind == "GOOGLE_CALENDAR" else "outlook.create_event"
    rows = runtime.store.usage(connection_id=c.connection_id, action=action)
    calls = [(r.outcome, r.error_code) for r in rows]
    if kind == "GOOGLE_CALENDAR":
        # The retry's insert meets its own id (409 duplicate) and fetches the event instead.
        assert calls == [("TemporaryError", "backendError"), ("PermanentError", "duplicate"), ("ok", None)]
    else:
        # Graph recognises the transactionId and returns the first event.
        assert calls == [("TemporaryError", "serviceNotAvailable"), ("ok", None)]


async def test_bad_calendar_action_fails_fast(client, worker, runtime, sandbox, task_queue):
    c = await seed.outlook_connection(runtime, sandbox.url)
    with pytest.raises(WorkflowFailureError) as info:
        await run(client, task_queue, "CreateCalendarEvent", CalendarActionInput(
            organization_id=c.organization_id, integration_type="OUTLOOK_CALENDAR", title="x",
            startTime="2030-03-10T02:30:00", endTime="2030-03-10T03:00:00", timezone="America/New_York"),
            CreateCalendarEventResult)
    err = failure(info.value)
    assert err.type == "PermanentError" and err.details[0]["code"] == "dst_gap"
    rows = runtime.store.usage(connection_id=c.connection_id, action="outlook.create_event")
    assert rows == []  # no provider call was made


async def test_google_not_found_is_retried_then_final(client, worker, runtime, sandbox, task_queue):
    """Google says to back off on 404 (propagation delay): temporary for the first attempts, then final."""
    c = await seed.google_connection(runtime, sandbox.url, settings={"not_found_attempts": 2})
    with pytest.raises(WorkflowFailureError) as info:
        await run(client, task_queue, "UpdateCalendarEvent", UpdateCalendarEventInput(
            organization_id=c.organization_id, integration_type="GOOGLE_CALENDAR", eventId="nosuchevent0",
            changes=EventPatch(title="x")), UpdateCalendarEventResult)
    err = failure(info.value)
    assert err.type == "PermanentError" and err.details[0]["code"] == "notFound"
    rows = runtime.store.usage(connection_id=c.connection_id, action="google_calendar.update_event")
    # Two attempts reached Google (the ledger keeps each call's own class); the second one was final.
    assert [r.status_code for r in rows] == [404, 404] and "after 2 attempts" in err.message


async def test_started_from_plain_json_like_opensyte(client, worker, runtime, sandbox, task_queue):
    """OpenSyte (TypeScript) passes a CalendarAction row as plain JSON and reads plain JSON back."""
    c = await seed.google_connection(runtime, sandbox.url)
    row = {"organization_id": c.organization_id, "integration_type": "GOOGLE_CALENDAR", "calendarId": None,
           "title": "Onboarding {{employee.name}}", "description": None, "location": "HQ",
           "startTime": "{{start}}", "endTime": "2030-05-07", "isAllDay": True, "timezone": "Europe/Madrid",
           "attendees": ["{{employee.email}}"], "organizer": None, "reminders": [30],
           "recurrence": None, "variables": {"employee": {"name": "Ana", "email": "ana@partner.org"},
                                             "start": "2030-05-06"}}
    handle = await client.start_workflow("CreateCalendarEvent", row, id=f"json-{uuid.uuid4().hex}",
                                         task_queue=task_queue)
    out = await handle.result()
    assert isinstance(out, dict) and out["event"]["title"] == "Onboarding Ana"
    assert out["event"]["start"]["date"] == "2030-05-06" and out["event"]["end"]["date"] == "2030-05-08"
    assert out["notified"] == ["ana@partner.org"]
