"""billing: invoices, payments and their refunds, the patient ledger, invoice number
counters, gateway webhook events, the clinic's billing settings and consultation fees

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 03:00:00.000000

What PostgreSQL holds here for every role, not only the application:

* an issued invoice changes only in what payments and refunds move (status, the amounts
  paid, refunded and credited, the balance, the payments applied and their times); it is
  never deleted and never goes back to draft;
* a captured (or failed) payment changes only as refunds move it;
* ledger rows are append-only: the app role may only insert and read them, and a trigger
  refuses an UPDATE or DELETE by anyone, the owner included.

A refused change raises SQLSTATE ``OD001`` (``FROZEN_SQLSTATE``), answered as 409.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

FROZEN_SQLSTATE = "OD001"

TENANT_TABLES = {
    "billing_settings": "SELECT, INSERT, UPDATE",
    "consultation_fees": "SELECT, INSERT, UPDATE, DELETE",
    "invoice_counters": "SELECT, INSERT, UPDATE",
    # a draft may be discarded (deleted); the trigger below keeps issued ones
    "invoices": "SELECT, INSERT, UPDATE, DELETE",
    "payments": "SELECT, INSERT, UPDATE",
    "payments_refunds": "SELECT, INSERT, UPDATE",
    "ledger_entries": "SELECT, INSERT",
    "gateway_events": "SELECT, INSERT, UPDATE",
}

# table -> (the one status in which the row may still change freely, the columns that
# may change after it has left that status)
SETTLED = {
    "invoices": (
        "draft",
        (
            "status",
            "balance_due",
            "amount_paid",
            "amount_refunded",
            "amount_credited",
            "payments_applied",
            "paid_at",
            "refunded_at",
            "updated_at",
        ),
    ),
    "payments": (
        "pending",
        (
            "status",
            "amount_refunded",
            "gateway_refund_id",
            "ledger_impact",
            "refunded_at",
            "updated_at",
        ),
    ),
}


def upgrade() -> None:
    _tables()
    for table, privileges in TENANT_TABLES.items():
        enable_tenant_rls(table)
        grant_app(table, privileges)
    _freeze()


def _freeze() -> None:
    refuse = f"USING ERRCODE = '{FROZEN_SQLSTATE}'"
    # TG_ARGV[0]: the open status; the other arguments: the columns that may still change.
    op.execute(
        f"""
        CREATE FUNCTION opdesk_settled_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          open_status CONSTANT text := TG_ARGV[0];
          kept CONSTANT text[] := TG_ARGV[1:];
        BEGIN
          IF OLD.status::text = open_status THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
          END IF;
          IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION '% % is % and cannot be deleted', TG_TABLE_NAME, OLD.id, OLD.status
              {refuse};
          END IF;
          IF NEW.status::text = open_status
             OR (to_jsonb(OLD) - kept) IS DISTINCT FROM (to_jsonb(NEW) - kept) THEN
            RAISE EXCEPTION '% % is % and cannot change; correct it with a refund or a new one',
              TG_TABLE_NAME, OLD.id, OLD.status {refuse};
          END IF;
          RETURN NEW;
        END $$
        """
    )
    for table, (open_status, kept) in SETTLED.items():
        arguments = ", ".join(f"'{a}'" for a in (open_status, *kept))
        op.execute(
            f"CREATE TRIGGER frozen_when_settled BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION opdesk_settled_frozen({arguments})"
        )
    op.execute(
        f"""
        CREATE FUNCTION opdesk_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% rows are never changed or removed; add a correcting entry',
            TG_TABLE_NAME {refuse};
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION opdesk_append_only()"
    )
    op.execute(
        "CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ledger_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION opdesk_append_only()"
    )


