"""The calendar demo (activities/calendar/demo.py) schedules a meeting on each provider, twice in a row."""

from __future__ import annotations

import io

from rich.console import Console

from activities.calendar import demo
from core.demo import DemoContext


async def test_demo_schedules_on_both_providers_and_is_repeatable(client, worker, runtime, sandbox, settings,
                                                                  gateway):
    for _ in range(2):
        out = io.StringIO()
        ctx = DemoContext(settings=settings, client=client, rt=runtime, sandbox_url=sandbox.url, gateway_url=gateway,
                          organization_id="demo-org-calendar", console=Console(file=out, width=200))
        await demo.run(ctx)
        text = out.getvalue()
        assert "[Google Calendar] ScheduleMeeting chose" in text and "[Outlook] ScheduleMeeting chose" in text
        assert text.count("/namespaces/default/workflows/demo-calendar-") >= 6
        assert "conflict_policy=next_free_slot: moved" in text
        assert "rotated refresh token" in text
        assert set(ctx.results) == {"calendar.GOOGLE_CALENDAR", "calendar.OUTLOOK_CALENDAR"}
