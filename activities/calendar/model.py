"""Provider-neutral calendar models (pydantic, plain JSON, side-effect free: workflows import them).

`EventSpec` is what a caller asks for and carries OpenSyte's `CalendarAction` fields (calendar_id, title,
description, location, start_time, end_time, is_all_day, timezone, attendees, organizer, reminders,
recurrence, variables), accepted under OpenSyte's camelCase names too (`core.contract`). `CalendarEvent` is
what a provider holds, normalised: aware times in the event's IANA zone, exclusive all-day end dates,
recurrence as RFC 5545 lines.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from core.contract import ContractModel, WorkflowInput

SendUpdates = Literal["all", "externalOnly", "none"]
ConflictPolicy = Literal["ignore", "fail", "next_free_slot"]
GapPolicy = Literal["reject", "shift"]
ResponseStatus = Literal["needsAction", "accepted", "declined", "tentative"]
ShowAs = Literal["busy", "free", "tentative", "oof", "workingElsewhere"]
BusyStatus = Literal["busy", "tentative", "oof", "workingElsewhere"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

DELIVER_WITHIN = "seconds to keep retrying through a provider outage before the change fails; default 1 day"
MAX_ATTENDEES = 500  # Graph's documented per-event maximum; Google's is higher
MAX_REMINDER_OVERRIDES = 5
MAX_REMINDER_MINUTES = 40320
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class _Model(ContractModel):
    pass


def _check_email(value: str, field: str) -> str:
    value = value.strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError(f"{field}: {value!r} is not an email address")
    return value


class ConnectionRef(_Model):
    """Which connection of which organization to act through; `integration_type` picks the calendar provider
    (OpenSyte's GOOGLE_CALENDAR or OUTLOOK_CALENDAR: any registered calendar provider)."""

    organization_id: str = Field(min_length=1, max_length=128)
    integration_type: str = Field(min_length=1, max_length=64, examples=["GOOGLE_CALENDAR", "OUTLOOK_CALENDAR"])
    connection: str = Field(default="default", min_length=1, max_length=128)


class Person(_Model):
    email: str
    name: str | None = None


class Attendee(_Model):
    """A guest (on input a plain email string is accepted too: `AttendeeInput`)."""

    email: str
    name: str | None = None
    optional: bool = False
    resource: bool = False
    response_status: ResponseStatus = "needsAction"
    organizer: bool = False

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        # A placeholder ({{customer.email}}) is checked once its variable is filled in.
        return v if "{" in v else _check_email(v, "attendees.email")


def _email_to_object(v: Any) -> Any:
    return {"email": v} if isinstance(v, str) else v


# OpenSyte stores attendees as e-mail strings (or `{{customer.email}}` placeholders); objects say more.
AttendeeInput = Annotated[Attendee, BeforeValidator(_email_to_object, json_schema_input_type=str | Attendee)]


class Reminder(_Model):
    method: Literal["popup", "email"] = "popup"
    minutes: int = Field(ge=0, le=MAX_REMINDER_MINUTES)


class Reminders(_Model):
    """`use_default` means the calendar's own defaults; otherwise `overrides` (at most 5)."""

    use_default: bool = True
    overrides: list[Reminder] = Field(default_factory=list, max_length=MAX_REMINDER_OVERRIDES)

    @model_validator(mode="before")
    @classmethod
    def _overrides_alone(cls, v: Any) -> Any:
        # Google's own {overrides: [...]} means "not the defaults".
        if isinstance(v, dict) and "overrides" in v and "use_default" not in v and "useDefault" not in v:
            return {**v, "use_default": False}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Reminders:
        if self.use_default and self.overrides:
            raise ValueError("reminders: use_default and overrides are exclusive")
        return self


def _reminder_list(v: Any) -> Any:
    if isinstance(v, list):
        return {"use_default": False, "overrides": [{"minutes": x} if isinstance(x, int) else x for x in v]}
    return v


_ReminderItem = Annotated[int, Field(ge=0, le=MAX_REMINDER_MINUTES, description="minutes before")] | Reminder
_ReminderList = Annotated[list[_ReminderItem], Field(max_length=MAX_REMINDER_OVERRIDES)]
# OpenSyte's `reminders` is free JSON: a list of minutes or of {method, minutes}, or {use_default, overrides}.
RemindersInput = Annotated[Reminders, BeforeValidator(_reminder_list, json_schema_input_type=Reminders | _ReminderList)]


class EventTime(_Model):
    """A timed boundary (aware `date_time` in `time_zone`) or an all-day boundary (`date`)."""

    date_time: datetime | None = None
    date: dt.date | None = None
    time_zone: str | None = None

    @model_validator(mode="after")
    def _one(self) -> EventTime:
        if (self.date_time is None) == (self.date is None):
            raise ValueError("exactly one of date_time and date is required")
        if self.date_time is not None and self.date_time.tzinfo is None:
            raise ValueError("date_time must carry an offset")
        return self


class CalendarEvent(_Model):
    """An event as a provider holds it, in provider-neutral form."""

    provider: str | None = None
    id: str | None = None
    calendar_id: str | None = None
    etag: str | None = None
    ical_uid: str | None = None
    html_link: str | None = None
    status: Literal["confirmed", "tentative", "cancelled"] = "confirmed"
    title: str = ""
    description: str | None = None
    location: str | None = None
    start: EventTime
    end: EventTime
    time_zone: str
    attendees: list[Attendee] = Field(default_factory=list)
    organizer: Person | None = None
    reminders: Reminders = Field(default_factory=Reminders)
    recurrence: list[str] = Field(default_factory=list)
    recurring_event_id: str | None = None
    original_start: EventTime | None = None
    online_meeting: bool = False
    online_meeting_url: str | None = None
    show_as: ShowAs = "busy"
    created: datetime | None = None
    updated: datetime | None = None

    @property
    def all_day(self) -> bool:
        return self.start.date is not None

    def writable(self) -> dict[str, Any]:
        """The fields a caller sets (round trips compare these)."""
        return self.model_dump(mode="json", include={
            "title", "description", "location", "start", "end", "time_zone", "attendees", "reminders",
            "recurrence", "online_meeting", "show_as", "status"})


def _one_line(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


_RecurrenceShapes = list[str] | dict[str, Any]
# RFC 5545 lines (one line alone is accepted) or a Graph {pattern, range} object.
RecurrenceInput = Annotated[_RecurrenceShapes,
                            BeforeValidator(_one_line, json_schema_input_type=_RecurrenceShapes | str)]


class EventSpec(_Model):
    """What to create: OpenSyte's CalendarAction fields (same names), plus a few of our own."""

    calendar_id: str | None = Field(default=None, max_length=1024)
    title: str = Field(min_length=1, max_length=1024)
    description: str | None = Field(default=None, max_length=8192)
    location: str | None = Field(default=None, max_length=1024)
    start_time: str = Field(min_length=1, max_length=64, description="ISO datetime (or date when isAllDay)")
    end_time: str = Field(min_length=1, max_length=64,
                         description="ISO datetime; for all-day events the LAST day (inclusive)")
    is_all_day: bool = False
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA zone, e.g. Europe/Berlin")
    attendees: list[AttendeeInput] = Field(default_factory=list, max_length=MAX_ATTENDEES)
    organizer: str | None = None
    reminders: RemindersInput | None = None
    recurrence: RecurrenceInput | None = Field(
        default=None, description="RFC 5545 lines (RRULE/EXDATE/RDATE) or a Graph {pattern, range} object")
    variables: dict[str, Any] = Field(default_factory=dict)
    online_meeting: bool = False
    show_as: Literal["busy", "free"] = "busy"

    @field_validator("organizer")
    @classmethod
    def _organizer(cls, v: str | None) -> str | None:
        return None if v is None or "{" in v else _check_email(v, "organizer")


class EventPatch(_Model):
    """Changes to an event; only the fields given are changed. Times go together with their zone."""

    title: str | None = Field(default=None, min_length=1, max_length=1024)
    description: str | None = Field(default=None, max_length=8192)
    location: str | None = Field(default=None, max_length=1024)
    start_time: str | None = Field(default=None, max_length=64)
    end_time: str | None = Field(default=None, max_length=64)
    is_all_day: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)
    attendees: list[AttendeeInput] | None = Field(default=None, max_length=MAX_ATTENDEES)
    reminders: RemindersInput | None = None
    recurrence: RecurrenceInput | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    online_meeting: bool | None = None
    show_as: Literal["busy", "free"] | None = None

    @model_validator(mode="after")
    def _times_together(self) -> EventPatch:
        if (self.start_time is None) != (self.end_time is None):
            raise ValueError("startTime and endTime are changed together")
        return self


# ---- activity inputs and results ------------------------------------------------------------
class CreateEventInput(ConnectionRef):
    calendar_id: str | None = None
    event: EventSpec
    send_updates: SendUpdates = "all"
    idempotency_key: str | None = Field(default=None, max_length=512)
    dst_gap_policy: GapPolicy | None = None


MAX_EVENTS_PER_CALL = 100  # five Graph batches of 20; one activity stays well inside its timeout


class CreateEventsInput(ConnectionRef):
    """Many events in one calendar: Graph sends them in JSON batches of 20, Google concurrently. No conflict
    policy; each event is idempotent under `{idempotency_key}:{index}`."""

    calendar_id: str | None = None
    events: list[EventSpec] = Field(min_length=1, max_length=MAX_EVENTS_PER_CALL)
    send_updates: SendUpdates = "all"
    idempotency_key: str | None = Field(default=None, max_length=512)
    dst_gap_policy: GapPolicy | None = None


class EventOutcome(_Model):
    """One event of a bulk create: the created event's id, or the classified error that refused it."""

    index: int
    event_id: str | None = None
    error: dict[str, Any] | None = None


class CreateEventsResult(_Model):
    provider: str = ""  # the plugin that served it (google_calendar, outlook)
    results: list[EventOutcome]
    created: int = 0
    failed: int = 0


class GetEventInput(ConnectionRef):
    calendar_id: str | None = None
    event_id: str = Field(min_length=1, max_length=1024)
    time_zone: str | None = None


class UpdateEventInput(ConnectionRef):
    calendar_id: str | None = None
    event_id: str = Field(min_length=1, max_length=1024)
    changes: EventPatch
    etag: str | None = Field(default=None, description="only apply if the event still has this etag/changeKey")
    send_updates: SendUpdates = "all"
    dst_gap_policy: GapPolicy | None = None


class DeleteEventInput(ConnectionRef):
    calendar_id: str | None = None
    event_id: str = Field(min_length=1, max_length=1024)
    etag: str | None = None
    send_updates: SendUpdates = "all"


class ListEventsInput(ConnectionRef):
    calendar_id: str | None = None
    time_min: str = Field(description="RFC 3339 with offset; events ending after it")
    time_max: str = Field(description="RFC 3339 with offset; events starting before it")
    max_results: int = Field(default=250, ge=1, le=2500)
    page_token: str | None = None
    time_zone: str | None = None


class InstancesInput(ConnectionRef):
    calendar_id: str | None = None
    event_id: str = Field(min_length=1, max_length=1024)
    time_min: str
    time_max: str
    max_results: int = Field(default=250, ge=1, le=2500)
    page_token: str | None = None


class EventResult(_Model):
    provider: str = ""  # the plugin that served it (google_calendar, outlook)
    event: CalendarEvent
    created: bool = False
    notified: list[str] = Field(default_factory=list)
    notification: Literal["invitation", "update", "cancellation", "none"] = "none"


class EventList(_Model):
    events: list[CalendarEvent] = Field(default_factory=list)
    deleted_ids: list[str] = Field(default_factory=list, description="cancelled events seen by an incremental sync")
    next_page_token: str | None = None
    next_sync_token: str | None = None
    full_sync: bool = False


class DeleteResult(_Model):
    provider: str = ""  # the plugin that served it (google_calendar, outlook)
    event_id: str
    deleted: bool
    already_deleted: bool = False
    notified: list[str] = Field(default_factory=list)


# ---- availability ------------------------------------------------------------------------------
class WorkingHours(_Model):
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]), min_length=1)
    start: str = Field(default="09:00", pattern=r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
    end: str = Field(default="17:00", pattern=r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
    time_zone: str = "UTC"


class Participant(_Model):
    email: str
    required: bool = True
    time_zone: str | None = None
    working_hours: WorkingHours | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return _check_email(v, "participants.email")


class BusyInterval(_Model):
    start: datetime
    end: datetime
    status: BusyStatus = "busy"


class ParticipantAvailability(_Model):
    email: str
    required: bool = True
    busy: list[BusyInterval] = Field(default_factory=list)
    working_hours: WorkingHours | None = None
    # provider: the calendar's own; input: given; time_zone: 09:00-17:00 in the zone given for the person;
    # default: 09:00-17:00 in the organizer's zone
    working_hours_source: Literal["provider", "input", "time_zone", "default", "none"] = "none"
    availability_view: str | None = None
    error: str | None = None


class Slot(_Model):
    start: datetime
    end: datetime
    optional_free: list[str] = Field(default_factory=list)


class Conflict(_Model):
    email: str
    start: datetime
    end: datetime
    status: BusyStatus = "busy"


class AvailabilityInput(ConnectionRef):
    calendar_id: str | None = None
    participants: list[Participant] = Field(min_length=1, max_length=50)
    window_start: str
    window_end: str
    duration_minutes: int = Field(default=30, ge=5, le=24 * 60)
    granularity_minutes: int = Field(default=15, ge=5, le=240)
    working_hours_only: bool = True
    max_slots: int = Field(default=5, ge=1, le=50)
    time_zone: str = "UTC"
    tentative_is_busy: bool = True


class AvailabilityResult(_Model):
    provider: str = ""  # the plugin that served it (google_calendar, outlook)
    participants: list[ParticipantAvailability]
    slots: list[Slot] = Field(default_factory=list)


class ConflictCheckInput(ConnectionRef):
    calendar_id: str | None = None
    event: EventSpec
    policy: ConflictPolicy
    horizon_days: int = Field(default=14, ge=1, le=60)
    working_hours_only: bool = True
    dst_gap_policy: GapPolicy | None = None


class ConflictCheckResult(_Model):
    decision: Literal["free", "conflict", "moved"]
    conflicts: list[Conflict] = Field(default_factory=list)
    start: str
    end: str
    moved_from: str | None = None
    unchecked: list[str] = Field(default_factory=list, description="participants whose calendars were unreadable")


# ---- workflow inputs and results ---------------------------------------------------------------
class CalendarActionInput(ConnectionRef, WorkflowInput):
    """Input of `CreateCalendarEvent`: one OpenSyte CalendarAction row, field for field."""

    calendar_id: str | None = None
    title: str = Field(min_length=1, max_length=1024)
    description: str | None = None
    location: str | None = None
    start_time: str
    end_time: str
    is_all_day: bool = False
    timezone: str = "UTC"
    attendees: list[AttendeeInput] = Field(default_factory=list, max_length=MAX_ATTENDEES)
    organizer: str | None = None
    reminders: RemindersInput | None = None
    recurrence: RecurrenceInput | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    online_meeting: bool = False
    show_as: Literal["busy", "free"] = "busy"
    conflict_policy: ConflictPolicy = "ignore"
    horizon_days: int = Field(default=14, ge=1, le=60)
    working_hours_only: bool = True
    send_updates: SendUpdates = "all"
    dst_gap_policy: GapPolicy | None = None
    idempotency_key: str | None = Field(default=None, max_length=512)
    deliver_within: int | None = Field(default=None, ge=60, le=7 * 86_400, description=DELIVER_WITHIN)

    def spec(self) -> EventSpec:
        return EventSpec.model_validate(self.model_dump(include=set(EventSpec.model_fields)))


class CreateCalendarEventResult(_Model):
    provider: str
    event: CalendarEvent
    notified: list[str] = Field(default_factory=list)
    decision: Literal["free", "conflict", "moved", "unchecked"] = "unchecked"
    conflicts: list[Conflict] = Field(default_factory=list)
    moved_from: str | None = None


class UpdateCalendarEventInput(ConnectionRef, WorkflowInput):
    calendar_id: str | None = None
    event_id: str = Field(min_length=1, max_length=1024)
    changes: EventPatch
    etag: str | None = None
    send_updates: SendUpdates = "all"
    dst_gap_policy: GapPolicy | None = None
    deliver_within: int | None = Field(default=None, ge=60, le=7 * 86_400, description=DELIVER_WITHIN)


class UpdateCalendarEventResult(_Model):
    provider: str
    event: CalendarEvent
    notified: list[str] = Field(default_factory=list)
    notification: Literal["invitation", "update", "cancellation", "none"] = "none"


class CancelCalendarEventInput(ConnectionRef, WorkflowInput):
    calendar_id: str | None = None
    event_id: str = Field(min_length=1, max_length=1024)
    etag: str | None = None
    send_updates: SendUpdates = "all"
    deliver_within: int | None = Field(default=None, ge=60, le=7 * 86_400, description=DELIVER_WITHIN)


class CancelCalendarEventResult(_Model):
    provider: str
    event_id: str
    deleted: bool
    already_deleted: bool = False
    notified: list[str] = Field(default_factory=list)


class MeetingAttendee(_Model):
    """A meeting guest (a plain email string is accepted too: `MeetingAttendeeInput`)."""

    email: str
    name: str | None = None
    optional: bool = False
    time_zone: str | None = None
    working_hours: WorkingHours | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return _check_email(v, "attendees.email")


MeetingAttendeeInput = Annotated[MeetingAttendee,
                                 BeforeValidator(_email_to_object, json_schema_input_type=str | MeetingAttendee)]


class ScheduleMeetingInput(ConnectionRef, WorkflowInput):
    """Find a slot for everyone within a window, create the meeting, send the invitations."""

    calendar_id: str | None = None
    title: str = Field(min_length=1, max_length=1024)
    description: str | None = None
    location: str | None = None
    organizer: str
    timezone: str = Field(default="UTC", description="the organizer's IANA zone (slot alignment, event zone)")
    organizer_working_hours: WorkingHours | None = None
    attendees: list[MeetingAttendeeInput] = Field(min_length=1, max_length=49)
    duration_minutes: int = Field(default=30, ge=5, le=24 * 60)
    window_start: str = Field(description="RFC 3339 with offset, or wall time in `timezone`")
    window_end: str
    granularity_minutes: int = Field(default=15, ge=5, le=240)
    working_hours_only: bool = True
    reminders: RemindersInput | None = None
    online_meeting: bool = False
    send_updates: SendUpdates = "all"
    idempotency_key: str | None = Field(default=None, max_length=512)

    @field_validator("organizer")
    @classmethod
    def _organizer(cls, v: str) -> str:
        return _check_email(v, "organizer")


class ScheduleMeetingResult(_Model):
    provider: str
    slot: Slot
    event: CalendarEvent
    notified: list[str] = Field(default_factory=list)
    alternatives: list[Slot] = Field(default_factory=list)
    availability: list[ParticipantAvailability] = Field(default_factory=list)


MAX_BULK_EVENTS = 1000


class BulkCreateCalendarEventsInput(ConnectionRef, WorkflowInput):
    """Input of `BulkCreateCalendarEvents`: many events for one calendar (e.g. a training for every team)."""

    calendar_id: str | None = None
    events: list[EventSpec] = Field(min_length=1, max_length=MAX_BULK_EVENTS, description="split larger sets")
    send_updates: SendUpdates = "all"
    chunk_size: int = Field(default=50, ge=1, le=MAX_EVENTS_PER_CALL,
                            description="events per activity (Graph sends them 20 per $batch)")
    idempotency_key: str | None = Field(default=None, max_length=200, description="defaults to the workflow id")


class BulkCreateCalendarEventsResult(_Model):
    provider: str
    created: int
    failed: int
    results: list[EventOutcome]
