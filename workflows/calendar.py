"""Calendar workflows for both providers: CalendarAction create/update/cancel and ScheduleMeeting.

The `calendar.*` activities serve every registered calendar provider; the input's `integration_type`
(GOOGLE_CALENDAR, OUTLOOK_CALENDAR) picks it. Both take and return the same provider-neutral models.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.calendar.model import (
        Attendee,
        AvailabilityInput,
        AvailabilityResult,
        BulkCreateCalendarEventsInput,
        BulkCreateCalendarEventsResult,
        CalendarActionInput,
        CancelCalendarEventInput,
        CancelCalendarEventResult,
        ConflictCheckInput,
        ConflictCheckResult,
        CreateCalendarEventResult,
        CreateEventInput,
        CreateEventsInput,
        CreateEventsResult,
        DeleteEventInput,
        DeleteResult,
        EventResult,
        EventSpec,
        Participant,
        ScheduleMeetingInput,
        ScheduleMeetingResult,
        UpdateCalendarEventInput,
        UpdateCalendarEventResult,
        UpdateEventInput,
    )
    from core.errors import ErrorClass
    from core.policies import CALENDAR_SEND, LOOKUP, deadline_of
    from core.visibility import raise_if_all_failed
from workflows import events


async def _emit(inp: Any, kind: str, result: Any, event_id: str | None) -> None:
    """Tell the organization's subscribers (calendar.event.created/updated/cancelled); never fails the workflow."""
    wf_id = workflow.info().workflow_id
    await events.emit(inp.organization_id, [(f"calendar.event.{kind}", {
        "workflow_id": wf_id, "integration_type": inp.integration_type, "connection": inp.connection,
        "calendar_id": inp.calendar_id, "event_id": event_id, **result.model_dump(mode="json")}, f"{wf_id}:{kind}")])


def _refuse(message: str, code: str, details: dict[str, Any]) -> ApplicationError:
    """A deliberate, non-retryable workflow failure in the error taxonomy."""
    return ApplicationError(message, {"error_class": ErrorClass.PERMANENT.value, "code": code, "message": message,
                                      **details}, type=ErrorClass.PERMANENT.value, non_retryable=True)


@workflow.defn(name="CreateCalendarEvent")
class CreateCalendarEvent:
    """One OpenSyte CalendarAction: apply the conflict policy, then create the event and invite."""

    @workflow.run
    async def run(self, inp: CalendarActionInput) -> CreateCalendarEventResult:
        spec = inp.spec()
        decision: str = "unchecked"
        check: ConflictCheckResult | None = None
        if inp.conflict_policy != "ignore":
            check = await workflow.execute_activity(
                "calendar.check_conflicts",
                ConflictCheckInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                                   calendar_id=inp.calendar_id, event=spec, policy=inp.conflict_policy,
                                   horizon_days=inp.horizon_days, working_hours_only=inp.working_hours_only,
                                   dst_gap_policy=inp.dst_gap_policy),
                result_type=ConflictCheckResult, **LOOKUP.kwargs())
            decision = check.decision
            if check.decision == "conflict" and inp.conflict_policy == "fail":
                who = sorted({c.email for c in check.conflicts})
                raise _refuse(f"the event conflicts with busy time of {', '.join(who)}", "calendar_conflict",
                              {"conflicts": [c.model_dump(mode="json") for c in check.conflicts]})
            if check.decision == "moved":
                spec = spec.model_copy(update={"start_time": check.start, "end_time": check.end})
        res: EventResult = await workflow.execute_activity(
            "calendar.create_event",
            CreateEventInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                             calendar_id=inp.calendar_id, event=spec, send_updates=inp.send_updates,
                             idempotency_key=inp.idempotency_key, dst_gap_policy=inp.dst_gap_policy),
            result_type=EventResult, **CALENDAR_SEND.kwargs(deadline_of(inp.deliver_within)))
        result = CreateCalendarEventResult(
            provider=res.provider, event=res.event, notified=res.notified, decision=decision,
            conflicts=check.conflicts if check else [], moved_from=check.moved_from if check else None)
        await _emit(inp, "created", result, res.event.id)
        return result


@workflow.defn(name="UpdateCalendarEvent")
class UpdateCalendarEvent:
    """Change an event (If-Match on its etag/changeKey); the result lists who the provider notified."""

    @workflow.run
    async def run(self, inp: UpdateCalendarEventInput) -> UpdateCalendarEventResult:
        res: EventResult = await workflow.execute_activity(
            "calendar.update_event",
            UpdateEventInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                             calendar_id=inp.calendar_id, event_id=inp.event_id, changes=inp.changes, etag=inp.etag,
                             send_updates=inp.send_updates, dst_gap_policy=inp.dst_gap_policy),
            result_type=EventResult, **CALENDAR_SEND.kwargs(deadline_of(inp.deliver_within)))
        result = UpdateCalendarEventResult(provider=res.provider, event=res.event,
                                           notified=res.notified, notification=res.notification)
        await _emit(inp, "updated", result, inp.event_id)
        return result


