"""abdm sharing: care contexts (one per visit), consent artefacts and transfers

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

JSON = postgresql.JSONB(astext_type=sa.Text())


def _stamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _care_contexts() -> None:
    op.create_table(
        "abdm_care_contexts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        _stamp("happened_at"),
        _stamp("created_at"),
        sa.CheckConstraint(
            "reference = visit_id::text", name=op.f("ck_abdm_care_contexts_reference_is_visit")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_abdm_care_contexts_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_abdm_care_contexts_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_care_contexts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_abdm_care_contexts")),
    )
    op.create_index(
        "uq_abdm_care_contexts_visit", "abdm_care_contexts", ["tenant_id", "visit_id"], unique=True
    )
    op.create_index(
        op.f("ix_abdm_care_contexts_tenant_id_reference"),
        "abdm_care_contexts",
        ["tenant_id", "reference"],
    )
    op.create_index(
        op.f("ix_abdm_care_contexts_tenant_id_patient_id_happened_at"),
        "abdm_care_contexts",
        ["tenant_id", "patient_id", "happened_at"],
    )
    enable_tenant_rls("abdm_care_contexts")
    grant_app("abdm_care_contexts", "SELECT, INSERT")


def _consents() -> None:
    op.create_table(
        "abdm_consents",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("consent_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("abha_address", sa.Text(), nullable=True),
        sa.Column("hi_types", JSON, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("care_contexts", JSON, server_default=sa.text("'[]'::jsonb"), nullable=False),
        _stamp("date_from", nullable=True),
        _stamp("date_to", nullable=True),
        _stamp("data_erase_at", nullable=True),
        _stamp("received_at"),
        _stamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('GRANTED', 'REVOKED', 'EXPIRED', 'DENIED')",
            name=op.f("ck_abdm_consents_status_known"),
        ),
        sa.CheckConstraint(
            "status <> 'GRANTED' OR (date_from IS NOT NULL AND date_to IS NOT NULL"
            " AND data_erase_at IS NOT NULL)",
            name=op.f("ck_abdm_consents_granted_has_range"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_consents_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_abdm_consents")),
    )
    op.create_index(
        "uq_abdm_consents_consent_id", "abdm_consents", ["tenant_id", "consent_id"], unique=True
    )
    enable_tenant_rls("abdm_consents")
    grant_app("abdm_consents", "SELECT, INSERT, UPDATE")


def _transfers() -> None:
    op.create_table(
        "abdm_transfers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("consent_id", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _stamp("date_from"),
        _stamp("date_to"),
        sa.Column("data_push_url", sa.Text(), nullable=False),
        sa.Column("key_material", JSON, nullable=False),
        sa.Column("sent", JSON, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _stamp("requested_at"),
        _stamp("finished_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'sent', 'refused', 'failed')",
            name=op.f("ck_abdm_transfers_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_transfers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_abdm_transfers")),
    )
    op.create_index(
        "uq_abdm_transfers_transaction",
        "abdm_transfers",
        ["tenant_id", "transaction_id"],
        unique=True,
    )
    op.create_index(
        op.f("ix_abdm_transfers_tenant_id_consent_id"),
        "abdm_transfers",
        ["tenant_id", "consent_id"],
    )
    enable_tenant_rls("abdm_transfers")
    grant_app("abdm_transfers", "SELECT, INSERT, UPDATE")


def upgrade() -> None:
    _care_contexts()
    _consents()
    _transfers()


def downgrade() -> None:
    op.drop_table("abdm_transfers")
    op.drop_table("abdm_consents")
    op.drop_table("abdm_care_contexts")
