"""The audit log's hash chain: each organization's rows linked by an HMAC of the previous row's hash.

The key lives in Vault (the store never sees where from), so someone who can write the database but not read
that key cannot forge a row, re-link the chain after deleting one, or edit a row unnoticed. Rows are appended
under a per-organization lock (PostgreSQL advisory lock; SQLite's write lock), so concurrent writers in several
processes keep every chain linear; a unique (organization, seq) constraint backs that up.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from store.models import AuditEvent

GENESIS = "0" * 64
CHAIN_VERSION = "v1"
PG_LOCK_CLASS = 4243  # pg_advisory_xact_lock(class, hashtext(organization)): one chain head per organization


def lock_chain(s: Session, organization_id: str) -> None:
    """Take the chain's write lock in this transaction (call first, before any other statement)."""
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        # A deferred transaction would read the head and then fail to upgrade its lock under contention.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(:o))"), {"c": PG_LOCK_CLASS,
                                                                             "o": organization_id})


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def normalized(detail: dict[str, Any] | None) -> dict[str, Any]:
    """The detail as the database gives it back (JSON round trip), so what is hashed is what is stored."""
    out: dict[str, Any] = json.loads(json.dumps(detail or {}, default=str))
    return out


def row_hash(key: bytes, ev: AuditEvent) -> str:
    doc = [CHAIN_VERSION, ev.organization_id, ev.seq, ev.prev_hash, _canonical_time(ev.at), ev.actor, ev.action,
           ev.connection_id, ev.target, ev.outcome, ev.detail]
    msg = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def append(s: Session, key: bytes, ev: AuditEvent, *, orm: bool = True) -> AuditEvent:
    """Link `ev` to its organization's chain and add it (the caller holds `lock_chain` and commits). `orm=False`:
    a plain INSERT (the hot path; `ev.id` then stays unset)."""
    last = s.exec(select(AuditEvent.seq, AuditEvent.hash)
                  .where(AuditEvent.organization_id == ev.organization_id, col(AuditEvent.seq).is_not(None))
                  .order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    ev.seq = (int(last[0] or 0) + 1) if last else 1
    ev.prev_hash = (last[1] or GENESIS) if last else GENESIS
    ev.detail = normalized(ev.detail)
    ev.hash = row_hash(key, ev)
    if orm:
        s.add(ev)
    else:
        s.execute(insert(AuditEvent).values(**ev.model_dump(exclude={"id"})))
    return ev


@dataclass
class Broken:
    """The first row of a chain that does not check out, and why."""

    organization_id: str
    id: int | None
    seq: int | None
    reason: str


@dataclass
class Verification:
    ok: bool = True
    rows: int = 0
    organizations: int = 0
    legacy_rows: int = 0  # written before the chain existed (migration 0003): counted, not verifiable
    broken: list[Broken] = field(default_factory=list)  # the first broken row of each broken chain

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(s: Session, organization_id: str | None) -> Iterator[AuditEvent]:
    q = select(AuditEvent)
    if organization_id is not None:
        q = q.where(AuditEvent.organization_id == organization_id)
    q = q.order_by(col(AuditEvent.organization_id), col(AuditEvent.seq).is_(None).desc(), col(AuditEvent.seq),
                   col(AuditEvent.id))
    yield from s.exec(q.execution_options(yield_per=1000))


def verify(s: Session, key: bytes, organization_id: str | None = None) -> Verification:
    """Recompute every chain (or one organization's): sequence without gaps, each row linked to the previous
    row's hash, each hash the HMAC of the row's content. Reports the first broken row per chain."""
    result = Verification()
    org: str | None = None
    prev, expected_seq, broken_here, max_legacy_id = GENESIS, 1, False, -1
    for ev in _rows(s, organization_id):
        if ev.organization_id != org:
            org, prev, expected_seq, broken_here, max_legacy_id = ev.organization_id, GENESIS, 1, False, -1
            result.organizations += 1
        result.rows += 1
        if broken_here:
            continue
        reason = None
        if ev.seq is None:
            if ev.hash is None and ev.prev_hash is None:
                result.legacy_rows += 1
                max_legacy_id = max(max_legacy_id, ev.id or 0)
                continue
            reason = "row has a hash but no sequence number"
        elif ev.seq == 1 and max_legacy_id > (ev.id or 0):
            reason = f"unchained row {max_legacy_id} was written after the chain started"
        elif ev.seq != expected_seq:
            reason = (f"sequence jumps from {expected_seq - 1} to {ev.seq}: rows deleted" if ev.seq > expected_seq
                      else f"sequence {ev.seq} repeated")
        elif ev.prev_hash != prev:
            reason = "not linked to the previous row (prev_hash differs): rows deleted or reordered"
        elif ev.hash is None or not hmac.compare_digest(ev.hash.encode(), row_hash(key, ev).encode()):
            reason = "content does not match its hash: the row was edited"
        if reason is not None:
            result.ok = False
            result.broken.append(Broken(ev.organization_id, ev.id, ev.seq, reason))
            broken_here = True
            continue
        prev, expected_seq = ev.hash or GENESIS, expected_seq + 1
    return result


def in_range(s: Session, organization_id: str | None, since: datetime | None, until: datetime | None
             ) -> list[AuditEvent]:
    q = select(AuditEvent)
    if organization_id is not None:
        q = q.where(AuditEvent.organization_id == organization_id)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at < until)
    return list(s.exec(q.order_by(AuditEvent.organization_id, col(AuditEvent.id))).all())


EXPORT_FIELDS = ("id", "organization_id", "seq", "at", "actor", "action", "connection_id", "target", "outcome",
                 "detail", "prev_hash", "hash")


def export_rows(rows: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    return [{**e.model_dump(mode="json", include=set(EXPORT_FIELDS))} for e in rows]


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(EXPORT_FIELDS))
    w.writeheader()
    for r in rows:
        w.writerow({**r, "detail": json.dumps(r.get("detail") or {}, sort_keys=True)})
    return buf.getvalue()
