"""abdm linking: care contexts linked to an ABHA, link tokens per patient, link requests,
and a clinic's pause on asking for tokens

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-03 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

JSON = postgresql.JSONB(astext_type=sa.Text())


def _stamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _patient_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "patient_id"],
        ["patients.tenant_id", "patients.id"],
        name=op.f(f"fk_{table}_tenant_id_patient_id_patients"),
    )


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants")
    )


def _care_contexts_linked() -> None:
    table = "abdm_care_contexts"
    op.add_column(table, _stamp("linked_at", nullable=True))
    op.add_column(table, sa.Column("linked_by", sa.Text(), nullable=True))
    op.add_column(table, sa.Column("link_request_id", sa.Uuid(), nullable=True))
    op.add_column(table, _stamp("link_asked_at", nullable=True))
    op.create_check_constraint(
        op.f("ck_abdm_care_contexts_linked_says_by_whom"),
        table,
        "(linked_at IS NULL) = (linked_by IS NULL) AND"
        " (linked_by IS NULL OR linked_by IN ('hip', 'patient'))",
    )
    op.create_index(
        op.f("ix_abdm_care_contexts_tenant_id_link_request_id"),
        table,
        ["tenant_id", "link_request_id"],
    )
    grant_app(table, "SELECT, INSERT, UPDATE")


def _link_tokens() -> None:
    table = "abdm_link_tokens"
    op.create_table(
        table,
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("abha_address_hash", sa.LargeBinary(), nullable=False),
        sa.Column("token_encrypted", sa.LargeBinary(), nullable=True),
        _stamp("expires_at", nullable=True),
        _stamp("asked_at", nullable=True),
        sa.Column("ask_request_id", sa.Uuid(), nullable=True),
        _stamp("not_before", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _stamp("updated_at"),
        sa.CheckConstraint(
            "(token_encrypted IS NULL) = (expires_at IS NULL)",
            name=op.f("ck_abdm_link_tokens_token_has_expiry"),
        ),
        _patient_fk(table),
        _tenant_fk(table),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_abdm_link_tokens")),
    )
    op.create_index("uq_abdm_link_tokens_patient", table, ["tenant_id", "patient_id"], unique=True)
    op.create_index(
        op.f("ix_abdm_link_tokens_tenant_id_ask_request_id"), table, ["tenant_id", "ask_request_id"]
    )
    enable_tenant_rls(table)
    grant_app(table, "SELECT, INSERT, UPDATE")


def _link_requests() -> None:
    table = "abdm_link_requests"
    op.create_table(
        table,
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("abha_address", sa.Text(), nullable=False),
        sa.Column("care_contexts", JSON, nullable=False),
        sa.Column("otp_hash", sa.LargeBinary(), nullable=False),
        _stamp("expires_at"),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("init_request_id", sa.Uuid(), nullable=False),
        sa.Column("last_try_id", sa.Uuid(), nullable=True),
        _stamp("created_at"),
        _stamp("finished_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'linked', 'refused')",
            name=op.f("ck_abdm_link_requests_status_known"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_abdm_link_requests_attempts_counted")),
        _patient_fk(table),
        _tenant_fk(table),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_abdm_link_requests")),
    )
    op.create_index(
        "uq_abdm_link_requests_reference", table, ["tenant_id", "reference"], unique=True
    )
    op.create_index(
        "uq_abdm_link_requests_init", table, ["tenant_id", "init_request_id"], unique=True
    )
    op.create_index(
        op.f("ix_abdm_link_requests_tenant_id_patient_id_created_at"),
        table,
        ["tenant_id", "patient_id", "created_at"],
    )
    enable_tenant_rls(table)
    grant_app(table, "SELECT, INSERT, UPDATE")


def upgrade() -> None:
    op.add_column("abdm_settings", _stamp("token_asks_paused_until", nullable=True))
    _care_contexts_linked()
    _link_tokens()
    _link_requests()


def downgrade() -> None:
    op.drop_table("abdm_link_requests")
    op.drop_table("abdm_link_tokens")
    op.drop_column("abdm_settings", "token_asks_paused_until")
    table = "abdm_care_contexts"
    op.drop_index(op.f("ix_abdm_care_contexts_tenant_id_link_request_id"), table_name=table)
    op.drop_constraint(op.f("ck_abdm_care_contexts_linked_says_by_whom"), table)
    for column in ("link_asked_at", "link_request_id", "linked_by", "linked_at"):
        op.drop_column(table, column)
