"""`calendar.*` activities, built once for every calendar provider: each dispatches on its input's integration type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.calendar.model import (
    AvailabilityInput,
    AvailabilityResult,
    CalendarEvent,
    ConflictCheckInput,
    ConflictCheckResult,
    ConnectionRef,
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
from activities.calendar.service import CalendarCapability, CalendarService
from core.errors import PermanentError

if TYPE_CHECKING:
    from core.runtime import Runtime

CAPABILITY = "calendar"


class CalendarActivities:
    """Bound to the worker's runtime; the registry's calendar providers serve them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.services = {itype: CalendarService(rt, cap.provider, cap.backend)
                         for itype, cap in rt.registry.capabilities(CAPABILITY).items()
                         if isinstance(cap, CalendarCapability)}

    def service(self, inp: ConnectionRef) -> CalendarService:
        found = self.services.get(inp.integration_type)
        if found is None:
            raise PermanentError(f"integration_type: no calendar provider serves {inp.integration_type!r} "
                                 f"(one of {', '.join(sorted(self.services))})", code="unknown_integration_type",
                                 details={"field": "integration_type"}).to_application_error()
        return found

    @activity.defn(name="calendar.create_event")
    async def create_event(self, inp: CreateEventInput) -> EventResult:
        """Create idempotently: Google's client-supplied id, Graph's transactionId, both from the key."""
        return await self.service(inp).create(inp)

    @activity.defn(name="calendar.create_events")
    async def create_events(self, inp: CreateEventsInput) -> CreateEventsResult:
        """Up to 100 events in one calendar: Graph JSON batches of 20, Google concurrent creates."""
        return await self.service(inp).create_many(inp)

    @activity.defn(name="calendar.get_event")
    async def get_event(self, inp: GetEventInput) -> CalendarEvent:
        return await self.service(inp).get(inp)

    @activity.defn(name="calendar.update_event")
    async def update_event(self, inp: UpdateEventInput) -> EventResult:
        """Patch under If-Match (the etag or changeKey just read, or the caller's)."""
        return await self.service(inp).update(inp)

    @activity.defn(name="calendar.delete_event")
    async def delete_event(self, inp: DeleteEventInput) -> DeleteResult:
        """Delete; a repeated delete is a success."""
        return await self.service(inp).delete(inp)

    @activity.defn(name="calendar.list_events")
    async def list_events(self, inp: ListEventsInput) -> EventList:
        """Events in a window, recurring series expanded."""
        return await self.service(inp).list_window(inp)

    @activity.defn(name="calendar.list_instances")
    async def list_instances(self, inp: InstancesInput) -> EventList:
        return await self.service(inp).instances(inp)

    @activity.defn(name="calendar.find_availability")
    async def find_availability(self, inp: AvailabilityInput) -> AvailabilityResult:
        """Free/busy for the participants, then free slots within their working hours."""
        return await self.service(inp).find_availability(inp)

    @activity.defn(name="calendar.check_conflicts")
    async def check_conflicts(self, inp: ConflictCheckInput) -> ConflictCheckResult:
        return await self.service(inp).check_conflicts(inp)

    def all(self) -> list[Any]:
        return [self.create_event, self.create_events, self.get_event, self.update_event, self.delete_event,
                self.list_events, self.list_instances, self.find_availability, self.check_conflicts]
