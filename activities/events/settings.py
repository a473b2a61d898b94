"""The events section (`OSI_EVENTS_…`): how long and how often a subscription's delivery retries."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from activities.events.models import DeliveryInput
from core.settings import ProviderSettings, Settings, section_config


class EventsSettings(ProviderSettings):
    model_config = section_config("OSI_EVENTS_")
    section_name: ClassVar[str] = "events"

    # Full-jitter exponential backoff between attempts of one event, from this base up to this cap...
    initial_backoff_seconds: float = Field(default=5.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    # ...for this long, after which the event is marked failed, administrators are told, and the next one goes.
    give_up_after_hours: float = Field(default=72.0, gt=0)
    # A delivery workflow with nothing to send ends after this (the next event starts it again).
    idle_minutes: float = Field(default=60.0, gt=0)


def delivery_input(settings: Settings, subscription_id: str) -> DeliveryInput:
    s = settings.section(EventsSettings)
    return DeliveryInput(subscription_id=subscription_id, initial_backoff_seconds=s.initial_backoff_seconds,
                         max_backoff_seconds=s.max_backoff_seconds, give_up_after_seconds=s.give_up_after_hours * 3600,
                         idle_seconds=s.idle_minutes * 60)
