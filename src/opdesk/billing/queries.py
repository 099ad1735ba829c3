"""Billing's read side: invoice lists, a payment's refunds, an invoice's payments."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.billing.models import Invoice, InvoiceStatus, Payment


def invoices(
    session: Session,
    *,
    patient_id: uuid.UUID | None = None,
    status: InvoiceStatus | None = None,
    limit: int = 100,
) -> list[Invoice]:
    """Newest first."""
    stmt = select(Invoice).order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(limit)
    if patient_id is not None:
        stmt = stmt.where(Invoice.patient_id == patient_id)
    if status is not None:
        stmt = stmt.where(Invoice.status == status)
    return list(session.scalars(stmt))


def payments_of(session: Session, invoice_id: uuid.UUID) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.created_at)
        )
    )
