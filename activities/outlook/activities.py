"""Outlook (Graph) Temporal activities (`outlook.*`), each one Action through the shared pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.calendar.service import CalendarService
from activities.outlook.client import OutlookCalendarClient
from activities.outlook.models import (
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
    EventResult,
    GetEventInput,
    InstancesInput,
    ListEventsInput,
    UpdateEventInput,
)

if TYPE_CHECKING:
    from activities.pipeline import Action
    from activities.runtime import Runtime


class OutlookActivities:
    """Activities bound to the worker's runtime."""

    def __init__(self, rt: Runtime) -> None:
        from activities.outlook.plugin import PLUGIN

        self.rt = rt
        self.svc = CalendarService(rt, PLUGIN, OutlookCalendarClient)

    @activity.defn(name="outlook.create_event")
    async def create_event(self, inp: CreateEventInput) -> EventResult:
        """POST /events with a transactionId derived from the idempotency key (Graph deduplicates retries)."""
        return await self.svc.create(inp)

    @activity.defn(name="outlook.create_events")
    async def create_events(self, inp: CreateEventsInput) -> CreateEventsResult:
        """Up to 100 events in one calendar: JSON batches of 20 (`POST /$batch`), each with its transactionId."""
        return await self.svc.create_many(inp)

    @activity.defn(name="outlook.get_event")
    async def get_event(self, inp: GetEventInput) -> CalendarEvent:
        return await self.svc.get(inp)

    @activity.defn(name="outlook.update_event")
    async def update_event(self, inp: UpdateEventInput) -> EventResult:
        """PATCH /events/{id} with If-Match: the @odata.etag (W/"changeKey")."""
        return await self.svc.update(inp)

    @activity.defn(name="outlook.delete_event")
    async def delete_event(self, inp: DeleteEventInput) -> DeleteResult:
        """DELETE /events/{id}: 204, and 404 on a repeated delete is success."""
        return await self.svc.delete(inp)

    @activity.defn(name="outlook.list_events")
    async def list_events(self, inp: ListEventsInput) -> EventList:
        """calendarView: occurrences, exceptions and single instances in the window."""
        return await self.svc.list_window(inp)

    @activity.defn(name="outlook.list_instances")
    async def list_instances(self, inp: InstancesInput) -> EventList:
        return await self.svc.instances(inp)

    @activity.defn(name="outlook.find_availability")
    async def find_availability(self, inp: AvailabilityInput) -> AvailabilityResult:
        """getSchedule (≤20 schedules, <62 days) with the attendees' own working hours and zones."""
        return await self.svc.find_availability(inp)

    @activity.defn(name="outlook.check_conflicts")
    async def check_conflicts(self, inp: ConflictCheckInput) -> ConflictCheckResult:
        return await self.svc.check_conflicts(inp)

    def all(self) -> list[Any]:
        return [self.create_event, self.create_events, self.get_event, self.update_event, self.delete_event,
                self.list_events, self.list_instances, self.find_availability, self.check_conflicts]


async def test_connection(act: Action) -> dict[str, Any]:
    """A real call: GET /me (or /users/{mailbox}) and report the mailbox."""
    data = await OutlookCalendarClient(act).me()
    address = data.get("mail") or data.get("userPrincipalName")
    problems = [] if address else ["the mailbox has no address"]
    return {"ok": not problems, "problems": problems,
            "mailbox": {"id": data.get("id"), "mail": address, "displayName": data.get("displayName")}}
