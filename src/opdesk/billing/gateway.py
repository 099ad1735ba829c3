"""Payments through a gateway (Razorpay): payment links, their webhooks, and refunds of
what was paid through them.

No call to the gateway is made with a database transaction open: a link or a refund is
first written as ``pending`` (and committed), then asked of the gateway, then the answer is
recorded in a transaction of its own. A payment link carries our payment's id as its
``reference_id`` (Razorpay keeps it unique), so the webhook finds the payment even when it
arrives before the link's id was recorded.

Webhooks: the signature is checked over the raw bytes before anything is read or stored;
each event is kept once (its ``X-Razorpay-Event-Id`` is unique per clinic), so a replay,
however often and in whatever order, changes nothing the first delivery did not. An event
about a payment we do not know is kept for review, never dropped.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.billing import money, payments
from opdesk.billing import settings as billing_settings
from opdesk.billing.models import (
    CURRENCY,
    PAYMENT,
    GatewayEvent,
    Invoice,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
)
from opdesk.billing.razorpay_client import (
    GatewayError,
    PaymentLink,
    Razorpay,
    RazorpayConfig,
    parse_event,
    verify_signature,
)
from opdesk.billing.razorpay_client import GatewayEvent as Event
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, DomainError, FieldError, InvalidInput
from opdesk.patients.models import Patient
from opdesk.security.crypto import FieldCipher

PROVIDER = "razorpay"
# Razorpay refuses a link that lapses sooner than this.
SHORTEST_LINK = timedelta(minutes=15)
LINK_DAYS = 7


class GatewayUnavailable(DomainError):
    """The gateway did not answer or refused (503 to the caller; nothing was charged)."""

    status = 503
    title = "Payment gateway unavailable"


class NotConfigured(Conflict):
    """The clinic has no Razorpay account in its billing settings."""


@dataclass(frozen=True)
class Gateways:
    """Builds a clinic's Razorpay client from its settings (built once at start-up)."""

    base_url: str
    timeout_seconds: float

    def client(self, account: billing_settings.Razorpay) -> Razorpay:
        return Razorpay(
            RazorpayConfig(
                key_id=account.key_id,
                key_secret=account.key_secret,
                webhook_secret=account.webhook_secret,
                base_url=self.base_url,
                timeout_seconds=self.timeout_seconds,
            )
        )


def account_of(
    session: Session, cipher: FieldCipher, tenant_id: uuid.UUID
) -> billing_settings.Razorpay:
    account = billing_settings.of(session, cipher, tenant_id).razorpay
    if account is None:
        raise NotConfigured(
            "this clinic has no Razorpay account yet; an admin adds it under Billing settings"
        )
    return account


def reference(payment_id: uuid.UUID) -> str:
    """The link's ``reference_id``: our payment's id, 32 hex digits (Razorpay allows 40)."""
    return payment_id.hex


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class LinkRequest:
    """What the gateway needs, read inside the first transaction."""

    payment_id: uuid.UUID
    tenant_id: uuid.UUID
    amount: Decimal
    description: str
    customer_name: str
    expire_by: datetime


