"""Slack tables: one-shot OAuth install states and inbound delivery keys (redelivery dedupe)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col

from store.models import utcnow
from store.types import UTCField

if TYPE_CHECKING:
    from store.db import Store


class SlackOAuthState(SQLModel, table=True):
    """An install in progress: the `state` Slack hands back, bound to an organization and name.

    The state is a random nonce (not a secret credential): it only proves the callback belongs to an
    install we started, and it is deleted when consumed.
    """

    __tablename__ = "slack_oauth_state"

    state: str = Field(primary_key=True, max_length=128)
    organization_id: str = Field(index=True)
    connection_name: str
    auto_join: bool | None = None
    requested_by: str | None = None  # the admin key (label) that asked for the connect link
    created_at: datetime = UTCField(default_factory=utcnow)
    expires_at: datetime = UTCField(index=True)


class SlackDelivery(SQLModel, table=True):
    """A verified inbound request already handled (event id, trigger id): Slack redelivers events."""

    __tablename__ = "slack_delivery"

    key: str = Field(primary_key=True, max_length=300)
    kind: str
    at: datetime = UTCField(default_factory=utcnow, index=True)


def issue_state(store: Store, state: str, organization_id: str, connection_name: str, ttl_seconds: float,
                auto_join: bool | None = None, requested_by: str | None = None) -> SlackOAuthState:
    row = SlackOAuthState(state=state, organization_id=organization_id, connection_name=connection_name,
                          auto_join=auto_join, requested_by=requested_by,
                          expires_at=utcnow() + timedelta(seconds=ttl_seconds))
    with store.session() as s:
        # Expired states are swept as new ones are issued: the table stays small without a job.
        s.execute(delete(SlackOAuthState).where(col(SlackOAuthState.expires_at) < utcnow()))
        s.add(row)
        s.commit()
        s.refresh(row)
    return row


def consume_state(store: Store, state: str) -> SlackOAuthState | None:
    """The install a state belongs to, exactly once and only before it expires."""
    with store.session() as s:
        row = s.get(SlackOAuthState, state)
        if row is None:
            return None
        s.delete(row)
        s.commit()
    if row.expires_at < utcnow():
        return None
    return row


def seen_delivery(store: Store, key: str) -> bool:
    """Whether a delivery key was already handled."""
    with store.session() as s:
        return s.get(SlackDelivery, key[:300]) is not None


def first_delivery(store: Store, key: str, kind: str, keep: timedelta = timedelta(days=1)) -> bool:
    """True the first time a delivery key is seen; False for a redelivery or a replay.

    Keys older than `keep` are forgotten on the way (Slack retries events within about an hour and
    the signature window is five minutes), so the table stays small without a separate job.
    """
    with store.session() as s:
        s.execute(delete(SlackDelivery).where(col(SlackDelivery.at) < utcnow() - keep))
        s.add(SlackDelivery(key=key[:300], kind=kind))
        try:
            s.commit()
        except IntegrityError:
            return False
    return True
