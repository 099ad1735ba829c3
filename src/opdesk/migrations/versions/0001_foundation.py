"""foundation: tenants, audit events

Revision ID: 0001
Revises:
Create Date: 2026-11-25 20:56:13.542366
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import create_app_role, enable_tenant_rls, grant_app

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_app_role()
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), server_default="Asia/Kolkata", nullable=False),
        sa.Column("currency", sa.Text(), server_default="INR", nullable=False),
        sa.Column("gstin", sa.Text(), nullable=True),
        sa.Column("address_line1", sa.Text(), nullable=True),
        sa.Column("address_line2", sa.Text(), nullable=True),
        sa.Column("address_city", sa.Text(), nullable=True),
        sa.Column("address_state", sa.Text(), nullable=True),
        sa.Column("address_pincode", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("invoice_prefix", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_index("uq_tenants_slug", "tenants", ["slug"], unique=True)
    op.create_table(
        "audit_chain_heads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_chain_heads_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_audit_chain_heads")),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("entity_collection", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=True),
        sa.Column("diff", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'delete', 'soft-delete', 'restore', 'sign-off', 'state-transition')",
            name=op.f("ck_audit_events_action_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("tenant_id", "seq", name=op.f("uq_audit_events_tenant_id_seq")),
    )
    op.create_index(
        op.f("ix_audit_events_tenant_id_actor_id_ts"),
        "audit_events",
        ["tenant_id", "actor_id", "ts"],
        unique=False,
    )
    op.create_index(
        op.f("ix_audit_events_tenant_id_entity_collection_entity_id"),
        "audit_events",
        ["tenant_id", "entity_collection", "entity_id"],
        unique=False,
    )

    # Clinics: anyone may read the directory (public profile pages resolve slugs before a
    # tenant is known); a clinic's row may only be changed from inside that clinic.
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY tenants_read ON tenants FOR SELECT USING (true)")
    op.execute("CREATE POLICY tenants_create ON tenants FOR INSERT WITH CHECK (true)")
    op.execute(
        "CREATE POLICY tenants_change ON tenants FOR UPDATE "
        "USING (id = opdesk_current_tenant()) WITH CHECK (id = opdesk_current_tenant())"
    )
    grant_app("tenants", "SELECT, INSERT, UPDATE")

    # /readyz compares the schema version through the app's own connection.
    grant_app("alembic_version", "SELECT")

    # The audit trail is append-only for the application.
    enable_tenant_rls("audit_events")
    grant_app("audit_events", "SELECT, INSERT")
    enable_tenant_rls("audit_chain_heads")
    grant_app("audit_chain_heads", "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.drop_index(
        op.f("ix_audit_events_tenant_id_entity_collection_entity_id"), table_name="audit_events"
    )
    op.drop_index(op.f("ix_audit_events_tenant_id_actor_id_ts"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("audit_chain_heads")
    op.drop_index("uq_tenants_slug", table_name="tenants")
    op.drop_table("tenants")
    op.execute("DROP FUNCTION IF EXISTS opdesk_current_tenant()")
