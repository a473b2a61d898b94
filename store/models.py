"""Table definitions; no secret is ever a column here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import UTCField


def utcnow() -> datetime:
    """Timezone-aware now (every timestamp column is `store.types.UTCDateTime`)."""
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DISABLED = "disabled"


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class Connection(SQLModel, table=True):
    """One integration account of an organization: `(organization_id, integration_type, name)`."""

    __tablename__ = "connection"
    __table_args__ = (UniqueConstraint("organization_id", "integration_type", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str = Field(index=True)
    integration_type: str = Field(index=True)
    name: str
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=ConnectionStatus.ACTIVE.value)
    health: str = Field(default=Health.UNKNOWN.value)
    health_detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    last_health_check: datetime | None = UTCField(default=None)
    request_count: int = 0
    error_count: int = 0
    last_used_at: datetime | None = UTCField(default=None)
    credentials_expire_at: datetime | None = UTCField(default=None)
    created_at: datetime = UTCField(default_factory=utcnow)
    updated_at: datetime = UTCField(default_factory=utcnow)


def health_event(conn: Connection, previous: str | None) -> dict[str, Any]:
    """The data of a `connection.health.changed` event (no secret: health details never hold one)."""
    return {"connection_id": conn.id, "integration_type": conn.integration_type, "connection": conn.name,
            "health": conn.health, "previous_health": previous, "status": conn.status,
            "detail": conn.health_detail or {}}


class AuditEvent(SQLModel, table=True):
    """Append-only: who did what, when, to which connection, with what outcome (never a secret).

    Each organization's rows form a hash chain (`store/audit.py`): `seq` counts from 1, `prev_hash` is the previous
    row's `hash`, `hash` the HMAC (key in Vault) of this row's content and `prev_hash`.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("uq_audit_event_chain", "organization_id", "seq", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = UTCField(default_factory=utcnow, index=True)
    organization_id: str = Field(index=True)
    actor: str
    action: str = Field(index=True)
    connection_id: str | None = Field(default=None, index=True)
    target: str | None = None
    outcome: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seq: int | None = None
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)


class UsageRecord(SQLModel, table=True):
    """One row per provider call: connection, action, outcome class, latency, cost units."""

    __tablename__ = "usage_record"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = UTCField(default_factory=utcnow, index=True)
    organization_id: str = Field(index=True)
    connection_id: str | None = Field(default=None, index=True)  # None: an app-level call (OAuth exchange)
    provider: str
    action: str = Field(index=True)
    outcome: str
    status_code: int | None = None
    error_code: str | None = None
    latency_ms: float = 0.0
    cost_units: float = 1.0
    category: str | None = None
    cost_amount: float | None = None
    currency: str | None = None
    reference: str | None = Field(default=None, index=True)
    # Late outcome reported asynchronously (e.g. WhatsApp sent/delivered/read/failed webhooks).
    delivery_status: str | None = None
    delivered_at: datetime | None = UTCField(default=None)


class AdminNotification(SQLModel, table=True):
    """An alert for the organization's administrators (delivery channels read from here)."""

    __tablename__ = "admin_notification"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = UTCField(default_factory=utcnow, index=True)
    organization_id: str = Field(index=True)
    connection_id: str | None = Field(default=None, index=True)
    severity: str = "error"
    kind: str
    message: str
    action_url: str | None = None
    acknowledged: bool = False


class IdempotencyRecord(SQLModel, table=True):
    """The result of a side effect already performed under a key, so a retry never repeats it."""

    __tablename__ = "idempotency_record"

    key: str = Field(primary_key=True)
    organization_id: str = Field(index=True)
    action: str
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = UTCField(default_factory=utcnow)


class AdminKey(SQLModel, table=True):
    """An admin API key: only its SHA-256 is stored; `organization_id` None means every organization."""

    __tablename__ = "admin_key"

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str | None = Field(default=None, index=True)
    label: str
    key_hash: str = Field(unique=True, index=True)
    created_at: datetime = UTCField(default_factory=utcnow)
    revoked: bool = False


class IntentState(StrEnum):
    PENDING = "pending"  # not sent, or the provider definitely refused the last attempt
    SENDING = "sending"  # an attempt went out and its outcome is not known yet (in flight, timed out, crashed)
    ACCEPTED = "accepted"  # the provider accepted it: never send again
    FAILED = "failed"  # refused for good (a permanent error): never send again


class SendIntent(SQLModel, table=True):
    """One message we mean to deliver, recorded before the provider sees it (at most one accepted send per intent).

    `id` travels with the request (WhatsApp `biz_opaque_callback_data`, Slack message metadata) so an attempt
    whose answer was lost can be recognised later instead of sent again.
    """

    __tablename__ = "send_intent"

    key: str = Field(primary_key=True, max_length=512)
    id: str = Field(default_factory=new_id, unique=True, index=True)
    organization_id: str = Field(index=True)
    connection_id: str | None = Field(default=None, index=True)
    action: str
    state: str = Field(default=IntentState.PENDING.value)
    attempts: int = 0
    resent: int = 0  # attempts made while an earlier one's outcome was still unknown (possible duplicates)
    last_attempt_at: datetime | None = UTCField(default=None)
    provider_ref: str | None = Field(default=None, index=True)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = UTCField(default_factory=utcnow)
    updated_at: datetime = UTCField(default_factory=utcnow)


class WebhookInbox(SQLModel, table=True):
    """A verified (signed) inbound delivery the gateway could not parse or process, kept raw so it can be
    replayed (`osi webhooks replay`) after a fix instead of being lost. One row per distinct body and route."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (UniqueConstraint("route", "body_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = UTCField(default_factory=utcnow, index=True)
    provider: str = Field(index=True)
    route: str  # the request path (which connection, which endpoint)
    content_type: str | None = None
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    body_sha256: str = Field(max_length=64)
    error: str
    status: str = Field(default="pending", index=True)  # pending | replayed | failed
    attempts: int = 0
    last_error: str | None = None
    replayed_at: datetime | None = UTCField(default=None)
