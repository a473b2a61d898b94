"""The events plugin: subscriptions, the outbox's delivery activities, `osi events`, and the nudge after commits."""

from __future__ import annotations

from activities.events import cli, service
from activities.events.activities import EventActivities
from core.plugin import Plugin

PLUGIN = Plugin(
    name="events",
    activities=lambda rt: EventActivities(rt).all(),
    cli=lambda: cli.app,
    cli_help="Events to OpenSyte: signed webhooks per organization",
    on_start=service.on_start,
)
