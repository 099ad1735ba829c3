"""abdm exchange: the gateway's calls as received, and Scan & Share tokens

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def _callbacks() -> None:
    op.create_table(
        "abdm_callbacks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_callbacks_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "request_id", name=op.f("pk_abdm_callbacks")),
    )
    op.create_index(
        op.f("ix_abdm_callbacks_tenant_id_received_at"),
        "abdm_callbacks",
        ["tenant_id", "received_at"],
    )
    enable_tenant_rls("abdm_callbacks")
    grant_app("abdm_callbacks", "SELECT, INSERT, UPDATE")


def _share_tokens() -> None:
    op.create_table(
        "abdm_share_tokens",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("counter_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("abha_address_hash", sa.LargeBinary(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("number > 0", name=op.f("ck_abdm_share_tokens_number_positive")),
        sa.CheckConstraint(
            "expires_at > issued_at", name=op.f("ck_abdm_share_tokens_expires_after_issue")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_abdm_share_tokens_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_share_tokens_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_abdm_share_tokens")),
    )
    op.create_index(
        "uq_abdm_share_tokens_counter_day_number",
        "abdm_share_tokens",
        ["tenant_id", "counter_id", "day", "number"],
        unique=True,
    )
    op.create_index(
        op.f("ix_abdm_share_tokens_tenant_id_abha_address_hash_counter_id_expires_at"),
        "abdm_share_tokens",
        ["tenant_id", "abha_address_hash", "counter_id", "expires_at"],
    )
    op.create_index(
        op.f("ix_abdm_share_tokens_tenant_id_day_counter_id"),
        "abdm_share_tokens",
        ["tenant_id", "day", "counter_id"],
    )
    enable_tenant_rls("abdm_share_tokens")
    grant_app("abdm_share_tokens", "SELECT, INSERT")
    op.create_table(
        "abdm_share_counters",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("counter_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_share_counters_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "counter_id", "day", name=op.f("pk_abdm_share_counters")
        ),
    )
    enable_tenant_rls("abdm_share_counters")
    grant_app("abdm_share_counters", "SELECT, INSERT, UPDATE")


def upgrade() -> None:
    _callbacks()
    _share_tokens()


def downgrade() -> None:
    op.drop_table("abdm_share_counters")
    op.drop_table("abdm_share_tokens")
    op.drop_table("abdm_callbacks")
