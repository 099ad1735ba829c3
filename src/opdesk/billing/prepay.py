"""Paying ahead for an online booking (the clinic's ``prepayOnline`` setting).

A patient who books on the clinic's page gets an appointment that is ``requested``, not
``confirmed``: its slot is kept for them, its charge is issued at once and a Razorpay link
is made for it. Then one of three things happens:

- the link is paid: the webhook captures the payment, the invoice is paid and the
  appointment confirmed (``booked.paid``); its confirmation and reminders are scheduled
  only now;
- the clinic's minutes run out first (the ``prepay-lapse`` rule): the appointment is
  cancelled, its slot offered on, its pending payment failed, its invoice cancelled by a
  credit note and the link cancelled at Razorpay, so nobody pays for a slot they lost;
- the patient cancels before paying: the same as a lapse, at once.

A prepaid appointment cancelled later is refunded through Razorpay (the
``prepaid-cancelled`` rule, run by the worker so a refund survives a crash) and becomes
``refunded`` when the refund is processed.

Bookings that do not pay ahead: the desk's and the API's, a waitlist offer accepted (the
clinic chose that patient), a reschedule, and any visit the clinic charges nothing for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records, states
from opdesk.billing import gateway, invoices, money, payments
from opdesk.billing import settings as billing_settings
from opdesk.billing.models import (
    PAYMENT,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    RefundStatus,
)
from opdesk.context import RequestContext
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile
from opdesk.security.crypto import FieldCipher

NOT_PAID = "the appointment was cancelled before it was paid"
CANCELLED = "the appointment was cancelled"


def window(
    session: Session, tenant_id: uuid.UUID, doctor_id: uuid.UUID, visit_type: str
) -> timedelta | None:
    """How long a new online booking of this visit waits for its payment; None when it
    needs none (the clinic takes no prepayment, or charges nothing for the visit).
    """
    waits = billing_settings.prepay_window(session, tenant_id)
    if waits is None:
        return None
    doctor = records.by_id(session, DoctorProfile, doctor_id)
    return waits if invoices.consultation_fee(session, doctor, visit_type) > 0 else None


def charge_of(session: Session, appointment_id: uuid.UUID) -> Invoice | None:
    """The booking's issued charge (the invoice made for the appointment), if any."""
    return session.scalar(
        select(Invoice)
        .where(Invoice.appointment_id == appointment_id, Invoice.status != InvoiceStatus.DRAFT)
        .order_by(Invoice.created_at.desc())
        .limit(1)
    )


def link_payments(session: Session, invoice_id: uuid.UUID) -> list[Payment]:
    """The invoice's payment-link payments, newest first."""
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.invoice_id == invoice_id, Payment.method == "link")
            .order_by(Payment.created_at.desc())
        )
    )


def open_payment(
    session: Session, ctx: RequestContext, cipher: FieldCipher, appointment_id: uuid.UUID
) -> gateway.LinkRequest:
    """Issue the booking's charge (once) and open a link for what is due on it (phase one;
    the caller asks Razorpay after the commit). A second call, for a link that failed,
    opens a new one on the same invoice.
    """
    invoice = charge_of(session, appointment_id)
    if invoice is None:
        draft = invoices.draft_for_appointment(session, appointment_id)
        if draft is None:
            raise LookupError(f"appointment {appointment_id} has no charge to pay")
        invoice = invoices.issue(session, ctx, draft)
    waits = billing_settings.prepay_window(session, invoice.tenant_id) or timedelta(minutes=15)
    return gateway.open_link(session, ctx, cipher, invoice, valid_for=waits)


@dataclass(frozen=True)
class Prepayment:
    """Where an online booking's payment stands, as the patient's pay page shows it."""

    invoice: Invoice
    payment: Payment | None  # the newest link payment

    @property
    def state(self) -> str:
        """``paid``, ``ready`` (the link can be opened), ``making`` (asked of Razorpay),
        ``failed`` (the link could not be made, or was given up), ``closed`` (cancelled).
        """
        if self.invoice.status == InvoiceStatus.PAID:
            return "paid"
        if self.invoice.status == InvoiceStatus.REFUNDED:
            return "closed"
        if self.payment is None or self.payment.status == PaymentStatus.FAILED:
            return "failed"
        return "ready" if self.payment.link_url else "making"


def of_appointment(session: Session, appointment: Appointment) -> Prepayment | None:
    """The booking's prepayment; None when it was never asked to pay ahead (no link was
    opened for its charge and it does not wait for one).
    """
    invoice = charge_of(session, appointment.id)
    if invoice is None:
        return None
    found = link_payments(session, invoice.id)
    if not found and appointment.status != AppointmentStatus.REQUESTED:
        return None
    return Prepayment(invoice, found[0] if found else None)


def give_up(session: Session, ctx: RequestContext, charge: Invoice) -> None:
    """The booking was cancelled before it was paid: its pending link payments fail and
    its unpaid charge is cancelled by a credit note (nothing to do once anything was paid).
    """
    if charge.status != InvoiceStatus.ISSUED or charge.amount_paid > 0:
        return
    records.lock(session, charge)
    for payment in link_payments(session, charge.id):
        if payment.status == PaymentStatus.PENDING:
            records.lock(session, payment)
            payment.failure_reason = NOT_PAID
            states.transition(session, ctx, payment, PaymentStatus.FAILED, PAYMENT)
    invoices.cancel_unpaid(session, ctx, charge, NOT_PAID)


def links_given_up(session: Session, appointment_id: uuid.UUID) -> list[str]:
    """The Razorpay links of a booking cancelled before it was paid (to cancel there)."""
    invoice = charge_of(session, appointment_id)
    if invoice is None:
        return []
    return [
        p.gateway_link_id
        for p in link_payments(session, invoice.id)
        if p.status == PaymentStatus.FAILED
        and p.failure_reason == NOT_PAID
        and p.gateway_link_id is not None
    ]


def paid_by_link(session: Session, invoice: Invoice) -> bool:
    """Whether money came in on the invoice through a payment link (refundable there)."""
    return any(
        p.status in (PaymentStatus.CAPTURED, PaymentStatus.PARTIAL)
        for p in link_payments(session, invoice.id)
    )


def refunds_due(
    session: Session, ctx: RequestContext, appointment_id: uuid.UUID
) -> list[gateway.RefundRequest]:
    """A prepaid booking was cancelled: what its link payments brought in goes back.

    Safe to run again (a worker that died half-way): refunds already asked for and not yet
    answered are asked again with the same receipt (Razorpay returns the first refund), and
    only what is left of a payment is refunded anew.
    """
    invoice = charge_of(session, appointment_id)
    if invoice is None:
        return []
    requests: list[gateway.RefundRequest] = []
    for payment in link_payments(session, invoice.id):
        if payment.gateway_payment_id is None or payment.status not in (
            PaymentStatus.CAPTURED,
            PaymentStatus.PARTIAL,
        ):
            continue
        pending = [
            r for r in payments.refunds_of(session, payment.id) if r.status == RefundStatus.PENDING
        ]
        requests += [
            gateway.RefundRequest(r.id, r.tenant_id, payment.gateway_payment_id, r.amount)
            for r in pending
            if r.gateway_refund_id is None
        ]
        left = payments.refundable(payment) - sum((r.amount for r in pending), money.ZERO)
        if left > 0:
            requests.append(
                gateway.open_refund(session, ctx, payment, amount=left, reason=CANCELLED)
            )
    return requests
