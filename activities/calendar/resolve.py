"""From a caller's EventSpec/EventPatch (OpenSyte CalendarAction fields) to a validated CalendarEvent.

Everything a provider would refuse, and everything we refuse on purpose (DST gaps under the reject
policy, unknown zones, end before start, missing variables), is a PermanentError naming the field,
raised before any provider call.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from activities.calendar import recurrence as rec
from activities.calendar.model import (
    Attendee,
    CalendarEvent,
    EventPatch,
    EventSpec,
    EventTime,
    GapPolicy,
    Person,
    Reminders,
)
from activities.calendar.tz import parse_date, parse_datetime, zone
from core.errors import PermanentError

# OpenSyte has two placeholder syntaxes: `{VAR}` (variable-resolver.ts) and `{{ var }}` (prebuilt executor).
_DOUBLE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
_SINGLE = re.compile(r"\{([A-Za-z0-9_.]+)\}")
CHANGEABLE = ("title", "description", "location", "times", "attendees", "reminders", "recurrence",
              "online_meeting", "show_as")


def _lookup(variables: dict[str, Any], name: str) -> Any:
    if name in variables:
        return variables[name]
    cur: Any = variables
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(name)
        cur = cur[part]
    return cur


def substitute(text: str | None, variables: dict[str, Any], field: str) -> str | None:
    """Fill `{{ var }}` and `{VAR}` placeholders; with no variables given, text is left as written."""
    if text is None or not variables:
        return text

    def repl(m: re.Match[str]) -> str:
        try:
            value = _lookup(variables, m.group(1))
        except KeyError:
            raise PermanentError(f"{field}: variable {m.group(1)!r} is not among the given variables "
                                 f"({', '.join(sorted(variables)) or 'none'})", code="missing_variable",
                                 details={"field": field, "variable": m.group(1)}) from None
        return str(value)

    return _SINGLE.sub(repl, _DOUBLE.sub(repl, text))


def _attendees(items: list[Attendee], variables: dict[str, Any]) -> list[Attendee]:
    out: list[Attendee] = []
    seen: set[str] = set()
    for a in items:
        email = substitute(a.email, variables, "attendees") or a.email
        att = Attendee.model_validate({**a.model_dump(), "email": email})
        if att.email.lower() in seen:
            raise PermanentError(f"attendees: {att.email} is listed twice", code="duplicate_attendee",
                                 details={"field": "attendees", "value": att.email})
        seen.add(att.email.lower())
        out.append(att)
    return out


def _wall(value: str) -> datetime | None:
    """The naive wall-clock time written in `value`, or None when it carries an offset (or is no date-time)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is None else None


def _times(start_s: str, end_s: str, all_day: bool, tz_name: str, policy: GapPolicy) -> tuple[EventTime, EventTime]:
    tz = zone(tz_name, "timezone")
    if all_day:
        first, last = parse_date(start_s, "startTime"), parse_date(end_s, "endTime")
        if last < first:
            raise PermanentError(f"endTime: the last day {last} is before the first day {first}",
                                 code="invalid_time_range", details={"field": "endTime"})
        # Providers take an exclusive end date: a one-day event on June 1 ends on June 2.
        return (EventTime(date=first, time_zone=tz.key), EventTime(date=last + timedelta(days=1), time_zone=tz.key))
    start = parse_datetime(start_s, tz, policy, "startTime")
    end = parse_datetime(end_s, tz, policy, "endTime")
    start_wall, end_wall = _wall(start_s), _wall(end_s)
    if start_wall is not None and end_wall is not None and start.replace(tzinfo=None) != start_wall:
        # The start fell in a DST gap and was shifted forward: keep the length the caller asked for
        # (02:30-03:30 on a spring-forward day becomes 03:30-04:30, not an empty 03:30-03:30).
        end = max(end, start + (end_wall - start_wall))
    if end <= start:
        raise PermanentError(f"endTime: {end.isoformat()} must be after startTime {start.isoformat()}",
                             code="invalid_time_range", details={"field": "endTime"})
    return EventTime(date_time=start, time_zone=tz.key), EventTime(date_time=end, time_zone=tz.key)