@workflow.defn(name="CancelCalendarEvent")
class CancelCalendarEvent:
    """Delete an event (attendees get cancellations); deleting twice is a success."""

    @workflow.run
    async def run(self, inp: CancelCalendarEventInput) -> CancelCalendarEventResult:
        res: DeleteResult = await workflow.execute_activity(
            "calendar.delete_event",
            DeleteEventInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                             calendar_id=inp.calendar_id, event_id=inp.event_id, etag=inp.etag,
                             send_updates=inp.send_updates),
            result_type=DeleteResult, **CALENDAR_SEND.kwargs(deadline_of(inp.deliver_within)))
        result = CancelCalendarEventResult(provider=res.provider, event_id=res.event_id,
                                           deleted=res.deleted, already_deleted=res.already_deleted,
                                           notified=res.notified)
        await _emit(inp, "cancelled", result, res.event_id)
        return result


@workflow.defn(name="ScheduleMeeting")
class ScheduleMeeting:
    """Find a slot free for the organizer and every required attendee within their working hours (each in
    their own zone), create the meeting there, send the invitations, and report the chosen slot."""

    @workflow.run
    async def run(self, inp: ScheduleMeetingInput) -> ScheduleMeetingResult:
        participants = [Participant(email=inp.organizer, required=True, time_zone=inp.timezone,
                                    working_hours=inp.organizer_working_hours)]
        participants += [Participant(email=a.email, required=not a.optional, time_zone=a.time_zone,
                                     working_hours=a.working_hours)
                         for a in inp.attendees if a.email.lower() != inp.organizer.lower()]
        avail: AvailabilityResult = await workflow.execute_activity(
            "calendar.find_availability",
            AvailabilityInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                              calendar_id=inp.calendar_id, participants=participants, window_start=inp.window_start,
                              window_end=inp.window_end, duration_minutes=inp.duration_minutes,
                              granularity_minutes=inp.granularity_minutes,
                              working_hours_only=inp.working_hours_only, time_zone=inp.timezone, max_slots=5),
            result_type=AvailabilityResult, **LOOKUP.kwargs())
        if not avail.slots:
            raise _refuse(f"no {inp.duration_minutes}-minute slot between {inp.window_start} and {inp.window_end} "
                          "is free for the organizer and every required attendee", "no_free_slot",
                          {"availability": [p.model_dump(mode="json") for p in avail.participants]})
        slot = avail.slots[0]
        spec = EventSpec(
            calendar_id=inp.calendar_id, title=inp.title, description=inp.description, location=inp.location,
            start_time=slot.start.isoformat(), end_time=slot.end.isoformat(), timezone=inp.timezone,
            attendees=[Attendee(email=a.email, name=a.name, optional=a.optional) for a in inp.attendees],
            organizer=inp.organizer, reminders=inp.reminders, online_meeting=inp.online_meeting)
        res: EventResult = await workflow.execute_activity(
            "calendar.create_event",
            CreateEventInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                             calendar_id=inp.calendar_id, event=spec, send_updates=inp.send_updates,
                             idempotency_key=inp.idempotency_key),
            result_type=EventResult, **CALENDAR_SEND.kwargs())
        result = ScheduleMeetingResult(provider=res.provider, slot=slot, event=res.event,
                                       notified=res.notified, alternatives=avail.slots[1:],
                                       availability=avail.participants)
        await _emit(inp, "created", result, res.event.id)
        return result


@workflow.defn(name="BulkCreateCalendarEvents")
class BulkCreateCalendarEvents:
    """Many events in one calendar, in chunks: Graph batches 20 creates per request, Google creates
    concurrently within its quota. Every event is idempotent under `{key}:{chunk}:{index}`, so a retried chunk
    or a re-run workflow with the same key creates nothing twice; a refused event is reported, not fatal, unless
    every event was refused: then the workflow ends Failed (the result in the error's details). The limits (at
    most MAX_BULK_EVENTS events, chunk_size 1-MAX_EVENTS_PER_CALL) are the input model's."""

    @workflow.run
    async def run(self, inp: BulkCreateCalendarEventsInput) -> BulkCreateCalendarEventsResult:
        key = inp.idempotency_key or workflow.info().workflow_id
        results = []
        provider = ""
        for start in range(0, len(inp.events), inp.chunk_size):
            res: CreateEventsResult = await workflow.execute_activity(
                "calendar.create_events",
                CreateEventsInput(organization_id=inp.organization_id, integration_type=inp.integration_type,
                             connection=inp.connection,
                                  calendar_id=inp.calendar_id, events=inp.events[start:start + inp.chunk_size],
                                  send_updates=inp.send_updates, idempotency_key=f"{key}:{start}"),
                result_type=CreateEventsResult, **CALENDAR_SEND.kwargs())
            results += [o.model_copy(update={"index": start + o.index}) for o in res.results]
            provider = res.provider
        created = sum(1 for o in results if o.event_id)
        wf_id = workflow.info().workflow_id
        await events.emit(inp.organization_id, [("calendar.event.created", {
            "workflow_id": wf_id, "integration_type": inp.integration_type, "connection": inp.connection,
            "calendar_id": inp.calendar_id, "event_id": o.event_id, "index": o.index, "provider": provider},
            f"{wf_id}:created:{o.index}") for o in results if o.event_id])
        result = BulkCreateCalendarEventsResult(provider=provider, created=created, failed=len(results) - created,
                                                results=results)
        raise_if_all_failed(reached=created, failed=result.failed, errors=[o.error for o in results],
                            what="BulkCreateCalendarEvents: no event created", result=result)
        return result


CALENDAR_WORKFLOWS: tuple[type, ...] = (CreateCalendarEvent, UpdateCalendarEvent, CancelCalendarEvent, ScheduleMeeting,
                                        BulkCreateCalendarEvents)
