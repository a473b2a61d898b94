"""The WhatsApp plugin: every part it contributes to the worker, gateway, CLI and demo."""

from __future__ import annotations

from activities.whatsapp import cli, demo, routes
from activities.whatsapp.activities import WhatsAppActivities, test_connection
from activities.whatsapp.provider import PROVIDER
from core.plugin import Plugin

PLUGIN = Plugin(
    name="whatsapp",
    provider=PROVIDER,
    activities=lambda rt: WhatsAppActivities(rt).all(),
    test_connection=test_connection,
    routes=routes.router,
    cli=lambda: cli.app,
    demo=demo.run,
)