def _recurrence(value: list[str] | dict[str, Any] | None, start: EventTime, variables: dict[str, Any]) -> list[str]:
    if not value:
        return []
    tz = zone(start.time_zone, "timezone")
    anchor: datetime | Any = start.date_time if start.date_time is not None else start.date
    if isinstance(value, dict):
        return rec.from_graph(value, anchor, tz)
    lines = [substitute(line, variables, "recurrence") or "" for line in value]
    return rec.normalize(lines, anchor, tz)


def resolve_event(spec: EventSpec, policy: GapPolicy = "reject") -> CalendarEvent:
    """A validated, provider-neutral event for a CalendarAction-shaped request."""
    v = spec.variables
    tz_name = substitute(spec.timezone, v, "timezone") or "UTC"
    start, end = _times(substitute(spec.start_time, v, "startTime") or "",
                        substitute(spec.end_time, v, "endTime") or "", spec.is_all_day, tz_name, policy)
    organizer = substitute(spec.organizer, v, "organizer")
    return CalendarEvent(
        title=substitute(spec.title, v, "title") or "",
        description=substitute(spec.description, v, "description"),
        location=substitute(spec.location, v, "location"),
        start=start,
        end=end,
        time_zone=start.time_zone or "UTC",
        attendees=_attendees(spec.attendees, v),
        organizer=Person.model_validate({"email": organizer}) if organizer else None,
        reminders=spec.reminders or Reminders(),
        recurrence=_recurrence(spec.recurrence, start, v),
        online_meeting=spec.online_meeting,
        show_as=spec.show_as,
    )


def apply_patch(current: CalendarEvent, patch: EventPatch,
                policy: GapPolicy = "reject") -> tuple[CalendarEvent, set[str]]:
    """The event after `patch`, and which groups of fields changed (see CHANGEABLE)."""
    v = patch.variables
    data: dict[str, Any] = {}
    changed: set[str] = set()
    for name in ("title", "description", "location"):
        value = getattr(patch, name)
        if value is not None:
            data[name] = substitute(value, v, name)
    start, end = current.start, current.end
    if patch.start_time is not None and patch.end_time is not None:
        all_day = current.all_day if patch.is_all_day is None else patch.is_all_day
        tz_name = substitute(patch.timezone, v, "timezone") or current.time_zone
        start, end = _times(substitute(patch.start_time, v, "startTime") or "",
                            substitute(patch.end_time, v, "endTime") or "", all_day, tz_name, policy)
    elif patch.is_all_day is not None and patch.is_all_day != current.all_day:
        raise PermanentError("isAllDay: switching between all-day and timed needs startTime and endTime too",
                             code="invalid_patch", details={"field": "isAllDay"})
    elif patch.timezone is not None:
        # A new zone alone keeps the same instants, shown in the new zone.
        tz = zone(substitute(patch.timezone, v, "timezone"), "timezone")
        s_dt, e_dt = current.start.date_time, current.end.date_time
        if s_dt is None or e_dt is None:
            start = EventTime(date=current.start.date, time_zone=tz.key)
            end = EventTime(date=current.end.date, time_zone=tz.key)
        else:
            start = EventTime(date_time=s_dt.astimezone(tz), time_zone=tz.key)
            end = EventTime(date_time=e_dt.astimezone(tz), time_zone=tz.key)
    if (start, end) != (current.start, current.end):
        data.update(start=start, end=end, time_zone=start.time_zone or current.time_zone)
        changed.add("times")
    if patch.attendees is not None:
        data["attendees"] = _attendees(patch.attendees, v)
    if patch.reminders is not None:
        data["reminders"] = patch.reminders
    if patch.online_meeting is not None:
        data["online_meeting"] = patch.online_meeting
    if patch.show_as is not None:
        data["show_as"] = patch.show_as
    if patch.recurrence is not None:
        data["recurrence"] = _recurrence(patch.recurrence, start, v)
    elif "times" in changed and current.recurrence and not current.recurring_event_id:
        try:
            data["recurrence"] = _recurrence(current.recurrence, start, {})
        except PermanentError as exc:
            raise PermanentError(f"{exc.message} (the series' new start must fit its rule; pass recurrence too)",
                                 code=exc.code, details=exc.details) from None
    updated = current.model_copy(update=data)
    for name in CHANGEABLE:
        if name == "times":
            continue
        if name in data and getattr(updated, name) != getattr(current, name):
            changed.add(name)
    return updated, changed
