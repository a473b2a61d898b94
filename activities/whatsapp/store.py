"""WhatsApp tables and queries: customers (opt-in, window), messages with outcomes, the portfolio's
24 h messaging-limit ledger, the cost rate table and the daily cost aggregate."""

from __future__ import annotations

import functools
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, UniqueConstraint, case, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, func, select

from store.db import Store
from store.events import enqueue
from store.models import Connection, Health, UsageRecord, health_event, utcnow
from store.types import UTCField
from store.upsert import insert_for as _insert
from store.upsert import upsert

# Outbound status order: a late "delivered" never overwrites "read"; "failed" is final.
STATUS_RANK = {"accepted": 0, "held": 0, "sent": 1, "delivered": 2, "read": 3, "played": 3, "failed": 9}


class WhatsAppContact(SQLModel, table=True):
    """One customer of one business number: opt-in, opt-out and the last inbound message (the window)."""

    __tablename__ = "whatsapp_contact"
    __table_args__ = (UniqueConstraint("organization_id", "phone_number_id", "wa_id"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(index=True)
    phone_number_id: str = Field(index=True)
    # The customer key: the phone number (wa_id) when Meta shares it, else the business-scoped user id.
    wa_id: str = Field(index=True)
    user_id: str | None = Field(default=None, index=True)  # the BSUID, once Meta sent it
    opted_in: bool = False
    opt_in_source: str | None = None
    opted_in_at: datetime | None = UTCField(default=None)
    opted_out: bool = False
    opt_out_source: str | None = None
    opted_out_at: datetime | None = UTCField(default=None)
    marketing_opted_out: bool = False
    last_inbound_at: datetime | None = UTCField(default=None)
    profile_name: str | None = None
    updated_at: datetime = UTCField(default_factory=utcnow)


class WhatsAppMessageRecord(SQLModel, table=True):
    """A message in or out, its category and its outcome as reported by status webhooks."""

    __tablename__ = "whatsapp_message"

    message_id: str = Field(primary_key=True)
    organization_id: str = Field(index=True)
    connection_id: str | None = Field(default=None, index=True)
    phone_number_id: str = Field(index=True)
    wa_id: str = Field(index=True)
    direction: str = "out"
    type: str | None = None
    category: str | None = None
    template_name: str | None = None
    status: str = "accepted"
    error_code: str | None = None
    error_title: str | None = None
    timeline: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    pricing_category: str | None = None
    billable: bool | None = None
    cost_amount: float | None = None
    currency: str | None = None
    cost_recorded: bool = False
    idempotency_key: str | None = Field(default=None, index=True)
    created_at: datetime = UTCField(default_factory=utcnow, index=True)
    updated_at: datetime = UTCField(default_factory=utcnow)


class WhatsAppInitiation(SQLModel, table=True):
    """A business-initiated message to a customer outside a window (counts toward the messaging limit)."""

    __tablename__ = "whatsapp_initiation"

    id: int | None = Field(default=None, primary_key=True)
    portfolio_id: str = Field(index=True)
    organization_id: str
    wa_id: str
    at: datetime = UTCField(default_factory=utcnow, index=True)


class WhatsAppRate(SQLModel, table=True):
    """Price of one delivered billable message per (country calling code, category); '*' is the fallback."""

    __tablename__ = "whatsapp_rate"

    country_code: str = Field(primary_key=True)
    category: str = Field(primary_key=True)
    price: float
    currency: str = "USD"
    source: str = ""
    loaded_at: datetime = UTCField(default_factory=utcnow)


class WhatsAppCostDaily(SQLModel, table=True):
    """Delivered messages and their cost per organization, connection, category and UTC day."""

    __tablename__ = "whatsapp_cost_daily"
    __table_args__ = (UniqueConstraint("organization_id", "connection_id", "category", "day", "currency"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(index=True)
    connection_id: str = Field(index=True)
    category: str
    day: str = Field(index=True)
    currency: str = "USD"
    delivered: int = 0
    billable: int = 0
    cost_amount: float = 0.0


class WhatsAppFailureCount(SQLModel, table=True):
    """Asynchronous (webhook-reported) failures per connection and error code."""

    __tablename__ = "whatsapp_failure_count"
    __table_args__ = (UniqueConstraint("connection_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    connection_id: str = Field(index=True)
    code: str
    count: int = 0
    last_title: str = ""
    last_at: datetime = UTCField(default_factory=utcnow)


class WhatsAppApp(SQLModel, table=True):
    """A Meta app: every number of the app posts to its one callback URL (`/webhooks/whatsapp/app/{app_id}`).
    Its app secret and verify token live in Vault (osi/apps/whatsapp-app-{app_id}); connections name it in
    their `app_id` setting."""

    __tablename__ = "whatsapp_app"

    app_id: str = Field(primary_key=True)
    label: str = ""
    # Whose administrators hear of deliveries for numbers no connection owns (None: the operator's).
    organization_id: str | None = Field(default=None, index=True)
    created_at: datetime = UTCField(default_factory=utcnow)
    updated_at: datetime = UTCField(default_factory=utcnow)


class WhatsAppUnrouted(SQLModel, table=True):
    """A verified delivery (one number's part, kept raw) that no connection may run: unknown number, a number
    of another organization or app, or one claimed by several connections. Recorded once, alerted."""

    __tablename__ = "whatsapp_unrouted"

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(unique=True)
    app_id: str | None = Field(default=None, index=True)
    via_connection_id: str | None = Field(default=None, index=True)
    phone_number_id: str = Field(index=True)
    reason: str
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = UTCField(default_factory=utcnow, index=True)


Rates = dict[tuple[str, str], tuple[float, str]]
_initiation_lock = threading.Lock()
F = TypeVar("F", bound=Callable[..., Any])
RACE_ATTEMPTS = 3


def race_safe(fn: F) -> F:
    """Webhook deliveries and the activities that sent the messages write the same rows at the same
    time: a unique-key collision means the other writer got there first, so run again and merge."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(RACE_ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except IntegrityError:
                if attempt == RACE_ATTEMPTS - 1:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    return wrapper  # type: ignore[return-value]


# What the sender knows of a message and a status webhook does not (kept when the webhook's row came first).
OUTBOUND_FIELDS = ("connection_id", "type", "category", "template_name", "idempotency_key")


class WhatsAppStore:
    """Synchronous queries on the shared engine; call them through `await store.run(ws.fn, ...)`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def session(self) -> Session:
        return self.store.session()

    # ---- customers ------------------------------------------------------------------------
    def _contact(self, s: Session, org: str, pid: str, wa_id: str, create: bool = False) -> WhatsAppContact | None:
        row = s.exec(select(WhatsAppContact).where(
            WhatsAppContact.organization_id == org, WhatsAppContact.phone_number_id == pid,
            WhatsAppContact.wa_id == wa_id)).first()
        if row is None and create:
            row = WhatsAppContact(organization_id=org, phone_number_id=pid, wa_id=wa_id)
        return row

    def contact(self, org: str, pid: str, wa_id: str) -> WhatsAppContact | None:
        with self.session() as s:
            return self._contact(s, org, pid, wa_id)

    @staticmethod
    def contact_in(s: Session, org: str, pid: str, wa_id: str) -> WhatsAppContact | None:
        return s.exec(select(WhatsAppContact).where(
            WhatsAppContact.organization_id == org, WhatsAppContact.phone_number_id == pid,
            WhatsAppContact.wa_id == wa_id)).first()

    def contacts(self, org: str, pid: str, wa_ids: Iterable[str]) -> dict[str, WhatsAppContact]:
        ids = list(set(wa_ids))
        out: dict[str, WhatsAppContact] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                for row in s.exec(select(WhatsAppContact).where(
                        WhatsAppContact.organization_id == org, WhatsAppContact.phone_number_id == pid,
                        col(WhatsAppContact.wa_id).in_(ids[i:i + 500]))).all():
                    out[row.wa_id] = row
        return out

    @race_safe
    def opt_in(self, org: str, pid: str, wa_ids: Sequence[str], source: str, at: datetime | None = None) -> int:
        """Record opt-in (clears any earlier opt-out): source and time are kept."""
        at = at or utcnow()
        unique = list(dict.fromkeys(wa_ids))
        existing = self.contacts(org, pid, unique)
        with self.session() as s:
            for wa_id in unique:
                row = existing.get(wa_id) or WhatsAppContact(organization_id=org, phone_number_id=pid, wa_id=wa_id)
                row.opted_in, row.opt_in_source, row.opted_in_at = True, source, at
                row.opted_out, row.opt_out_source, row.opted_out_at = False, None, None
                row.marketing_opted_out = False
                row.updated_at = utcnow()
                s.add(row)
            s.commit()
        return len(unique)

    @race_safe
    def opt_out(self, org: str, pid: str, wa_id: str, source: str, *, marketing_only: bool = False,
                at: datetime | None = None) -> WhatsAppContact:
        """Revoke: everything (STOP) or only marketing messages (Meta's 131050 state)."""
        with self.session() as s:
            row = self._contact(s, org, pid, wa_id, create=True)
            assert row is not None
            if marketing_only:
                row.marketing_opted_out = True
            else:
                row.opted_out, row.opt_out_source, row.opted_out_at = True, source, at or utcnow()
                row.opted_in = False
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def list_contacts(self, org: str, pid: str | None = None, only: str | None = None,
                      limit: int = 1000) -> Sequence[WhatsAppContact]:
        with self.session() as s:
            q = select(WhatsAppContact).where(WhatsAppContact.organization_id == org)
            if pid:
                q = q.where(WhatsAppContact.phone_number_id == pid)
            if only == "opted_in":
                q = q.where(WhatsAppContact.opted_in == True)  # noqa: E712 - SQL expression
            elif only == "opted_out":
                q = q.where(WhatsAppContact.opted_out == True)  # noqa: E712
            return s.exec(q.order_by(col(WhatsAppContact.id)).limit(limit)).all()

    def resolve_customer(self, org: str, pid: str, wa_id: str | None, user_id: str | None) -> str:
        """The conversation key of a sender: the phone number when given, else the one we learned for this BSUID
        earlier, else the BSUID itself (so a customer who stops sharing the number stays one conversation)."""
        if wa_id:
            return wa_id
        if not user_id:
            raise ValueError("a customer needs a wa_id or a BSUID")
        with self.session() as s:
            row = s.exec(select(WhatsAppContact).where(
                WhatsAppContact.organization_id == org, WhatsAppContact.phone_number_id == pid,
                WhatsAppContact.user_id == user_id)).first()
            return row.wa_id if row is not None else user_id

    @race_safe
    def record_inbound(self, org: str, connection_id: str, pid: str, wa_id: str, message_id: str,
                       at: datetime, mtype: str, profile_name: str | None, *, user_id: str | None = None,
                       event: dict[str, Any] | None = None) -> bool:
        """An inbound message opens/refreshes the window; False when Meta redelivered it. `event` (the data of a
        `whatsapp.message.received` event) is queued for subscribers in the same transaction, once."""
        now = utcnow()
        with self.session() as s:
            fresh = s.execute(_insert(s, WhatsAppMessageRecord).values(**WhatsAppMessageRecord(
                message_id=message_id, organization_id=org, connection_id=connection_id, phone_number_id=pid,
                wa_id=wa_id, direction="in", type=mtype, status="received", category=None,
                timeline=[{"status": "received", "at": int(at.timestamp())}]).model_dump())
                .on_conflict_do_nothing(index_elements=["message_id"]))
            if not getattr(fresh, "rowcount", 1):
                return False  # Meta redelivered it
            # The window opens at the newest inbound message; name and BSUID are kept once known.
            table = WhatsAppContact.__table__  # type: ignore[attr-defined]
            ins = _insert(s, WhatsAppContact).values(**WhatsAppContact(
                organization_id=org, phone_number_id=pid, wa_id=wa_id, user_id=user_id, last_inbound_at=at,
                profile_name=profile_name, updated_at=now).model_dump(exclude={"id"}))
            s.execute(ins.on_conflict_do_update(
                index_elements=["organization_id", "phone_number_id", "wa_id"], set_={
                    "last_inbound_at": case((table.c.last_inbound_at.is_(None), ins.excluded.last_inbound_at),
                                            (ins.excluded.last_inbound_at > table.c.last_inbound_at,
                                             ins.excluded.last_inbound_at),
                                            else_=table.c.last_inbound_at),
                    "profile_name": func.coalesce(ins.excluded.profile_name, table.c.profile_name),
                    "user_id": func.coalesce(ins.excluded.user_id, table.c.user_id),
                    "updated_at": ins.excluded.updated_at}))
            if event is not None:
                enqueue(s, org, "whatsapp.message.received", event, dedupe_key=f"in:{message_id}", at=at)
            s.commit()
            return True

    # ---- outbound messages -----------------------------------------------------------------
    @race_safe
    def record_outbound(self, rows: Sequence[dict[str, Any]]) -> None:
        """Sent messages with their category (a status webhook may have created the row first)."""
        with self.session() as s:
            self.record_outbound_in(s, rows)
            s.commit()

    @staticmethod
    def record_outbound_in(s: Session, rows: Sequence[dict[str, Any]]) -> list[str]:
        """`record_outbound` in the caller's transaction; the ids a status webhook had recorded first (their
        outcomes belong on the usage rows too: `sync_usage_in`)."""
        ids = [r["message_id"] for r in rows]
        found = {m.message_id: m for m in s.exec(select(WhatsAppMessageRecord).where(
            col(WhatsAppMessageRecord.message_id).in_(ids)))} if ids else {}
        fresh = [r for r in rows if r["message_id"] not in found]
        # A status webhook may record the same id between the read above and this write: its row is completed.
        upsert(s, WhatsAppMessageRecord, [WhatsAppMessageRecord(**r).model_dump() for r in fresh], ["message_id"],
               update=OUTBOUND_FIELDS)
        for r in rows:
            row = found.get(r["message_id"])
            if row is None:
                continue
            for k in OUTBOUND_FIELDS:
                if r.get(k) is not None:
                    setattr(row, k, r[k])
            s.add(row)
        return list(found)

    def sync_usage(self, message_ids: Sequence[str]) -> int:
        """Copy outcomes onto usage rows written after their status webhooks (a fast webhook can beat the
        send's own bookkeeping); a no-op for rows the webhook already updated."""
        with self.session() as s:
            n = self.sync_usage_in(s, message_ids)
            s.commit()
        return n

    @staticmethod
    def sync_usage_in(s: Session, message_ids: Sequence[str]) -> int:
        if not message_ids:
            return 0
        n = 0
        recs = s.exec(select(WhatsAppMessageRecord).where(
            col(WhatsAppMessageRecord.message_id).in_(list(message_ids)),
            WhatsAppMessageRecord.status != "accepted")).all()
        for rec in recs:
            for u in s.exec(select(UsageRecord).where(UsageRecord.reference == rec.message_id)).all():
                if u.delivery_status == rec.status:
                    continue
                u.delivery_status = rec.status
                if rec.error_code and rec.status == "failed":
                    u.error_code = rec.error_code
                if rec.cost_recorded:
                    u.cost_amount, u.currency = rec.cost_amount, rec.currency
                    delivered = [t for t in rec.timeline if t.get("status") in ("delivered", "read")]
                    if delivered and u.delivered_at is None:
                        u.delivered_at = datetime.fromtimestamp(int(delivered[0].get("at") or 0), UTC)
                s.add(u)
                n += 1
        return n

    def message(self, message_id: str) -> WhatsAppMessageRecord | None:
        with self.session() as s:
            return s.get(WhatsAppMessageRecord, message_id)

    def messages(self, org: str, wa_id: str | None = None, limit: int = 200) -> Sequence[WhatsAppMessageRecord]:
        with self.session() as s:
            q = select(WhatsAppMessageRecord).where(WhatsAppMessageRecord.organization_id == org)
            if wa_id:
                q = q.where(WhatsAppMessageRecord.wa_id == wa_id)
            return s.exec(q.order_by(col(WhatsAppMessageRecord.created_at)).limit(limit)).all()

    def timelines(self, org: str, pid: str, customer: str, message_ids: Sequence[str] = (),
                  limit: int = 200) -> Sequence[WhatsAppMessageRecord]:
        """A customer's latest messages in and out (or the given ones), oldest first: the delivery record."""
        with self.session() as s:
            q = select(WhatsAppMessageRecord).where(WhatsAppMessageRecord.organization_id == org)
            if message_ids:
                q = q.where(col(WhatsAppMessageRecord.message_id).in_(list(message_ids)))
            else:
                q = q.where(WhatsAppMessageRecord.phone_number_id == pid, WhatsAppMessageRecord.wa_id == customer)
            rows = s.exec(q.order_by(col(WhatsAppMessageRecord.created_at).desc()).limit(limit)).all()
            return list(reversed(rows))

    def sent_by_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """{idempotency key: message id} of messages already sent under these keys (bulk retries)."""
        out: dict[str, str] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                for row in s.exec(select(WhatsAppMessageRecord).where(
                        col(WhatsAppMessageRecord.idempotency_key).in_(list(keys[i:i + 500])))).all():
                    if row.idempotency_key:
                        out[row.idempotency_key] = row.message_id
        return out

    @race_safe
    def apply_status(self, org: str, connection_id: str, pid: str, message_id: str, status: str, ts: int,
                     recipient: str, errors: list[dict[str, Any]], pricing: dict[str, Any] | None,
                     rates: Rates, country_code: str, *, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """One status webhook, applied once: timeline, outcome, usage ledger, cost when delivered. The store is
        the only owner of these facts (conversations ask it through `whatsapp.message_timelines`).

        `event` is the base data of the `whatsapp.message.status` (or `.failed`) event queued for subscribers in
        the same transaction when the status is new. Returns {"new": bool, "cost": float | None,
        "error_code": str | None, "origin": what we sent}.
        """
        with self.session() as s:
            row = s.get(WhatsAppMessageRecord, message_id)
            if row is None:
                row = WhatsAppMessageRecord(message_id=message_id, organization_id=org, connection_id=connection_id,
                                            phone_number_id=pid, wa_id=recipient)
            origin = {"type": row.type, "template": row.template_name, "category": row.category}
            if any(step.get("status") == status for step in row.timeline):
                return {"new": False, "cost": None, "error_code": row.error_code, "origin": origin}
            err = errors[0] if errors else None
            step: dict[str, Any] = {"status": status, "at": ts}
            if err:
                step["error"] = {"code": err.get("code"), "title": err.get("title")}
            row.timeline = [*row.timeline, step]
            if STATUS_RANK.get(status, 0) >= STATUS_RANK.get(row.status, 0):
                row.status = status
            if err:
                row.error_code, row.error_title = str(err.get("code")), str(err.get("title") or "")
            if pricing:
                row.billable = bool(pricing.get("billable"))
                row.pricing_category = str(pricing.get("category") or "") or row.pricing_category
            cost: float | None = None
            currency = None
            delivered = status in ("delivered", "read") and not row.cost_recorded
            if delivered:
                category = row.pricing_category or row.category or "service"
                billable = bool(row.billable)
                price, currency = rate_for(rates, country_code, category)
                cost = round(price, 6) if (billable and price is not None) else 0.0
                row.cost_amount, row.currency, row.cost_recorded = cost, currency or "USD", True
                self._add_daily(s, org, row.connection_id or connection_id, category, billable, cost,
                                currency or "USD", ts)
            row.updated_at = utcnow()
            s.add(row)
            usage_fields: dict[str, Any] = {"delivery_status": row.status}
            if delivered:
                usage_fields |= {"delivered_at": datetime.fromtimestamp(ts, UTC) if ts else utcnow(),
                                 "cost_amount": cost, "currency": currency or "USD"}
            if err:
                usage_fields["error_code"] = str(err.get("code"))
            for u in s.exec(select(UsageRecord).where(UsageRecord.reference == message_id)).all():
                for k, v in usage_fields.items():
                    setattr(u, k, v)
                s.add(u)
            if event is not None:
                data = {**event, "message_id": message_id, "status": status, "at": ts, "type": row.type,
                        "template": row.template_name, "category": row.pricing_category or row.category,
                        "billable": row.billable, "cost": cost, "currency": currency if cost is not None else None}
                if err:
                    data["error"] = {"code": err.get("code"), "title": err.get("title"),
                                     "details": (err.get("error_data") or {}).get("details")}
                kind = "whatsapp.message.failed" if status == "failed" else "whatsapp.message.status"
                enqueue(s, org, kind, data, dedupe_key=f"st:{message_id}:{status}")
            s.commit()
            return {"new": True, "cost": cost, "error_code": row.error_code if err else None, "origin": origin}

    def _add_daily(self, s: Session, org: str, connection_id: str, category: str, billable: bool, cost: float,
                   currency: str, ts: int) -> None:
        day = datetime.fromtimestamp(ts or utcnow().timestamp(), UTC).strftime("%Y-%m-%d")
        row = s.exec(select(WhatsAppCostDaily).where(
            WhatsAppCostDaily.organization_id == org, WhatsAppCostDaily.connection_id == connection_id,
            WhatsAppCostDaily.category == category, WhatsAppCostDaily.day == day,
            WhatsAppCostDaily.currency == currency)).first()
        if row is None:
            row = WhatsAppCostDaily(organization_id=org, connection_id=connection_id, category=category, day=day,
                                    currency=currency)
        row.delivered += 1
        row.billable += 1 if billable else 0
        row.cost_amount = round(row.cost_amount + cost, 6)
        s.add(row)

    def cost_report(self, org: str | None = None, since: str | None = None, until: str | None = None,
                    connection_id: str | None = None) -> Sequence[WhatsAppCostDaily]:
        with self.session() as s:
            q = select(WhatsAppCostDaily)
            if org:
                q = q.where(WhatsAppCostDaily.organization_id == org)
            if connection_id:
                q = q.where(WhatsAppCostDaily.connection_id == connection_id)
            if since:
                q = q.where(WhatsAppCostDaily.day >= since)
            if until:
                q = q.where(WhatsAppCostDaily.day <= until)
            return s.exec(q.order_by(col(WhatsAppCostDaily.day), col(WhatsAppCostDaily.category))).all()

    # ---- connection health from asynchronous failures ---------------------------------------
    @race_safe
    def note_async_failure(self, connection_id: str, code: str, title: str, health: Health | None) -> None:
        """Count webhook-reported failures by code; change the connection's health when told to."""
        with self.session() as s:
            row = s.exec(select(WhatsAppFailureCount).where(WhatsAppFailureCount.connection_id == connection_id,
                                                            WhatsAppFailureCount.code == code)).first()
            row = row or WhatsAppFailureCount(connection_id=connection_id, code=code)
            row.count += 1
            row.last_title, row.last_at = title, utcnow()
            s.add(row)
            conn = s.get(Connection, connection_id)
            if conn is not None:
                detail = dict(conn.health_detail or {})
                detail["last_async_failure"] = {"code": code, "title": title, "at": utcnow().isoformat()}
                conn.health_detail = detail
                conn.error_count += 1
                if health is not None:
                    previous = conn.health
                    conn.health = health.value
                    conn.last_health_check = utcnow()
                    if previous != health.value:
                        enqueue(s, conn.organization_id, "connection.health.changed", health_event(conn, previous))
                s.add(conn)
            s.commit()

    def failure_counts(self, connection_id: str) -> dict[str, int]:
        with self.session() as s:
            return {r.code: r.count for r in s.exec(select(WhatsAppFailureCount).where(
                WhatsAppFailureCount.connection_id == connection_id)).all()}

    # ---- the portfolio's messaging limit ---------------------------------------------------
    def reserve_initiations(self, portfolio_id: str, org: str, wa_ids: Sequence[str], limit: int,
                            window_seconds: float, now: datetime | None = None
                            ) -> tuple[list[str], dict[str, datetime]]:
        """Take messaging-limit slots for customers outside a window: (allowed, {held: when a slot frees}).

        A customer already messaged within the rolling window costs nothing again. Atomic per portfolio:
        a process lock for SQLite, a transaction-scoped advisory lock on PostgreSQL (several workers).
        """
        now = now or utcnow()
        since = now - timedelta(seconds=window_seconds)
        allowed: list[str] = []
        held: dict[str, datetime] = {}
        with _initiation_lock, self.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                          {"k": zlib.crc32(f"wa-portfolio:{portfolio_id}".encode())})
            rows = s.exec(select(WhatsAppInitiation).where(
                WhatsAppInitiation.portfolio_id == portfolio_id, WhatsAppInitiation.at > since)).all()
            first_at: dict[str, datetime] = {}
            for r in rows:
                at = r.at or now
                if r.wa_id not in first_at or at < first_at[r.wa_id]:
                    first_at[r.wa_id] = at
            oldest = sorted(first_at.values())
            for wa_id in dict.fromkeys(wa_ids):
                if wa_id in first_at:
                    allowed.append(wa_id)
                    continue
                if len(first_at) < limit:
                    first_at[wa_id] = now
                    s.add(WhatsAppInitiation(portfolio_id=portfolio_id, organization_id=org, wa_id=wa_id, at=now))
                    allowed.append(wa_id)
                    continue
                # Full: the slot frees when the oldest counted customer leaves the rolling window.
                free_at = (oldest[0] if oldest else now) + timedelta(seconds=window_seconds)
                held[wa_id] = free_at
            s.commit()
        return allowed, held

    def confirm_initiations(self, portfolio_id: str, wa_ids: Sequence[str], reserved_at: datetime) -> int:
        """Move slots taken at `reserved_at` to now, once Meta accepted the sends.

        Meta starts counting when it receives the message, which is after we reserved; counting from the
        acceptance keeps our window from freeing a slot before Meta's does (slow or retried sends).
        """
        if not wa_ids:
            return 0
        with self.session() as s:
            n = self.confirm_initiations_in(s, portfolio_id, wa_ids, reserved_at)
            s.commit()
            return n

    @staticmethod
    def confirm_initiations_in(s: Session, portfolio_id: str, wa_ids: Sequence[str], reserved_at: datetime) -> int:
        done = s.execute(update(WhatsAppInitiation).where(
            col(WhatsAppInitiation.portfolio_id) == portfolio_id, col(WhatsAppInitiation.wa_id).in_(list(wa_ids)),
            col(WhatsAppInitiation.at) >= reserved_at).values(at=utcnow()))
        return int(getattr(done, "rowcount", 0) or 0)

    def initiations(self, portfolio_id: str, window_seconds: float) -> int:
        since = utcnow() - timedelta(seconds=window_seconds)
        with self.session() as s:
            return int(s.exec(select(func.count(func.distinct(WhatsAppInitiation.wa_id))).where(
                WhatsAppInitiation.portfolio_id == portfolio_id, WhatsAppInitiation.at > since)).one())

    # ---- Meta apps and deliveries no connection may run --------------------------------------
    def set_app(self, app_id: str, label: str, organization_id: str | None) -> WhatsAppApp:
        with self.session() as s:
            row = s.get(WhatsAppApp, app_id) or WhatsAppApp(app_id=app_id)
            row.label, row.organization_id, row.updated_at = label, organization_id, utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def app(self, app_id: str) -> WhatsAppApp | None:
        with self.session() as s:
            return s.get(WhatsAppApp, app_id)

    def apps(self) -> Sequence[WhatsAppApp]:
        with self.session() as s:
            return s.exec(select(WhatsAppApp).order_by(col(WhatsAppApp.app_id))).all()

    def remove_app(self, app_id: str) -> bool:
        with self.session() as s:
            row = s.get(WhatsAppApp, app_id)
            if row is None:
                return False
            s.delete(row)
            s.commit()
            return True

    def record_unrouted(self, digest: str, app_id: str | None, via_connection_id: str | None, pid: str,
                        reason: str, body: dict[str, Any]) -> bool:
        """False when this very delivery was recorded already (Meta redelivers)."""
        with self.session() as s:
            s.add(WhatsAppUnrouted(digest=digest, app_id=app_id, via_connection_id=via_connection_id,
                                   phone_number_id=pid, reason=reason, body=body))
            try:
                s.commit()
            except IntegrityError:
                return False
            return True

    def unrouted(self, limit: int = 100) -> Sequence[WhatsAppUnrouted]:
        with self.session() as s:
            return s.exec(select(WhatsAppUnrouted).order_by(col(WhatsAppUnrouted.id).desc()).limit(limit)).all()

    # ---- rates -------------------------------------------------------------------------------
    def rates(self) -> Rates:
        with self.session() as s:
            return {(r.country_code, r.category): (r.price, r.currency) for r in s.exec(select(WhatsAppRate)).all()}

    def replace_rates(self, rows: Sequence[dict[str, Any]], source: str) -> int:
        """The operator's rate card replaces the whole table in one transaction."""
        with self.session() as s:
            for old in s.exec(select(WhatsAppRate)).all():
                s.delete(old)
            s.flush()
            for r in rows:
                s.add(WhatsAppRate(country_code=str(r["country_code"]), category=str(r["category"]).lower(),
                                   price=float(r["price"]), currency=str(r.get("currency") or "USD"),
                                   source=source))
            s.commit()
        return len(rows)


def rate_for(rates: Rates, country_code: str, category: str) -> tuple[float | None, str | None]:
    """Exact (country calling code, category), else the '*' fallback for the category, else unknown."""
    for key in ((country_code, category), ("*", category)):
        if key in rates:
            return rates[key]
    return None, None
