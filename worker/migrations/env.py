"""Alembic's environment: the metadata of every registered plugin's tables, on the connection `migrate` hands in."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import worker.registry  # noqa: F401 - importing the plugins registers every table on SQLModel.metadata
from store.types import UTCDateTime


def render_item(kind: str, obj: Any, autogen: Any) -> str | Literal[False]:
    """Render our column types the way the revisions import them (`AutoString`, `store.types.UTCDateTime()`)."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "store.types.UTCDateTime()"
    if kind == "type" and isinstance(obj, AutoString):
        return f"AutoString(length={obj.length})" if obj.length else "AutoString()"
    return False


connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  compare_type=True, render_item=render_item)
with context.begin_transaction():
    context.run_migrations()
