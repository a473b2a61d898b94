"""Whom Graph mails: the organizer's mailbox sends meeting requests on create, updates when a meeting property
changes (time, place, subject, body, attendees, recurrence, online meeting) and cancellations on delete.
Graph has no switch to send less: asking for less is an error (it cannot be expressed)."""

from __future__ import annotations

from activities.calendar.model import CalendarEvent, SendUpdates
from activities.calendar.notify import guests, update_recipients
from core.errors import PermanentError

GRAPH_MEETING_FIELDS = {"title", "description", "location", "times", "attendees", "recurrence", "online_meeting"}


def _refuse(send_updates: SendUpdates, what: str) -> PermanentError:
    return PermanentError(f"send_updates={send_updates!r}: Microsoft Graph {what}", code="unsupported_by_provider",
                          details={"field": "send_updates", "provider": "outlook"})


def on_create(event: CalendarEvent, send_updates: SendUpdates, organizer: str | None) -> list[str]:
    found = guests(event.attendees, organizer)
    if found and send_updates != "all":
        raise _refuse(send_updates, "always sends meeting requests to attendees on create")
    return found


def on_update(before: CalendarEvent, after: CalendarEvent, changed: set[str], send_updates: SendUpdates,
              organizer: str | None) -> list[str]:
    everyone = update_recipients(before, after, organizer)
    if not (changed & GRAPH_MEETING_FIELDS) or not everyone:
        return []
    if send_updates != "all":
        raise _refuse(send_updates, f"sends meeting updates when {', '.join(sorted(changed & GRAPH_MEETING_FIELDS))}"
                                    " change; it cannot be silenced")
    return everyone


def on_delete(event: CalendarEvent, send_updates: SendUpdates, organizer: str | None) -> list[str]:
    found = guests(event.attendees, organizer)
    if found and send_updates != "all":
        raise _refuse(send_updates, "sends cancellations when the organizer deletes a meeting")
    return found
