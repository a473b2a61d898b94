"""CalendarEvent ⇄ Microsoft Graph event (resources/event.md).

Graph takes wall-clock `dateTime` values without an offset plus a zone name (Windows names are sent:
Graph accepts all of them, and only a fixed list of IANA names). Responses carry 7 fractional digits
and no offset. What Graph cannot express is refused here, never dropped: email reminders, more than
one reminder, EXDATE/RDATE, the second occurrence of an ambiguous wall time, unsupported RRULE parts.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from activities.calendar import recurrence as rec
from activities.calendar.model import Attendee, CalendarEvent, EventTime, Person, Reminder, Reminders
from activities.calendar.tz import from_windows, is_second_occurrence, to_windows, zone
from core.errors import PermanentError

RESPONSE_IN = {"none": "needsAction", "notResponded": "needsAction", "organizer": "accepted",
               "tentativelyAccepted": "tentative", "accepted": "accepted", "declined": "declined"}
SHOW_AS_IN = {"free": "free", "busy": "busy", "tentative": "tentative", "oof": "oof",
              "workingElsewhere": "workingElsewhere", "unknown": "busy"}
CUSTOM_ZONE = "tzone://Microsoft/Custom"


def transaction_id(key: str) -> str:
    """Graph's create idempotency key (`transactionId`) for one of ours."""
    return hashlib.sha256(key.encode()).hexdigest()[:36]


def parse_graph_datetime(value: str) -> datetime:
    """Graph's `2017-04-15T11:00:00.0000000` (7 fractional digits, no offset) as a naive datetime."""
    text = value.strip().removesuffix("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        digits = "".join(ch for ch in frac if ch.isdigit())
        text = f"{head}.{digits[:6]}" if digits else head
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=None) if parsed.tzinfo else parsed


def parse_instant(value: str) -> datetime:
    """A Graph DateTimeOffset (`2017-04-15T03:00:50.7579581Z`): 7 fractional digits are cut to 6."""
    text = value.strip().replace("Z", "+00:00")
    head, sep, rest = text.partition(".")
    if sep:
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone("UTC"))


def _time_out(t: EventTime, all_day: bool, field: str) -> dict[str, Any]:
    tz_name = t.time_zone or "UTC"
    win = to_windows(tz_name, "timezone")
    if all_day and t.date is not None:
        return {"dateTime": f"{t.date.isoformat()}T00:00:00", "timeZone": win}
    if t.date_time is None:  # pragma: no cover - model invariant
        raise PermanentError("event time missing", code="invalid_time")
    local = t.date_time.astimezone(zone(tz_name))
    if is_second_occurrence(local):
        raise PermanentError(
            f"{field}: {local.isoformat()} is the second {local.strftime('%H:%M')} of a fall-back day in {tz_name}; "
            "Microsoft Graph takes wall-clock times without an offset and would read the first one. Use UTC as the "
            "event's time zone for this event", code="unsupported_by_provider",
            details={"field": field, "provider": "outlook"})
    return {"dateTime": local.replace(tzinfo=None).isoformat(timespec="seconds"), "timeZone": win}


def _reminders_out(r: Reminders) -> dict[str, Any]:
    if r.use_default:
        return {}  # the mailbox's own default
    if not r.overrides:
        return {"isReminderOn": False}
    if len(r.overrides) > 1 or r.overrides[0].method != "popup":
        raise PermanentError("reminders: Microsoft Graph holds one popup reminder per event (no email reminders, "
                             f"got {len(r.overrides)} override(s))", code="unsupported_by_provider",
                             details={"field": "reminders", "provider": "outlook"})
    return {"isReminderOn": True, "reminderMinutesBeforeStart": r.overrides[0].minutes}


def _attendee_out(a: Attendee) -> dict[str, Any]:
    email: dict[str, Any] = {"address": a.email}
    if a.name:
        email["name"] = a.name
    kind = "resource" if a.resource else "optional" if a.optional else "required"
    return {"emailAddress": email, "type": kind}


def _body_out(description: str | None) -> dict[str, Any]:
    text = description or ""
    kind = "html" if ("<" in text and ">" in text) else "text"
    return {"contentType": kind, "content": text}


def _recurrence_out(ev: CalendarEvent) -> dict[str, Any] | None:
    if not ev.recurrence:
        return None
    anchor: datetime | date | None = ev.start.date_time if ev.start.date_time is not None else ev.start.date
    if anchor is None:  # pragma: no cover - model invariant
        raise PermanentError("event has no start", code="invalid_time")
    return rec.to_graph(ev.recurrence, anchor, zone(ev.time_zone))


FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "title": ("subject",), "description": ("body",), "location": ("location",),
    "times": ("start", "end", "isAllDay"), "attendees": ("attendees",),
    "reminders": ("isReminderOn", "reminderMinutesBeforeStart"), "recurrence": ("recurrence",),
    "online_meeting": ("isOnlineMeeting", "onlineMeetingProvider"), "show_as": ("showAs",),
}


