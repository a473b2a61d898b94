"""Customers known by BSUID (whatsapp_contact.user_id), Meta apps and the deliveries no connection may run,
event subscriptions and their outbox."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

import store.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', AutoString(), nullable=False),
    sa.Column('subscription_id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('type', AutoString(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('dedupe_key', AutoString(), nullable=True),
    sa.Column('status', AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', AutoString(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('delivered_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subscription_id', 'dedupe_key')
    )
    with op.batch_alter_table('event_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_outbox_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_outbox_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_outbox_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_outbox_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_outbox_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('event_subscription',
    sa.Column('id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('url', AutoString(), nullable=False),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('description', AutoString(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('created_by', AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('event_subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_subscription_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_app',
    sa.Column('app_id', AutoString(), nullable=False),
    sa.Column('label', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('app_id')
    )
    with op.batch_alter_table('whatsapp_app', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_app_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_unrouted',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', AutoString(), nullable=False),
    sa.Column('app_id', AutoString(), nullable=True),
    sa.Column('via_connection_id', AutoString(), nullable=True),
    sa.Column('phone_number_id', AutoString(), nullable=False),
    sa.Column('reason', AutoString(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('received_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    with op.batch_alter_table('whatsapp_unrouted', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_unrouted_app_id'), ['app_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_unrouted_phone_number_id'), ['phone_number_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_unrouted_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_unrouted_via_connection_id'), ['via_connection_id'], unique=False)

    with op.batch_alter_table('whatsapp_contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', AutoString(), nullable=True))
        batch_op.create_index(batch_op.f('ix_whatsapp_contact_user_id'), ['user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('whatsapp_contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_contact_user_id'))
        batch_op.drop_column('user_id')

    with op.batch_alter_table('whatsapp_unrouted', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_unrouted_via_connection_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_unrouted_received_at'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_unrouted_phone_number_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_unrouted_app_id'))

    op.drop_table('whatsapp_unrouted')
    with op.batch_alter_table('whatsapp_app', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_app_organization_id'))

    op.drop_table('whatsapp_app')
    with op.batch_alter_table('event_subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_subscription_organization_id'))

    op.drop_table('event_subscription')
    with op.batch_alter_table('event_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_outbox_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_event_outbox_status'))
        batch_op.drop_index(batch_op.f('ix_event_outbox_organization_id'))
        batch_op.drop_index(batch_op.f('ix_event_outbox_event_id'))
        batch_op.drop_index(batch_op.f('ix_event_outbox_created_at'))

    op.drop_table('event_outbox')
