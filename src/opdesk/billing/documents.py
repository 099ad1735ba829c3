"""An issued invoice and a payment's receipt as the PDFs a patient takes home: the
records read into the plain documents ``invoice_pdf`` draws.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from opdesk import records
from opdesk.billing import invoice_pdf, queries
from opdesk.billing.models import Invoice, InvoiceStatus, Payment, PaymentRefund, PaymentStatus
from opdesk.errors import Conflict
from opdesk.formatting import short_date
from opdesk.patients.models import Patient
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant

METHOD_WORDS = {"cash": "Cash", "card": "Card", "upi": "UPI", "link": "Payment link"}


def _clinic(tenant: Tenant) -> invoice_pdf.Party:
    city = ", ".join(p for p in (tenant.address_city, tenant.address_pincode) if p)
    lines = [p for p in (tenant.address_line1, tenant.address_line2, city) if p]
    return invoice_pdf.Party(
        name=tenant.name,
        address_lines=lines,
        gstin=tenant.gstin,
        state=tenant.address_state,
        phone=tenant.phone,
    )


def _day(tenant: Tenant, moment: datetime | None) -> str:
    """The date on the clinic's calendar (a payment at 00:30 IST is that day's)."""
    if moment is None:
        return ""
    return short_date(moment.astimezone(ZoneInfo(tenant.timezone)).date())


def _line(item: dict[str, str]) -> invoice_pdf.DocLine:
    return invoice_pdf.DocLine(
        description=item["description"],
        sac_hsn=item.get("sacHsn"),
        quantity=Decimal(item["quantity"]),
        unit_price=Decimal(item["unitPrice"]),
        discount=Decimal(item["discountAmount"]),
        taxable=Decimal(item["taxable"]),
        tax_rate=Decimal(item["taxRate"]),
        cgst=Decimal(item["cgst"]),
        sgst=Decimal(item["sgst"]),
        igst=Decimal(item["igst"]),
        total=Decimal(item["total"]),
    )


def _address(patient: Patient) -> tuple[str, ...]:
    place = " ".join(p for p in (patient.city, patient.pin_code) if p)
    return (place,) if place else ()


MONEY_IN = (PaymentStatus.CAPTURED, PaymentStatus.PARTIAL, PaymentStatus.REFUNDED)


def invoice_document(session: Session, invoice: Invoice) -> invoice_pdf.InvoiceDocument:
    if invoice.status == InvoiceStatus.DRAFT or invoice.number is None or invoice.issued_at is None:
        raise Conflict("a draft has no invoice to print yet; issue it first")
    tenant = tenants.get_tenant(session, invoice.tenant_id)
    patient = records.by_id(session, Patient, invoice.patient_id, include_deleted=True)
    paid = [p for p in queries.payments_of(session, invoice.id) if p.status in MONEY_IN]
    return invoice_pdf.InvoiceDocument(
        clinic=_clinic(tenant),
        patient_name=patient.full_name,
        patient_number=patient.display_number,
        patient_phone=None,  # the phone is encrypted and a printed bill does not need it
        # Rule 46(e)/(f): the recipient's address, as far as it is kept in the clear (the
        # street address is encrypted and would need the cipher here).
        patient_address_lines=_address(patient),
        number=invoice.number,
        issued_on=_day(tenant, invoice.issued_at),
        place_of_supply=invoice.place_of_supply,
        inter_state=invoice.inter_state,
        lines=[_line(item) for item in invoice.line_items],
        subtotal=invoice.subtotal,
        discount_total=invoice.discount_total,
        tax_total=invoice.tax_total,
        cgst_total=invoice.cgst_total,
        sgst_total=invoice.sgst_total,
        igst_total=invoice.igst_total,
        grand_total=invoice.grand_total,
        payments=[
            invoice_pdf.DocPayment(
                paid_on=_day(tenant, p.captured_at),
                method=METHOD_WORDS.get(p.method, p.method),
                reference=p.reference or p.gateway_payment_id,
                amount=p.amount,
            )
            for p in paid
        ],
        amount_paid=invoice.amount_paid - invoice.amount_refunded,
        balance_due=invoice.balance_due,
        status=str(invoice.status),
    )


def invoice_file(session: Session, fonts: Path, invoice: Invoice) -> bytes:
    return invoice_pdf.invoice_pdf(fonts, invoice_document(session, invoice))


def receipt_file(
    session: Session, fonts: Path, payment: Payment, refund: PaymentRefund | None = None
) -> bytes:
    """The receipt of a captured payment, or of one of its refunds."""
    if payment.status not in MONEY_IN or payment.captured_at is None:
        raise Conflict(f"this payment is {payment.status}; there is no receipt for it")
    invoice = records.by_id(session, Invoice, payment.invoice_id)
    tenant = tenants.get_tenant(session, payment.tenant_id)
    patient = records.by_id(session, Patient, payment.patient_id, include_deleted=True)
    moment = refund.processed_at if refund is not None else payment.captured_at
    document = invoice_pdf.ReceiptDocument(
        clinic=_clinic(tenant),
        patient_name=patient.full_name,
        receipt_number=(refund.id if refund is not None else payment.id).hex[:12].upper(),
        invoice_number=invoice.number or "",
        paid_on=_day(tenant, moment),
        method=METHOD_WORDS.get(refund.method if refund else payment.method, payment.method),
        reference=payment.reference or payment.gateway_payment_id,
        amount=refund.amount if refund is not None else payment.amount,
        balance_after=invoice.balance_due,
        kind="refund" if refund is not None else "payment",
    )
    return invoice_pdf.receipt_pdf(fonts, document)
