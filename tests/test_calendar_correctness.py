"""Calendar correctness: a conflict check that sees no calendar fails as a configuration error; a connection
without a calendar identity checks its own primary calendar; an unreadable attendee's given time zone bounds
the meeting to their working hours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.calendar.activities import CalendarActivities
from activities.calendar.model import AvailabilityInput, ConflictCheckInput, EventSpec, Participant
from core.connections import add_connection
from tests import calendar_seed as seed
from vault.credentials import OAuth2Credentials

KIND = "GOOGLE_CALENDAR"


async def token_only_connection(runtime, sandbox, email: str) -> str:
    """What `osi connections add` makes from an access token alone: no `user` setting, no account identity."""
    conn = await seed.google_connection(runtime, sandbox.url, email=email)
    org = seed.uid("org_")
    token = (await runtime.vault.read(runtime.vault.connection_path(conn.organization_id, KIND, conn.name),
                                      use_cache=False)).access_token
    await add_connection(runtime, org, KIND, "bytoken", {"project_id": "sandbox-project"},
                         OAuth2Credentials(access_token=SecretStr(token.get_secret_value())))
    return org


def event(**kw: object) -> EventSpec:
    return EventSpec.model_validate({"title": "Planning", "startTime": "2030-06-03T10:00:00",
                                     "endTime": "2030-06-03T11:00:00", "timezone": "UTC", **kw})


async def test_a_connection_without_identity_checks_its_own_primary_calendar(runtime, sandbox) -> None:
    email = f"{seed.uid('owner')}@example.com"
    org = await token_only_connection(runtime, sandbox, email)
    await seed.sandbox_json("POST", f"{sandbox.url}/_sandbox/google/calendars/{email}/events", json={
        "summary": "busy", "start": {"dateTime": "2030-06-03T10:30:00Z"}, "end": {"dateTime": "2030-06-03T11:30:00Z"}})
    res = await CalendarActivities(runtime).check_conflicts(ConflictCheckInput(
        organization_id=org, integration_type=KIND, connection="bytoken", event=event(), policy="fail"))
    assert res.decision == "conflict" and [c.email for c in res.conflicts] == [email]


async def test_a_conflict_check_that_can_read_no_calendar_is_a_configuration_error(runtime, sandbox) -> None:
    conn = await seed.google_connection(runtime, sandbox.url, settings={"user": "ghost@nowhere.example"})
    with pytest.raises(ApplicationError) as exc:
        await CalendarActivities(runtime).check_conflicts(ConflictCheckInput(
            organization_id=conn.organization_id, integration_type=KIND, event=event(), policy="fail"))
    assert exc.value.type == "ConfigurationError" and exc.value.details[0]["code"] == "calendar_unreadable"
    assert "ghost@nowhere.example: notFound" in exc.value.message


async def test_an_unreadable_attendees_time_zone_bounds_the_slot(runtime, sandbox) -> None:
    boss = await seed.google_connection(runtime, sandbox.url)  # UTC, 09:00-17:00
    res = await CalendarActivities(runtime).find_availability(AvailabilityInput(
        organization_id=boss.organization_id, integration_type=KIND, time_zone="UTC", duration_minutes=30,
        window_start="2030-06-03T00:00:00", window_end="2030-06-04T00:00:00",
        participants=[Participant(email=boss.email),
                      Participant(email="partner@elsewhere.example", time_zone="America/New_York")]))
    partner = next(p for p in res.participants if p.email == "partner@elsewhere.example")
    assert partner.error == "notFound" and partner.working_hours_source == "time_zone"
    # 09:00 New York (EDT) is 13:00 UTC: the first slot both work, though the partner's calendar is unreadable.
    assert res.slots[0].start == datetime(2030, 6, 3, 13, tzinfo=UTC)
    # Without a zone for them, an unreadable attendee does not bound the search (and is reported unchecked).
    res = await CalendarActivities(runtime).find_availability(AvailabilityInput(
        organization_id=boss.organization_id, integration_type=KIND, time_zone="UTC", duration_minutes=30,
        window_start="2030-06-03T00:00:00", window_end="2030-06-04T00:00:00",
        participants=[Participant(email=boss.email), Participant(email="partner@elsewhere.example")]))
    assert res.slots[0].start == datetime(2030, 6, 3, 9, tzinfo=UTC)
