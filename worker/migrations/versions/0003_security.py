"""Security: the audit log's hash chain, OAuth states bound to who asked, a raw inbox for deliveries that could not
be processed, and on PostgreSQL an application role that can only append to the audit log."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

import store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def app_role() -> str:
    """The role the worker and gateway log in as (deploy/postgres/init-roles.sql); tests use suffixed names."""
    cfg = op.get_context().config
    given = cfg.attributes.get("app_role") if cfg is not None else None
    return str(given or os.environ.get("OSI_DB_APP_ROLE") or "osi_app")


def _restrict_app_role() -> None:
    """The application role may INSERT and SELECT audit rows and nothing else; it must not own the table (an
    owner can ALTER it, disable its trigger, TRUNCATE it). No-op where the role does not exist (SQLite, a
    single-user PostgreSQL)."""
    bind = op.get_bind()
    role = app_role()
    if not bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
        return
    if bind.execute(sa.text("SELECT current_user")).scalar() == role:
        raise RuntimeError(f"run migrations as the schema owner, not as the application role {role}")
    owner = bind.execute(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_event' "
                                 "AND schemaname = current_schema()")).scalar()
    if owner == role:
        op.execute("ALTER TABLE audit_event OWNER TO CURRENT_USER")
    op.execute(f'REVOKE ALL ON audit_event FROM "{role}"')
    op.execute(f'GRANT SELECT, INSERT ON audit_event TO "{role}"')
    op.execute(f'GRANT USAGE, SELECT ON SEQUENCE audit_event_id_seq TO "{role}"')


def upgrade() -> None:
    op.add_column("audit_event", sa.Column("seq", sa.Integer(), nullable=True))
    op.add_column("audit_event", sa.Column("prev_hash", AutoString(length=64), nullable=True))
    op.add_column("audit_event", sa.Column("hash", AutoString(length=64), nullable=True))
    op.create_index("uq_audit_event_chain", "audit_event", ["organization_id", "seq"], unique=True)

    op.add_column("slack_oauth_state", sa.Column("requested_by", AutoString(), nullable=True))
    op.add_column("calendar_oauth_state", sa.Column("requested_by", AutoString(), nullable=True))

    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", store.types.UTCDateTime(), nullable=False),
        sa.Column("provider", AutoString(), nullable=False),
        sa.Column("route", AutoString(), nullable=False),
        sa.Column("content_type", AutoString(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_sha256", AutoString(length=64), nullable=False),
        sa.Column("error", AutoString(), nullable=False),
        sa.Column("status", AutoString(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", AutoString(), nullable=True),
        sa.Column("replayed_at", store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("route", "body_sha256"),
    )
    op.create_index("ix_webhook_inbox_provider", "webhook_inbox", ["provider"])
    op.create_index("ix_webhook_inbox_received_at", "webhook_inbox", ["received_at"])
    op.create_index("ix_webhook_inbox_status", "webhook_inbox", ["status"])

    if op.get_bind().dialect.name == "postgresql":
        _restrict_app_role()


def downgrade() -> None:
    op.drop_table("webhook_inbox")
    with op.batch_alter_table("calendar_oauth_state") as batch_op:
        batch_op.drop_column("requested_by")
    with op.batch_alter_table("slack_oauth_state") as batch_op:
        batch_op.drop_column("requested_by")
    op.drop_index("uq_audit_event_chain", table_name="audit_event")
    # Dropping columns rebuilds the table on SQLite (and drops its append-only triggers): PostgreSQL only.
    if op.get_bind().dialect.name == "postgresql":
        for name in ("hash", "prev_hash", "seq"):
            op.drop_column("audit_event", name)
