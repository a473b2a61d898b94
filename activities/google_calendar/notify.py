"""Whom Google mails: what `sendUpdates` asks for.

`all` → every guest, `externalOnly` → guests who are not Google Calendar users (the connection's Google
domains count as Google users), `none` → nobody. Google mails every guest on an update with
`sendUpdates=all`, whatever changed, and removed guests get a cancellation.
"""

from __future__ import annotations

from collections.abc import Iterable

from activities.calendar.model import CalendarEvent, SendUpdates
from activities.calendar.notify import guests, update_recipients

GOOGLE_CONSUMER_DOMAINS = ("gmail.com", "googlemail.com")


def recipients(emails: list[str], send_updates: SendUpdates, google_domains: Iterable[str]) -> list[str]:
    if send_updates == "none":
        return []
    if send_updates == "externalOnly":
        domains = {d.lower() for d in google_domains} | set(GOOGLE_CONSUMER_DOMAINS)
        return [e for e in emails if e.rsplit("@", 1)[-1].lower() not in domains]
    return emails


def on_create(event: CalendarEvent, send_updates: SendUpdates, organizer: str | None,
              google_domains: Iterable[str]) -> list[str]:
    return recipients(guests(event.attendees, organizer), send_updates, google_domains)


def on_update(before: CalendarEvent, after: CalendarEvent, send_updates: SendUpdates, organizer: str | None,
              google_domains: Iterable[str]) -> list[str]:
    return recipients(update_recipients(before, after, organizer), send_updates, google_domains)
