"""Calendar tables: one-shot OAuth connect states (Google and Microsoft authorization-code flows with PKCE)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlmodel import Field, SQLModel, col

from store.models import utcnow
from store.types import UTCField

if TYPE_CHECKING:
    from store.db import Store


class CalendarOAuthState(SQLModel, table=True):
    """A connect flow in progress, keyed by the SHA-256 of its `state` (the state itself travels only in the
    browser's URLs). The PKCE verifier is never stored: it is derived from the state with the app secret."""

    __tablename__ = "calendar_oauth_state"

    state_hash: str = Field(primary_key=True, max_length=64)
    provider: str = Field(index=True)
    organization_id: str = Field(index=True)
    connection_name: str
    tenant: str | None = None
    requested_by: str | None = None  # the admin key (label) that asked for the connect link
    created_at: datetime = UTCField(default_factory=utcnow)
    expires_at: datetime = UTCField(index=True)


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def issue_state(store: Store, state: str, provider: str, organization_id: str, connection_name: str,
                ttl_seconds: float, tenant: str | None = None, requested_by: str | None = None
                ) -> CalendarOAuthState:
    row = CalendarOAuthState(state_hash=_hash(state), provider=provider, organization_id=organization_id,
                             connection_name=connection_name, tenant=tenant, requested_by=requested_by,
                             expires_at=utcnow() + timedelta(seconds=ttl_seconds))
    with store.session() as s:
        # Expired states are swept as new ones are issued, so the table stays small without a job.
        s.execute(delete(CalendarOAuthState).where(col(CalendarOAuthState.expires_at) < utcnow()))
        s.add(row)
        s.commit()
        s.refresh(row)
    return row


def consume_state(store: Store, state: str, provider: str) -> CalendarOAuthState | None:
    """The pending flow for `state`, deleted as it is read (a replayed callback finds nothing)."""
    with store.session() as s:
        row = s.get(CalendarOAuthState, _hash(state))
        if row is None:
            return None
        s.delete(row)
        s.commit()
    if row.provider != provider or row.expires_at < utcnow():
        return None
    return row
