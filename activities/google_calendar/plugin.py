"""The Google Calendar plugin: a calendar backend and connect flow, Google-only activities, its CLI group."""

from __future__ import annotations

from activities.calendar import connect
from activities.calendar.activities import CAPABILITY
from activities.calendar.service import CalendarCapability
from activities.google_calendar import cli
from activities.google_calendar.activities import GoogleCalendarActivities, revoke, test_connection
from activities.google_calendar.client import GoogleCalendarClient
from activities.google_calendar.connect import GoogleConnect
from activities.google_calendar.provider import PROVIDER
from core.plugin import Plugin

PLUGIN = Plugin(
    name="google_calendar",
    provider=PROVIDER,
    activities=lambda rt: GoogleCalendarActivities(rt).all(),
    test_connection=test_connection,
    revoke=revoke,
    routes=lambda: connect.router(PROVIDER, GoogleConnect()),
    cli=lambda: cli.app,
    capabilities={CAPABILITY: CalendarCapability(PROVIDER, GoogleCalendarClient, GoogleConnect())},
)
