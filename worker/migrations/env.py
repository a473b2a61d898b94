"""Alembic's environment: the metadata of every registered plugin's tables, on the connection `migrate` hands in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import worker.registry  # noqa: F401 - importing the plugins registers every table on SQLModel.metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
