"""The calendar activities' logic, written once over a provider backend (Google Calendar or Graph).

Each calendar provider plugin offers the "calendar" capability: a `CalendarBackend` class (the HTTP calls,
translations and who the provider mails). `activities.calendar.activities` dispatches on the input's
integration type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from activities.calendar import availability as av
from activities.calendar.model import (
    AvailabilityInput,
    AvailabilityResult,
    CalendarEvent,
    ConflictCheckInput,
    ConflictCheckResult,
    CreateEventInput,
    CreateEventsInput,
    CreateEventsResult,
    DeleteEventInput,
    DeleteResult,
    EventList,
    EventOutcome,
    EventResult,
    GapPolicy,
    GetEventInput,
    InstancesInput,
    ListEventsInput,
    Participant,
    ParticipantAvailability,
    SendUpdates,
    UpdateEventInput,
    WorkingHours,
)
from activities.calendar.resolve import apply_patch, resolve_event
from activities.calendar.settings import CalendarSettings
from activities.calendar.tz import UTC, midnight, parse_datetime, zone
from core.errors import ConfigurationError, ErrorClass, IntegrationError, PermanentError

if TYPE_CHECKING:
    from core.pipeline import Action
    from core.plugin import Provider
    from core.runtime import Runtime


class CalendarBackend(Protocol):
    """What a provider implements for one Action (one connection)."""

    async def account(self, organizer: str | None) -> str | None:
        """The acting mailbox/calendar owner's email (the organizer of what we create)."""

    def default_calendar(self, requested: str | None) -> str:
        """The calendar id to use when the caller names none."""

    def notified_on_create(self, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None
                           ) -> list[str]:
        """Who the provider mails when `event` is created (PermanentError when it cannot do what is asked)."""

    def notified_on_update(self, before: CalendarEvent, after: CalendarEvent, changed: set[str],
                           send_updates: SendUpdates, organizer: str | None) -> list[str]:
        """Who the provider mails when these fields change."""

    def notified_on_delete(self, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None
                           ) -> list[str]:
        """Who the provider mails when the event is deleted."""

    def max_participants(self) -> int:
        """Most calendars one free/busy call may read."""

    async def insert(self, calendar: str, event: CalendarEvent, key: str | None,
                     send_updates: SendUpdates) -> tuple[CalendarEvent, bool]:
        """Create (idempotently under `key`); the event and whether this call created it."""

    async def insert_batch(self, calendar: str, items: Sequence[tuple[CalendarEvent, str | None]],
                           send_updates: SendUpdates) -> list[CalendarEvent | IntegrationError]:
        """Create several (each idempotent under its key); every outcome is returned, errors included."""

    async def get(self, calendar: str, event_id: str, hint_tz: str | None, *, gone_ok: bool = False
                  ) -> CalendarEvent | None:
        """The event; None when it is gone and `gone_ok`."""

    async def patch(self, calendar: str, current: CalendarEvent, updated: CalendarEvent, changed: set[str],
                    etag: str, send_updates: SendUpdates) -> CalendarEvent:
        """Apply the changed fields under If-Match `etag`."""

    async def delete(self, calendar: str, event_id: str, etag: str | None, send_updates: SendUpdates) -> bool:
        """Delete; False when it was already gone (a repeated delete is a success)."""

    async def list_window(self, calendar: str, lo: datetime, hi: datetime, max_results: int,
                          page_token: str | None, hint_tz: str | None) -> EventList:
        """Events in the window with recurring series expanded."""

    async def instances(self, calendar: str, event_id: str, lo: datetime, hi: datetime, max_results: int,
                        page_token: str | None) -> EventList:
        """The occurrences of one series."""

    async def free_busy(self, calendar: str, participants: Sequence[Participant], lo: datetime, hi: datetime,
                        default_tz: str) -> list[ParticipantAvailability]:
        """Busy periods (and working hours where the provider knows them) per participant."""


@dataclass(frozen=True)
class CalendarCapability:
    """What a calendar provider plugin offers the shared calendar activities and connect flow."""

    provider: Provider
    backend: Callable[[Action], CalendarBackend]
    connect: Any = None  # its OAuth connect flow (activities.calendar.connect.ConnectFlow)


def parse_instant(value: str, field: str, default_tz: str = "UTC") -> datetime:
    """An RFC 3339 instant; a wall time without offset is read in `default_tz`."""
    return parse_datetime(value, zone(default_tz, "time_zone"), "shift", field).astimezone(UTC)


