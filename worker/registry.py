"""The composition root's one list: each plugin with the workflows it runs. Adding a provider is one line here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio import workflow

from activities.admin.plugin import PLUGIN as ADMIN
from activities.calendar.plugin import PLUGIN as CALENDAR
from activities.events.plugin import PLUGIN as EVENTS
from activities.google_calendar.plugin import PLUGIN as GOOGLE_CALENDAR
from activities.outlook.plugin import PLUGIN as OUTLOOK
from activities.slack.plugin import PLUGIN as SLACK
from activities.whatsapp.plugin import PLUGIN as WHATSAPP
from core.plugin import Plugin, Registry
from core.runtime import Runtime
from workflows.calendar import CALENDAR_WORKFLOWS
from workflows.events import EVENT_WORKFLOWS
from workflows.maintenance import MAINTENANCE_WORKFLOWS
from workflows.slack import SLACK_WORKFLOWS
from workflows.whatsapp import SendWhatsAppMessage
from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate
from workflows.whatsapp_conversation import WhatsAppConversation

# Each WhatsApp workflow in its own module, none importing another: the workflow sandbox re-runs a workflow's
# module (and every workflow module it imports) for each run, so SendWhatsAppMessage must not pay for the other
# two (tests/test_workflow_modules.py).
WHATSAPP_WORKFLOWS: tuple[type, ...] = (SendWhatsAppMessage, WhatsAppConversation, BulkSendWhatsAppTemplate)


@dataclass(frozen=True)
class Registration:
    """A plugin and the workflows that orchestrate its activities."""

    plugin: Plugin
    workflows: Sequence[type] = ()


REGISTRATIONS: tuple[Registration, ...] = (
    Registration(WHATSAPP, WHATSAPP_WORKFLOWS),
    Registration(SLACK, SLACK_WORKFLOWS),
    Registration(GOOGLE_CALENDAR),
    Registration(OUTLOOK),
    Registration(CALENDAR, CALENDAR_WORKFLOWS),
    Registration(ADMIN, MAINTENANCE_WORKFLOWS),
    Registration(EVENTS, EVENT_WORKFLOWS),
)


def registry(registrations: Sequence[Registration] = REGISTRATIONS) -> Registry:
    return Registry([r.plugin for r in registrations])


def workflows(registrations: Sequence[Registration] = REGISTRATIONS) -> list[type]:
    """Every workflow, each once (several plugins may share one set)."""
    out: list[type] = []
    for r in registrations:
        out += [wf for wf in r.workflows if wf not in out]
    return out


def workflow_integrations(registrations: Sequence[Registration] = REGISTRATIONS) -> dict[str, str]:
    """{workflow type name: integration type} for the workflows of provider plugins (search attributes)."""
    out: dict[str, str] = {}
    for r in registrations:
        if r.plugin.provider is None:
            continue
        for wf in r.workflows:
            name = workflow._Definition.must_from_class(wf).name
            if name is not None:  # a dynamic workflow has no name
                out[name] = r.plugin.provider.integration_type
    return out


def activities(rt: Runtime) -> list[Any]:
    """Every plugin's activities bound to `rt` (its registry decides which plugins)."""
    return [act for p in rt.registry if p.activities is not None for act in p.activities(rt)]
