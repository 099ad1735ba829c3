"""Billing's tables: seed ``invoices``, ``payments`` and ``ledger_entries``, and what they
need besides: the invoice number counters, a payment's refunds, the gateways' webhook
events, the clinic's billing settings and consultation fees.

Money is ``NUMERIC(12,2)`` (rupees and paise). What PostgreSQL itself holds (migration
0016), not only this code:

* an issued invoice never changes but for what payments and refunds move (status,
  amounts paid, refunded and credited, balance due, the payments applied and their
  times), is never deleted, and never goes back to draft;
* its totals add up (``grand_total = subtotal - discount_total + tax_total``; the tax is
  CGST+SGST or IGST, never both) and its balance is what is left of them;
* ledger rows are append-only for every role;
* a UTR, a gateway payment id and a payment link record one payment each;
* a payment never has more refunded than was paid.

Where this departs from the seed it is written in docs/seed-deviations.toml.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, EnumText, TenantScoped, encrypted_column, one_of
from opdesk.states import Machine

CURRENCY = "INR"
# Seed line types; "consult" is the doctor's fee, "package" a bundle sold as one line.
LINE_TYPES = ("consult", "service", "lab", "med", "package")
METHODS = ("upi", "card", "cash", "link")


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PARTIAL = "partial"
    PAID = "paid"
    REFUNDED = "refunded"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    FAILED = "failed"
    # every rupee of it given back / some of it given back
    REFUNDED = "refunded"
    PARTIAL = "partial"


class RefundStatus(StrEnum):
    PENDING = "pending"  # asked of the gateway, not yet confirmed
    PROCESSED = "processed"
    FAILED = "failed"


class LedgerKind(StrEnum):
    """Why a ledger row exists (the seed has only debit/credit; this says of what)."""

    INVOICE = "invoice"  # debit: an issued invoice's grand total
    PAYMENT = "payment"  # credit: money received
    REFUND = "refund"  # debit: money given back
    CREDIT_NOTE = "credit-note"  # credit: the part of an invoice a refund cancels


class Invoice(TenantScoped, Base):
    """Seed ``invoices``; ``line_items`` is the seed's embedded array (an atomic snapshot)."""

    __tablename__ = "invoices"

    patient_id: Mapped[uuid.UUID]
    visit_id: Mapped[uuid.UUID | None]
    appointment_id: Mapped[uuid.UUID | None]
    # "<prefix>/<financial year>/<six digits>", taken when issued; a draft has none.
    number: Mapped[str | None] = mapped_column(Text)
    status: Mapped[InvoiceStatus] = mapped_column(EnumText(InvoiceStatus))
    # [{type, refId, description, sacHsn, quantity, unitPrice, discountAmount, taxRate,
    #   taxable, cgst, sgst, igst, taxAmount, total}], amounts as strings (exact)
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    subtotal: Mapped[Decimal]
    tax_total: Mapped[Decimal]
    discount_total: Mapped[Decimal]
    grand_total: Mapped[Decimal]
    balance_due: Mapped[Decimal]
    cgst_total: Mapped[Decimal]
    sgst_total: Mapped[Decimal]
    igst_total: Mapped[Decimal]
    amount_paid: Mapped[Decimal]
    amount_refunded: Mapped[Decimal]
    # What refunds cancelled of the invoice (credit notes): no longer owed.
    amount_credited: Mapped[Decimal]
    discount_reason: Mapped[str | None] = mapped_column(Text)
    place_of_supply: Mapped[str | None] = mapped_column(Text)
    inter_state: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    payments_applied: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid(as_uuid=True)), server_default=text("'{}'::uuid[]")
    )
    issued_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("status", InvoiceStatus), name="status_known"),
        CheckConstraint("(number IS NULL) = (status = 'draft')", name="numbered_when_issued"),
        CheckConstraint("(issued_at IS NULL) = (status = 'draft')", name="issued_at_when_issued"),
        CheckConstraint(
            "subtotal >= 0 AND tax_total >= 0 AND discount_total >= 0 AND grand_total >= 0 "
            "AND amount_paid >= 0 AND amount_refunded >= 0 AND amount_credited >= 0 "
            "AND cgst_total >= 0 AND sgst_total >= 0 AND igst_total >= 0",
            name="amounts_not_negative",
        ),
        CheckConstraint("discount_total <= subtotal", name="discount_within_subtotal"),
        CheckConstraint(
            "grand_total = subtotal - discount_total + tax_total", name="grand_total_adds_up"
        ),
        CheckConstraint(
            "tax_total = cgst_total + sgst_total + igst_total", name="tax_total_adds_up"
        ),
        CheckConstraint(
            "CASE WHEN inter_state THEN cgst_total = 0 AND sgst_total = 0 ELSE igst_total = 0 END",
            name="cgst_sgst_or_igst",
        ),
        CheckConstraint(
            "balance_due = grand_total - amount_credited - amount_paid + amount_refunded",
            name="balance_adds_up",
        ),
        CheckConstraint("balance_due >= 0", name="never_overpaid"),
        CheckConstraint("amount_refunded <= amount_paid", name="refunds_within_paid"),
        CheckConstraint("amount_credited <= grand_total", name="credits_within_total"),
        CheckConstraint("jsonb_typeof(line_items) = 'array'", name="line_items_array"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "appointment_id"], ["appointments.tenant_id", "appointments.id"]
        ),
        Index(None, "tenant_id", "patient_id", "status"),
        Index("uq_invoices_tenant_id_number", "tenant_id", "number", unique=True),
        Index(None, "tenant_id", "issued_at"),
        # What patients still owe (the reports' outstanding balances).
        Index(
            "ix_invoices_owed", "tenant_id", "issued_at", postgresql_where=text("balance_due > 0")
        ),
        # One open charge per appointment: the draft made at booking, found at checkout.
        Index(
            "uq_invoices_draft_per_appointment",
            "tenant_id",
            "appointment_id",
            unique=True,
            postgresql_where=text("status = 'draft' AND appointment_id IS NOT NULL"),
        ),
        Index(None, "tenant_id", "visit_id"),
    )


