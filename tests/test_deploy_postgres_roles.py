"""deploy/postgres/init-roles.sql on the local PostgreSQL: the app role does rows only, the audit log is append-only."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "deploy" / "postgres" / "init-roles.sql"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql (the client the init script needs)")


def _admin() -> psycopg.Connection:
    return psycopg.connect(**PG, autocommit=True)  # type: ignore[arg-type]


class Roles:
    def __init__(self, suffix: str) -> None:
        # Roles are cluster-wide and other runs share this server: suffix every name.
        self.owner, self.app, self.temporal = f"osi_owner_{suffix}", f"osi_app_{suffix}", f"temporal_{suffix}"
        self.db = f"osi_roles_{suffix}"


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    r = Roles(uuid.uuid4().hex[:8])
    sql = SQL.read_text()
    sql = re.sub(r"\bosi_owner\b", r.owner, sql)
    sql = re.sub(r"\bosi_app\b", r.app, sql)
    sql = re.sub(r"ROLE temporal\b", f"ROLE {r.temporal}", sql)
    script = tmp_path / "init.sql"
    script.write_text(sql)
    for name in ("owner", "app", "temporal"):
        (tmp_path / name).write_text(f"pw-{name}\n")
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{r.db}"')
    try:
        subprocess.run(["psql", "-h", PG["host"], "-U", "postgres", "-d", r.db, "-q",
                        "-v", f"owner_password_file={tmp_path / 'owner'}",
                        "-v", f"app_password_file={tmp_path / 'app'}",
                        "-v", f"temporal_password_file={tmp_path / 'temporal'}", "-f", str(script)],
                       check=True, capture_output=True, text=True, timeout=60)
        yield r
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{r.db}" WITH (FORCE)')
            for role in (r.app, r.owner, r.temporal):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def connect(r: Roles, user: str) -> psycopg.Connection:
    return psycopg.connect(host=PG["host"], port=PG["port"], user=user, dbname=r.db, autocommit=True)


def test_roles_are_not_superusers_and_passwords_come_from_the_secret_files(roles: Roles) -> None:
    with _admin() as conn:
        rows = conn.execute("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolpassword IS NOT NULL "
                            "FROM pg_authid WHERE rolname = ANY(%s) ORDER BY rolname",
                            [[roles.owner, roles.app, roles.temporal]]).fetchall()
    assert {r[0]: r[1:] for r in rows} == {
        roles.app: (False, False, False, True),
        roles.owner: (False, False, False, True),
        roles.temporal: (False, True, False, True),  # temporal-sql-tool creates its databases
    }


def test_app_role_manipulates_rows_and_the_audit_log_is_append_only(roles: Roles) -> None:
    with connect(roles, roles.owner) as owner:  # what a migration does
        owner.execute("CREATE TABLE connection (id serial PRIMARY KEY, name text)")
        owner.execute("CREATE TABLE audit_event (id serial PRIMARY KEY, action text)")
        owner.execute(f"REVOKE UPDATE, DELETE ON audit_event FROM {roles.app}")
        assert owner.execute("SELECT current_schema()").fetchone() == ("osi",)

    with connect(roles, roles.app) as app:
        app.execute("INSERT INTO connection (name) VALUES ('a')")
        app.execute("UPDATE connection SET name = 'b'")
        app.execute("DELETE FROM connection")
        app.execute("INSERT INTO audit_event (action) VALUES ('connection.add')")
        assert app.execute("SELECT count(*) FROM audit_event").fetchone() == (1,)
        for stmt in ("UPDATE audit_event SET action = 'forged'", "DELETE FROM audit_event",
                     "TRUNCATE audit_event", "TRUNCATE connection"):
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(stmt)
        for stmt in ("ALTER TABLE audit_event DISABLE TRIGGER ALL", "ALTER TABLE audit_event DROP COLUMN action",
                     "DROP TABLE connection"):
            with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
                app.execute(stmt)
        for stmt in ("CREATE TABLE osi.extra (id int)", "CREATE TABLE public.extra (id int)"):
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(stmt)
        assert app.execute("SELECT count(*) FROM audit_event").fetchone() == (1,)


def test_nobody_else_may_connect_to_the_application_database(roles: Roles) -> None:
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect(roles, roles.temporal)


def test_migrations_job_as_owner_then_the_app_role_starts_without_ddl(roles: Roles) -> None:
    """The compose order (docs/deploy.md "PostgreSQL"): `osi db upgrade` as the owner, then workers and the
    gateway as the app role with OSI_MIGRATE_ON_START=false, which check the revision instead of migrating."""
    import os
    import sys

    from worker.migrate import SchemaBehind, head, on_start

    owner_url = f"postgresql://{roles.owner}@{PG['host']}:{PG['port']}/{roles.db}"
    app_url = f"postgresql://{roles.app}@{PG['host']}:{PG['port']}/{roles.db}"
    with pytest.raises(SchemaBehind, match="osi db upgrade"):
        on_start(app_url, migrate=False)  # the job has not run: refuse to start on an empty schema
    with pytest.raises(Exception, match="permission denied"):
        on_start(app_url, migrate=True)  # why compose turns migrate-on-start off: the app role has no DDL
    env = {**os.environ, "OSI_DATABASE_URL": owner_url}
    osi = str(Path(sys.executable).parent / "osi")  # what the compose `migrate` job runs
    job = subprocess.run([osi, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert head() in job.stdout
    assert on_start(app_url, migrate=False) == head()
    with connect(roles, roles.app) as app:
        assert app.execute("SELECT version_num FROM alembic_version").fetchone() == (head(),)
        owners = {r[0] for r in app.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'osi'")}
    assert owners == {roles.owner}
