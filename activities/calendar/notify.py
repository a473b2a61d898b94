"""Who a provider notifies when an event is created, changed or deleted (recorded in workflow results).

Google sends what `sendUpdates` asks: `all` → every guest, `externalOnly` → guests who are not Google
Calendar users (we count the connection's Google domains as Google users), `none` → nobody. Google mails
every guest on an update with `sendUpdates=all`, whatever changed, and removed guests get a cancellation.

Graph has no such switch: the organizer's mailbox sends meeting requests on create, updates when a
meeting property changes (time, place, subject, body, attendees, recurrence, online meeting) and
cancellations on delete. Asking Graph for less than that is an error (it cannot be expressed).
"""

from __future__ import annotations

from collections.abc import Iterable

from activities.calendar.model import Attendee, CalendarEvent, SendUpdates
from activities.errors import PermanentError

GRAPH_MEETING_FIELDS = {"title", "description", "location", "times", "attendees", "recurrence", "online_meeting"}
GOOGLE_CONSUMER_DOMAINS = ("gmail.com", "googlemail.com")


def _guests(attendees: Iterable[Attendee], organizer: str | None) -> list[str]:
    org = (organizer or "").lower()
    out: list[str] = []
    for a in attendees:
        if a.resource or a.organizer or a.email.lower() == org:
            continue
        if a.email.lower() not in (x.lower() for x in out):
            out.append(a.email)
    return out


def _external(emails: list[str], google_domains: Iterable[str]) -> list[str]:
    domains = {d.lower() for d in google_domains} | set(GOOGLE_CONSUMER_DOMAINS)
    return [e for e in emails if e.rsplit("@", 1)[-1].lower() not in domains]


def google_recipients(emails: list[str], send_updates: SendUpdates, google_domains: Iterable[str]) -> list[str]:
    if send_updates == "none":
        return []
    if send_updates == "externalOnly":
        return _external(emails, google_domains)
    return emails


def on_create(provider: str, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None,
              google_domains: Iterable[str] = ()) -> list[str]:
    guests = _guests(event.attendees, organizer)
    if provider == "google_calendar":
        return google_recipients(guests, send_updates, google_domains)
    if guests and send_updates != "all":
        raise PermanentError(
            f"send_updates={send_updates!r}: Microsoft Graph always sends meeting requests to attendees on create",
            code="unsupported_by_provider", details={"field": "send_updates", "provider": "outlook"})
    return guests


def on_update(provider: str, before: CalendarEvent, after: CalendarEvent, changed: set[str],
              send_updates: SendUpdates, organizer: str | None, google_domains: Iterable[str] = ()) -> list[str]:
    current = _guests(after.attendees, organizer)
    removed = [e for e in _guests(before.attendees, organizer) if e.lower() not in {c.lower() for c in current}]
    everyone = current + removed
    if provider == "google_calendar":
        return google_recipients(everyone, send_updates, google_domains)
    if not (changed & GRAPH_MEETING_FIELDS) or not everyone:
        return []
    if send_updates != "all":
        raise PermanentError(
            f"send_updates={send_updates!r}: Microsoft Graph sends meeting updates when "
            f"{', '.join(sorted(changed & GRAPH_MEETING_FIELDS))} change; it cannot be silenced",
            code="unsupported_by_provider", details={"field": "send_updates", "provider": "outlook"})
    return everyone


def on_delete(provider: str, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None,
              google_domains: Iterable[str] = ()) -> list[str]:
    guests = _guests(event.attendees, organizer)
    if provider == "google_calendar":
        return google_recipients(guests, send_updates, google_domains)
    if guests and send_updates != "all":
        raise PermanentError(
            f"send_updates={send_updates!r}: Microsoft Graph sends cancellations when the organizer deletes a "
            "meeting", code="unsupported_by_provider", details={"field": "send_updates", "provider": "outlook"})
    return guests
