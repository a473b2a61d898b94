"""Event subscriptions (an organization's URL and event types) and the outbox of events still to deliver.

An event is written in the same transaction as the fact it reports (`enqueue(session, …)`): an inbound
message, a status, a health change is never committed without its events, and an event never exists for a
fact that rolled back. After the commit, listeners registered for the engine hear which subscriptions have
new events (the delivery workflow is nudged); a sweep finds whatever a lost nudge left behind.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Column, Engine, UniqueConstraint, event
from sqlmodel import Field, Session, SQLModel, col, func, select

from store.models import new_id, utcnow
from store.types import UTCField

if TYPE_CHECKING:
    from store.db import Store

# What an organization can subscribe to ("*" is every type).
EVENT_TYPES: tuple[str, ...] = (
    "whatsapp.message.received",
    "whatsapp.message.status",
    "whatsapp.message.failed",
    "slack.approval.decided",
    "slack.interaction",
    "calendar.event.created",
    "calendar.event.updated",
    "calendar.event.cancelled",
    "connection.health.changed",
    "ping",
)
PENDING_KEY = "osi.events.pending"  # session.info: subscriptions that got events in this transaction

CommitListener = Callable[[set[str]], None]
_listeners: weakref.WeakKeyDictionary[Engine, list[CommitListener]] = weakref.WeakKeyDictionary()


class EventSubscription(SQLModel, table=True):
    """An organization's receiver of signed events; its signing secret lives in Vault (osi/events/{org}/{id})."""

    __tablename__ = "event_subscription"

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str = Field(index=True)
    url: str
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str = ""
    enabled: bool = True
    created_at: datetime = UTCField(default_factory=utcnow)
    created_by: str = "operator"

    def wants(self, event_type: str) -> bool:
        return self.enabled and ("*" in self.event_types or event_type in self.event_types)