class InvoiceCounter(Base):
    """The last number issued per clinic and Indian financial year (April to March).

    Taken with ``INSERT ... ON CONFLICT DO UPDATE``: the row lock orders concurrent issues,
    and a rolled-back issue gives its number back, so numbers have no gaps.
    """

    __tablename__ = "invoice_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    financial_year: Mapped[str] = mapped_column(Text, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("last_number >= 1", name="last_number_positive"),
        CheckConstraint("financial_year ~ '^[0-9]{4}-[0-9]{2}$'", name="financial_year_form"),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    )


class Payment(TenantScoped, Base):
    """Seed ``payments``: money received for one invoice, by one method or split."""

    __tablename__ = "payments"

    invoice_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    method: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(Text, server_default=text(f"'{CURRENCY}'"))
    status: Mapped[PaymentStatus] = mapped_column(EnumText(PaymentStatus))
    gateway_provider: Mapped[str | None] = mapped_column(Text)
    gateway_order_id: Mapped[str | None] = mapped_column(Text)
    gateway_payment_id: Mapped[str | None] = mapped_column(Text)
    gateway_refund_id: Mapped[str | None] = mapped_column(Text)
    gateway_link_id: Mapped[str | None] = mapped_column(Text)
    link_url: Mapped[str | None] = mapped_column(Text)
    link_expires_at: Mapped[datetime | None]
    # The card terminal's reference, or the UPI transfer's UTR (12 digits).
    reference: Mapped[str | None] = mapped_column(Text)
    # [{method, amount}] when one payment was made in parts (cash and UPI)
    split: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB(none_as_null=True))
    ledger_impact: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid(as_uuid=True)), server_default=text("'{}'::uuid[]")
    )
    amount_refunded: Mapped[Decimal] = mapped_column(server_default=text("0"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    captured_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("method", METHODS), name="method_known"),
        CheckConstraint(one_of("status", PaymentStatus), name="status_known"),
        CheckConstraint("currency = 'INR'", name="currency_inr"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount", name="refunds_within_amount"
        ),
        CheckConstraint(
            "(status IN ('captured', 'partial', 'refunded')) = (captured_at IS NOT NULL)",
            name="captured_at_when_captured",
        ),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        Index(None, "tenant_id", "invoice_id"),
        Index(None, "tenant_id", "status", "created_at"),
        # Money received on a day, by method (the reports).
        Index(
            "ix_payments_report_captured",
            "tenant_id",
            "captured_at",
            postgresql_where=text("captured_at IS NOT NULL"),
        ),
        Index(
            "uq_payments_gateway_payment",
            "tenant_id",
            "gateway_provider",
            "gateway_payment_id",
            unique=True,
            postgresql_where=text("gateway_payment_id IS NOT NULL"),
        ),
        Index(
            "uq_payments_gateway_link",
            "tenant_id",
            "gateway_link_id",
            unique=True,
            postgresql_where=text("gateway_link_id IS NOT NULL"),
        ),
        # A UPI transfer (its UTR) pays once: the desk cannot confirm one transfer twice.
        Index(
            "uq_payments_upi_reference",
            "tenant_id",
            "reference",
            unique=True,
            postgresql_where=text("method = 'upi' AND reference IS NOT NULL"),
        ),
    )


