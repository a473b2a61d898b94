"""Where administrators' alerts go (Slack channel, signed webhook) and what each delivery did."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel, col, select

from store.db import Store
from store.models import AdminNotification, new_id, utcnow
from store.types import UTCField

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


class AlertRoute(SQLModel, table=True):
    """One delivery channel of an organization's alerts. A webhook's signing secret lives in Vault."""

    __tablename__ = "alert_route"

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str = Field(index=True)
    kind: str  # "slack" | "webhook"
    # slack: {"connection": name, "channel": id} or {"connection": name, "user_id": id}; webhook: {"url": ...}
    target: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    min_severity: str = "warning"
    enabled: bool = True
    created_at: datetime = UTCField(default_factory=utcnow)
    created_by: str = "operator"


class AlertDelivery(SQLModel, table=True):
    """The state of one notification on one route: delivered, or failing with its last error."""

    __tablename__ = "alert_delivery"
    __table_args__ = (UniqueConstraint("notification_id", "route_id"),)

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(index=True)
    route_id: str = Field(index=True)
    status: str = "pending"  # pending (Temporal is retrying it) | delivered | failed (gave up)
    attempts: int = 0  # attempts seen so far (display only: Temporal's retry policy decides)
    last_error: str | None = None
    delivered_at: datetime | None = UTCField(default=None)
    updated_at: datetime = UTCField(default_factory=utcnow)


class AlertStore:
    """Queries over alert routes and deliveries."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_route(self, organization_id: str, kind: str, target: dict[str, Any], min_severity: str,
                  created_by: str) -> AlertRoute:
        route = AlertRoute(organization_id=organization_id, kind=kind, target=target, min_severity=min_severity,
                           created_by=created_by)
        with self.store.session() as s:
            s.add(route)
            s.commit()
            s.refresh(route)
        return route

    def routes(self, organization_id: str | None = None) -> Sequence[AlertRoute]:
        with self.store.session() as s:
            q = select(AlertRoute)
            if organization_id is not None:
                q = q.where(AlertRoute.organization_id == organization_id)
            return s.exec(q.order_by(col(AlertRoute.created_at))).all()

    def remove_route(self, organization_id: str, route_id: str) -> bool:
        with self.store.session() as s:
            route = s.get(AlertRoute, route_id)
            if route is None or route.organization_id != organization_id:
                return False
            s.delete(route)
            s.commit()
            return True

    def due(self, max_age: timedelta, limit: int, organization_id: str | None = None,
            exclude: Sequence[tuple[int, str]] = ()) -> list[tuple[AdminNotification, AlertRoute]]:
        """(notification, route) pairs still to deliver: unacknowledged, recent, severe enough, neither
        delivered nor given up, and not in `exclude` (the deliveries already in flight)."""
        since = utcnow() - max_age
        skip = set(exclude)
        with self.store.session() as s:
            q = select(AlertRoute).where(AlertRoute.enabled == True)  # noqa: E712
            if organization_id is not None:
                q = q.where(AlertRoute.organization_id == organization_id)
            routes = s.exec(q).all()
            if not routes:
                return []
            by_org: dict[str, list[AlertRoute]] = {}
            for r in routes:
                by_org.setdefault(r.organization_id, []).append(r)
            notes = s.exec(select(AdminNotification).where(
                col(AdminNotification.organization_id).in_(list(by_org)),
                AdminNotification.acknowledged == False,  # noqa: E712
                AdminNotification.at > since).order_by(col(AdminNotification.id))).all()
            if not notes:
                return []
            done = {(d.notification_id, d.route_id): d for d in s.exec(select(AlertDelivery).where(
                col(AlertDelivery.notification_id).in_([n.id for n in notes]))).all()}
            out: list[tuple[AdminNotification, AlertRoute]] = []
            for n in notes:
                for r in by_org[n.organization_id]:
                    if SEVERITY_RANK.get(n.severity, 2) < SEVERITY_RANK.get(r.min_severity, 1):
                        continue
                    # A route only gets what was raised after it existed (no flood of history on setup).
                    if n.at < r.created_at - timedelta(minutes=5):
                        continue
                    d = done.get((n.id or 0, r.id))
                    if (d is not None and d.status != "pending") or (n.id or 0, r.id) in skip:
                        continue
                    out.append((n, r))
                    if len(out) >= limit:
                        return out
            return out

    def pending_organizations(self, max_age: timedelta) -> list[str]:
        """Organizations with alerts still to deliver (the hourly sweep wakes their delivery workflows)."""
        return sorted({n.organization_id for n, _ in self.due(max_age, 10_000)})

    def record(self, notification_id: int, route_id: str, *, status: str, error: str | None = None,
               attempts: int | None = None) -> AlertDelivery:
        """What one delivery did, for display: `pending` while Temporal retries it (with the last error and
        attempt), then `delivered` or `failed` (given up). Temporal owns the retries; this is no ledger."""
        with self.store.session() as s:
            d = s.exec(select(AlertDelivery).where(AlertDelivery.notification_id == notification_id,
                                                   AlertDelivery.route_id == route_id)).first()
            if d is None:
                d = AlertDelivery(notification_id=notification_id, route_id=route_id)
            d.status = status
            d.updated_at = utcnow()
            if attempts is not None:
                d.attempts = max(d.attempts, attempts)
            if status == "delivered":
                d.delivered_at, d.last_error = utcnow(), None
            elif error is not None:
                d.last_error = error[:500]
            s.add(d)
            s.commit()
            s.refresh(d)
            return d

    def deliveries(self, notification_id: int) -> Sequence[AlertDelivery]:
        with self.store.session() as s:
            return s.exec(select(AlertDelivery).where(AlertDelivery.notification_id == notification_id)).all()
