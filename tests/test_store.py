"""Store tests on both SQLite and PostgreSQL (a fresh database per run)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from store.db import ConnectionExists, ConnectionNotFound, Store
from store.models import AuditEvent, Health, UsageRecord
from worker.migrate import upgrade

PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'osi.db'}"
        upgrade(url)
        st = Store(url, audit_key=lambda: b"k" * 32)
        yield st
        st.dispose()
        return
    name = f"osi_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, user="postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(f"postgresql://postgres@127.0.0.1:5432/{name}")
    st = Store(f"postgresql://postgres@127.0.0.1:5432/{name}", audit_key=lambda: b"k" * 32)
    try:
        yield st
    finally:
        st.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True, user="postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_dialect(store: Store) -> None:
    assert store.engine.dialect.name in ("sqlite", "postgresql")


def test_connection_identity_is_org_type_name(store: Store) -> None:
    org = f"org_{uuid.uuid4().hex[:6]}"
    a = store.add_connection(org, "SLACK", "eng", {"team_id": "T1"})
    b = store.add_connection(org, "SLACK", "sales", {"team_id": "T2"})  # several per type
    c = store.add_connection(org, "WHATSAPP_BUSINESS", "eng", {"phone_number_id": "1"})  # same name, other type
    assert len({a.id, b.id, c.id}) == 3
    with pytest.raises(ConnectionExists):
        store.add_connection(org, "SLACK", "eng", {})
    assert store.find_connection(org, "SLACK", "sales").settings == {"team_id": "T2"}
    with pytest.raises(ConnectionNotFound):
        store.find_connection("other-org", "SLACK", "eng")
    assert [x.name for x in store.list_connections(org, "SLACK")] == ["eng", "sales"]


def test_upsert_merges_settings(store: Store) -> None:
    org = f"org_{uuid.uuid4().hex[:6]}"
    store.upsert_connection(org, "SLACK", "w", {"team_id": "T1", "policy": "join"})
    conn = store.upsert_connection(org, "SLACK", "w", {"bot_user_id": "U1"})
    assert conn.settings == {"team_id": "T1", "policy": "join", "bot_user_id": "U1"}


def test_health_and_counters(store: Store) -> None:
    org = f"org_{uuid.uuid4().hex[:6]}"
    conn = store.add_connection(org, "SLACK", "x", {})
    store.set_health(conn.id, Health.UNHEALTHY, {"code": 190})
    store.count_use(conn.id, failed=True)
    store.count_use(conn.id, failed=False)
    got = store.get_connection(conn.id)
    assert got is not None
    assert (got.health, got.health_detail, got.request_count, got.error_count) == ("unhealthy", {"code": 190}, 2, 1)


def test_audit_log_is_append_only(store: Store) -> None:
    org = f"org_{uuid.uuid4().hex[:6]}"
    ev = store.audit(org, "alice", "connection.add", "ok", target="SLACK/x", detail={"k": "v"})
    assert store.audit_log(org)[0].id == ev.id
    with store.session() as s:
        row = s.get(AuditEvent, ev.id)
        assert row is not None
        row.outcome = "tampered"
        s.add(row)
        with pytest.raises((IntegrityError, OperationalError, DBAPIError)):
            s.commit()
    with store.session() as s:
        row = s.get(AuditEvent, ev.id)
        s.delete(row)
        with pytest.raises((IntegrityError, OperationalError, DBAPIError)):
            s.commit()
    assert store.audit_log(org)[0].outcome == "ok"


def test_usage_ledger_and_late_outcomes(store: Store) -> None:
    org = f"org_{uuid.uuid4().hex[:6]}"
    conn = store.add_connection(org, "WHATSAPP_BUSINESS", "u", {})
    store.record_usages([
        UsageRecord(organization_id=org, connection_id=conn.id, provider="whatsapp", action="whatsapp.send_text",
                    outcome="ok", status_code=200, latency_ms=12.5, reference="wamid.A"),
        UsageRecord(organization_id=org, connection_id=conn.id, provider="whatsapp", action="whatsapp.send_text",
                    outcome="TemporaryError", status_code=503, latency_ms=3.0),
    ])
    assert store.update_usage_by_reference("wamid.A", delivery_status="delivered") == 1
    rows = store.usage(organization_id=org)
    assert [(r.outcome, r.delivery_status) for r in rows] == [("ok", "delivered"), ("TemporaryError", None)]


def test_idempotency_records(store: Store) -> None:
    key = f"k-{uuid.uuid4().hex}"
    assert store.get_idempotent(key) is None
    store.put_idempotent(key, "org", "whatsapp.send_text", {"message_id": "wamid.1"})
    store.put_idempotent(key, "org", "whatsapp.send_text", {"message_id": "wamid.2"})  # first wins
    assert store.get_idempotent(key) == {"message_id": "wamid.1"}


def test_notifications(store: Store) -> None:
    org = f"org_{uuid.uuid4().hex[:6]}"
    store.notify_admins(org, "reauth_required", "token revoked", action_url="http://x/install")
    (n,) = store.notifications(org)
    assert (n.kind, n.action_url, n.acknowledged) == ("reauth_required", "http://x/install", False)


def test_messaging_limit_slots_count_from_acceptance(store: Store) -> None:
    """A slot reserved before a slow send frees a window after Meta accepted it, not after we reserved."""
    from datetime import timedelta

    from activities.whatsapp.store import WhatsAppStore
    from store.models import utcnow

    ws = WhatsAppStore(store)
    portfolio = f"waba-{uuid.uuid4().hex[:8]}"
    reserved_at = utcnow() - timedelta(seconds=30)  # the send took 30 s to be accepted
    allowed, held = ws.reserve_initiations(portfolio, "org", ["111", "222"], 2, 60, reserved_at)
    assert allowed == ["111", "222"] and held == {}
    assert ws.confirm_initiations(portfolio, ["111"], reserved_at) == 1
    # 40 s after the reservation: "222" (never confirmed) still frees at reserved + 60 s; the next customer
    # waits for it, and once it has left the window, "111" (confirmed 30 s later) keeps its slot.
    _a, held = ws.reserve_initiations(portfolio, "org", ["333"], 2, 60, reserved_at + timedelta(seconds=40))
    assert held["333"] == reserved_at + timedelta(seconds=60)
    allowed, held = ws.reserve_initiations(portfolio, "org", ["333", "444"], 2, 60,
                                           reserved_at + timedelta(seconds=61))
    assert allowed == ["333"] and held["444"] > reserved_at + timedelta(seconds=61)
    assert ws.confirm_initiations(portfolio, [], reserved_at) == 0