def _tables() -> None:
    op.create_table(
        "billing_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("upi_vpa", sa.Text(), nullable=True),
        sa.Column("upi_payee_name", sa.Text(), nullable=True),
        sa.Column("razorpay_key_id", sa.Text(), nullable=True),
        sa.Column("razorpay_secrets", sa.LargeBinary(), nullable=True),
        sa.Column("prepay_online", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("prepay_minutes", sa.Integer(), server_default=sa.text("15"), nullable=False),
        sa.Column("consult_sac", sa.Text(), server_default=sa.text("'999312'"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "prepay_minutes BETWEEN 5 AND 1440",
            name=op.f("ck_billing_settings_prepay_minutes_range"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_billing_settings_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_settings")),
    )
    op.create_table(
        "gateway_events",
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.Uuid(), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('applied', 'no-change', 'review', 'ignored')",
            name=op.f("ck_gateway_events_outcome_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gateway_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_gateway_events")),
    )
    op.create_index(
        "ix_gateway_events_review",
        "gateway_events",
        ["tenant_id", "received_at"],
        unique=False,
        postgresql_where=sa.text("outcome = 'review' AND reviewed_at IS NULL"),
    )
    op.create_index(
        "uq_gateway_events_event",
        "gateway_events",
        ["tenant_id", "provider", "event_id"],
        unique=True,
    )
    op.create_table(
        "invoice_counters",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("financial_year", sa.Text(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "financial_year ~ '^[0-9]{4}-[0-9]{2}$'",
            name=op.f("ck_invoice_counters_financial_year_form"),
        ),
        sa.CheckConstraint(
            "last_number >= 1", name=op.f("ck_invoice_counters_last_number_positive")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_invoice_counters_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "financial_year", name=op.f("pk_invoice_counters")),
    )
    op.create_table(
        "consultation_fees",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("visit_type", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_consultation_fees_amount_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_consultation_fees_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "doctor_id", "visit_type", name=op.f("pk_consultation_fees")
        ),
    )
    op.create_table(
        "invoices",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("visit_id", sa.Uuid(), nullable=True),
        sa.Column("appointment_id", sa.Uuid(), nullable=True),
        sa.Column("number", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("line_items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("subtotal", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("tax_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("discount_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("grand_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("balance_due", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("cgst_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("sgst_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("igst_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("amount_paid", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("amount_refunded", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("amount_credited", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("discount_reason", sa.Text(), nullable=True),
        sa.Column("place_of_supply", sa.Text(), nullable=True),
        sa.Column("inter_state", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "payments_applied",
            sa.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(issued_at IS NULL) = (status = 'draft')",
            name=op.f("ck_invoices_issued_at_when_issued"),
        ),
        sa.CheckConstraint(
            "(number IS NULL) = (status = 'draft')", name=op.f("ck_invoices_numbered_when_issued")
        ),
        sa.CheckConstraint(
            "jsonb_typeof(line_items) = 'array'", name=op.f("ck_invoices_line_items_array")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'issued', 'partial', 'paid', 'refunded')",
            name=op.f("ck_invoices_status_known"),
        ),
        sa.CheckConstraint(
            "CASE WHEN inter_state THEN cgst_total = 0 AND sgst_total = 0 ELSE igst_total = 0 END",
            name=op.f("ck_invoices_cgst_sgst_or_igst"),
        ),
        sa.CheckConstraint(
            "amount_credited <= grand_total", name=op.f("ck_invoices_credits_within_total")
        ),
        sa.CheckConstraint(
            "amount_refunded <= amount_paid", name=op.f("ck_invoices_refunds_within_paid")
        ),
        sa.CheckConstraint(
            "balance_due = grand_total - amount_credited - amount_paid + amount_refunded",
            name=op.f("ck_invoices_balance_adds_up"),
        ),
        sa.CheckConstraint("balance_due >= 0", name=op.f("ck_invoices_never_overpaid")),
        sa.CheckConstraint(
            "discount_total <= subtotal", name=op.f("ck_invoices_discount_within_subtotal")
        ),
        sa.CheckConstraint(
            "grand_total = subtotal - discount_total + tax_total",
            name=op.f("ck_invoices_grand_total_adds_up"),
        ),
        sa.CheckConstraint(
            "subtotal >= 0 AND tax_total >= 0 AND discount_total >= 0 AND grand_total >= 0 AND amount_paid >= 0 AND amount_refunded >= 0 AND amount_credited >= 0 AND cgst_total >= 0 AND sgst_total >= 0 AND igst_total >= 0",
            name=op.f("ck_invoices_amounts_not_negative"),
        ),
        sa.CheckConstraint(
            "tax_total = cgst_total + sgst_total + igst_total",
            name=op.f("ck_invoices_tax_total_adds_up"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "appointment_id"],
            ["appointments.tenant_id", "appointments.id"],
            name=op.f("fk_invoices_tenant_id_appointment_id_appointments"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_invoices_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_invoices_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_invoices_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_invoices")),
    )
    op.create_index(
        op.f("ix_invoices_tenant_id_issued_at"),
        "invoices",
        ["tenant_id", "issued_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_invoices_tenant_id_patient_id_status"),
        "invoices",
        ["tenant_id", "patient_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_invoices_tenant_id_visit_id"), "invoices", ["tenant_id", "visit_id"], unique=False
    )
    op.create_index(
        "uq_invoices_draft_per_appointment",
        "invoices",
        ["tenant_id", "appointment_id"],
        unique=True,
        postgresql_where=sa.text("status = 'draft' AND appointment_id IS NOT NULL"),
    )
    op.create_index(
        "uq_invoices_tenant_id_number", "invoices", ["tenant_id", "number"], unique=True
    )
    op.create_table(
        "payments",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.Text(), server_default=sa.text("'INR'"), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("gateway_provider", sa.Text(), nullable=True),
        sa.Column("gateway_order_id", sa.Text(), nullable=True),
        sa.Column("gateway_payment_id", sa.Text(), nullable=True),
        sa.Column("gateway_refund_id", sa.Text(), nullable=True),
        sa.Column("gateway_link_id", sa.Text(), nullable=True),
        sa.Column("link_url", sa.Text(), nullable=True),
        sa.Column("link_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("split", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "ledger_impact",
            sa.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column(
            "amount_refunded",
            sa.Numeric(precision=12, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(status IN ('captured', 'partial', 'refunded')) = (captured_at IS NOT NULL)",
            name=op.f("ck_payments_captured_at_when_captured"),
        ),
        sa.CheckConstraint("currency = 'INR'", name=op.f("ck_payments_currency_inr")),
        sa.CheckConstraint(
            "method IN ('upi', 'card', 'cash', 'link')", name=op.f("ck_payments_method_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'captured', 'failed', 'refunded', 'partial')",
            name=op.f("ck_payments_status_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount",
            name=op.f("ck_payments_refunds_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "invoice_id"],
            ["invoices.tenant_id", "invoices.id"],
            name=op.f("fk_payments_tenant_id_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_payments_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_payments_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_payments")),
    )
    op.create_index(
        op.f("ix_payments_tenant_id_invoice_id"),
        "payments",
        ["tenant_id", "invoice_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payments_tenant_id_status_created_at"),
        "payments",
        ["tenant_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_payments_gateway_link",
        "payments",
        ["tenant_id", "gateway_link_id"],
        unique=True,
        postgresql_where=sa.text("gateway_link_id IS NOT NULL"),
    )
    op.create_index(
        "uq_payments_gateway_payment",
        "payments",
        ["tenant_id", "gateway_provider", "gateway_payment_id"],
        unique=True,
        postgresql_where=sa.text("gateway_payment_id IS NOT NULL"),
    )
    op.create_index(
        "uq_payments_upi_reference",
        "payments",
        ["tenant_id", "reference"],
        unique=True,
        postgresql_where=sa.text("method = 'upi' AND reference IS NOT NULL"),
    )
    op.create_table(
        "payments_refunds",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("gateway_refund_id", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "method IN ('gateway', 'cash', 'upi', 'card')",
            name=op.f("ck_payments_refunds_method_known"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processed', 'failed')",
            name=op.f("ck_payments_refunds_status_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "invoice_id"],
            ["invoices.tenant_id", "invoices.id"],
            name=op.f("fk_payments_refunds_tenant_id_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "payment_id"],
            ["payments.tenant_id", "payments.id"],
            name=op.f("fk_payments_refunds_tenant_id_payment_id_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_payments_refunds_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_payments_refunds")),
    )
    op.create_index(
        op.f("ix_payments_refunds_tenant_id_payment_id"),
        "payments_refunds",
        ["tenant_id", "payment_id"],
        unique=False,
    )
    op.create_index(
        "uq_payments_refunds_gateway_refund",
        "payments_refunds",
        ["tenant_id", "gateway_refund_id"],
        unique=True,
        postgresql_where=sa.text("gateway_refund_id IS NOT NULL"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.Text(), server_default=sa.text("'INR'"), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(kind IN ('invoice', 'refund')) = (type = 'debit')",
            name=op.f("ck_ledger_entries_kind_matches_type"),
        ),
        sa.CheckConstraint("currency = 'INR'", name=op.f("ck_ledger_entries_currency_inr")),
        sa.CheckConstraint(
            "kind IN ('invoice', 'payment', 'refund', 'credit-note')",
            name=op.f("ck_ledger_entries_kind_known"),
        ),
        sa.CheckConstraint(
            "type IN ('debit', 'credit')", name=op.f("ck_ledger_entries_type_known")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "invoice_id"],
            ["invoices.tenant_id", "invoices.id"],
            name=op.f("fk_ledger_entries_tenant_id_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_ledger_entries_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "payment_id"],
            ["payments.tenant_id", "payments.id"],
            name=op.f("fk_ledger_entries_tenant_id_payment_id_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "refund_id"],
            ["payments_refunds.tenant_id", "payments_refunds.id"],
            name=op.f("fk_ledger_entries_tenant_id_refund_id_payments_refunds"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_entries_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        op.f("ix_ledger_entries_tenant_id_invoice_id"),
        "ledger_entries",
        ["tenant_id", "invoice_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_entries_tenant_id_patient_id_created_at"),
        "ledger_entries",
        ["tenant_id", "patient_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER append_only_truncate ON ledger_entries")
    op.execute("DROP TRIGGER append_only ON ledger_entries")
    op.execute("DROP FUNCTION opdesk_append_only()")
    for table in SETTLED:
        op.execute(f"DROP TRIGGER frozen_when_settled ON {table}")
    op.execute("DROP FUNCTION opdesk_settled_frozen()")
    op.drop_index(
        op.f("ix_ledger_entries_tenant_id_patient_id_created_at"), table_name="ledger_entries"
    )
    op.drop_index(op.f("ix_ledger_entries_tenant_id_invoice_id"), table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index(
        "uq_payments_refunds_gateway_refund",
        table_name="payments_refunds",
        postgresql_where=sa.text("gateway_refund_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_payments_refunds_tenant_id_payment_id"), table_name="payments_refunds")
    op.drop_table("payments_refunds")
    op.drop_index(
        "uq_payments_upi_reference",
        table_name="payments",
        postgresql_where=sa.text("method = 'upi' AND reference IS NOT NULL"),
    )
    op.drop_index(
        "uq_payments_gateway_payment",
        table_name="payments",
        postgresql_where=sa.text("gateway_payment_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_payments_gateway_link",
        table_name="payments",
        postgresql_where=sa.text("gateway_link_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_payments_tenant_id_status_created_at"), table_name="payments")
    op.drop_index(op.f("ix_payments_tenant_id_invoice_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index("uq_invoices_tenant_id_number", table_name="invoices")
    op.drop_index(
        "uq_invoices_draft_per_appointment",
        table_name="invoices",
        postgresql_where=sa.text("status = 'draft' AND appointment_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_invoices_tenant_id_visit_id"), table_name="invoices")
    op.drop_index(op.f("ix_invoices_tenant_id_patient_id_status"), table_name="invoices")
    op.drop_index(op.f("ix_invoices_tenant_id_issued_at"), table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("consultation_fees")
    op.drop_table("invoice_counters")
    op.drop_index("uq_gateway_events_event", table_name="gateway_events")
    op.drop_index(
        "ix_gateway_events_review",
        table_name="gateway_events",
        postgresql_where=sa.text("outcome = 'review' AND reviewed_at IS NULL"),
    )
    op.drop_table("gateway_events")
    op.drop_table("billing_settings")
