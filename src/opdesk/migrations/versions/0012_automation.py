"""automation_events, the outbox's worker columns, per-clinic message providers and
automation settings

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_OUTBOX_STATUSES = ("pending", "sent", "failed")
OUTBOX_STATUSES = ("pending", "sent", "delivered", "read", "failed", "cancelled")
EVENT_STATUSES = ("pending", "success", "failed", "cancelled")
CHANNELS = ("whatsapp", "sms", "email")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    _automation_events()
    _outbox_columns()
    _message_providers()
    op.add_column(
        "tenants",
        sa.Column(
            "automation_settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def _automation_events() -> None:
    op.create_table(
        "automation_events",
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("entity_ref_type", sa.Text(), nullable=False),
        sa.Column("entity_ref_id", sa.Uuid(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            _one_of("status", EVENT_STATUSES), name=op.f("ck_automation_events_status_known")
        ),
        sa.CheckConstraint(
            "attempts >= 0", name=op.f("ck_automation_events_attempts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_automation_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_automation_events")),
    )
    op.create_index(
        op.f("ix_automation_events_tenant_id_rule_scheduled_for"),
        "automation_events",
        ["tenant_id", "rule", "scheduled_for"],
    )
    op.create_index(
        "uq_automation_events_tenant_id_dedupe_key",
        "automation_events",
        ["tenant_id", "dedupe_key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_automation_events_tenant_id_entity_ref_type_entity_ref_id"),
        "automation_events",
        ["tenant_id", "entity_ref_type", "entity_ref_id"],
    )
    op.create_index(
        "ix_automation_events_due",
        "automation_events",
        ["tenant_id", "scheduled_for"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    enable_tenant_rls("automation_events")
    grant_app("automation_events", "SELECT, INSERT, UPDATE")


def _outbox_columns() -> None:
    for column in (
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("language", sa.Text(), server_default="en", nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fallback_of", sa.Uuid(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
    ):
        op.add_column("notifications_outbox", column)
    op.drop_constraint(
        op.f("ck_notifications_outbox_status_known"), "notifications_outbox", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_notifications_outbox_status_known"),
        "notifications_outbox",
        _one_of("status", OUTBOX_STATUSES),
    )
    op.create_check_constraint(
        op.f("ck_notifications_outbox_attempts_not_negative"),
        "notifications_outbox",
        "attempts >= 0",
    )
    op.create_index(
        "uq_notifications_outbox_tenant_id_dedupe_key",
        "notifications_outbox",
        ["tenant_id", "dedupe_key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_notifications_outbox_tenant_id_patient_id"),
        "notifications_outbox",
        ["tenant_id", "patient_id"],
    )
    op.create_index(
        op.f("ix_notifications_outbox_tenant_id_provider_message_id"),
        "notifications_outbox",
        ["tenant_id", "provider_message_id"],
    )


def _message_providers() -> None:
    op.create_table(
        "message_providers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("settings", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            _one_of("channel", CHANNELS), name=op.f("ck_message_providers_channel_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_message_providers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "channel", name=op.f("pk_message_providers")),
    )
    enable_tenant_rls("message_providers")
    grant_app("message_providers")


def downgrade() -> None:
    op.drop_column("tenants", "automation_settings")
    op.drop_table("message_providers")
    op.drop_index(
        op.f("ix_notifications_outbox_tenant_id_provider_message_id"),
        table_name="notifications_outbox",
    )
    op.drop_index(
        op.f("ix_notifications_outbox_tenant_id_patient_id"), table_name="notifications_outbox"
    )
    op.drop_index("uq_notifications_outbox_tenant_id_dedupe_key", table_name="notifications_outbox")
    op.drop_constraint(
        op.f("ck_notifications_outbox_attempts_not_negative"),
        "notifications_outbox",
        type_="check",
    )
    op.drop_constraint(
        op.f("ck_notifications_outbox_status_known"), "notifications_outbox", type_="check"
    )
    op.execute(
        "UPDATE notifications_outbox SET status = 'sent' WHERE status IN ('delivered', 'read')"
    )
    op.execute("UPDATE notifications_outbox SET status = 'failed' WHERE status = 'cancelled'")
    op.create_check_constraint(
        op.f("ck_notifications_outbox_status_known"),
        "notifications_outbox",
        _one_of("status", OLD_OUTBOX_STATUSES),
    )
    for column in (
        "claimed_by",
        "claimed_until",
        "fallback_of",
        "read_at",
        "delivered_at",
        "provider_message_id",
        "provider",
        "body",
        "language",
        "patient_id",
        "dedupe_key",
    ):
        op.drop_column("notifications_outbox", column)
    op.drop_table("automation_events")
