"""The Outlook (Microsoft Graph) plugin: a calendar backend and connect flow, its CLI group."""

from __future__ import annotations

from activities.calendar import connect
from activities.calendar.activities import CAPABILITY
from activities.calendar.service import CalendarCapability
from activities.outlook import cli
from activities.outlook.activities import test_connection
from activities.outlook.client import OutlookCalendarClient
from activities.outlook.connect import OutlookConnect
from activities.outlook.provider import PROVIDER
from core.plugin import Plugin

PLUGIN = Plugin(
    name="outlook",
    provider=PROVIDER,
    test_connection=test_connection,
    routes=lambda: connect.router(PROVIDER, OutlookConnect()),
    cli=lambda: cli.app,
    capabilities={CAPABILITY: CalendarCapability(PROVIDER, OutlookCalendarClient, OutlookConnect())},
)