def open_link(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    invoice: Invoice,
    *,
    amount: Any = None,
    valid_for: timedelta = timedelta(days=LINK_DAYS),
) -> LinkRequest:
    """Phase one: a pending ``link`` payment for the balance (or ``amount``) of the invoice."""
    account_of(session, cipher, invoice.tenant_id)  # 409 before anything is written
    records.lock(session, invoice)
    if invoice.status not in payments.OPEN or invoice.balance_due == 0:
        raise Conflict(f"invoice {invoice.number or '(draft)'} is {invoice.status}; nothing is due")
    value = (
        invoice.balance_due if amount is None else money.amount_of(amount, "amount", positive=True)
    )
    if value > invoice.balance_due:
        raise InvalidInput(
            [FieldError("amount", f"is more than the balance due (₹{invoice.balance_due})")]
        )
    now = ctx.now()
    expire_by = now + max(valid_for, SHORTEST_LINK)
    payment = Payment(
        tenant_id=invoice.tenant_id,
        id=new_id(),
        invoice_id=invoice.id,
        patient_id=invoice.patient_id,
        method="link",
        amount=value,
        currency=CURRENCY,
        status=PaymentStatus.PENDING,
        gateway_provider=PROVIDER,
        link_expires_at=expire_by,
        amount_refunded=money.ZERO,
        ledger_impact=[],
        created_by=ctx.actor_id,
        created_at=now,
        updated_at=now,
    )
    session.add(payment)
    session.flush()
    audit.record(
        ctx,
        entity="payments",
        entity_id=payment.id,
        action="create",
        to_state=PaymentStatus.PENDING,
        diff=audit.diff_of({}, {"invoiceId": invoice.id, "method": "link", "amount": value}),
    )
    patient = records.by_id(session, Patient, invoice.patient_id)
    return LinkRequest(
        payment_id=payment.id,
        tenant_id=invoice.tenant_id,
        amount=value,
        description=f"Invoice {invoice.number}",
        customer_name=f"{patient.name_first} {patient.name_last}".strip(),
        expire_by=expire_by,
    )


def live_link(session: Session, ctx: RequestContext, invoice: Invoice) -> Payment | None:
    """The invoice's newest payment link still open (pending and not past its expiry)."""
    return session.scalar(
        select(Payment)
        .where(
            Payment.invoice_id == invoice.id,
            Payment.method == "link",
            Payment.status == PaymentStatus.PENDING,
            Payment.link_expires_at > ctx.now(),
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
    )


def ask_for_link(client: Razorpay, request: LinkRequest) -> PaymentLink:
    """Phase two, with no transaction open: the gateway makes the link."""
    return client.create_payment_link(
        amount=request.amount,
        reference_id=reference(request.payment_id),
        description=request.description,
        customer_name=request.customer_name,
        customer_phone=None,
        expire_by=request.expire_by,
        notes={"invoice": request.description},
    )


def record_link(
    session: Session, ctx: RequestContext, payment_id: uuid.UUID, link: PaymentLink
) -> Payment:
    """Phase three: the link's id and address on the payment (unless a webhook settled it)."""
    payment = records.by_id(session, Payment, payment_id, lock=True)
    before = {"linkId": payment.gateway_link_id, "linkUrl": payment.link_url}
    payment.gateway_link_id = link.id
    payment.link_url = link.short_url
    payment.updated_at = ctx.now()
    if payment.status != PaymentStatus.PENDING:
        return payment  # paid before we wrote the link down: the columns are frozen now
    session.flush()
    audit.record(
        ctx,
        entity="payments",
        entity_id=payment.id,
        action="update",
        diff=audit.diff_of(before, {"linkId": link.id, "linkUrl": link.short_url}),
    )
    return payment


def link_failed(
    session: Session, ctx: RequestContext, payment_id: uuid.UUID, reason: str
) -> Payment:
    """The gateway would not make the link: the payment is ``failed`` and kept."""
    payment = records.by_id(session, Payment, payment_id, lock=True)
    if payment.status == PaymentStatus.PENDING:
        payment.failure_reason = reason[:500]
        states.transition(session, ctx, payment, PaymentStatus.FAILED, PAYMENT)
    return payment


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class Outcome:
    """What one delivery did: ``applied``, ``duplicate`` (seen before), ``no-change``,
    ``review`` (kept for a person), ``ignored``.
    """

    outcome: str
    payment_id: uuid.UUID | None = None


class BadSignature(DomainError):
    """A webhook this clinic's secret did not sign (400; nothing is read or kept)."""

    status = 400
    title = "Bad signature"


def verified_event(
    session: Session,
    cipher: FieldCipher,
    tenant_id: uuid.UUID,
    raw: bytes,
    signature: str | None,
    event_id: str | None,
) -> Event:
    """The event, if the clinic's webhook secret signed these exact bytes; else 400."""
    account = billing_settings.of(session, cipher, tenant_id).razorpay
    if account is None or not verify_signature(raw, signature, account.webhook_secret):
        raise BadSignature("the webhook signature does not match; nothing was changed")
    try:
        return parse_event(raw, event_id)
    except ValueError as error:
        raise BadSignature(f"the webhook is not a Razorpay event: {error}") from None


def receive(session: Session, ctx: RequestContext, event: Event) -> Outcome:
    """Keep the event once and apply it; a repeat (same event id) changes nothing."""
    received_id = new_id()
    kept = session.execute(
        pg_insert(GatewayEvent)
        .values(
            tenant_id=ctx.tenant_id,
            id=received_id,
            provider=PROVIDER,
            event_id=event.event_id,
            kind=event.kind,
            payload=event.raw,
            outcome="ignored",
            received_at=ctx.now(),
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "provider", "event_id"])
        .returning(GatewayEvent.id)
    ).first()
    if kept is None:
        return Outcome("duplicate")
    result = _apply(session, ctx, event)
    session.execute(
        update(GatewayEvent)
        .where(GatewayEvent.id == received_id)
        .values(outcome=result.outcome, payment_id=result.payment_id)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        ctx,
        entity="gateway_events",
        entity_id=received_id,
        action="create",
        diff=audit.diff_of(
            {},
            {
                "eventId": event.event_id,
                "kind": event.kind,
                "outcome": result.outcome,
                "paymentId": result.payment_id,
            },
        ),
    )
    return result


