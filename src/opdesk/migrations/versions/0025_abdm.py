"""abdm: a clinic's ABDM registration, and the ABHA address and verification on a patient

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 14:00:00.000000

``abdm_settings`` is one row per clinic, like ``billing_settings``. A facility id must
lead to exactly one clinic (the gateway calls one bridge URL for every clinic and names the
facility, ``X-HIP-ID``): ``abdm_facilities`` holds that, outside the clinics' tables, since
a uniqueness across clinics is not one a table distributed by clinic can keep.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("patients", sa.Column("abha_address_encrypted", sa.LargeBinary()))
    op.add_column("patients", sa.Column("abha_address_hash", sa.LargeBinary()))
    op.add_column("patients", sa.Column("abha_verified_at", sa.DateTime(timezone=True)))
    op.create_index(
        "uq_patients_tenant_id_abha_address_hash",
        "patients",
        ["tenant_id", "abha_address_hash"],
        unique=True,
    )
    op.create_check_constraint(
        "verified_abha_exists", "patients", "abha_verified_at IS NULL OR abha_hash IS NOT NULL"
    )
    op.create_table(
        "abdm_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("facility_name", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_secret", sa.LargeBinary(), nullable=False),
        sa.Column("environment", sa.Text(), server_default=sa.text("'sandbox'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "counters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "environment IN ('sandbox', 'production')",
            name=op.f("ck_abdm_settings_environment_known"),
        ),
        sa.CheckConstraint(
            "facility_id ~ '^[A-Z0-9]{4,40}$'", name=op.f("ck_abdm_settings_facility_id_shape")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_abdm_settings_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_abdm_settings")),
    )
    enable_tenant_rls("abdm_settings")
    grant_app("abdm_settings")
    op.create_table(
        "abdm_facilities",
        sa.Column("facility_id", sa.Text(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("facility_id", name=op.f("pk_abdm_facilities")),
    )
    op.create_index("uq_abdm_facilities_clinic_id", "abdm_facilities", ["clinic_id"], unique=True)
    grant_app("abdm_facilities", "SELECT, INSERT, DELETE")


def downgrade() -> None:
    op.drop_table("abdm_facilities")
    op.drop_table("abdm_settings")
    op.drop_constraint("verified_abha_exists", "patients", type_="check")
    op.drop_index("uq_patients_tenant_id_abha_address_hash", table_name="patients")
    for column in ("abha_verified_at", "abha_address_hash", "abha_address_encrypted"):
        op.drop_column("patients", column)