class EventOutbox(SQLModel, table=True):
    """One event for one subscription; `id` orders a subscription's deliveries."""

    __tablename__ = "event_outbox"
    __table_args__ = (UniqueConstraint("subscription_id", "dedupe_key"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(index=True)
    subscription_id: str = Field(index=True)
    organization_id: str = Field(index=True)
    type: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The occurrence (e.g. "wamid…:delivered", a workflow id): a writer that runs twice adds nothing twice.
    dedupe_key: str | None = None
    status: str = Field(default="pending", index=True)  # pending | delivered | failed | cancelled
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = UTCField(default_factory=utcnow, index=True)
    delivered_at: datetime | None = UTCField(default=None)
    updated_at: datetime = UTCField(default_factory=utcnow)


def event_document(event_id: str, event_type: str, organization_id: str, data: dict[str, Any],
                   at: datetime) -> dict[str, Any]:
    """What receivers get: the same id and body on every attempt (they deduplicate by id)."""
    return {"id": event_id, "type": event_type, "created_at": at.isoformat().replace("+00:00", "Z"),
            "organization_id": organization_id, "data": data}


def enqueue(s: Session, organization_id: str, event_type: str, data: dict[str, Any], *,
            dedupe_key: str | None = None, at: datetime | None = None, subscription_id: str | None = None
            ) -> list[str]:
    """Add the event for every subscription of the organization that wants it (or only `subscription_id`), in
    the caller's transaction. Returns the subscriptions that got it (none subscribed: one indexed query)."""
    q = select(EventSubscription).where(EventSubscription.organization_id == organization_id,
                                        EventSubscription.enabled == True)  # noqa: E712
    if subscription_id is not None:
        q = q.where(EventSubscription.id == subscription_id)
    subs = [sub for sub in s.exec(q).all() if sub.wants(event_type) or subscription_id is not None]
    if not subs:
        return []
    at = at or utcnow()
    event_id = "evt_" + uuid.uuid4().hex
    doc = event_document(event_id, event_type, organization_id, data, at)
    got: list[str] = []
    for sub in subs:
        if dedupe_key is not None and s.exec(select(EventOutbox.id).where(
                EventOutbox.subscription_id == sub.id, EventOutbox.dedupe_key == dedupe_key)).first() is not None:
            continue
        s.add(EventOutbox(event_id=event_id, subscription_id=sub.id, organization_id=organization_id,
                          type=event_type, payload=doc, dedupe_key=dedupe_key, created_at=at))
        got.append(sub.id)
    if got:
        s.info.setdefault(PENDING_KEY, set()).update(got)
    return got


def add_commit_listener(engine: Engine, listener: CommitListener) -> None:
    """`listener(subscription ids)` after every commit that added events (called in the committing thread)."""
    _listeners.setdefault(engine, []).append(listener)


def remove_commit_listener(engine: Engine, listener: CommitListener) -> None:
    found = _listeners.get(engine) or []
    if listener in found:
        found.remove(listener)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    subs = session.info.pop(PENDING_KEY, None)
    if not subs:
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
    for listener in list(_listeners.get(engine, []) if engine is not None else []):
        try:
            listener(set(subs))
        except Exception:  # noqa: S110 - a nudge is an optimisation: the sweep delivers what it missed
            pass


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


class EventStore:
    """Queries over subscriptions and the outbox."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_subscription(self, organization_id: str, url: str, event_types: Sequence[str], description: str,
                         created_by: str) -> EventSubscription:
        sub = EventSubscription(organization_id=organization_id, url=url, event_types=list(event_types),
                                description=description, created_by=created_by)
        with self.store.session() as s:
            s.add(sub)
            s.commit()
            s.refresh(sub)
        return sub

    def subscriptions(self, organization_id: str | None = None) -> Sequence[EventSubscription]:
        with self.store.session() as s:
            q = select(EventSubscription)
            if organization_id is not None:
                q = q.where(EventSubscription.organization_id == organization_id)
            return s.exec(q.order_by(col(EventSubscription.created_at))).all()

    def subscription(self, subscription_id: str) -> EventSubscription | None:
        with self.store.session() as s:
            return s.get(EventSubscription, subscription_id)

    def remove_subscription(self, organization_id: str, subscription_id: str) -> bool:
        """Delete it; its undelivered events are cancelled (kept for the record)."""
        with self.store.session() as s:
            sub = s.get(EventSubscription, subscription_id)
            if sub is None or sub.organization_id != organization_id:
                return False
            for row in s.exec(select(EventOutbox).where(EventOutbox.subscription_id == subscription_id,
                                                        EventOutbox.status == "pending")).all():
                row.status, row.updated_at = "cancelled", utcnow()
                s.add(row)
            s.delete(sub)
            s.commit()
            return True

    def emit(self, organization_id: str, events: Sequence[tuple[str, dict[str, Any], str | None]], *,
             subscription_id: str | None = None) -> set[str]:
        """Events (type, data, dedupe key) in one transaction of their own, for facts that live outside our
        database (a Slack decision, a calendar event created at the provider)."""
        got: set[str] = set()
        with self.store.session() as s:
            for event_type, data, dedupe_key in events:
                got.update(enqueue(s, organization_id, event_type, data, dedupe_key=dedupe_key,
                                   subscription_id=subscription_id))
            s.commit()
        return got

    def pending(self, subscription_id: str, limit: int = 50) -> Sequence[EventOutbox]:
        with self.store.session() as s:
            return s.exec(select(EventOutbox).where(EventOutbox.subscription_id == subscription_id,
                                                    EventOutbox.status == "pending")
                          .order_by(col(EventOutbox.id)).limit(limit)).all()

    def outbox_row(self, row_id: int) -> EventOutbox | None:
        with self.store.session() as s:
            return s.get(EventOutbox, row_id)

    def record_attempt(self, row_id: int, *, ok: bool, status_code: int | None, error: str | None) -> EventOutbox:
        with self.store.session() as s:
            row = s.get(EventOutbox, row_id)
            if row is None:
                raise LookupError(f"no outbox row {row_id}")
            row.attempts += 1
            row.last_status_code, row.updated_at = status_code, utcnow()
            if ok:
                row.status, row.delivered_at, row.last_error = "delivered", utcnow(), None
            else:
                row.last_error = (error or "")[:500]
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def give_up(self, row_id: int, error: str) -> EventOutbox | None:
        with self.store.session() as s:
            row = s.get(EventOutbox, row_id)
            if row is None or row.status != "pending":
                return row
            row.status, row.last_error, row.updated_at = "failed", error[:500], utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def deliveries(self, organization_id: str, subscription_id: str | None = None, status: str | None = None,
                   limit: int = 100) -> Sequence[EventOutbox]:
        with self.store.session() as s:
            q = select(EventOutbox).where(EventOutbox.organization_id == organization_id)
            if subscription_id:
                q = q.where(EventOutbox.subscription_id == subscription_id)
            if status:
                q = q.where(EventOutbox.status == status)
            return s.exec(q.order_by(col(EventOutbox.id).desc()).limit(limit)).all()

    def stalled(self, older_than: timedelta) -> list[str]:
        """Subscriptions with an event pending for longer than `older_than` (a nudge that never arrived)."""
        since = utcnow() - older_than
        with self.store.session() as s:
            rows = s.exec(select(EventOutbox.subscription_id, func.min(EventOutbox.created_at))
                          .where(EventOutbox.status == "pending").group_by(EventOutbox.subscription_id)).all()
            return [sub for sub, first in rows if first is not None and first < since]
