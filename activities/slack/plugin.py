"""The Slack plugin: every part it contributes to the worker, gateway, CLI and demo."""

from __future__ import annotations

from activities.slack import cli, demo, routes
from activities.slack.activities import SlackActivities, revoke, test_connection
from activities.slack.provider import PROVIDER
from core.plugin import Plugin

PLUGIN = Plugin(
    name="slack",
    provider=PROVIDER,
    activities=lambda rt: SlackActivities(rt).all(),
    test_connection=test_connection,
    revoke=revoke,
    routes=routes.router,
    cli=lambda: cli.app,
    demo=demo.run,
)
