"""Alembic owns the schema: an empty database migrates to exactly the models, a pre-migration one is adopted,
and several processes upgrading at once do not collide."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import worker.registry  # noqa: F401 - every plugin's tables
from store.db import Store, make_engine
from worker.migrate import BASELINE, current, head, upgrade

PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"osi_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, user="postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, user="postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                         SQLModel.metadata))
    finally:
        engine.dispose()


def test_an_empty_postgresql_migrates_to_exactly_the_models(pg_url: str) -> None:
    assert upgrade(pg_url) == head()
    assert _diff(pg_url) == []
    assert upgrade(pg_url) == head()  # idempotent


def test_an_empty_sqlite_migrates_to_exactly_the_models(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'osi.db'}"
    assert upgrade(url) == head()
    assert _diff(url) == []


def test_the_audit_log_is_append_only_after_migrating(pg_url: str) -> None:
    upgrade(pg_url)
    store = Store(pg_url, audit_key=lambda: b"k" * 32)
    try:
        ev = store.audit("org", "t", "x", "ok")
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text("UPDATE audit_event SET outcome = 'tampered' WHERE id = :i"), {"i": ev.id})
    finally:
        store.dispose()


def test_a_database_made_before_migrations_is_adopted(pg_url: str) -> None:
    """create_all's schema (revision 0001) is stamped, then upgraded: no table is created twice."""
    upgrade(pg_url, BASELINE)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    upgrade(pg_url)
    with engine.connect() as conn:
        assert current(conn) == head()
        cols = {c["name"]: c for c in inspect(conn).get_columns("usage_record")}
        assert cols["connection_id"]["nullable"]  # 0002 ran on the adopted database
    engine.dispose()


def test_concurrent_upgrades_take_turns(pg_url: str) -> None:
    errors: list[BaseException] = []

    def go() -> None:
        try:
            upgrade(pg_url)
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _diff(pg_url) == []
