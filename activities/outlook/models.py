"""Outlook inputs and results: the provider-neutral calendar models (Graph needs nothing of its own)."""

from __future__ import annotations

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
    EventResult,
    GetEventInput,
    InstancesInput,
    ListEventsInput,
    UpdateEventInput,
)

__all__ = [
    "AvailabilityInput", "AvailabilityResult", "CalendarEvent", "ConflictCheckInput", "ConflictCheckResult",
    "CreateEventInput", "CreateEventsInput", "CreateEventsResult",
    "DeleteEventInput", "DeleteResult", "EventList", "EventResult", "GetEventInput",
    "InstancesInput", "ListEventsInput", "UpdateEventInput",
]
