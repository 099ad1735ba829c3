"""reports: the seed's report_daily, its per-doctor rows and the no-show counts

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 12:00:00.000000

Every row here is derived (``opdesk.reports.build`` writes them from the clinic's records
and can write any day again), so the app role may replace them; row-level security keeps
each clinic to its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TABLES = ("report_daily", "report_daily_doctors", "report_daily_no_shows")


# What the build and the dashboard read by time, on the tables of the other domains:
# (name, table, columns, partial index predicate).
REPORT_INDEXES = [
    (
        "ix_appointments_report_confirmed",
        "appointments",
        ["tenant_id", "timeline_confirmed_at"],
        "timeline_confirmed_at IS NOT NULL",
    ),
    (
        "ix_appointments_report_completed",
        "appointments",
        ["tenant_id", "timeline_completed_at"],
        "timeline_completed_at IS NOT NULL",
    ),
    (
        "ix_prescriptions_report_issued",
        "prescriptions",
        ["tenant_id", "issued_at"],
        "supersedes IS NULL AND issued_at IS NOT NULL",
    ),
    (
        "ix_diet_plans_report_issued",
        "diet_plans",
        ["tenant_id", "issued_at"],
        "supersedes IS NULL AND issued_at IS NOT NULL",
    ),
    ("ix_invoices_owed", "invoices", ["tenant_id", "issued_at"], "balance_due > 0"),
    (
        "ix_payments_report_captured",
        "payments",
        ["tenant_id", "captured_at"],
        "captured_at IS NOT NULL",
    ),
    (
        "ix_payments_refunds_report_processed",
        "payments_refunds",
        ["tenant_id", "processed_at"],
        "status = 'processed'",
    ),
    (
        "ix_ledger_entries_report_credit_notes",
        "ledger_entries",
        ["tenant_id", "created_at"],
        "kind = 'credit-note'",
    ),
]


def upgrade() -> None:
    _tables()
    for table in TABLES:
        enable_tenant_rls(table)
        grant_app(table)


def _tables() -> None:
    op.create_table(
        "report_daily",
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("time_zone", sa.Text(), nullable=False),
        sa.Column("money_in", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("money_out", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("appointments_requested", sa.Integer(), nullable=False),
        sa.Column("appointments_confirmed", sa.Integer(), nullable=False),
        sa.Column("appointments_completed", sa.Integer(), nullable=False),
        sa.Column("appointments_no_show", sa.Integer(), nullable=False),
        sa.Column("revenue_gross", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("revenue_discounts", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("revenue_net", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("visits_total", sa.Integer(), nullable=False),
        sa.Column("visits_documented_complete", sa.Integer(), nullable=False),
        sa.Column("prescriptions_total", sa.Integer(), nullable=False),
        sa.Column("diet_plans_total", sa.Integer(), nullable=False),
        sa.Column("payments_failures", sa.Integer(), nullable=False),
        sa.Column("booking_median_seconds", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "appointments_requested >= 0 AND appointments_confirmed >= 0 AND appointments_completed >= 0 AND appointments_no_show >= 0 AND visits_total >= 0 AND visits_documented_complete BETWEEN 0 AND visits_total AND prescriptions_total >= 0 AND diet_plans_total >= 0 AND payments_failures >= 0 AND (booking_median_seconds IS NULL OR booking_median_seconds >= 0)",
            name=op.f("ck_report_daily_counts_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_report_daily_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_report_daily")),
    )
    op.create_index(
        "uq_report_daily_tenant_id_date", "report_daily", ["tenant_id", "date"], unique=True
    )
    op.create_table(
        "report_daily_doctors",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("appointments_requested", sa.Integer(), nullable=False),
        sa.Column("appointments_confirmed", sa.Integer(), nullable=False),
        sa.Column("appointments_completed", sa.Integer(), nullable=False),
        sa.Column("appointments_no_show", sa.Integer(), nullable=False),
        sa.Column("revenue_gross", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("revenue_discounts", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("revenue_net", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("visits_total", sa.Integer(), nullable=False),
        sa.Column("visits_documented_complete", sa.Integer(), nullable=False),
        sa.Column("prescriptions_total", sa.Integer(), nullable=False),
        sa.Column("diet_plans_total", sa.Integer(), nullable=False),
        sa.Column("payments_failures", sa.Integer(), nullable=False),
        sa.Column("booking_median_seconds", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "appointments_requested >= 0 AND appointments_confirmed >= 0 AND appointments_completed >= 0 AND appointments_no_show >= 0 AND visits_total >= 0 AND visits_documented_complete BETWEEN 0 AND visits_total AND prescriptions_total >= 0 AND diet_plans_total >= 0 AND payments_failures >= 0 AND (booking_median_seconds IS NULL OR booking_median_seconds >= 0)",
            name=op.f("ck_report_daily_doctors_counts_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_report_daily_doctors_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_report_daily_doctors_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "date", "doctor_id", name=op.f("pk_report_daily_doctors")
        ),
    )
    op.create_index(
        op.f("ix_report_daily_doctors_tenant_id_doctor_id_date"),
        "report_daily_doctors",
        ["tenant_id", "doctor_id", "date"],
        unique=False,
    )
    op.create_table(
        "report_daily_no_shows",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=False),
        sa.Column("no_show", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "hour BETWEEN 0 AND 23", name=op.f("ck_report_daily_no_shows_hour_of_day")
        ),
        sa.CheckConstraint(
            "no_show BETWEEN 0 AND expected",
            name=op.f("ck_report_daily_no_shows_no_show_within_expected"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_report_daily_no_shows_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_report_daily_no_shows_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "date",
            "doctor_id",
            "hour",
            "channel",
            name=op.f("pk_report_daily_no_shows"),
        ),
    )

    for name, table, columns, where in REPORT_INDEXES:
        op.create_index(name, table, columns, postgresql_where=sa.text(where))


def downgrade() -> None:
    for name, table, _columns, _where in REPORT_INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("report_daily_no_shows")
    op.drop_index(
        op.f("ix_report_daily_doctors_tenant_id_doctor_id_date"), table_name="report_daily_doctors"
    )
    op.drop_table("report_daily_doctors")
    op.drop_index("uq_report_daily_tenant_id_date", table_name="report_daily")
    op.drop_table("report_daily")