class PaymentRefund(TenantScoped, Base):
    """A refund of (part of) a payment: the seed keeps one ``gateway.refundId`` per
    payment; a payment may be refunded in parts, so each part is a row here.
    """

    __tablename__ = "payments_refunds"

    payment_id: Mapped[uuid.UUID]
    invoice_id: Mapped[uuid.UUID]
    amount: Mapped[Decimal]
    status: Mapped[RefundStatus] = mapped_column(EnumText(RefundStatus))
    # how the money went back: through the gateway, or in cash at the desk
    method: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    gateway_refund_id: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(one_of("status", RefundStatus), name="status_known"),
        CheckConstraint(one_of("method", ("gateway", "cash", "upi", "card")), name="method_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        ForeignKeyConstraint(["tenant_id", "payment_id"], ["payments.tenant_id", "payments.id"]),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
        Index(None, "tenant_id", "payment_id"),
        # Money given back on a day (the reports).
        Index(
            "ix_payments_refunds_report_processed",
            "tenant_id",
            "processed_at",
            postgresql_where=text("status = 'processed'"),
        ),
        Index(
            "uq_payments_refunds_gateway_refund",
            "tenant_id",
            "gateway_refund_id",
            unique=True,
            postgresql_where=text("gateway_refund_id IS NOT NULL"),
        ),
    )


