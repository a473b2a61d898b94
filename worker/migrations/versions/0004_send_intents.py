"""Send intents: recorded before a provider call, settled after it, reconciled when an answer is lost."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

import store.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('send_intent',
    sa.Column('key', AutoString(length=512), nullable=False),
    sa.Column('id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=True),
    sa.Column('action', AutoString(), nullable=False),
    sa.Column('state', AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('resent', sa.Integer(), nullable=False),
    sa.Column('last_attempt_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('provider_ref', AutoString(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('send_intent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_send_intent_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_send_intent_id'), ['id'], unique=True)
        batch_op.create_index(batch_op.f('ix_send_intent_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_send_intent_provider_ref'), ['provider_ref'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('send_intent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_send_intent_provider_ref'))
        batch_op.drop_index(batch_op.f('ix_send_intent_organization_id'))
        batch_op.drop_index(batch_op.f('ix_send_intent_id'))
        batch_op.drop_index(batch_op.f('ix_send_intent_connection_id'))

    op.drop_table('send_intent')
