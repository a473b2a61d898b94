"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text

from core.runtime import Runtime


def dump_store(runtime: Runtime) -> str:
    """Every row of every table, as text: what a secret-leak check searches."""
    rows: list[str] = []
    with runtime.store.engine.connect() as conn:
        for table in sa_inspect(runtime.store.engine).get_table_names():
            rows += [repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{table}"'))]
    return "\n".join(rows)
