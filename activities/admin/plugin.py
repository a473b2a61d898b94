"""The maintenance plugin: health sweeps over every connection, alert routes and their delivery, `osi alerts`."""

from __future__ import annotations

from activities.admin import cli
from activities.admin.alerts import AlertActivities
from activities.admin.maintenance import MaintenanceActivities
from core.plugin import Plugin

PLUGIN = Plugin(
    name="admin",
    activities=lambda rt: [*MaintenanceActivities(rt).all(), *AlertActivities(rt).all()],
    cli=lambda: cli.app,
)