class LedgerEntry(TenantScoped, Base):
    """Seed ``ledger_entries``: append-only (PostgreSQL refuses UPDATE and DELETE)."""

    __tablename__ = "ledger_entries"

    patient_id: Mapped[uuid.UUID]
    invoice_id: Mapped[uuid.UUID | None]
    payment_id: Mapped[uuid.UUID | None]
    refund_id: Mapped[uuid.UUID | None]
    type: Mapped[str] = mapped_column(Text)
    kind: Mapped[LedgerKind] = mapped_column(EnumText(LedgerKind))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(Text, server_default=text(f"'{CURRENCY}'"))
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("type", ("debit", "credit")), name="type_known"),
        CheckConstraint(one_of("kind", LedgerKind), name="kind_known"),
        CheckConstraint(
            "(kind IN ('invoice', 'refund')) = (type = 'debit')", name="kind_matches_type"
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency = 'INR'", name="currency_inr"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
        ForeignKeyConstraint(["tenant_id", "payment_id"], ["payments.tenant_id", "payments.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "refund_id"], ["payments_refunds.tenant_id", "payments_refunds.id"]
        ),
        Index(None, "tenant_id", "patient_id", "created_at"),
        Index(None, "tenant_id", "invoice_id"),
        # A day's credit notes lower its net revenue (the reports).
        Index(
            "ix_ledger_entries_report_credit_notes",
            "tenant_id",
            "created_at",
            postgresql_where=text("kind = 'credit-note'"),
        ),
    )


class GatewayEvent(TenantScoped, Base):
    """A webhook received from a payment gateway, kept once per event id.

    ``outcome``: applied, duplicate of an earlier state, kept for review (an unknown
    payment), or ignored (a kind billing does not act on).
    """

    __tablename__ = "gateway_events"

    provider: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    payment_id: Mapped[uuid.UUID | None]
    outcome: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[uuid.UUID | None]

    __table_args__ = (
        CheckConstraint(
            one_of("outcome", ("applied", "no-change", "review", "ignored")), name="outcome_known"
        ),
        Index("uq_gateway_events_event", "tenant_id", "provider", "event_id", unique=True),
        Index(
            "ix_gateway_events_review",
            "tenant_id",
            "received_at",
            postgresql_where=text("outcome = 'review' AND reviewed_at IS NULL"),
        ),
    )


def settings_row_id(tenant_id: uuid.UUID) -> uuid.UUID:
    """A stable id binding the clinic's billing secrets' ciphertext to its one row."""
    return uuid.uuid5(tenant_id, "billing_settings")


def _bound_to_clinic(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    return column, settings_row_id(row["tenant_id"])


class BillingSettings(Base):
    """One clinic's billing settings: its UPI id for QR payments, its Razorpay account
    (secrets encrypted), and whether online bookings must be paid for ahead.
    """

    __tablename__ = "billing_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    upi_vpa: Mapped[str | None] = mapped_column(Text)
    upi_payee_name: Mapped[str | None] = mapped_column(Text)
    razorpay_key_id: Mapped[str | None] = mapped_column(Text)
    # {"keySecret": ..., "webhookSecret": ...}
    razorpay_secrets: Mapped[bytes | None] = encrypted_column(bound_to=_bound_to_clinic)
    prepay_online: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # How long a prepayment link (and the slot held for it) lasts.
    prepay_minutes: Mapped[int] = mapped_column(Integer, server_default=text("15"))
    consult_sac: Mapped[str] = mapped_column(Text, server_default=text("'999312'"))
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("prepay_minutes BETWEEN 5 AND 1440", name="prepay_minutes_range"),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    )


class ConsultationFee(Base):
    """A doctor's fee for one visit type (``follow-up`` often costs less); a doctor with
    no row for a visit type charges their profile's ``consultation_fee``.
    """

    __tablename__ = "consultation_fees"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    doctor_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    visit_type: Mapped[str] = mapped_column(Text, primary_key=True)
    amount: Mapped[Decimal]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
    )


INVOICE = Machine(
    Invoice,
    InvoiceStatus,
    {
        InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED},
        # An issued invoice may be settled at once, in parts, or cancelled by a credit
        # note before anything was paid (refunded: nothing is owed).
        InvoiceStatus.ISSUED: {InvoiceStatus.PARTIAL, InvoiceStatus.PAID, InvoiceStatus.REFUNDED},
        InvoiceStatus.PARTIAL: {InvoiceStatus.PAID, InvoiceStatus.REFUNDED},
        InvoiceStatus.PAID: {InvoiceStatus.REFUNDED},
        InvoiceStatus.REFUNDED: set(),
    },
    noun="an invoice",
    timeline={
        InvoiceStatus.ISSUED: "issued_at",
        InvoiceStatus.PAID: "paid_at",
        InvoiceStatus.REFUNDED: "refunded_at",
    },
    touch="updated_at",
)

PAYMENT = Machine(
    Payment,
    PaymentStatus,
    {
        PaymentStatus.PENDING: {PaymentStatus.CAPTURED, PaymentStatus.FAILED},
        PaymentStatus.CAPTURED: {PaymentStatus.PARTIAL, PaymentStatus.REFUNDED},
        PaymentStatus.PARTIAL: {PaymentStatus.REFUNDED},
        PaymentStatus.FAILED: set(),
        PaymentStatus.REFUNDED: set(),
    },
    noun="a payment",
    timeline={
        PaymentStatus.CAPTURED: "captured_at",
        PaymentStatus.FAILED: "failed_at",
        PaymentStatus.REFUNDED: "refunded_at",
    },
    touch="updated_at",
)
