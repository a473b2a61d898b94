"""The audit log is tamper-evident: an HMAC hash chain per organization, append-only for the application role on
PostgreSQL, edits by a superuser (or on SQLite) found by `osi audit verify`, linear under concurrent writers."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import httpx
import psycopg
import pytest
from psycopg import errors
from sqlalchemy import text
from typer.testing import CliRunner

from store.db import Store
from tests.test_deploy_postgres_roles import Roles, connect
from tests.test_deploy_postgres_roles import roles as roles
from worker.cli import app
from worker.migrate import upgrade

KEY = b"audit-test-key-0123456789abcdef!"
PG_ADMIN = "postgresql://127.0.0.1:5432/postgres"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'osi.db'}"
    upgrade(url)
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"osi_audit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, user="postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, user="postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _write(url: str, org: str, n: int) -> None:
    st = Store(url, audit_key=lambda: KEY)
    try:
        for i in range(n):
            st.audit(org, "writer", "test.write", "ok", detail={"i": i, "nested": {"b": [1, 2], "a": None}})
    finally:
        st.dispose()


def test_rows_are_chained_and_verify(sqlite_url: str) -> None:
    st = Store(sqlite_url, audit_key=lambda: KEY)
    a = [st.audit("org-a", "alice", "x", "ok", detail={"n": i}) for i in range(3)]
    st.audit("org-b", "bob", "y", "ok")
    assert [e.seq for e in a] == [1, 2, 3]
    assert a[1].prev_hash == a[0].hash and a[2].prev_hash == a[1].hash
    result = st.verify_audit()
    assert result.ok and result.rows == 4 and result.organizations == 2
    # Another key (a forger without Vault's key) does not verify.
    assert not Store(sqlite_url, audit_key=lambda: b"x" * 32).verify_audit("org-a").ok


def test_sqlite_edit_and_deletion_are_detected(sqlite_url: str) -> None:
    st = Store(sqlite_url, audit_key=lambda: KEY)
    ev = [st.audit("org-a", "alice", "connection.add", "ok", target=f"t{i}") for i in range(5)]
    with st.engine.begin() as conn:
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE audit_event SET outcome = 'forged' WHERE id = :i"), {"i": ev[2].id})
    with st.engine.begin() as conn:  # what someone with the database file can still do
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("DROP TRIGGER audit_event_no_delete"))
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE id = :i"), {"i": ev[2].id})
    result = st.verify_audit("org-a")
    assert not result.ok
    assert (result.broken[0].id, result.broken[0].seq) == (ev[2].id, 3)
    assert "edited" in result.broken[0].reason
    with st.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'alice' WHERE id = :i"), {"i": ev[2].id})
    assert st.verify_audit("org-a").ok
    with st.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE id = :i"), {"i": ev[1].id})
    result = st.verify_audit("org-a")
    assert not result.ok and result.broken[0].id == ev[2].id and "deleted" in result.broken[0].reason


def test_an_unchained_row_slipped_in_is_detected(sqlite_url: str) -> None:
    st = Store(sqlite_url, audit_key=lambda: KEY)
    st.audit("org-a", "alice", "x", "ok")
    with st.engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_event (at, organization_id, actor, action, outcome, detail) "
                          "VALUES ('2030-01-01 00:00:00', 'org-a', 'mallory', 'forged', 'ok', '{}')"))
    result = st.verify_audit("org-a")
    assert not result.ok and "after the chain started" in result.broken[0].reason


@pytest.mark.slow  # four spawned processes per backend: about a minute
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_writers_in_several_processes_keep_the_chain_linear(backend, request) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=ctx) as pool:
        for f in [pool.submit(_write, url, "org-c", 25) for _ in range(4)]:
            f.result(timeout=120)
    st = Store(url, audit_key=lambda: KEY)
    result = st.verify_audit("org-c")
    assert result.ok and result.rows == 100, result
    seqs = [e.seq for e in st.audit_range("org-c")]
    assert sorted(seqs) == list(range(1, 101))
    st.dispose()


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql (the client the init script needs)")
def test_postgresql_app_role_cannot_tamper_and_superuser_edits_are_detected(roles: Roles) -> None:
    owner_url = f"postgresql://{roles.owner}@127.0.0.1:5432/{roles.db}"
    app_url = f"postgresql://{roles.app}@127.0.0.1:5432/{roles.db}"
    upgrade(owner_url, app_role=roles.app)  # the migrations job, as the schema owner
    st = Store(app_url, audit_key=lambda: KEY)  # the worker and gateway, as the application role
    ev = [st.audit("org-p", "alice", "connection.add", "ok", target=f"t{i}") for i in range(3)]
    assert st.verify_audit().ok
    with connect(roles, roles.app) as app_conn:
        assert app_conn.execute("SELECT count(*) FROM audit_event").fetchone() == (3,)
        for stmt in ("UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event",
                     "TRUNCATE audit_event"):
            with pytest.raises(errors.InsufficientPrivilege):
                app_conn.execute(stmt)
        for stmt in ("ALTER TABLE audit_event DISABLE TRIGGER ALL", "DROP TABLE audit_event",
                     "ALTER TABLE audit_event DROP COLUMN hash"):
            with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
                app_conn.execute(stmt)
        owner = app_conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_event'").fetchone()
        assert owner == (roles.owner,)
    # A superuser can do anything; the chain shows it.
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=roles.db, autocommit=True) as su:
        su.execute("SET search_path = osi")
        su.execute("ALTER TABLE audit_event DISABLE TRIGGER ALL")
        su.execute("UPDATE audit_event SET target = 'forged' WHERE id = %s", [ev[1].id])
        su.execute("ALTER TABLE audit_event ENABLE TRIGGER ALL")
    result = st.verify_audit("org-p")
    assert not result.ok and (result.broken[0].id, result.broken[0].seq) == (ev[1].id, 2)
    st.dispose()


async def test_cli_verify_and_export_and_admin_api(runtime, cli_env, gateway, settings, tmp_path) -> None:
    org = f"audit-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        await runtime.store.run(runtime.store.audit, org, "alice", "test.thing", "ok", detail={"i": i})
    key = await runtime.store.run(runtime.store.issue_admin_key, org, "auditor")
    def invoke(*args: str):
        return asyncio.to_thread(CliRunner().invoke, app, list(args))

    res = await invoke("audit", "verify", "--org", org)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ok"] is True
    out = tmp_path / "audit.csv"
    res = await invoke("audit", "export", "--org", org, "--format", "csv", "--out", str(out))
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,organization_id,seq,at") and len(lines) == 4
    async with httpx.AsyncClient(base_url=gateway, headers={"Authorization": f"Bearer {key}"}) as http:
        doc = (await http.get(f"/admin/orgs/{org}/audit/export", params={"since": "2000-01-01"})).json()
        assert doc["verification"]["ok"] and [r["seq"] for r in doc["rows"]][:3] == [1, 2, 3]
        csv_ = await http.get(f"/admin/orgs/{org}/audit/export", params={"format": "csv"})
        assert csv_.headers["x-osi-audit-verified"] == "true"
        assert (await http.get(f"/admin/orgs/{org}/audit/export", params={"since": "yesterday"})).status_code == 422
    # Tamper (the SQLite test store: drop the guard, edit a row): verify exits 1 and names the row.
    first = (await runtime.store.run(runtime.store.audit_range, org))[0]
    with runtime.store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        try:
            conn.execute(text("UPDATE audit_event SET outcome = 'forged' WHERE id = :i"), {"i": first.id})
        finally:
            conn.execute(text("CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
                              "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"))
    res = await invoke("audit", "verify", "--org", org)
    assert res.exit_code == 1
    assert f"first broken row id={first.id} seq=1" in res.stdout
