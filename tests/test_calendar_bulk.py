"""BulkCreateCalendarEvents: Graph JSON batches of 20, Google concurrent creates; refused events reported, a re-run
or a throttled batch never creates an event twice."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.calendar.model import BulkCreateCalendarEventsInput, BulkCreateCalendarEventsResult, EventSpec
from tests import calendar_seed as seed


def specs(n: int, bad: set[int] = frozenset()) -> list[EventSpec]:  # type: ignore[assignment]
    return [EventSpec(title=f"Onboarding {i}", startTime=f"2031-03-{3 + i % 20:02d}T{9 + i % 8:02d}:00:00",
                      endTime=f"2031-03-{3 + i % 20:02d}T{9 + i % 8:02d}:30:00",
                      timezone="Mars/Olympus_Mons" if i in bad else "Europe/Berlin",
                      attendees=[{"email": f"new{i}@example.com"}])
            for i in range(n)]


async def bulk(client, task_queue, conn: seed.CalConn, kind: str, events: list[EventSpec], **kw
               ) -> BulkCreateCalendarEventsResult:
    return await client.execute_workflow(
        "BulkCreateCalendarEvents",
        BulkCreateCalendarEventsInput(organization_id=conn.organization_id, integration_type=kind, events=events, **kw),
        id=f"bulk-cal-{uuid.uuid4().hex[:10]}", task_queue=task_queue, result_type=BulkCreateCalendarEventsResult)


def graph_posts(sandbox, since: int, suffix: str) -> list[dict]:
    return [q for q in sandbox.state.recorder.dump("graph", since) if q["method"] == "POST"
            and q["path"].endswith(suffix)]


async def test_outlook_sends_batches_of_20_and_reports_refused_events(client, worker, runtime, sandbox, task_queue):
    conn = await seed.outlook_connection(runtime, sandbox.url)
    since = sandbox.state.recorder.seq
    res = await bulk(client, task_queue, conn, "OUTLOOK_CALENDAR", specs(26, bad={7}), idempotency_key="onb-1")
    assert (res.provider, res.created, res.failed) == ("outlook", 25, 1)
    refused = res.results[7]
    assert refused.event_id is None and refused.error and "Mars/Olympus_Mons" in refused.error["message"]
    assert [o.index for o in res.results] == list(range(26))
    assert len(graph_posts(sandbox, since, "/$batch")) == 2  # 25 valid events: 20 + 5
    assert len(graph_posts(sandbox, since, "/me/events")) == 25  # each member ran as a request of its own
    stored = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/mailboxes/{conn.email}/events")
    assert len(stored) == 25 and {e["subject"] for e in stored} == {f"Onboarding {i}" for i in range(26) if i != 7}
    # The same key again: nothing new (our records, and Graph's transactionIds underneath).
    again = await bulk(client, task_queue, conn, "OUTLOOK_CALENDAR", specs(26, bad={7}), idempotency_key="onb-1")
    assert again.created == 25 and [o.event_id for o in again.results] == [o.event_id for o in res.results]
    assert len(await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/mailboxes/{conn.email}/events")) == 25


async def test_a_throttled_batch_member_is_resent_alone(client, worker, runtime, sandbox, task_queue):
    """Graph throttles members of a batch individually; the retry sends only what was not created."""
    await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/graph/limits",
                            json={"budget": 12, "period": 1, "concurrency": 4, "retry_after": "1"})
    try:
        # Our limiter is told a looser budget than the fake enforces, so Graph's 429 really happens.
        conn = await seed.outlook_connection(runtime, sandbox.url, settings={"quota_per_10_minutes": 1000})
        since = sandbox.state.recorder.seq
        res = await bulk(client, task_queue, conn, "OUTLOOK_CALENDAR", specs(20))
    finally:
        await seed.sandbox_json("PUT", f"{sandbox.url}/_sandbox/graph/limits", json={})
    assert (res.created, res.failed) == (20, 0)
    members = graph_posts(sandbox, since, "/me/events")
    assert any(q["status"] == 429 for q in members)  # the fake did throttle members
    assert sum(1 for q in members if q["status"] == 201) == 20
    stored = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/graph/mailboxes/{conn.email}/events")
    assert len(stored) == 20


async def test_google_creates_concurrently_without_duplicates(client, worker, runtime, sandbox, task_queue):
    conn = await seed.google_connection(runtime, sandbox.url)
    res = await bulk(client, task_queue, conn, "GOOGLE_CALENDAR", specs(12, bad={3}), chunk_size=5,
                     idempotency_key="g-onb")
    assert (res.provider, res.created, res.failed) == ("google_calendar", 11, 1)
    again = await bulk(client, task_queue, conn, "GOOGLE_CALENDAR", specs(12, bad={3}), chunk_size=5,
                       idempotency_key="g-onb")
    assert again.created == 11
    stored = await seed.sandbox_json("GET", f"{sandbox.url}/_sandbox/google/calendars/{conn.email}/events")
    assert len(stored) == 11


async def test_limits_are_checked_before_any_call(client, worker, runtime, sandbox, task_queue):
    """The limits are the input model's (and the schema's): plain JSON over them fails the workflow at once
    as PermanentError invalid_input naming the field; no provider call is made."""
    conn = await seed.outlook_connection(runtime, sandbox.url)
    with pytest.raises(WorkflowFailureError) as err:
        await client.execute_workflow("BulkCreateCalendarEvents", {
            "organizationId": conn.organization_id, "integrationType": "OUTLOOK_CALENDAR", "chunkSize": 500,
            "events": [s.model_dump(mode="json") for s in specs(3)]},
            id=f"bulk-cal-{uuid.uuid4().hex[:10]}", task_queue=task_queue)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PermanentError"
    details = cause.details[0]
    # The field is named as the caller spelled it.
    assert details["code"] == "invalid_input" and [e["field"] for e in details["details"]["errors"]] == ["chunkSize"]
    assert "chunkSize: Input should be less than or equal to 100" in cause.message
