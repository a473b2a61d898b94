"""Event subscription and delivery inputs and results (plain JSON; side-effect free for workflows)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from core.contract import ContractModel, WorkflowInput
from store.events import EVENT_TYPES


class _Model(ContractModel):
    pass


class SubscriptionSpec(_Model):
    """What an administrator asks for: where to POST and which event types ("*" for all)."""

    url: str = Field(min_length=1, max_length=2048)
    event_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    description: str = Field(default="", max_length=200)

    @field_validator("event_types")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t != "*" and t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}: use {', '.join(EVENT_TYPES)} or *")
        return list(dict.fromkeys(v))


class NewEvent(_Model):
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str = Field(min_length=1, max_length=300, description="the occurrence: a retry adds nothing twice")

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in EVENT_TYPES:
            raise ValueError(f"unknown event type {v!r}")
        return v


class EmitInput(_Model):
    """Events of facts that live outside our database (a Slack decision, a calendar event at the provider)."""

    organization_id: str
    events: list[NewEvent]


class EmitResult(_Model):
    subscriptions: int = 0


class DeliveryInput(_Model, WorkflowInput):
    """One long-lived delivery workflow per subscription (`EventDelivery`, id `osi-events:{subscription}`).

    Events go out one at a time in outbox order (per-subscription ordering); each is one activity that Temporal
    retries with jittered exponential backoff up to `max_backoff_seconds` for `give_up_after_seconds` (days),
    after which the event is marked failed, administrators are alerted and the next one goes.
    """

    subscription_id: str
    initial_backoff_seconds: float = Field(default=5.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    give_up_after_seconds: float = Field(default=3 * 86400.0, gt=0)
    idle_seconds: float = Field(default=3600.0, gt=0, description="end after this long with nothing to send")
    batch: int = Field(default=50, ge=1, le=500)
    history_limit: int = Field(default=2000, ge=100)
    delivered: int = 0
    failed: int = 0


class DeliveryResult(_Model):
    reason: str
    delivered: int
    failed: int


class PendingInput(_Model):
    subscription_id: str
    limit: int = 50


class PendingEvent(_Model):
    row_id: int
    event_id: str
    type: str


class PendingResult(_Model):
    subscription_exists: bool
    events: list[PendingEvent] = Field(default_factory=list)


class DeliverEventInput(_Model):
    subscription_id: str
    row_id: int
    initial_backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0


class DeliverEventResult(_Model):
    status: str  # delivered | already_done | cancelled
    status_code: int | None = None
    attempts: int = 0


class GiveUpInput(_Model):
    subscription_id: str
    row_id: int
    error: str


class SweepInput(_Model, WorkflowInput):
    """Nudge the delivery of subscriptions whose events wait longer than this (a lost nudge)."""

    older_than_seconds: float = Field(default=60.0, ge=0)


class SweepResult(_Model):
    nudged: int = 0
