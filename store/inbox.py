"""Raw deliveries kept for replay: verified webhook bodies the gateway could not parse or process."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from store.models import WebhookInbox, utcnow

if TYPE_CHECKING:
    from store.db import Store


def keep(store: Store, provider: str, route: str, body: bytes, content_type: str | None, error: str) -> int:
    """Store a delivery once per (route, body); a redelivery of the same body returns the row already kept."""
    digest = hashlib.sha256(body).hexdigest()
    row = WebhookInbox(provider=provider, route=route[:500], content_type=(content_type or "")[:200] or None,
                       body=body, body_sha256=digest, error=error[:1000])
    with store.session() as s:
        s.add(row)
        try:
            s.commit()
            s.refresh(row)
        except IntegrityError:
            s.rollback()
            found = s.exec(select(WebhookInbox).where(WebhookInbox.route == route[:500],
                                                      WebhookInbox.body_sha256 == digest)).one()
            return found.id or 0
    return row.id or 0


def pending(store: Store, delivery_id: int | None = None, provider: str | None = None,
            include_done: bool = False) -> Sequence[WebhookInbox]:
    with store.session() as s:
        q = select(WebhookInbox)
        if delivery_id is not None:
            q = q.where(WebhookInbox.id == delivery_id)
        elif not include_done:
            q = q.where(WebhookInbox.status != "replayed")
        if provider is not None:
            q = q.where(WebhookInbox.provider == provider)
        return s.exec(q.order_by(col(WebhookInbox.id))).all()


def mark(store: Store, delivery_id: int, *, ok: bool, error: str | None = None) -> None:
    with store.session() as s:
        row = s.get(WebhookInbox, delivery_id)
        if row is None:
            return
        row.attempts += 1
        row.status = "replayed" if ok else "failed"
        row.last_error = None if ok else (error or "")[:1000]
        row.replayed_at = utcnow()
        s.add(row)
        s.commit()
