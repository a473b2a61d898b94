"""INSERT … ON CONFLICT for SQLite and PostgreSQL alike (hot paths: one statement, no ORM unit of work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


def insert_for(s: Session, model: type[SQLModel]) -> Any:
    """The dialect's INSERT (with `on_conflict_do_nothing` / `on_conflict_do_update`) for a table."""
    table = model.__table__  # type: ignore[attr-defined]
    return postgresql.insert(table) if s.get_bind().dialect.name == "postgresql" else sqlite.insert(table)


def upsert(s: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]], key: Sequence[str],
           update: Sequence[str] = ()) -> None:
    """Insert `rows`; where `key` already exists, set the `update` columns to the new values when those are not
    null (nothing when `update` is empty)."""
    if not rows:
        return
    table = model.__table__  # type: ignore[attr-defined]
    stmt: Any = insert_for(s, model).values(list(rows))
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=list(key), set_={
            c: func.coalesce(stmt.excluded[c], table.c[c]) for c in update})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    s.execute(stmt)