def for_review(session: Session) -> list[GatewayEvent]:
    """Deliveries kept for a person, not yet reviewed, oldest first."""
    return list(
        session.scalars(
            select(GatewayEvent)
            .where(GatewayEvent.outcome == "review", GatewayEvent.reviewed_at.is_(None))
            .order_by(GatewayEvent.received_at, GatewayEvent.id)
            .limit(200)
        )
    )


def mark_reviewed(
    session: Session, ctx: RequestContext, event_id: uuid.UUID, note: str
) -> GatewayEvent:
    """A person dealt with a kept delivery (refunded the money, matched it by hand): it
    leaves the list, with who and when, and what they said they did.
    """
    row = records.by_id(session, GatewayEvent, event_id, lock=True)
    if row.outcome != "review" or row.reviewed_at is not None:
        raise Conflict("this delivery is not waiting for review")
    if not note.strip():
        raise InvalidInput([FieldError("note", "say what was done about it")])
    row.reviewed_at = ctx.now()
    row.reviewed_by = ctx.actor_id
    session.flush()
    audit.record(
        ctx,
        entity="gateway_events",
        entity_id=row.id,
        action="update",
        diff=audit.diff_of({}, {"reviewed": note.strip()[:500]}),
    )
    return row


def _payment_of(session: Session, event: Event) -> Payment | None:
    """Our payment the event is about: by the link's reference (our id), the link, or the
    gateway's payment id, locked.
    """
    conditions = []
    if event.reference_id:
        with contextlib.suppress(ValueError):  # not one of ours: try the other keys
            conditions.append(Payment.id == uuid.UUID(hex=event.reference_id))
    if event.link_id:
        conditions.append(Payment.gateway_link_id == event.link_id)
    if event.payment_id:
        conditions.append(
            (Payment.gateway_provider == PROVIDER)
            & (Payment.gateway_payment_id == event.payment_id)
        )
    for condition in conditions:
        found = session.scalar(select(Payment).where(condition).with_for_update())
        if found is not None:
            records.lock(session, found)
            return found
    return None


def _apply(session: Session, ctx: RequestContext, event: Event) -> Outcome:
    if event.kind in ("payment_link.paid", "payment.captured"):
        return _captured(session, ctx, event)
    if event.kind == "payment.failed":
        return _attempt_failed(session, ctx, event)
    if event.kind in ("payment_link.expired", "payment_link.cancelled"):
        return _link_ended(session, ctx, event)
    if event.kind in ("refund.processed", "refund.failed"):
        return _refund_moved(session, ctx, event)
    return Outcome("ignored")


