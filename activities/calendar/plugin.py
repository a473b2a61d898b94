"""The shared calendar plugin: `calendar.*` activities over every calendar provider, `osi calendar`, the demo."""

from __future__ import annotations

from activities.calendar import cli, demo
from activities.calendar.activities import CalendarActivities
from core.plugin import Plugin

PLUGIN = Plugin(
    name="calendar",
    activities=lambda rt: CalendarActivities(rt).all(),
    cli=lambda: cli.app,
    demo=demo.run,
)
