"""Google Calendar inputs and results: the provider-neutral calendar models plus Google's incremental sync."""

from __future__ import annotations

from pydantic import Field

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


class SyncInput(ConnectionRef):
    """events.list with a sync token: changes since the last sync (a full sync when the token is gone)."""

    calendar_id: str | None = None
    sync_token: str | None = Field(default=None, description="nextSyncToken of the previous sync; None = full sync")
    max_pages: int = Field(default=20, ge=1, le=200)


__all__ = [
    "AvailabilityInput", "AvailabilityResult", "CalendarEvent", "ConflictCheckInput", "ConflictCheckResult",
    "CreateEventInput", "CreateEventsInput", "CreateEventsResult",
    "DeleteEventInput", "DeleteResult", "EventList", "EventResult", "GetEventInput",
    "InstancesInput", "ListEventsInput", "SyncInput", "UpdateEventInput",
]
