"""Money in and out at the desk: cash, card (with the terminal's reference), UPI (the QR
for the exact amount, confirmed with the transfer's UTR), a payment split across methods,
and refunds. Each one moves the invoice (paid, partly paid, refunded), its ledger and its
audit trail in the one transaction; the invoice row is locked first, so two people
collecting the same balance at once cannot both take it (the second gets 409).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.billing import booked, ledger, money, reminders
from opdesk.billing.models import (
    CURRENCY,
    INVOICE,
    PAYMENT,
    Invoice,
    InvoiceStatus,
    LedgerKind,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
)
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput

DESK_METHODS = ("cash", "card", "upi")
# A UPI transfer's reference (UTR / RRN) is 12 digits.
UTR = re.compile(r"^[0-9]{12}$")
# A card terminal's approval code or reference: letters and digits, 4 to 30 of them.
CARD_REFERENCE = re.compile(r"^[A-Za-z0-9-]{4,30}$")
OPEN = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIAL)


@dataclass(frozen=True)
class Part:
    """One method's share of a payment (a payment in one method is one part)."""

    method: str
    amount: Decimal
    reference: str | None = None


def _check_part(part: Part, at: str = "") -> Part:
    """``at``: where the part sits in the request (``split[1]``), or nothing for a plain
    payment, whose fields are named ``method``, ``amount`` and ``reference``.
    """

    def field(name: str) -> str:
        return f"{at}.{name}" if at else name

    if part.method not in DESK_METHODS:
        raise InvalidInput(
            [FieldError(field("method"), f"must be one of {', '.join(DESK_METHODS)}")]
        )
    amount = money.amount_of(part.amount, field("amount"), positive=True)
    reference = (part.reference or "").strip() or None
    if part.method == "upi" and (reference is None or not UTR.match(reference)):
        raise InvalidInput(
            [
                FieldError(
                    field("reference"),
                    "enter the UPI transfer's UTR: the 12 digits shown in the payer's app",
                )
            ]
        )
    if part.method == "card" and (reference is None or not CARD_REFERENCE.match(reference)):
        raise InvalidInput(
            [
                FieldError(
                    field("reference"),
                    "enter the card terminal's approval code (4 to 30 letters or digits)",
                )
            ]
        )
    if reference is not None and len(reference) > 60:
        raise InvalidInput([FieldError(field("reference"), "is longer than 60 characters")])
    return Part(part.method, amount, reference)


def _open_invoice(session: Session, invoice: Invoice) -> None:
    records.lock(session, invoice)
    if invoice.status == InvoiceStatus.DRAFT:
        raise Conflict("this invoice is a draft; issue it before taking payment")
    if invoice.status not in OPEN or invoice.balance_due == 0:
        raise Conflict(f"invoice {invoice.number} is {invoice.status}; nothing is due on it")


def collect(
    session: Session,
    ctx: RequestContext,
    invoice: Invoice,
    *,
    parts: list[Part],
) -> Payment:
    """Record money the desk received (captured at once) against an issued invoice.

    One part is a plain payment; two or more are a split payment (``split[]``), recorded
    as one payment of their sum under the first part's method.
    """
    if not parts:
        raise InvalidInput([FieldError("amount", "is required")])
    split = len(parts) > 1
    if split:
        checked = [_check_part(p, f"split[{i}]") for i, p in enumerate(parts)]
    else:
        checked = [_check_part(parts[0])]
    _open_invoice(session, invoice)
    amount = sum((p.amount for p in checked), money.ZERO)
    if amount > invoice.balance_due:
        field = "split" if split else "amount"
        raise InvalidInput(
            [
                FieldError(
                    field, f"is more than the balance due on this invoice (₹{invoice.balance_due})"
                )
            ]
        )
    now = ctx.now()
    payment = Payment(
        tenant_id=invoice.tenant_id,
        id=new_id(),
        invoice_id=invoice.id,
        patient_id=invoice.patient_id,
        method=checked[0].method,
        amount=amount,
        currency=CURRENCY,
        status=PaymentStatus.CAPTURED,
        reference=checked[0].reference,
        split=[_part_json(p) for p in checked] if split else None,
        amount_refunded=money.ZERO,
        captured_at=now,
        created_by=ctx.actor_id,
        created_at=now,
        updated_at=now,
        ledger_impact=[],
    )
    session.add(payment)
    session.flush()
    apply_captured(session, ctx, invoice, payment)
    return payment


def _part_json(part: Part) -> dict[str, Any]:
    return {"method": part.method, "amount": str(part.amount), "reference": part.reference}


def apply_captured(
    session: Session, ctx: RequestContext, invoice: Invoice, payment: Payment
) -> None:
    """A captured payment settles (part of) its invoice and credits the ledger."""
    entry = ledger.append(
        session,
        ctx,
        patient_id=invoice.patient_id,
        kind=LedgerKind.PAYMENT,
        amount=payment.amount,
        description=f"Payment by {payment.method} for {invoice.number}",
        invoice_id=invoice.id,
        payment_id=payment.id,
    )
    payment.ledger_impact = [*payment.ledger_impact, entry]
    audit.record(
        ctx,
        entity="payments",
        entity_id=payment.id,
        action="create",
        to_state=payment.status,
        diff=audit.diff_of(
            {},
            {
                "invoiceId": invoice.id,
                "method": payment.method,
                "amount": payment.amount,
                "reference": payment.reference,
                "split": payment.split,
                "ledgerEntryId": entry,
            },
        ),
    )
    before = {"amountPaid": invoice.amount_paid, "balanceDue": invoice.balance_due}
    invoice.amount_paid += payment.amount
    invoice.balance_due -= payment.amount
    invoice.payments_applied = [*invoice.payments_applied, payment.id]
    after = {"amountPaid": invoice.amount_paid, "balanceDue": invoice.balance_due}
    target = InvoiceStatus.PAID if invoice.balance_due == 0 else InvoiceStatus.PARTIAL
    if target == InvoiceStatus.PAID:
        reminders.settled(session, ctx, invoice)
    move_or_update(session, ctx, invoice, target, INVOICE, audit.diff_of(before, after))
    booked.paid(session, ctx, invoice)


