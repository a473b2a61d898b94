"""Baseline: the schema `create_all` made before migrations existed (older databases are stamped here)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

import store.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
]
APPEND_ONLY_POSTGRES = [
    "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_event is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event",
    "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
]


def upgrade() -> None:
    op.create_table('admin_key',
    sa.Column('id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=True),
    sa.Column('label', AutoString(), nullable=False),
    sa.Column('key_hash', AutoString(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('admin_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_key_key_hash'), ['key_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_admin_key_organization_id'), ['organization_id'], unique=False)

    op.create_table('admin_notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', store.types.UTCDateTime(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=True),
    sa.Column('severity', AutoString(), nullable=False),
    sa.Column('kind', AutoString(), nullable=False),
    sa.Column('message', AutoString(), nullable=False),
    sa.Column('action_url', AutoString(), nullable=True),
    sa.Column('acknowledged', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('admin_notification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_notification_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_admin_notification_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_admin_notification_organization_id'), ['organization_id'], unique=False)

    op.create_table('alert_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=False),
    sa.Column('route_id', AutoString(), nullable=False),
    sa.Column('status', AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', AutoString(), nullable=True),
    sa.Column('delivered_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('notification_id', 'route_id')
    )
    with op.batch_alter_table('alert_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_delivery_notification_id'), ['notification_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_delivery_route_id'), ['route_id'], unique=False)

    op.create_table('alert_route',
    sa.Column('id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('kind', AutoString(), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('min_severity', AutoString(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('created_by', AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alert_route', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_route_organization_id'), ['organization_id'], unique=False)

    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', store.types.UTCDateTime(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('actor', AutoString(), nullable=False),
    sa.Column('action', AutoString(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=True),
    sa.Column('target', AutoString(), nullable=True),
    sa.Column('outcome', AutoString(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_organization_id'), ['organization_id'], unique=False)

    op.create_table('calendar_oauth_state',
    sa.Column('state_hash', AutoString(length=64), nullable=False),
    sa.Column('provider', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_name', AutoString(), nullable=False),
    sa.Column('tenant', AutoString(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('expires_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('state_hash')
    )
    with op.batch_alter_table('calendar_oauth_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calendar_oauth_state_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calendar_oauth_state_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calendar_oauth_state_provider'), ['provider'], unique=False)

    op.create_table('connection',
    sa.Column('id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('integration_type', AutoString(), nullable=False),
    sa.Column('name', AutoString(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('status', AutoString(), nullable=False),
    sa.Column('health', AutoString(), nullable=False),
    sa.Column('health_detail', sa.JSON(), nullable=False),
    sa.Column('last_health_check', store.types.UTCDateTime(), nullable=True),
    sa.Column('request_count', sa.Integer(), nullable=False),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('last_used_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('credentials_expire_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id', 'integration_type', 'name')
    )
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connection_integration_type'), ['integration_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_connection_organization_id'), ['organization_id'], unique=False)

    op.create_table('idempotency_record',
    sa.Column('key', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('action', AutoString(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_record_organization_id'), ['organization_id'], unique=False)

    op.create_table('slack_delivery',
    sa.Column('key', AutoString(length=300), nullable=False),
    sa.Column('kind', AutoString(), nullable=False),
    sa.Column('at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('slack_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slack_delivery_at'), ['at'], unique=False)

    op.create_table('slack_oauth_state',
    sa.Column('state', AutoString(length=128), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_name', AutoString(), nullable=False),
    sa.Column('auto_join', sa.Boolean(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('expires_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('state')
    )
    with op.batch_alter_table('slack_oauth_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slack_oauth_state_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_slack_oauth_state_organization_id'), ['organization_id'], unique=False)

    op.create_table('usage_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', store.types.UTCDateTime(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=False),
    sa.Column('provider', AutoString(), nullable=False),
    sa.Column('action', AutoString(), nullable=False),
    sa.Column('outcome', AutoString(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error_code', AutoString(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('cost_units', sa.Float(), nullable=False),
    sa.Column('category', AutoString(), nullable=True),
    sa.Column('cost_amount', sa.Float(), nullable=True),
    sa.Column('currency', AutoString(), nullable=True),
    sa.Column('reference', AutoString(), nullable=True),
    sa.Column('delivery_status', AutoString(), nullable=True),
    sa.Column('delivered_at', store.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('usage_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_record_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_record_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_record_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_record_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_record_reference'), ['reference'], unique=False)

    op.create_table('whatsapp_contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('phone_number_id', AutoString(), nullable=False),
    sa.Column('wa_id', AutoString(), nullable=False),
    sa.Column('opted_in', sa.Boolean(), nullable=False),
    sa.Column('opt_in_source', AutoString(), nullable=True),
    sa.Column('opted_in_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('opt_out_source', AutoString(), nullable=True),
    sa.Column('opted_out_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('marketing_opted_out', sa.Boolean(), nullable=False),
    sa.Column('last_inbound_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('profile_name', AutoString(), nullable=True),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id', 'phone_number_id', 'wa_id')
    )
    with op.batch_alter_table('whatsapp_contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_contact_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_contact_phone_number_id'), ['phone_number_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_contact_wa_id'), ['wa_id'], unique=False)

    op.create_table('whatsapp_cost_daily',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=False),
    sa.Column('category', AutoString(), nullable=False),
    sa.Column('day', AutoString(), nullable=False),
    sa.Column('currency', AutoString(), nullable=False),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('billable', sa.Integer(), nullable=False),
    sa.Column('cost_amount', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id', 'connection_id', 'category', 'day', 'currency')
    )
    with op.batch_alter_table('whatsapp_cost_daily', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_cost_daily_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_cost_daily_day'), ['day'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_cost_daily_organization_id'), ['organization_id'], unique=False)

    op.create_table('whatsapp_failure_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=False),
    sa.Column('code', AutoString(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('last_title', AutoString(), nullable=False),
    sa.Column('last_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('connection_id', 'code')
    )
    with op.batch_alter_table('whatsapp_failure_count', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_failure_count_connection_id'), ['connection_id'], unique=False)

    op.create_table('whatsapp_initiation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('portfolio_id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('wa_id', AutoString(), nullable=False),
    sa.Column('at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('whatsapp_initiation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_initiation_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_initiation_portfolio_id'), ['portfolio_id'], unique=False)

    op.create_table('whatsapp_message',
    sa.Column('message_id', AutoString(), nullable=False),
    sa.Column('organization_id', AutoString(), nullable=False),
    sa.Column('connection_id', AutoString(), nullable=True),
    sa.Column('phone_number_id', AutoString(), nullable=False),
    sa.Column('wa_id', AutoString(), nullable=False),
    sa.Column('direction', AutoString(), nullable=False),
    sa.Column('type', AutoString(), nullable=True),
    sa.Column('category', AutoString(), nullable=True),
    sa.Column('template_name', AutoString(), nullable=True),
    sa.Column('status', AutoString(), nullable=False),
    sa.Column('error_code', AutoString(), nullable=True),
    sa.Column('error_title', AutoString(), nullable=True),
    sa.Column('timeline', sa.JSON(), nullable=False),
    sa.Column('pricing_category', AutoString(), nullable=True),
    sa.Column('billable', sa.Boolean(), nullable=True),
    sa.Column('cost_amount', sa.Float(), nullable=True),
    sa.Column('currency', AutoString(), nullable=True),
    sa.Column('cost_recorded', sa.Boolean(), nullable=False),
    sa.Column('idempotency_key', AutoString(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('whatsapp_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whatsapp_message_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_message_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_message_idempotency_key'), ['idempotency_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_message_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_message_phone_number_id'), ['phone_number_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whatsapp_message_wa_id'), ['wa_id'], unique=False)

    op.create_table('whatsapp_rate',
    sa.Column('country_code', AutoString(), nullable=False),
    sa.Column('category', AutoString(), nullable=False),
    sa.Column('price', sa.Float(), nullable=False),
    sa.Column('currency', AutoString(), nullable=False),
    sa.Column('source', AutoString(), nullable=False),
    sa.Column('loaded_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('country_code', 'category')
    )
    # The audit log is append-only: the database refuses UPDATE and DELETE on it.
    for stmt in APPEND_ONLY_POSTGRES if op.get_bind().dialect.name == "postgresql" else APPEND_ONLY_SQLITE:
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table('whatsapp_rate')
    with op.batch_alter_table('whatsapp_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_wa_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_phone_number_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_organization_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_idempotency_key'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_created_at'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_message_connection_id'))

    op.drop_table('whatsapp_message')
    with op.batch_alter_table('whatsapp_initiation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_initiation_portfolio_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_initiation_at'))

    op.drop_table('whatsapp_initiation')
    with op.batch_alter_table('whatsapp_failure_count', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_failure_count_connection_id'))

    op.drop_table('whatsapp_failure_count')
    with op.batch_alter_table('whatsapp_cost_daily', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_cost_daily_organization_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_cost_daily_day'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_cost_daily_connection_id'))

    op.drop_table('whatsapp_cost_daily')
    with op.batch_alter_table('whatsapp_contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whatsapp_contact_wa_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_contact_phone_number_id'))
        batch_op.drop_index(batch_op.f('ix_whatsapp_contact_organization_id'))

    op.drop_table('whatsapp_contact')
    with op.batch_alter_table('usage_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_record_reference'))
        batch_op.drop_index(batch_op.f('ix_usage_record_organization_id'))
        batch_op.drop_index(batch_op.f('ix_usage_record_connection_id'))
        batch_op.drop_index(batch_op.f('ix_usage_record_at'))
        batch_op.drop_index(batch_op.f('ix_usage_record_action'))

    op.drop_table('usage_record')
    with op.batch_alter_table('slack_oauth_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slack_oauth_state_organization_id'))
        batch_op.drop_index(batch_op.f('ix_slack_oauth_state_expires_at'))

    op.drop_table('slack_oauth_state')
    with op.batch_alter_table('slack_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slack_delivery_at'))

    op.drop_table('slack_delivery')
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_record_organization_id'))

    op.drop_table('idempotency_record')
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connection_organization_id'))
        batch_op.drop_index(batch_op.f('ix_connection_integration_type'))

    op.drop_table('connection')
    with op.batch_alter_table('calendar_oauth_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calendar_oauth_state_provider'))
        batch_op.drop_index(batch_op.f('ix_calendar_oauth_state_organization_id'))
        batch_op.drop_index(batch_op.f('ix_calendar_oauth_state_expires_at'))

    op.drop_table('calendar_oauth_state')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_organization_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_connection_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_action'))

    op.drop_table('audit_event')
    with op.batch_alter_table('alert_route', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_route_organization_id'))

    op.drop_table('alert_route')
    with op.batch_alter_table('alert_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_delivery_route_id'))
        batch_op.drop_index(batch_op.f('ix_alert_delivery_notification_id'))

    op.drop_table('alert_delivery')
    with op.batch_alter_table('admin_notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_notification_organization_id'))
        batch_op.drop_index(batch_op.f('ix_admin_notification_connection_id'))
        batch_op.drop_index(batch_op.f('ix_admin_notification_at'))

    op.drop_table('admin_notification')
    with op.batch_alter_table('admin_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_key_organization_id'))
        batch_op.drop_index(batch_op.f('ix_admin_key_key_hash'))

    op.drop_table('admin_key')
