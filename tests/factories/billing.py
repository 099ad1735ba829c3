"""Billing for tests: invoices drafted, issued and paid through the services."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from opdesk.billing import gateway, invoices, money, payments
from opdesk.billing import settings as billing_settings
from opdesk.billing.models import GatewayEvent as GatewayEventRow
from opdesk.billing.models import Invoice, Payment, PaymentRefund
from opdesk.billing.razorpay_client import GatewayEvent
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for
from tests.factories.people import make_patient
from tests.fakes.razorpay_server import KEY_ID, KEY_SECRET, WEBHOOK_SECRET


def line(
    unit_price: str = "500.00",
    *,
    quantity: str = "1",
    tax_rate: str = "0",
    discount: str = "0",
    type: str = "service",
    description: str = "Dressing",
    sac_hsn: str | None = "999312",
) -> money.LineIn:
    return money.LineIn(
        type=type,
        description=description,
        quantity=Decimal(quantity),
        unit_price=Decimal(unit_price),
        tax_rate=Decimal(tax_rate),
        discount_amount=Decimal(discount),
        sac_hsn=sac_hsn,
    )


def draft(
    db: Database,
    ident: Any,
    tenant: Tenant,
    *lines: money.LineIn,
    patient_id: uuid.UUID | None = None,
    **options: Any,
) -> Invoice:
    """A draft invoice (for a new patient unless one is named)."""
    patient_id = patient_id or make_patient(db, ident, tenant).id
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return invoices.create_draft(
            session, ctx, patient_id=patient_id, lines=list(lines) or [line()], **options
        )


def issue(db: Database, tenant: Tenant, invoice_id: uuid.UUID) -> Invoice:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        found = session.get(Invoice, (tenant.id, invoice_id))
        assert found is not None
        return invoices.issue(session, ctx, found)


def issued(
    db: Database, ident: Any, tenant: Tenant, *lines: money.LineIn, **options: Any
) -> Invoice:
    return issue(db, tenant, draft(db, ident, tenant, *lines, **options).id)


def pay(
    db: Database,
    tenant: Tenant,
    invoice_id: uuid.UUID,
    amount: str,
    method: str = "cash",
    reference: str | None = None,
) -> Payment:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        found = session.get(Invoice, (tenant.id, invoice_id))
        assert found is not None
        part = payments.Part(method, Decimal(amount), reference)
        return payments.collect(session, ctx, found, parts=[part])


def paid(db: Database, ident: Any, tenant: Tenant, amount: str = "500.00") -> Payment:
    """A cash payment settling a new invoice of ``amount``."""
    invoice = issued(db, ident, tenant, line(amount))
    return pay(db, tenant, invoice.id, amount)


def invoice_id_of(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    return draft(db, ident, tenant).id


def payment_id_of(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    return paid(db, ident, tenant).id


def stored(db: Database, tenant: Tenant, model: type[Any], row_id: uuid.UUID) -> Any:
    with transaction(db, ctx_for(tenant.id)) as session:
        return session.get(model, (tenant.id, row_id))


def issued_id_of(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    """An issued invoice (what a patient's portal shows) of a new patient."""
    return issued(db, ident, tenant).id


def issued_ids(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
    """An issued invoice with its patient, for paths naming both."""
    invoice = issued(db, ident, tenant)
    return {"invoice_id": invoice.id, "patient_id": invoice.patient_id}


def paid_ids(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
    """A cash payment with its invoice and patient."""
    payment = paid(db, ident, tenant)
    return {
        "payment_id": payment.id,
        "invoice_id": payment.invoice_id,
        "patient_id": payment.patient_id,
    }


def walk_in_today(
    db: Database, ident: Any, tenant: Tenant, doctor_id: uuid.UUID, patient_id: uuid.UUID
) -> uuid.UUID:
    """``patient`` walks in for the doctor today and is checked in with a token (the
    queue's row that the desk checks out).
    """
    from opdesk.scheduling import lifecycle

    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        made = lifecycle.walk_in(
            session, ctx, patient_id=patient_id, doctor_id=doctor_id, visit_type="consultation"
        )
        return made.id


def pay_split(
    db: Database, tenant: Tenant, invoice_id: uuid.UUID, *parts: tuple[str, str, str | None]
) -> Payment:
    """One payment in parts: ``("cash", "100.00", None), ("upi", "200.00", utr)``."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        found = session.get(Invoice, (tenant.id, invoice_id))
        assert found is not None
        split = [payments.Part(m, Decimal(a), r) for m, a, r in parts]
        return payments.collect(session, ctx, found, parts=split)


def refund(
    db: Database,
    tenant: Tenant,
    payment_id: uuid.UUID,
    amount: str,
    reason: str = "Charged twice",
    method: str | None = None,
) -> PaymentRefund:
    """Give back ``amount`` of a payment, as the accounts desk does."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        found = session.get(Payment, (tenant.id, payment_id))
        assert found is not None
        return payments.refund(
            session, ctx, found, amount=Decimal(amount), reason=reason, method=method
        )


def kept_delivery_id(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    """A Razorpay delivery about a payment the clinic does not know, kept for review."""
    ctx = ctx_for(tenant.id)
    paid = f"pay_{uuid.uuid4().hex[:14]}"
    event = GatewayEvent(
        event_id=f"evt_{uuid.uuid4().hex[:14]}",
        kind="payment.captured",
        payment_id=paid,
        order_id=None,
        link_id=None,
        refund_id=None,
        reference_id=None,
        amount=Decimal("100.00"),
        method="upi",
        error=None,
        raw={
            "entity": "event",
            "event": "payment.captured",
            "payload": {
                "payment": {
                    "entity": {
                        "id": paid,
                        "amount": 10000,
                        "currency": "INR",
                        "status": "captured",
                        "method": "upi",
                    }
                }
            },
        },
    )
    with transaction(db, ctx) as session:
        assert gateway.receive(session, ctx, event).outcome == "review"
        kept = session.scalar(
            select(GatewayEventRow.id).where(GatewayEventRow.event_id == event.event_id)
        )
    assert kept is not None
    return kept


def with_razorpay(db: Database, cipher: Any, tenant: Tenant, **fields: Any) -> Tenant:
    """The clinic's billing settings with the local Razorpay server's account (plus
    ``fields`` of :class:`billing_settings.Billing`)."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        billing_settings.save(
            session,
            ctx,
            cipher,
            billing_settings.Billing(
                razorpay=billing_settings.Razorpay(KEY_ID, KEY_SECRET, WEBHOOK_SECRET), **fields
            ),
        )
    return tenant
