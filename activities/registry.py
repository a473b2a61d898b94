"""The one registry of provider plugins; worker, gateway and CLI discover plugins here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from activities.spec import Plugin

if TYPE_CHECKING:
    from activities.runtime import Runtime


def plugins() -> list[Plugin]:
    """Every registered plugin (imported lazily: workflow sandboxes never import this)."""
    from activities.google_calendar.plugin import PLUGIN as GOOGLE_CALENDAR
    from activities.outlook.plugin import PLUGIN as OUTLOOK
    from activities.slack.plugin import PLUGIN as SLACK
    from activities.whatsapp.plugin import PLUGIN as WHATSAPP

    return [WHATSAPP, SLACK, GOOGLE_CALENDAR, OUTLOOK]


def plugin_for(integration_type: str) -> Plugin:
    for p in plugins():
        if p.spec.integration_type.value == integration_type or p.spec.name == integration_type:
            return p
    raise KeyError(f"no plugin for integration type {integration_type!r}")


def core_workflows() -> list[type]:
    """Workflows that belong to no single provider (maintenance)."""
    from workflows.maintenance import ConnectionHealthSweep, DeliverAdminNotifications

    return [ConnectionHealthSweep, DeliverAdminNotifications]


def all_workflows() -> list[type]:
    seen: list[type] = list(core_workflows())
    for p in plugins():
        for wf in p.workflows:
            if wf not in seen:
                seen.append(wf)
    return seen


def all_activities(rt: Runtime) -> Sequence[Any]:
    from activities.alerts import AlertActivities
    from activities.maintenance import MaintenanceActivities

    acts: list[Any] = [*MaintenanceActivities(rt).all(), *AlertActivities(rt).all()]
    for p in plugins():
        acts.extend(p.activities(rt))
    return acts
