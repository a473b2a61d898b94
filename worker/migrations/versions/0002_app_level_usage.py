"""Usage rows of app-level calls (an OAuth code exchange before the connection exists) have no connection."""

from __future__ import annotations

from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_record") as batch_op:
        batch_op.alter_column("connection_id", existing_type=AutoString(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM usage_record WHERE connection_id IS NULL")
    with op.batch_alter_table("usage_record") as batch_op:
        batch_op.alter_column("connection_id", existing_type=AutoString(), nullable=False)
