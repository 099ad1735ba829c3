"""The patient ledger: every rupee that an invoice charged, a payment brought in, a refund
gave back or a credit note cancelled, one append-only row each.

A patient's balance is debits minus credits: what they owe (negative: what the clinic
owes them). Issue debits the grand total, a payment credits what was paid, a refund
debits the money given back and credits the part of the invoice it cancels (the credit
note), so after a full refund nothing is owed either way.

:func:`check` reconciles invoices, payments, refunds and the ledger of one clinic
(``opdesk ledger check``); each difference is a line a person can act on.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import ColumnElement, case, func, insert, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from opdesk.billing.models import (
    CURRENCY,
    Invoice,
    InvoiceStatus,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
)
from opdesk.context import RequestContext
from opdesk.db import new_id

DEBITS = (LedgerKind.INVOICE, LedgerKind.REFUND)
ZERO = Decimal("0.00")


def append(
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    kind: LedgerKind,
    amount: Decimal,
    description: str,
    invoice_id: uuid.UUID | None = None,
    payment_id: uuid.UUID | None = None,
    refund_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Add one row; the caller's audit event (of the invoice, payment or refund) names it."""
    entry_id = new_id()
    session.execute(
        insert(LedgerEntry).values(
            tenant_id=ctx.tenant_id,
            id=entry_id,
            patient_id=patient_id,
            invoice_id=invoice_id,
            payment_id=payment_id,
            refund_id=refund_id,
            type="debit" if kind in DEBITS else "credit",
            kind=kind,
            amount=amount,
            currency=CURRENCY,
            description=description,
            created_at=ctx.now(),
        )
    )
    return entry_id


def signed_amount() -> ColumnElement[Decimal]:
    """Debits count up, credits down."""
    return case((LedgerEntry.type == "debit", LedgerEntry.amount), else_=-LedgerEntry.amount)


def balance(session: Session, patient_id: uuid.UUID) -> Decimal:
    """What the patient owes the clinic (negative: what the clinic owes them)."""
    total = session.scalar(
        select(func.coalesce(func.sum(signed_amount()), 0)).where(
            LedgerEntry.patient_id == patient_id
        )
    )
    return Decimal(total or 0).quantize(Decimal("0.01"))


def entries(session: Session, patient_id: uuid.UUID) -> list[LedgerEntry]:
    """The patient's ledger, oldest first."""
    return list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.patient_id == patient_id)
            .order_by(LedgerEntry.created_at, LedgerEntry.id)
        )
    )


# --------------------------------------------------------------------------- reconciling


def _sums_by(
    session: Session, column: InstrumentedAttribute[uuid.UUID | None], kind: LedgerKind
) -> dict[uuid.UUID, Decimal]:
    rows = session.execute(
        select(column, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.kind == kind, column.isnot(None))
        .group_by(column)
    )
    return {key: Decimal(total) for key, total in rows if key is not None}


def check(session: Session) -> list[str]:
    """Every difference between the clinic's invoices, payments, refunds and ledger.

    Runs in the clinic's transaction (row-level security scopes it to the clinic).
    """
    problems: list[str] = []
    problems += _check_invoices(session)
    problems += _check_payments(session)
    problems += _check_refunds(session)
    problems += _check_balances(session)
    return problems


def _check_invoices(session: Session) -> list[str]:
    problems = []
    debited = _sums_by(session, LedgerEntry.invoice_id, LedgerKind.INVOICE)
    credited = _sums_by(session, LedgerEntry.invoice_id, LedgerKind.CREDIT_NOTE)
    paid = _captured_by_invoice(session)
    refunded = _refunded_by_invoice(session)
    for inv in session.scalars(select(Invoice).where(Invoice.status != InvoiceStatus.DRAFT)):
        name = f"invoice {inv.number}"
        if debited.get(inv.id, ZERO) != inv.grand_total:
            problems.append(
                f"{name}: ledger charged {debited.get(inv.id, ZERO)}, invoice total "
                f"{inv.grand_total}"
            )
        if paid.get(inv.id, ZERO) != inv.amount_paid:
            problems.append(
                f"{name}: payments captured {paid.get(inv.id, ZERO)}, invoice says paid "
                f"{inv.amount_paid}"
            )
        if refunded.get(inv.id, ZERO) != inv.amount_refunded:
            problems.append(
                f"{name}: refunds processed {refunded.get(inv.id, ZERO)}, invoice says "
                f"refunded {inv.amount_refunded}"
            )
        if credited.get(inv.id, ZERO) != inv.amount_credited:
            problems.append(
                f"{name}: credit notes {credited.get(inv.id, ZERO)}, invoice says credited "
                f"{inv.amount_credited}"
            )
    drafts_in_ledger = session.scalars(
        select(LedgerEntry.id)
        .join(
            Invoice,
            (Invoice.tenant_id == LedgerEntry.tenant_id) & (Invoice.id == LedgerEntry.invoice_id),
        )
        .where(Invoice.status == InvoiceStatus.DRAFT)
    ).all()
    problems += [f"ledger entry {e}: points at a draft invoice" for e in drafts_in_ledger]
    return problems


