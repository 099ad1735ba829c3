"""Billing for tests: invoices drafted, issued and paid through the services."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from opdesk.billing import invoices, money, payments
from opdesk.billing.models import Invoice, Payment
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for
from tests.factories.people import make_patient


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