def move_or_update(
    session: Session,
    ctx: RequestContext,
    row: Invoice | Payment,
    target: Any,
    machine: Any,
    diff: dict[str, Any],
) -> None:
    """Money moved on the row: a move along its machine when its status changes with it,
    else an update; either way one audit event carries ``diff``.
    """
    if target != row.status:
        states.transition(session, ctx, row, target, machine, diff=diff)
        return
    row.updated_at = ctx.now()
    session.flush()
    audit.record(ctx, entity=machine.entity, entity_id=row.id, action="update", diff=diff)


# --------------------------------------------------------------------------- refunds


def refundable(payment: Payment) -> Decimal:
    return payment.amount - payment.amount_refunded


def refund(
    session: Session,
    ctx: RequestContext,
    payment: Payment,
    *,
    amount: Any,
    reason: str,
    method: str | None = None,
) -> PaymentRefund:
    """Give back (part of) a payment the desk took, in cash or on the same card/UPI.

    Never more than is left of the payment (409); the refunded part of the invoice is
    cancelled by a credit note, so the patient does not owe it again.
    """
    value = money.amount_of(amount, "amount", positive=True)
    if not reason.strip():
        raise InvalidInput([FieldError("reason", "say why the money is given back")])
    how = method or ("cash" if payment.method == "cash" else payment.method)
    if how not in ("cash", "card", "upi"):
        raise InvalidInput([FieldError("method", "must be cash, card or upi")])
    records.lock(session, payment)
    if payment.method == "link":
        raise Conflict("a payment-link payment is refunded through the gateway")
    invoice = records.by_id(session, Invoice, payment.invoice_id, lock=True)
    if payment.status not in (PaymentStatus.CAPTURED, PaymentStatus.PARTIAL):
        raise Conflict(f"this payment is {payment.status}; there is nothing to refund")
    if value > refundable(payment):
        raise Conflict(
            f"only ₹{refundable(payment)} of this payment can still be refunded, not ₹{value}"
        )
    row = PaymentRefund(
        tenant_id=payment.tenant_id,
        id=new_id(),
        payment_id=payment.id,
        invoice_id=invoice.id,
        amount=value,
        status=RefundStatus.PROCESSED,
        method=how,
        reason=reason.strip(),
        created_by=ctx.actor_id,
        created_at=ctx.now(),
        processed_at=ctx.now(),
    )
    session.add(row)
    session.flush()
    settle_refund(session, ctx, payment, invoice, row)
    return row


def settle_refund(
    session: Session,
    ctx: RequestContext,
    payment: Payment,
    invoice: Invoice,
    row: PaymentRefund,
) -> None:
    """A processed refund moves the payment, the invoice and the ledger (both rows)."""
    given_back = ledger.append(
        session,
        ctx,
        patient_id=invoice.patient_id,
        kind=LedgerKind.REFUND,
        amount=row.amount,
        description=f"Refund ({row.method}) on {invoice.number}: {row.reason}",
        invoice_id=invoice.id,
        payment_id=payment.id,
        refund_id=row.id,
    )
    credit_note = ledger.append(
        session,
        ctx,
        patient_id=invoice.patient_id,
        kind=LedgerKind.CREDIT_NOTE,
        amount=row.amount,
        description=f"Credit note on {invoice.number}: {row.reason}",
        invoice_id=invoice.id,
        refund_id=row.id,
    )
    audit.record(
        ctx,
        entity="payments_refunds",
        entity_id=row.id,
        action="create",
        to_state=row.status,
        diff=audit.diff_of(
            {},
            {
                "paymentId": payment.id,
                "amount": row.amount,
                "method": row.method,
                "reason": row.reason,
                "ledgerEntryIds": [given_back, credit_note],
            },
        ),
    )
    payment_before = {"amountRefunded": payment.amount_refunded}
    payment.amount_refunded += row.amount
    payment.ledger_impact = [*payment.ledger_impact, given_back]
    if row.gateway_refund_id:
        payment.gateway_refund_id = row.gateway_refund_id
    all_back = payment.amount_refunded == payment.amount
    moved_to = PaymentStatus.REFUNDED if all_back else PaymentStatus.PARTIAL
    diff = audit.diff_of(payment_before, {"amountRefunded": payment.amount_refunded})
    move_or_update(session, ctx, payment, moved_to, PAYMENT, diff)
    before = {"amountRefunded": invoice.amount_refunded, "amountCredited": invoice.amount_credited}
    invoice.amount_refunded += row.amount
    invoice.amount_credited += row.amount
    after = {"amountRefunded": invoice.amount_refunded, "amountCredited": invoice.amount_credited}
    fully = invoice.amount_credited == invoice.grand_total
    target = InvoiceStatus.REFUNDED if fully else invoice.status
    move_or_update(session, ctx, invoice, target, INVOICE, audit.diff_of(before, after))
    booked.refunded(session, ctx, invoice)


def refunds_of(session: Session, payment_id: uuid.UUID) -> list[PaymentRefund]:
    return list(
        session.scalars(
            select(PaymentRefund)
            .where(PaymentRefund.payment_id == payment_id)
            .order_by(PaymentRefund.created_at)
        )
    )