def _captured(session: Session, ctx: RequestContext, event: Event) -> Outcome:
    payment = _payment_of(session, event)
    if payment is None:
        return Outcome("review")
    if payment.status == PaymentStatus.FAILED:
        # Money arrived on a link we had given up (it lapsed, its booking was cancelled):
        # the event is kept for a person to refund; the failed payment stays as it was.
        return Outcome("review", payment.id)
    if payment.status != PaymentStatus.PENDING:
        return Outcome("no-change", payment.id)
    invoice = records.by_id(session, Invoice, payment.invoice_id, lock=True)
    if event.amount is not None and event.amount != payment.amount:
        return _for_review(
            session, ctx, payment, f"paid ₹{event.amount}, link was ₹{payment.amount}"
        )
    if invoice.status not in payments.OPEN or payment.amount > invoice.balance_due:
        return _for_review(
            session, ctx, payment, "paid after the invoice was settled another way: refund it"
        )
    payment.gateway_payment_id = event.payment_id
    payment.gateway_order_id = event.order_id or payment.gateway_order_id
    payment.gateway_link_id = event.link_id or payment.gateway_link_id
    states.transition(session, ctx, payment, PaymentStatus.CAPTURED, PAYMENT)
    payments.apply_captured(session, ctx, invoice, payment)
    return Outcome("applied", payment.id)


def _for_review(session: Session, ctx: RequestContext, payment: Payment, why: str) -> Outcome:
    payment.failure_reason = why
    payment.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="payments",
        entity_id=payment.id,
        action="update",
        diff=audit.diff_of({}, {"review": why}),
    )
    return Outcome("review", payment.id)


def _attempt_failed(session: Session, ctx: RequestContext, event: Event) -> Outcome:
    """A failed attempt on a link: the patient may try the same link again, so the payment
    stays pending with the reason noted (the link's expiry fails it).
    """
    payment = _payment_of(session, event)
    if payment is None:
        return Outcome("review")
    if payment.status != PaymentStatus.PENDING:
        return Outcome("no-change", payment.id)
    payment.failure_reason = (event.error or "the payment failed")[:500]
    payment.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="payments",
        entity_id=payment.id,
        action="update",
        diff=audit.diff_of({}, {"attemptFailed": payment.failure_reason}),
    )
    return Outcome("applied", payment.id)


def _link_ended(session: Session, ctx: RequestContext, event: Event) -> Outcome:
    payment = _payment_of(session, event)
    if payment is None:
        return Outcome("review")
    if payment.status != PaymentStatus.PENDING:
        return Outcome("no-change", payment.id)
    payment.failure_reason = payment.failure_reason or f"the link {event.kind.split('.')[1]}"
    states.transition(session, ctx, payment, PaymentStatus.FAILED, PAYMENT)
    return Outcome("applied", payment.id)


def _refund_moved(session: Session, ctx: RequestContext, event: Event) -> Outcome:
    row = None
    if event.refund_id:
        row = session.scalar(
            select(PaymentRefund).where(PaymentRefund.gateway_refund_id == event.refund_id)
        )
    if row is None:
        return Outcome("review")
    records.lock(session, row)
    if row.status != RefundStatus.PENDING:
        return Outcome("no-change", row.payment_id)
    payment = records.by_id(session, Payment, row.payment_id, lock=True)
    invoice = records.by_id(session, Invoice, row.invoice_id, lock=True)
    if event.kind == "refund.failed":
        row.status = RefundStatus.FAILED
        row.failure_reason = (event.error or "the gateway could not refund")[:500]
        session.flush()
        audit.record(
            ctx,
            entity="payments_refunds",
            entity_id=row.id,
            action="state-transition",
            from_state=RefundStatus.PENDING,
            to_state=RefundStatus.FAILED,
        )
        return Outcome("applied", payment.id)
    row.status = RefundStatus.PROCESSED
    row.processed_at = ctx.now()
    session.flush()
    payments.settle_refund(session, ctx, payment, invoice, row)
    return Outcome("applied", payment.id)


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True)
class RefundRequest:
    refund_id: uuid.UUID
    tenant_id: uuid.UUID
    gateway_payment_id: str
    amount: Decimal


