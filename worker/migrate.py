"""Schema migrations (Alembic): every process that starts (worker, gateway, `make run`) upgrades first, under a lock."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from store.db import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# The first revision is the schema `create_all` used to make: a database from before migrations is stamped at it.
BASELINE = "0001"
PG_LOCK_KEY = 424242  # pg_advisory_lock: one migrating process at a time


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None
    return found


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, revision: str = "head", *, app_role: str | None = None) -> str:
    """Bring the database at `url` to `revision`; returns the revision it is at. Safe to call from several
    processes at once (PostgreSQL advisory lock, or a lock file beside the SQLite database). `app_role` is the
    PostgreSQL role the worker and gateway use (default `OSI_DB_APP_ROLE`, else `osi_app`): it gets rows only,
    and only INSERT/SELECT on the audit log."""
    engine = make_engine(url)
    try:
        lock = _sqlite_lock(url) if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        with lock, engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
            try:
                cfg = config()
                cfg.attributes["connection"] = conn
                cfg.attributes["app_role"] = app_role
                if current(conn) is None and inspect(conn).has_table("connection"):
                    command.stamp(cfg, BASELINE)  # made by create_all before migrations existed
                command.upgrade(cfg, revision)
                conn.commit()
                return current(conn) or ""
            finally:
                if engine.dialect.name == "postgresql":
                    conn.rollback()  # after a failed migration: unlock outside the aborted transaction
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                    conn.commit()
    finally:
        engine.dispose()


class SchemaBehind(RuntimeError):
    """The store is older than this release and this process may not migrate it."""


def on_start(url: str, migrate: bool) -> str:
    """What the worker and gateway do at start (`OSI_MIGRATE_ON_START`): upgrade to head, or, when the
    migrations job owns the schema (an application role without DDL rights), only check that it ran: a
    store at an older revision of this release refuses the start; a newer one (this process is the old
    side of a rolling upgrade) is accepted."""
    if migrate:
        return upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            at = current(conn)
    finally:
        engine.dispose()
    known = {rev.revision for rev in ScriptDirectory.from_config(config()).walk_revisions()}
    if at is None or (at in known and at != head()):
        raise SchemaBehind(f"store at {at or 'no revision'}, this release needs {head()}: run `osi db upgrade` "
                           "as the schema owner (OSI_MIGRATE_ON_START is off)")
    return at