def to_graph(ev: CalendarEvent, *, transaction: str | None = None) -> dict[str, Any]:
    """The body for POST /events (also the source of PATCH bodies)."""
    body: dict[str, Any] = {
        "subject": ev.title,
        "start": _time_out(ev.start, ev.all_day, "startTime"),
        "end": _time_out(ev.end, ev.all_day, "endTime"),
        "isAllDay": ev.all_day,
        "attendees": [_attendee_out(a) for a in ev.attendees],
        "showAs": ev.show_as,
        "isOnlineMeeting": ev.online_meeting,
        **_reminders_out(ev.reminders),
    }
    if ev.description is not None:
        body["body"] = _body_out(ev.description)
    if ev.location is not None:
        body["location"] = {"displayName": ev.location}
    if ev.online_meeting:
        body["onlineMeetingProvider"] = "teamsForBusiness"
    recurrence = _recurrence_out(ev)
    if recurrence is not None:
        body["recurrence"] = recurrence
    if transaction:
        body["transactionId"] = transaction
    return body


def to_graph_patch(ev: CalendarEvent, changed: set[str]) -> dict[str, Any]:
    full = to_graph(ev)
    out: dict[str, Any] = {}
    for group in changed:
        for key in FIELD_GROUPS[group]:
            if key in full:
                out[key] = full[key]
            elif group == "description":
                out[key] = {"contentType": "text", "content": ""}
            elif group == "location":
                out[key] = {"displayName": ""}
            elif group == "recurrence":
                out[key] = None  # no longer a series
    if "reminders" in changed and ev.reminders.use_default:
        out.update(isReminderOn=True, reminderMinutesBeforeStart=15)  # the Outlook default reminder
    if "times" in changed and "recurrence" in full:
        out["recurrence"] = full["recurrence"]  # the range's startDate moves with the start
    return out


def zone_of(name: str | None, hint: str | None) -> str:
    if not name or name == CUSTOM_ZONE:
        return zone(hint or "UTC").key
    return from_windows(name, hint)


def _time_in(raw: dict[str, Any], all_day: bool, event_tz: str, hint: str | None) -> EventTime:
    naive = parse_graph_datetime(str(raw.get("dateTime")))
    if all_day:
        # All-day boundaries are calendar dates: never shifted through a zone.
        return EventTime(date=naive.date(), time_zone=event_tz)
    given = zone(zone_of(raw.get("timeZone"), hint))
    aware = naive.replace(tzinfo=given, fold=0)
    return EventTime(date_time=aware.astimezone(zone(event_tz)), time_zone=event_tz)


def from_graph(item: dict[str, Any], calendar_id: str | None, *, hint_tz: str | None = None) -> CalendarEvent:
    """A CalendarEvent for a Graph event; `hint_tz` keeps the caller's IANA spelling on a round trip."""
    event_tz = zone_of(item.get("originalStartTimeZone") or (item.get("start") or {}).get("timeZone"), hint_tz)
    all_day = bool(item.get("isAllDay"))
    start = _time_in(item.get("start") or {}, all_day, event_tz, hint_tz)
    end = _time_in(item.get("end") or {}, all_day, event_tz, hint_tz)
    anchor: datetime | date | None = start.date_time if start.date_time is not None else start.date
    recurrence: list[str] = []
    if item.get("recurrence") and anchor is not None:
        recurrence = rec.from_graph(item["recurrence"], anchor, zone(event_tz))
    organizer = (item.get("organizer") or {}).get("emailAddress") or {}
    attendees = []
    for a in item.get("attendees") or []:
        email = (a.get("emailAddress") or {}).get("address")
        if not email:
            continue
        response = ((a.get("status") or {}).get("response")) or "none"
        attendees.append(Attendee(email=email, name=(a.get("emailAddress") or {}).get("name"),
                                  optional=a.get("type") == "optional", resource=a.get("type") == "resource",
                                  organizer=response == "organizer",
                                  response_status=RESPONSE_IN.get(response, "needsAction")))
    if item.get("isReminderOn") is False:
        reminders = Reminders(use_default=False, overrides=[])
    elif item.get("reminderMinutesBeforeStart") is not None:
        reminders = Reminders(use_default=False, overrides=[
            Reminder(method="popup", minutes=int(item["reminderMinutesBeforeStart"]))])
    else:
        reminders = Reminders()
    body = item.get("body") or {}
    location = (item.get("location") or {}).get("displayName")
    original = item.get("originalStart")
    return CalendarEvent(
        provider="outlook",
        id=item.get("id"),
        calendar_id=calendar_id,
        etag=item.get("@odata.etag") or (f'W/"{item["changeKey"]}"' if item.get("changeKey") else None),
        ical_uid=item.get("iCalUId"),
        html_link=item.get("webLink"),
        status="cancelled" if item.get("isCancelled") else "confirmed",
        title=item.get("subject") or "",
        description=body.get("content") if body.get("content") else None,
        location=location or None,
        start=start,
        end=end,
        time_zone=event_tz,
        attendees=attendees,
        organizer=Person(email=organizer["address"], name=organizer.get("name")) if organizer.get("address") else None,
        reminders=reminders,
        recurrence=recurrence,
        recurring_event_id=item.get("seriesMasterId"),
        original_start=EventTime(date_time=parse_instant(str(original)).astimezone(zone(event_tz)),
                                 time_zone=event_tz) if original else None,
        online_meeting=bool(item.get("isOnlineMeeting")),
        online_meeting_url=(item.get("onlineMeeting") or {}).get("joinUrl"),
        show_as=SHOW_AS_IN.get(str(item.get("showAs") or "busy"), "busy"),
        created=parse_instant(item["createdDateTime"]) if item.get("createdDateTime") else None,
        updated=parse_instant(item["lastModifiedDateTime"]) if item.get("lastModifiedDateTime") else None,
    )
