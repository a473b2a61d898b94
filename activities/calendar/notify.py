"""Who gets a provider's notification mail: the guests of an event (each provider's rules live in its backend)."""

from __future__ import annotations

from collections.abc import Iterable

from activities.calendar.model import Attendee, CalendarEvent


def guests(attendees: Iterable[Attendee], organizer: str | None) -> list[str]:
    """Attendees who receive mail: not rooms, not the organizer, each address once."""
    org = (organizer or "").lower()
    out: list[str] = []
    for a in attendees:
        if a.resource or a.organizer or a.email.lower() == org:
            continue
        if a.email.lower() not in (x.lower() for x in out):
            out.append(a.email)
    return out


def update_recipients(before: CalendarEvent, after: CalendarEvent, organizer: str | None) -> list[str]:
    """Current guests plus removed ones (who get a cancellation)."""
    current = guests(after.attendees, organizer)
    removed = [e for e in guests(before.attendees, organizer) if e.lower() not in {c.lower() for c in current}]
    return current + removed