MONEY_IN = (PaymentStatus.CAPTURED, PaymentStatus.PARTIAL, PaymentStatus.REFUNDED)


def _captured_by_invoice(session: Session) -> dict[uuid.UUID, Decimal]:
    rows = session.execute(
        select(Payment.invoice_id, func.sum(Payment.amount))
        .where(Payment.status.in_(MONEY_IN))
        .group_by(Payment.invoice_id)
    )
    return {key: Decimal(total) for key, total in rows}


def _refunded_by_invoice(session: Session) -> dict[uuid.UUID, Decimal]:
    rows = session.execute(
        select(PaymentRefund.invoice_id, func.sum(PaymentRefund.amount))
        .where(PaymentRefund.status == RefundStatus.PROCESSED)
        .group_by(PaymentRefund.invoice_id)
    )
    return {key: Decimal(total) for key, total in rows}


def _check_payments(session: Session) -> list[str]:
    problems = []
    credited = _sums_by(session, LedgerEntry.payment_id, LedgerKind.PAYMENT)
    entries_of: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for entry_id, payment_id in session.execute(
        select(LedgerEntry.id, LedgerEntry.payment_id).where(LedgerEntry.payment_id.isnot(None))
    ):
        if payment_id is not None:
            entries_of[payment_id].add(entry_id)
    for pay in session.scalars(select(Payment)):
        name = f"payment {pay.id}"
        expected = pay.amount if pay.status in MONEY_IN else ZERO
        if credited.get(pay.id, ZERO) != expected:
            problems.append(
                f"{name} ({pay.status}): ledger credited {credited.get(pay.id, ZERO)}, "
                f"expected {expected}"
            )
        if set(pay.ledger_impact) != entries_of.get(pay.id, set()):
            problems.append(f"{name}: ledgerImpact does not list its ledger entries")
    return problems


def _check_refunds(session: Session) -> list[str]:
    problems = []
    debited = _sums_by(session, LedgerEntry.refund_id, LedgerKind.REFUND)
    credit_notes = _sums_by(session, LedgerEntry.refund_id, LedgerKind.CREDIT_NOTE)
    by_payment: dict[uuid.UUID, Decimal] = defaultdict(lambda: ZERO)
    for refund in session.scalars(select(PaymentRefund)):
        expected = refund.amount if refund.status == RefundStatus.PROCESSED else ZERO
        if refund.status == RefundStatus.PROCESSED:
            by_payment[refund.payment_id] += refund.amount
        for what, sums in (("refund", debited), ("credit note", credit_notes)):
            if sums.get(refund.id, ZERO) != expected:
                problems.append(
                    f"refund {refund.id} ({refund.status}): ledger {what} "
                    f"{sums.get(refund.id, ZERO)}, expected {expected}"
                )
    # A payment that says it was refunded, or one with a processed refund it does not count.
    refunded = (Payment.amount_refunded > 0) | Payment.id.in_(list(by_payment))
    for pay in session.scalars(select(Payment).where(refunded)):
        if by_payment.get(pay.id, ZERO) != pay.amount_refunded:
            problems.append(
                f"payment {pay.id}: refunds processed {by_payment.get(pay.id, ZERO)}, "
                f"payment says refunded {pay.amount_refunded}"
            )
    return problems


def _check_balances(session: Session) -> list[str]:
    """Each patient's ledger balance is what their invoices still ask for."""
    ledger = dict(
        session.execute(
            select(LedgerEntry.patient_id, func.sum(signed_amount())).group_by(
                LedgerEntry.patient_id
            )
        ).all()
    )
    owed = dict(
        session.execute(
            select(Invoice.patient_id, func.sum(Invoice.balance_due))
            .where(Invoice.status != InvoiceStatus.DRAFT)
            .group_by(Invoice.patient_id)
        ).all()
    )
    problems = []
    for patient_id in sorted(set(ledger) | set(owed), key=str):
        have, want = Decimal(ledger.get(patient_id) or 0), Decimal(owed.get(patient_id) or 0)
        if have != want:
            problems.append(
                f"patient {patient_id}: ledger balance {have:.2f}, invoices due {want:.2f}"
            )
    return problems
