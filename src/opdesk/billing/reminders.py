"""What billing tells a patient: the bill itself (sent when the desk asks), the payment
link (sent when it is made), and the balance-due reminder a few days after an invoice is
issued unpaid (automation's ``balance-due`` rule; it reads the invoice again when it falls
due and sends nothing once the bill is settled).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.automation import later_rules
from opdesk.billing.models import Invoice, InvoiceStatus, Payment
from opdesk.config import get_settings
from opdesk.context import RequestContext
from opdesk.errors import Conflict
from opdesk.formatting import rupees
from opdesk.notifications import service as outbox
from opdesk.patients.models import Patient
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenants

# A bill left unpaid is mentioned once, this long after it was issued.
REMIND_AFTER = timedelta(days=3)
OPEN = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIAL)


def invoice_link(invoice_id: uuid.UUID) -> str:
    """The patient's own page of the bill (they sign in to see it)."""
    return f"{get_settings().base_url.rstrip('/')}/me/invoices/{invoice_id}"


@later_rules.finds(later_rules.BALANCE_DUE, "invoices")
def balance_still_due(session: Session, invoice_id: uuid.UUID) -> Mapping[str, Any] | None:
    invoice = session.scalar(select(Invoice).where(Invoice.id == invoice_id))
    if invoice is None or invoice.status not in OPEN or invoice.balance_due == 0:
        return None
    return {"amount": rupees(invoice.balance_due), "link": invoice_link(invoice.id)}


def remind_later(session: Session, ctx: RequestContext, invoice: Invoice) -> None:
    """Schedule the balance-due message of a newly issued invoice."""
    today = tenants.today_at_clinic(session, ctx)
    later_rules.schedule_balance_due(
        session,
        ctx,
        entity_type="invoices",
        entity_id=invoice.id,
        patient_id=invoice.patient_id,
        due=today + REMIND_AFTER,
        values={"amount": rupees(invoice.balance_due)},
    )


def settled(session: Session, ctx: RequestContext, invoice: Invoice) -> None:
    """A paid (or refunded) invoice has nothing left to remind of."""
    later_rules.cancel(
        session,
        ctx,
        rule_name=later_rules.BALANCE_DUE,
        entity_type="invoices",
        entity_id=invoice.id,
    )


def _name(session: Session, patient_id: uuid.UUID) -> str:
    return records.by_id(session, Patient, patient_id).full_name


def send_invoice(
    session: Session, ctx: RequestContext, cipher: FieldCipher, invoice: Invoice
) -> str:
    """Message the patient their bill (once per invoice); returns the channel used."""
    if invoice.number is None:
        raise Conflict("a draft cannot be sent; issue it first")
    tenant = tenants.get_tenant(session, invoice.tenant_id)
    sent = outbox.send_to_patient(
        session,
        ctx,
        cipher,
        patient_id=invoice.patient_id,
        template="invoice",
        payload={
            "patient": _name(session, invoice.patient_id),
            "number": invoice.number,
            "amount": rupees(invoice.grand_total),
            "clinic": tenant.name,
            "link": invoice_link(invoice.id),
        },
        dedupe_key=f"invoice:{invoice.id}",
    )
    if sent is None:
        raise Conflict(
            "this patient has no phone or has not agreed to messages; give them the printed bill"
        )
    return sent.channel


def send_link(session: Session, ctx: RequestContext, cipher: FieldCipher, payment: Payment) -> None:
    """Message the patient the payment link (once per link); no channel, no message (the
    desk still has the link on screen).
    """
    if payment.link_url is None:
        return
    tenant = tenants.get_tenant(session, payment.tenant_id)
    outbox.send_to_patient(
        session,
        ctx,
        cipher,
        patient_id=payment.patient_id,
        template="payment-link",
        payload={
            "patient": _name(session, payment.patient_id),
            "amount": rupees(payment.amount),
            "clinic": tenant.name,
            "link": payment.link_url,
        },
        dedupe_key=f"payment-link:{payment.id}",
    )
