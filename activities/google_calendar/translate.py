"""CalendarEvent ⇄ Google Calendar v3 Event resource (discovery doc `schemas.Event`)."""

from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime
from typing import Any

from activities.calendar.model import (
    Attendee,
    CalendarEvent,
    EventTime,
    Person,
    Reminder,
    Reminders,
)
from activities.calendar.tz import zone
from core.errors import PermanentError


def event_id_for(key: str) -> str:
    """A client-supplied event id for an idempotency key: base32hex (a-v, 0-9), 52 characters."""
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def _time_out(t: EventTime) -> dict[str, Any]:
    if t.date is not None:
        out: dict[str, Any] = {"date": t.date.isoformat()}
        if t.time_zone:
            # The zone a recurring series is expanded in; kept on single all-day events too, so the
            # event's zone survives a round trip (the date itself is never converted).
            out["timeZone"] = t.time_zone
        return out
    if t.date_time is None:  # pragma: no cover - model invariant
        raise PermanentError("event time missing", code="invalid_time")
    tz = zone(t.time_zone or "UTC")
    # RFC 3339 with the offset AND the IANA zone: the offset pins ambiguous times, the zone drives
    # recurrence expansion (required for recurring events).
    return {"dateTime": t.date_time.astimezone(tz).isoformat(), "timeZone": tz.key}


def _attendee_out(a: Attendee) -> dict[str, Any]:
    out: dict[str, Any] = {"email": a.email, "responseStatus": a.response_status}
    if a.name:
        out["displayName"] = a.name
    if a.optional:
        out["optional"] = True
    if a.resource:
        out["resource"] = True
    return out


def _reminders_out(r: Reminders) -> dict[str, Any]:
    if r.use_default:
        return {"useDefault": True}
    return {"useDefault": False, "overrides": [{"method": o.method, "minutes": o.minutes} for o in r.overrides]}


def _transparency(show_as: str) -> str:
    if show_as not in ("busy", "free"):
        raise PermanentError(f"show_as: Google Calendar cannot express {show_as!r} (only busy or free)",
                             code="unsupported_by_provider",
                             details={"field": "show_as", "provider": "google_calendar"})
    return "opaque" if show_as == "busy" else "transparent"


def conference_request(request_id: str) -> dict[str, Any]:
    return {"createRequest": {"requestId": request_id, "conferenceSolutionKey": {"type": "hangoutsMeet"}}}


FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "title": ("summary",), "description": ("description",), "location": ("location",),
    "times": ("start", "end"), "attendees": ("attendees",), "reminders": ("reminders",),
    "recurrence": ("recurrence",), "online_meeting": ("conferenceData",), "show_as": ("transparency",),
}


def to_google(ev: CalendarEvent, *, request_id: str | None = None) -> dict[str, Any]:
    """The Event body for events.insert (also the source of patch bodies)."""
    recurring = bool(ev.recurrence)
    body: dict[str, Any] = {
        "summary": ev.title,
        "start": _time_out(ev.start),
        "end": _time_out(ev.end),
        "attendees": [_attendee_out(a) for a in ev.attendees],
        "reminders": _reminders_out(ev.reminders),
        "transparency": _transparency(ev.show_as),
    }
    if ev.description is not None:
        body["description"] = ev.description
    if ev.location is not None:
        body["location"] = ev.location
    if recurring:
        body["recurrence"] = list(ev.recurrence)
    if ev.status == "tentative":
        body["status"] = "tentative"
    if ev.online_meeting:
        body["conferenceData"] = conference_request(request_id or hashlib.sha256(
            ev.model_dump_json().encode()).hexdigest()[:32])
    return body


def to_google_patch(ev: CalendarEvent, changed: set[str], *, request_id: str | None = None) -> dict[str, Any]:
    """A patch body with the changed groups only (null clears a field, as patch semantics allow)."""
    full = to_google(ev, request_id=request_id)
    out: dict[str, Any] = {}
    for group in changed:
        for key in FIELD_GROUPS[group]:
            out[key] = full.get(key)
    if "times" in changed and ev.recurrence:
        out["recurrence"] = full["recurrence"]
    if "recurrence" in changed and not ev.recurrence:
        out["recurrence"] = []
    return out


def _parse_dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _time_in(raw: dict[str, Any], fallback_tz: str) -> EventTime:
    tz_name = raw.get("timeZone") or fallback_tz
    if raw.get("date"):
        return EventTime(date=date.fromisoformat(raw["date"]), time_zone=zone(tz_name).key)
    tz = zone(tz_name, "timeZone")
    return EventTime(date_time=_parse_dt(raw["dateTime"]).astimezone(tz), time_zone=tz.key)


def from_google(item: dict[str, Any], calendar_id: str | None, *, calendar_tz: str | None = None) -> CalendarEvent:
    """A CalendarEvent for an Event resource; `calendar_tz` stands in when a time carries no zone."""
    fallback = calendar_tz or "UTC"
    start = _time_in(item.get("start") or {}, fallback)
    end = _time_in(item.get("end") or {}, start.time_zone or fallback)
    reminders_raw = item.get("reminders") or {"useDefault": True}
    overrides = [Reminder(method=o.get("method", "popup"), minutes=int(o.get("minutes", 0)))
                 for o in reminders_raw.get("overrides") or []]
    organizer = item.get("organizer") or {}
    conference = item.get("conferenceData") or {}
    video = next((p.get("uri") for p in conference.get("entryPoints") or [] if p.get("entryPointType") == "video"),
                 None)
    return CalendarEvent(
        provider="google_calendar",
        id=item.get("id"),
        calendar_id=calendar_id,
        etag=item.get("etag"),
        ical_uid=item.get("iCalUID"),
        html_link=item.get("htmlLink"),
        status=item.get("status") or "confirmed",
        title=item.get("summary") or "",
        description=item.get("description"),
        location=item.get("location"),
        start=start,
        end=end,
        time_zone=start.time_zone or fallback,
        attendees=[Attendee(email=a["email"], name=a.get("displayName"), optional=bool(a.get("optional")),
                            resource=bool(a.get("resource")), organizer=bool(a.get("organizer")),
                            response_status=a.get("responseStatus") or "needsAction")
                   for a in item.get("attendees") or [] if a.get("email")],
        organizer=Person(email=organizer["email"], name=organizer.get("displayName")) if organizer.get("email")
        else None,
        reminders=Reminders(use_default=bool(reminders_raw.get("useDefault", not overrides)), overrides=overrides),
        recurrence=list(item.get("recurrence") or []),
        recurring_event_id=item.get("recurringEventId"),
        original_start=_time_in(item["originalStartTime"], start.time_zone or fallback)
        if item.get("originalStartTime") else None,
        online_meeting=bool(conference) or bool(item.get("hangoutLink")),
        online_meeting_url=item.get("hangoutLink") or video,
        show_as="free" if item.get("transparency") == "transparent" else "busy",
        created=_parse_dt(item["created"]) if item.get("created") else None,
        updated=_parse_dt(item["updated"]) if item.get("updated") else None,
    )
