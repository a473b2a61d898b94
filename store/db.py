"""Engine creation, schema setup (with append-only guards) and the Store facade."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, insert, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, create_engine, select

from store import audit as chain
from store.events import CommitListener, add_commit_listener, enqueue
from store.models import (
    AdminKey,
    AdminNotification,
    AuditEvent,
    Connection,
    ConnectionStatus,
    Health,
    IdempotencyRecord,
    UsageRecord,
    health_event,
    utcnow,
)

T = TypeVar("T")
# A write that joins another write's transaction (`Store.record_action`): it must not commit.
Writer = Callable[[Session], Any]


class ConnectionExists(Exception):
    """A connection with this (organization, type, name) already exists."""


class ConnectionNotFound(LookupError):
    """No connection with this (organization, type, name)."""


# An identical unacknowledged alert inside this window is the same alert, not a new one.
NOTIFICATION_DEDUPE_SECONDS = 3600


def _by_identity(organization_id: str, integration_type: str, name: str) -> Any:
    """A connection is identified by (organization, integration type, name)."""
    return select(Connection).where(Connection.organization_id == organization_id,
                                    Connection.integration_type == integration_type, Connection.name == name)


def make_engine(url: str) -> Engine:
    """An engine for SQLite (file created, WAL mode) or PostgreSQL (`postgresql+psycopg://`)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a power loss may undo the last
            # commits, a crashed process loses nothing (the embedded default; production runs PostgreSQL).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Store:
    """Synchronous queries with async wrappers (`await store.run(fn)`) for the event loop."""

    def __init__(self, url: str, audit_key: Callable[[], bytes] | None = None, *, threads: int = 16,
                 connection_cache_seconds: float = 5.0) -> None:
        """The schema is Alembic's (`worker.migrate.upgrade`, run by every process at start). `audit_key` gives
        the audit chain's HMAC key (the Runtime's reads it from Vault); no audit row is written without it.
        `connection_cache_seconds`: how long `connection()` may answer from memory (see there)."""
        self.url = url
        self.connection_cache_seconds = connection_cache_seconds
        self._connections: dict[str, tuple[float, Connection]] = {}
        self.engine = make_engine(url)
        self.audit_key = audit_key
        # Queries run on threads of their own, not asyncio's shared default pool (where blocking Vault calls
        # or a slow query elsewhere would make every other organization's bookkeeping wait).
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="osi-store")

    def _audit_key(self) -> bytes:
        if self.audit_key is None:
            raise RuntimeError("the store has no audit chain key: audit rows cannot be written or verified")
        return self.audit_key()

    def ping(self) -> None:
        """One round trip (readiness checks); raises when the database is unreachable."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking query in a thread so activities never block the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                functools.partial(fn, *args, **kwargs))

    def dispose(self) -> None:
        self.engine.dispose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- connections -------------------------------------------------------------------
    def add_connection(
        self, organization_id: str, integration_type: str, name: str, settings: dict[str, Any]
    ) -> Connection:
        conn = Connection(
            organization_id=organization_id, integration_type=integration_type, name=name, settings=settings
        )
        with self.session() as s:
            s.add(conn)
            try:
                s.commit()
            except IntegrityError as exc:
                raise ConnectionExists(f"connection {integration_type}/{name} already exists") from exc
            s.refresh(conn)
        return conn

    def upsert_connection(
        self, organization_id: str, integration_type: str, name: str, settings: dict[str, Any]
    ) -> Connection:
        """Create or update settings (used by OAuth installs and the demo seed)."""
        with self.session() as s:
            conn = s.exec(_by_identity(organization_id, integration_type, name)).first()
            if conn is None:
                conn = Connection(
                    organization_id=organization_id, integration_type=integration_type, name=name
                )
            conn.settings = {**(conn.settings or {}), **settings}
            conn.status = ConnectionStatus.ACTIVE.value
            conn.updated_at = utcnow()
            s.add(conn)
            s.commit()
            s.refresh(conn)
            self.forget_connection(conn.id)
            return conn

    def find_connection(self, organization_id: str, integration_type: str, name: str) -> Connection:
        with self.session() as s:
            return self.find_connection_in(s, organization_id, integration_type, name)

    def find_connection_in(self, s: Session, organization_id: str, integration_type: str, name: str) -> Connection:
        conn = s.exec(_by_identity(organization_id, integration_type, name)).first()
        if conn is None:
            raise ConnectionNotFound(
                f"no {integration_type} connection named {name!r} in organization {organization_id}"
            )
        return conn

    def get_connection(self, connection_id: str) -> Connection | None:
        with self.session() as s:
            return s.get(Connection, connection_id)

    async def connection(self, connection_id: str) -> Connection | None:
        """A connection row for request routing (webhooks), from memory when read less than
        `connection_cache_seconds` ago: no query and no thread hop per request. This process's own changes
        (`update_connection`, `upsert_connection`, `delete_connection`, `set_health`) drop the entry at once;
        another process's are seen within `connection_cache_seconds`. The row is shared: read it, never change
        it (its usage counters and health may lag). An unknown id is not cached (a new connection is seen at
        once)."""
        hit = self._connections.get(connection_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        conn = await self.run(self.get_connection, connection_id)
        if conn is not None and self.connection_cache_seconds > 0:
            self._connections[connection_id] = (time.monotonic() + self.connection_cache_seconds, conn)
        return conn

    def forget_connection(self, connection_id: str) -> None:
        """Drop a cached row (after a change, or when a request suggests it is stale)."""
        self._connections.pop(connection_id, None)

    def list_connections(
        self, organization_id: str | None = None, integration_type: str | None = None
    ) -> Sequence[Connection]:
        with self.session() as s:
            q = select(Connection)
            if organization_id:
                q = q.where(Connection.organization_id == organization_id)
            if integration_type:
                q = q.where(Connection.integration_type == integration_type)
            return s.exec(q.order_by(Connection.organization_id, Connection.name)).all()

    def find_connections_by_setting(self, integration_type: str, key: str, value: str) -> list[Connection]:
        """Connections whose settings[key] == value (e.g. the phone number id of a webhook)."""
        return [
            c for c in self.list_connections(integration_type=integration_type) if c.settings.get(key) == value
        ]

    def update_connection(self, connection_id: str, **fields: Any) -> Connection:
        self.forget_connection(connection_id)
        with self.session() as s:
            conn = s.get(Connection, connection_id)
            if conn is None:
                raise ConnectionNotFound(connection_id)
            for k, v in fields.items():
                setattr(conn, k, v)
            conn.updated_at = utcnow()
            s.add(conn)
            s.commit()
            s.refresh(conn)
            return conn

    def delete_connection(self, connection_id: str) -> None:
        self.forget_connection(connection_id)
        with self.session() as s:
            conn = s.get(Connection, connection_id)
            if conn is not None:
                s.delete(conn)
                s.commit()

    def set_health(
        self, connection_id: str, health: Health, detail: dict[str, Any], status: ConnectionStatus | None = None
    ) -> None:
        """Record the connection's health; a change is an event for the organization's subscribers (same
        transaction)."""
        self.forget_connection(connection_id)
        with self.session() as s:
            self.set_health_in(s, connection_id, health, detail, status)
            s.commit()

    @staticmethod
    def set_health_in(s: Session, connection_id: str, health: Health, detail: dict[str, Any],
                      status: ConnectionStatus | None = None) -> None:
        """`set_health` inside the caller's transaction (an action's closing one)."""
        conn = s.get(Connection, connection_id)
        if conn is None:
            raise ConnectionNotFound(connection_id)
        previous = conn.health
        conn.health, conn.health_detail, conn.last_health_check = health.value, detail, utcnow()
        if status is not None:
            conn.status = status.value
        conn.updated_at = utcnow()
        s.add(conn)
        if previous != health.value:
            enqueue(s, conn.organization_id, "connection.health.changed", health_event(conn, previous))

    def on_events(self, listener: CommitListener) -> None:
        """`listener(subscription ids)` after each commit that added events to deliver."""
        add_commit_listener(self.engine, listener)

    def count_use(self, connection_id: str, failed: bool) -> None:
        with self.session() as s:
            conn = s.get(Connection, connection_id)
            if conn is None:
                return
            conn.request_count += 1
            conn.error_count += 1 if failed else 0
            conn.last_used_at = utcnow()
            s.add(conn)
            s.commit()

    # ---- audit, usage, notifications ----------------------------------------------------
    def audit(
        self,
        organization_id: str,
        actor: str,
        action: str,
        outcome: str,
        *,
        connection_id: str | None = None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEvent:
        ev = AuditEvent(
            organization_id=organization_id,
            actor=actor,
            action=action,
            outcome=outcome,
            connection_id=connection_id,
            target=target,
            detail=detail or {},
        )
        key = self._audit_key()
        with self.session() as s:
            chain.lock_chain(s, organization_id)
            chain.append(s, key, ev)
            s.commit()
            s.refresh(ev)
        return ev

    def verify_audit(self, organization_id: str | None = None) -> chain.Verification:
        """Check the audit hash chains (every organization's, or one): the first broken row of each."""
        key = self._audit_key()
        with self.session() as s:
            return chain.verify(s, key, organization_id)

    def audit_range(self, organization_id: str | None, since: datetime | None = None,
                    until: datetime | None = None) -> Sequence[AuditEvent]:
        with self.session() as s:
            return chain.in_range(s, organization_id, since, until)

    def audit_log(
        self, organization_id: str | None = None, connection_id: str | None = None, limit: int = 200
    ) -> Sequence[AuditEvent]:
        with self.session() as s:
            q = select(AuditEvent)
            if organization_id:
                q = q.where(AuditEvent.organization_id == organization_id)
            if connection_id:
                q = q.where(AuditEvent.connection_id == connection_id)
            return s.exec(q.order_by(col(AuditEvent.id).desc()).limit(limit)).all()

    def record_usage(self, rec: UsageRecord) -> None:
        with self.session() as s:
            s.add(rec)
            s.commit()

    def record_usages(self, recs: Sequence[UsageRecord]) -> None:
        with self.session() as s:
            s.add_all(list(recs))
            s.commit()

    def record_action(self, rows: Sequence[UsageRecord], audit: AuditEvent, writers: Sequence[Writer] = ()) -> None:
        """One transaction per action: its usage rows, the connection's counters, the action's own writes
        (`writers`: the message record, the intent's outcome…) and its audit event.

        Plain INSERT/UPDATE statements rather than the ORM's unit of work: this runs once per provider call."""
        key = self._audit_key()
        with self.session() as s:
            chain.lock_chain(s, audit.organization_id)
            if rows:
                s.execute(insert(UsageRecord), [r.model_dump(exclude={"id"}) for r in rows])
                if rows[0].connection_id is not None:
                    failed = sum(1 for r in rows if r.outcome != "ok")
                    s.execute(update(Connection).where(col(Connection.id) == rows[0].connection_id).values(
                        request_count=col(Connection.request_count) + len(rows),
                        error_count=col(Connection.error_count) + failed, last_used_at=utcnow()))
            for write in writers:
                write(s)
            chain.append(s, key, audit, orm=False)
            s.commit()

    def usage(
        self,
        organization_id: str | None = None,
        connection_id: str | None = None,
        since: datetime | None = None,
        action: str | None = None,
    ) -> Sequence[UsageRecord]:
        with self.session() as s:
            q = select(UsageRecord)
            if organization_id:
                q = q.where(UsageRecord.organization_id == organization_id)
            if connection_id:
                q = q.where(UsageRecord.connection_id == connection_id)
            if since:
                q = q.where(UsageRecord.at >= since)
            if action:
                q = q.where(UsageRecord.action == action)
            return s.exec(q.order_by(col(UsageRecord.id))).all()

    def update_usage_by_reference(self, reference: str, **fields: Any) -> int:
        """Late outcome (e.g. a delivery status webhook) for the call that produced `reference`."""
        with self.session() as s:
            rows = s.exec(select(UsageRecord).where(UsageRecord.reference == reference)).all()
            for r in rows:
                for k, v in fields.items():
                    setattr(r, k, v)
                s.add(r)
            s.commit()
            return len(rows)

    def notify_admins(
        self,
        organization_id: str,
        kind: str,
        message: str,
        *,
        connection_id: str | None = None,
        severity: str = "error",
        action_url: str | None = None,
    ) -> AdminNotification:
        """Record an alert; the same unacknowledged alert within the last hour is not recorded again.

        Deduplication keeps a failing retry loop (or a failing alert delivery) from flooding administrators.
        """
        since = utcnow() - timedelta(seconds=NOTIFICATION_DEDUPE_SECONDS)
        with self.session() as s:
            same = s.exec(select(AdminNotification).where(
                AdminNotification.organization_id == organization_id,
                col(AdminNotification.connection_id).is_(None) if connection_id is None
                else AdminNotification.connection_id == connection_id, AdminNotification.kind == kind,
                AdminNotification.message == message, AdminNotification.acknowledged == False,  # noqa: E712
                AdminNotification.at > since)).first()
            if same is not None:
                return same
            n = AdminNotification(organization_id=organization_id, connection_id=connection_id, kind=kind,
                                  message=message, severity=severity, action_url=action_url)
            s.add(n)
            s.commit()
            s.refresh(n)
        return n

    def notifications(
        self, organization_id: str | None = None, connection_id: str | None = None
    ) -> Sequence[AdminNotification]:
        with self.session() as s:
            q = select(AdminNotification)
            if organization_id:
                q = q.where(AdminNotification.organization_id == organization_id)
            if connection_id:
                q = q.where(AdminNotification.connection_id == connection_id)
            return s.exec(q.order_by(col(AdminNotification.id))).all()

    # ---- idempotency ----------------------------------------------------------------------
    def get_idempotent(self, key: str) -> dict[str, Any] | None:
        with self.session() as s:
            rec = s.get(IdempotencyRecord, key)
            return dict(rec.result) if rec else None

    def put_idempotent(self, key: str, organization_id: str, action: str, result: dict[str, Any]) -> None:
        with self.session() as s:
            if s.get(IdempotencyRecord, key) is None:
                s.add(IdempotencyRecord(key=key, organization_id=organization_id, action=action, result=result))
                s.commit()

    def get_idempotent_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{key: result} for the keys already done (one query for a batch of side effects)."""
        if not keys:
            return {}
        with self.session() as s:
            rows = s.exec(select(IdempotencyRecord).where(col(IdempotencyRecord.key).in_(list(keys)))).all()
            return {r.key: dict(r.result) for r in rows}

    def put_idempotent_many(self, organization_id: str, action: str, results: dict[str, dict[str, Any]]) -> None:
        """Record several done side effects in one transaction (keys already recorded are kept as they are)."""
        if not results:
            return
        with self.session() as s:
            known = set(s.exec(select(IdempotencyRecord.key).where(
                col(IdempotencyRecord.key).in_(list(results)))).all())
            for key, result in results.items():
                if key not in known:
                    s.add(IdempotencyRecord(key=key, organization_id=organization_id, action=action, result=result))
            s.commit()

    def acknowledge_notification(self, organization_id: str, notification_id: int) -> bool:
        with self.session() as s:
            n = s.get(AdminNotification, notification_id)
            if n is None or n.organization_id != organization_id:
                return False
            n.acknowledged = True
            s.add(n)
            s.commit()
            return True

    # ---- admin keys -------------------------------------------------------------------------
    def issue_admin_key(self, organization_id: str | None, label: str) -> str:
        """A new random key, returned once; only its hash is kept."""
        key = "osk_" + secrets.token_urlsafe(32)
        with self.session() as s:
            s.add(AdminKey(organization_id=organization_id, label=label,
                           key_hash=hashlib.sha256(key.encode()).hexdigest()))
            s.commit()
        return key

    def find_admin_key(self, key: str) -> AdminKey | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        with self.session() as s:
            found = s.exec(select(AdminKey).where(AdminKey.key_hash == digest)).first()
        return found if found is not None and not found.revoked else None