def open_refund(
    session: Session,
    ctx: RequestContext,
    payment: Payment,
    *,
    amount: Any,
    reason: str,
) -> RefundRequest:
    """Phase one of a gateway refund: a pending refund row, counted against what is left
    of the payment at once, so two refunds at the same time cannot both pass.
    """
    value = money.amount_of(amount, "amount", positive=True)
    if not reason.strip():
        raise InvalidInput([FieldError("reason", "say why the money is given back")])
    records.lock(session, payment)
    if payment.method != "link" or payment.gateway_payment_id is None:
        raise Conflict("only a payment made through the gateway is refunded through it")
    if payment.status not in (PaymentStatus.CAPTURED, PaymentStatus.PARTIAL):
        raise Conflict(f"this payment is {payment.status}; there is nothing to refund")
    pending = sum(
        (
            r.amount
            for r in payments.refunds_of(session, payment.id)
            if r.status == RefundStatus.PENDING
        ),
        money.ZERO,
    )
    left = payments.refundable(payment) - pending
    if value > left:
        raise Conflict(f"only ₹{left} of this payment can still be refunded, not ₹{value}")
    row = PaymentRefund(
        tenant_id=payment.tenant_id,
        id=new_id(),
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        amount=value,
        status=RefundStatus.PENDING,
        method="gateway",
        reason=reason.strip(),
        created_by=ctx.actor_id,
        created_at=ctx.now(),
    )
    session.add(row)
    session.flush()
    audit.record(
        ctx,
        entity="payments_refunds",
        entity_id=row.id,
        action="create",
        to_state=RefundStatus.PENDING,
        diff=audit.diff_of({}, {"paymentId": payment.id, "amount": value, "reason": row.reason}),
    )
    return RefundRequest(row.id, payment.tenant_id, payment.gateway_payment_id, value)


def ask_for_refund(client: Razorpay, request: RefundRequest) -> Any:
    """Phase two, no transaction open. The receipt (our refund id) makes a retry safe."""
    return client.refund(
        payment_id=request.gateway_payment_id,
        amount=request.amount,
        receipt=request.refund_id.hex,
        notes={"refund": str(request.refund_id)},
    )


def record_refund(
    session: Session,
    ctx: RequestContext,
    refund_id: uuid.UUID,
    gateway_refund_id: str,
    processed: bool,
) -> PaymentRefund:
    """Phase three: the gateway's refund id; settled now if the gateway says processed
    (its webhook then finds nothing left to do).
    """
    row = records.by_id(session, PaymentRefund, refund_id, lock=True)
    if row.status != RefundStatus.PENDING:
        return row
    row.gateway_refund_id = gateway_refund_id
    session.flush()
    audit.record(
        ctx,
        entity="payments_refunds",
        entity_id=row.id,
        action="update",
        diff=audit.diff_of({}, {"gatewayRefundId": gateway_refund_id}),
    )
    if processed:
        payment = records.by_id(session, Payment, row.payment_id, lock=True)
        invoice = records.by_id(session, Invoice, row.invoice_id, lock=True)
        row.status = RefundStatus.PROCESSED
        row.processed_at = ctx.now()
        session.flush()
        payments.settle_refund(session, ctx, payment, invoice, row)
    return row


def refund_failed(
    session: Session, ctx: RequestContext, refund_id: uuid.UUID, reason: str
) -> PaymentRefund:
    row = records.by_id(session, PaymentRefund, refund_id, lock=True)
    if row.status == RefundStatus.PENDING:
        row.status = RefundStatus.FAILED
        row.failure_reason = reason[:500]
        session.flush()
        audit.record(
            ctx,
            entity="payments_refunds",
            entity_id=row.id,
            action="state-transition",
            from_state=RefundStatus.PENDING,
            to_state=RefundStatus.FAILED,
            diff=audit.diff_of({}, {"reason": row.failure_reason}),
        )
    return row


def unavailable(error: GatewayError) -> GatewayUnavailable:
    what = "try again in a minute" if error.retryable else "check the clinic's Razorpay settings"
    return GatewayUnavailable(f"Razorpay did not accept the request ({error.detail}); {what}")