class CalendarService:
    """Provider-neutral activity bodies; `backend_for(act)` builds the provider's backend."""

    def __init__(self, rt: Runtime, provider: Provider, backend_for: Callable[[Action], CalendarBackend]) -> None:
        self.rt = rt
        self.provider = provider
        self.backend_for = backend_for

    @property
    def name(self) -> str:
        return self.provider.name

    def _policy(self, explicit: GapPolicy | None) -> GapPolicy:
        return explicit or self.rt.section(CalendarSettings).dst_gap_policy

    # ---- events ------------------------------------------------------------------------------
    async def create(self, inp: CreateEventInput) -> EventResult:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.create_event",
                                  target=inp.calendar_id or inp.event.calendar_id) as act:
            # Inside the action so bad input is audited and becomes a non-retryable PermanentError; no
            # provider call has happened yet.
            event = resolve_event(inp.event, self._policy(inp.dst_gap_policy))
            be = self.backend_for(act)
            organizer = await be.account(event.organizer.email if event.organizer else None)
            notified = be.notified_on_create(event, inp.send_updates, organizer)
            calendar = be.default_calendar(inp.calendar_id or inp.event.calendar_id)
            key = act.idempotency_key(inp.idempotency_key)
            created_event, created = await be.insert(calendar, event, key, inp.send_updates)
            act.detail.update(event_id=created_event.id, created=created, notified=len(notified))
            return EventResult(provider=self.name, event=created_event, created=created, notified=notified,
                               notification="invitation" if notified else "none")

    async def create_many(self, inp: CreateEventsInput) -> CreateEventsResult:
        """Several events in one calendar through the backend's `insert_batch` (Graph JSON batches, Google
        concurrent creates). An event the model or the provider refuses is that event's outcome, not the call's.
        Created events are recorded under their keys as they come back, so when a throttled member makes
        Temporal retry the activity, only the events not yet created are sent again."""
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.create_events",
                                  target=inp.calendar_id) as act:
            be = self.backend_for(act)
            calendar = be.default_calendar(inp.calendar_id)
            outcomes: dict[int, EventOutcome] = {}
            # No key outside a workflow without an explicit one: then nothing is deduplicated.
            keys = {i: act.idempotency_key(inp.idempotency_key, str(i)) for i in range(len(inp.events))}
            done = await self.rt.store.run(self.rt.store.get_idempotent_many, [k for k in keys.values() if k])
            todo: list[tuple[int, CalendarEvent]] = []
            for i, spec in enumerate(inp.events):
                key = keys[i]
                if key is not None and key in done:
                    outcomes[i] = EventOutcome(index=i, event_id=done[key].get("event_id"))
                    continue
                try:
                    todo.append((i, resolve_event(spec, self._policy(inp.dst_gap_policy))))
                except IntegrationError as err:
                    outcomes[i] = EventOutcome(index=i, error=err.to_dict())
            items = [(ev, keys[i]) for i, ev in todo]
            results = await be.insert_batch(calendar, items, inp.send_updates)
            created: dict[str, dict[str, Any]] = {}
            retry: IntegrationError | None = None
            for (i, _ev), res in zip(todo, results, strict=True):
                if not isinstance(res, IntegrationError):
                    outcomes[i] = EventOutcome(index=i, event_id=res.id)
                    if (key := keys[i]) is not None:
                        created[key] = {"event_id": res.id}
                elif res.error_class is ErrorClass.PERMANENT:
                    outcomes[i] = EventOutcome(index=i, error=res.to_dict())
                else:
                    retry = retry or res
            await self.rt.store.run(self.rt.store.put_idempotent_many, act.organization_id, act.name, created)
            if retry is not None:  # throttled or failing members: Temporal retries; the created ones stay done
                raise retry
            ordered = [outcomes[i] for i in sorted(outcomes)]
            n_created = sum(1 for o in ordered if o.event_id)
            act.detail.update(created=n_created, failed=len(ordered) - n_created)
            return CreateEventsResult(provider=self.name, results=ordered, created=n_created,
                                      failed=len(ordered) - n_created)

    async def get(self, inp: GetEventInput) -> CalendarEvent:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.get_event",
                                  target=inp.event_id) as act:
            be = self.backend_for(act)
            ev = await be.get(be.default_calendar(inp.calendar_id), inp.event_id, inp.time_zone)
            if ev is None:  # pragma: no cover - get without gone_ok raises instead
                raise PermanentError(f"event {inp.event_id} not found", code="notFound")
            return ev

    async def update(self, inp: UpdateEventInput) -> EventResult:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.update_event",
                                  target=inp.event_id) as act:
            be = self.backend_for(act)
            calendar = be.default_calendar(inp.calendar_id)
            current = await be.get(calendar, inp.event_id, None)
            if current is None:  # pragma: no cover - get without gone_ok raises instead
                raise PermanentError(f"event {inp.event_id} not found", code="notFound")
            updated, changed = apply_patch(current, inp.changes, self._policy(inp.dst_gap_policy))
            organizer = await be.account(current.organizer.email if current.organizer else None)
            notified = be.notified_on_update(current, updated, changed, inp.send_updates, organizer)
            if not changed:
                return EventResult(provider=self.name, event=current, notified=[], notification="none")
            # The caller's etag guards against changes since the caller read the event; without one, the
            # etag we just read guards our own read-modify-write.
            result = await be.patch(calendar, current, updated, changed, inp.etag or current.etag or "*",
                                    inp.send_updates)
            act.detail.update(changed=sorted(changed), notified=len(notified))
            return EventResult(provider=self.name, event=result, notified=notified,
                               notification="update" if notified else "none")

    async def delete(self, inp: DeleteEventInput) -> DeleteResult:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.delete_event",
                                  target=inp.event_id) as act:
            be = self.backend_for(act)
            calendar = be.default_calendar(inp.calendar_id)
            current = await be.get(calendar, inp.event_id, None, gone_ok=True)
            deleted = await be.delete(calendar, inp.event_id, inp.etag, inp.send_updates)
            notified: list[str] = []
            if deleted and current is not None and current.status != "cancelled":
                organizer = await be.account(current.organizer.email if current.organizer else None)
                notified = be.notified_on_delete(current, inp.send_updates, organizer)
            act.detail.update(deleted=deleted)
            return DeleteResult(provider=self.name, event_id=inp.event_id, deleted=deleted, already_deleted=not deleted,
                                notified=notified)

    async def list_window(self, inp: ListEventsInput) -> EventList:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.list_events",
                                  target=inp.calendar_id) as act:
            lo, hi = _window(inp.time_min, inp.time_max, inp.time_zone or "UTC", "time_min", "time_max")
            be = self.backend_for(act)
            return await be.list_window(be.default_calendar(inp.calendar_id), lo, hi, inp.max_results,
                                        inp.page_token, inp.time_zone)

    async def instances(self, inp: InstancesInput) -> EventList:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.list_instances",
                                  target=inp.event_id) as act:
            lo, hi = _window(inp.time_min, inp.time_max, "UTC", "time_min", "time_max")
            be = self.backend_for(act)
            return await be.instances(be.default_calendar(inp.calendar_id), inp.event_id, lo, hi, inp.max_results,
                                      inp.page_token)

    # ---- availability ----------------------------------------------------------------------------
    async def _availability(self, be: CalendarBackend, calendar: str, participants: Sequence[Participant],
                            lo: datetime, hi: datetime, default_tz: str) -> list[ParticipantAvailability]:
        if len(participants) > be.max_participants():
            raise PermanentError(f"participants: at most {be.max_participants()} calendars per free/busy query, "
                                 f"got {len(participants)}", code="too_many_participants",
                                 details={"field": "participants", "limit": be.max_participants()})
        found = await be.free_busy(calendar, participants, lo, hi, default_tz)
        for p, a in zip(participants, found, strict=True):
            a.required = p.required
            if p.working_hours is not None:
                a.working_hours, a.working_hours_source = p.working_hours, "input"
            elif a.working_hours is None:
                a.working_hours = WorkingHours(time_zone=zone(p.time_zone or default_tz, "time_zone").key)
                a.working_hours_source = "time_zone" if p.time_zone else "default"
        return found

    async def find_availability(self, inp: AvailabilityInput) -> AvailabilityResult:
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.find_availability",
                                  target=inp.calendar_id) as act:
            tz = zone(inp.time_zone, "time_zone")
            lo, hi = _window(inp.window_start, inp.window_end, tz.key, "window_start", "window_end")
            be = self.backend_for(act)
            found = await self._availability(be, be.default_calendar(inp.calendar_id), inp.participants, lo, hi,
                                              tz.key)
            slots = av.find_slots(found, lo, hi, timedelta(minutes=inp.duration_minutes),
                                  granularity_minutes=inp.granularity_minutes, align_tz=tz,
                                  working_hours_only=inp.working_hours_only, max_slots=inp.max_slots,
                                  tentative_is_busy=inp.tentative_is_busy)
            act.detail.update(participants=len(found), slots=len(slots))
            return AvailabilityResult(provider=self.name, participants=found, slots=slots)

    async def check_conflicts(self, inp: ConflictCheckInput) -> ConflictCheckResult:
        """The conflict policy on create: the organizer's and required attendees' calendars."""
        async with self.rt.action(self.provider, inp.organization_id, inp.connection, f"{self.name}.check_conflicts",
                                  target=inp.calendar_id or inp.event.calendar_id) as act:
            event = resolve_event(inp.event, self._policy(inp.dst_gap_policy))
            start, end = _bounds(event)
            if inp.policy == "next_free_slot" and event.all_day:
                raise PermanentError("conflict_policy: next_free_slot moves timed events only; use fail for all-day "
                                     "events", code="invalid_policy", details={"field": "conflict_policy"})
            be = self.backend_for(act)
            organizer = await be.account(event.organizer.email if event.organizer else None)
            people: list[Participant] = []
            seen: set[str] = set()
            for email in [organizer, *[a.email for a in event.attendees if not a.optional]]:
                if email and email.lower() not in seen:
                    seen.add(email.lower())
                    people.append(Participant(email=email, time_zone=event.time_zone))
            if not people:
                raise ConfigurationError(
                    "conflict check: this connection has no calendar identity and the event names no required "
                    "attendee, so no calendar can be checked; give the connection its account (setting `user`) "
                    "or use conflict_policy ignore", code="calendar_identity_unknown",
                    details={"field": "conflict_policy"})
            hi = end if inp.policy != "next_free_slot" else start + timedelta(days=inp.horizon_days)
            tz = zone(event.time_zone)
            found = await self._availability(be, be.default_calendar(inp.calendar_id or inp.event.calendar_id),
                                              people, start, hi, event.time_zone)
            unchecked = [a.email for a in found if a.error]
            if len(unchecked) == len(found):
                # Reporting "free" here would create the event on top of whatever is there.
                raise ConfigurationError(
                    f"conflict check: no calendar could be read ({'; '.join(f'{a.email}: {a.error}' for a in found)})"
                    "; grant free/busy access to them or use conflict_policy ignore", code="calendar_unreadable",
                    details={"unchecked": unchecked})
            clashes = av.conflicts(found, start, end)
            result = ConflictCheckResult(decision="conflict" if clashes else "free", conflicts=clashes,
                                         start=start.astimezone(tz).isoformat(), end=end.astimezone(tz).isoformat(),
                                         unchecked=unchecked)
            if clashes and inp.policy == "next_free_slot":
                slots = av.find_slots(found, start, hi, end - start, granularity_minutes=15,
                                      align_tz=tz, working_hours_only=inp.working_hours_only,
                                      max_slots=1, not_before=start)
                if not slots:
                    raise PermanentError(f"conflict_policy next_free_slot: no free slot of {end - start} within "
                                         f"{inp.horizon_days} days after {start.isoformat()}", code="no_free_slot",
                                         details={"conflicts": [c.model_dump(mode="json") for c in clashes]})
                result = result.model_copy(update={
                    "decision": "moved", "moved_from": start.astimezone(tz).isoformat(),
                    "start": slots[0].start.astimezone(tz).isoformat(), "end": slots[0].end.astimezone(tz).isoformat()})
            act.detail.update(decision=result.decision, conflicts=len(clashes))
            return result


def _window(lo_s: str, hi_s: str, tz: str, lo_field: str, hi_field: str) -> tuple[datetime, datetime]:
    lo, hi = parse_instant(lo_s, lo_field, tz), parse_instant(hi_s, hi_field, tz)
    if hi <= lo:
        raise PermanentError(f"{hi_field} must be after {lo_field} (the time range is empty)", code="timeRangeEmpty",
                             details={"field": hi_field})
    return lo, hi


def _bounds(event: CalendarEvent) -> tuple[datetime, datetime]:
    """The first occurrence's [start, end) as instants (all-day: local midnights in the event's zone)."""
    tz = zone(event.time_zone)
    if event.start.date is not None and event.end.date is not None:
        return midnight(event.start.date, tz).astimezone(UTC), midnight(event.end.date, tz).astimezone(UTC)
    if event.start.date_time is None or event.end.date_time is None:  # pragma: no cover - model invariant
        raise PermanentError("event has no start", code="invalid_time")
    # UTC: the length of an event crossing a DST change is its real duration, not the wall-clock one.
    return event.start.date_time.astimezone(UTC), event.end.date_time.astimezone(UTC)
