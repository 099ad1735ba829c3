"""abdm exchange: the gateway's calls as received, Scan & Share tokens, and the routing
of a call to its clinic by facility id

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 15:00:00.000000

The gateway calls one bridge URL for every clinic and names the facility (``X-HIP-ID``).
Before the clinic is known, the app role sees no clinic's rows, so
:data:`CLINIC_OF_FACILITY` (SECURITY DEFINER, owned by the migration owner, executable by
the app role only) answers which clinic has that facility id switched on: a clinic id,
never a row's content. Under FORCE row-level security the owner is bound by policies too,
so a SELECT policy lets the owner (and so this function) read the settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from opdesk.db import APP_ROLE
from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

CLINIC_OF_FACILITY = "abdm_clinic_of_facility"


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


def _routing() -> None:
    op.execute(
        "CREATE POLICY owner_routes_facilities ON abdm_settings FOR SELECT TO CURRENT_USER "
        "USING (true)"
    )
    op.execute(
        f"""
        CREATE FUNCTION {CLINIC_OF_FACILITY}(facility text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$
          SELECT s.tenant_id FROM public.abdm_settings s
          WHERE s.facility_id = upper(facility) AND s.enabled
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {CLINIC_OF_FACILITY}(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {CLINIC_OF_FACILITY}(text) TO {APP_ROLE}")


def upgrade() -> None:
    _callbacks()
    _share_tokens()
    _routing()


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {CLINIC_OF_FACILITY}(text)")
    op.execute("DROP POLICY owner_routes_facilities ON abdm_settings")
    op.drop_table("abdm_share_counters")
    op.drop_table("abdm_share_tokens")
    op.drop_table("abdm_callbacks")
