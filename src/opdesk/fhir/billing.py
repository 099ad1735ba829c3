"""Invoice and ChargeItem resources from an issued OPDesk invoice.

Pure functions, as in ``resources``: the caller reads the invoice row, fills an
:class:`InvoiceFacts` and gets back R4B models that claim NRCeS's billing profiles
(StructureDefinition-Invoice and -ChargeItem, v6.0.0, from the guide's FSH sources under
input/fsh/profiles/). What those profiles add to R4:

* Invoice: ``identifier`` 1..1 with a value, ``type`` 1..1 coded (system, code and display),
  ``subject``, ``date``, ``lineItem`` 1..* each with ``priceComponent`` 1..* whose ``code``
  has one coding with system, code and display, and an ``amount``; ``totalNet`` and
  ``totalGross`` 1..1. ``lineItem.chargeItem[x]`` should be a Reference to a ChargeItem.
* ChargeItem: ``code`` with one coding (system, code, display), ``quantity`` 1..1 and
  ``product[x]`` 1..1, a CodeableConcept for anything that is not a pharmacy item.

Every amount is re-derived from the line's quantity, price, discount and GST rate with
:mod:`opdesk.billing.money` (the arithmetic that made the invoice), and every total from the
lines: an invoice whose stored amounts disagree is refused, not exported. An invalid fact
raises ``ValueError`` whose message starts with the field's name (``lines[0].cgst: ...``).

Money travels as ``Decimal`` with two places. fhir.resources writes decimals to JSON as
numbers, so 500.00 is written 500.0; the value is the same, and the models keep the Decimal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.invoice import Invoice, InvoiceLineItem, InvoiceLineItemPriceComponent
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.money import Money
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from opdesk.billing import money
from opdesk.billing.models import CURRENCY, LINE_TYPES, InvoiceStatus
from opdesk.fhir.resources import OPDESK_IDS

_STRUCTURES = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/"
INVOICE_PROFILE = _STRUCTURES + "Invoice"
CHARGE_ITEM_PROFILE = _STRUCTURES + "ChargeItem"

# NRCeS code systems (input/fsh/codesystems/BillingCode.fsh and PriceComponent.fsh).
BILLING_CODES = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-billing-codes"
PRICE_COMPONENTS = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-price-components"
# The NRCeS price components stop at CGST and SGST: IGST, charged on a supply to another
# state, has no code there. The binding is extensible, so a code from OPDesk's own system
# fills the gap rather than passing IGST off as one of the two.
OPDESK_PRICE_COMPONENTS = "https://opdesk.in/fhir/CodeSystem/price-component"


class Code(NamedTuple):
    system: str
    code: str
    display: str

    def concept(self) -> CodeableConcept:
        return CodeableConcept(
            coding=[Coding(system=self.system, code=self.code, display=self.display)]
        )


# ndhm-billing-codes: the whole code system. Invoice.type is bound to the subset 00, 01,
# 02, 03 and 99 (ValueSet ndhm-invoice-types); ChargeItem.code to all of it.
CONSULTATION = Code(BILLING_CODES, "00", "Consultation")
PHARMACY = Code(BILLING_CODES, "01", "Pharmacy")
OPD = Code(BILLING_CODES, "03", "OPD")
PATHOLOGY = Code(BILLING_CODES, "04", "Pathology")
MEDICINES = Code(BILLING_CODES, "05", "Medicines")
OTHERS = Code(BILLING_CODES, "99", "Others")

# What each OPDesk line type (billing.models.LINE_TYPES) is charged as.
LINE_CHARGE_CODES: dict[str, Code] = {
    "consult": CONSULTATION,
    "service": OPD,
    "lab": PATHOLOGY,
    "med": MEDICINES,
    "package": OTHERS,
}
assert set(LINE_CHARGE_CODES) == set(LINE_TYPES)

# ndhm-price-components (00 MRP is informational and OPDesk keeps no MRP).
RATE = Code(PRICE_COMPONENTS, "01", "Rate")
DISCOUNT = Code(PRICE_COMPONENTS, "02", "Discount")
CGST = Code(PRICE_COMPONENTS, "03", "CGST")
SGST = Code(PRICE_COMPONENTS, "04", "SGST")
IGST = Code(OPDESK_PRICE_COMPONENTS, "IGST", "IGST")

# OPDesk's invoice states as FHIR invoice-status codes. A draft has no number yet and the
# profile wants one, so drafts are not exported. ``partial`` is still owed: issued.
# ``refunded`` means credit notes cancelled the whole invoice: nothing is owed on it.
FHIR_INVOICE_STATUS: dict[InvoiceStatus, str] = {
    InvoiceStatus.ISSUED: "issued",
    InvoiceStatus.PARTIAL: "issued",
    InvoiceStatus.PAID: "balanced",
    InvoiceStatus.REFUNDED: "cancelled",
}


def invoice_system(clinic_id: uuid.UUID) -> str:
    """Invoice numbers restart each financial year in each clinic: the clinic is part of
    the namespace, as it is of ``mrn_system``'s.
    """
    return f"{OPDESK_IDS}/invoice/{clinic_id}"


def charge_item_id(invoice_id: uuid.UUID, sequence: int) -> uuid.UUID:
    """A line has no id of its own; this one is the same every time the invoice is sent."""
    return uuid.uuid5(invoice_id, f"line/{sequence}")


@dataclass(frozen=True, slots=True)
class InvoiceLineFacts:
    """One entry of ``Invoice.line_items`` (``money.Line.as_json``), amounts as Decimals."""

    type: str
    description: str
    sac_hsn: str | None
    quantity: Decimal
    unit_price: Decimal
    discount_amount: Decimal
    tax_rate: Decimal
    taxable: Decimal
    cgst: Decimal
    sgst: Decimal
    igst: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """An issued invoice (``billing.models.Invoice``)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    patient_id: uuid.UUID
    # The visit the invoice is for, when it was made from one: the charges' context.
    visit_id: uuid.UUID | None
    number: str | None
    status: InvoiceStatus
    issued_at: datetime | None
    inter_state: bool
    lines: tuple[InvoiceLineFacts, ...]
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    cgst_total: Decimal
    sgst_total: Decimal
    igst_total: Decimal
    grand_total: Decimal


def line_facts(item: Mapping[str, Any], at: str = "lines[0]") -> InvoiceLineFacts:
    """A stored ``line_items`` entry (amounts as strings) as facts; ``at`` names it."""
    try:
        return InvoiceLineFacts(
            type=str(item["type"]),
            description=str(item["description"]),
            sac_hsn=item.get("sacHsn"),
            quantity=_decimal(item, "quantity", at),
            unit_price=_decimal(item, "unitPrice", at),
            discount_amount=_decimal(item, "discountAmount", at, default="0"),
            tax_rate=_decimal(item, "taxRate", at),
            taxable=_decimal(item, "taxable", at),
            cgst=_decimal(item, "cgst", at),
            sgst=_decimal(item, "sgst", at),
            igst=_decimal(item, "igst", at),
            total=_decimal(item, "total", at),
        )
    except KeyError as exc:
        raise ValueError(f"{at}.{exc.args[0]}: missing") from None


def _decimal(item: Mapping[str, Any], key: str, at: str, default: str | None = None) -> Decimal:
    raw = item.get(key) if default is None else (item.get(key) or default)
    if raw is None:
        raise KeyError(key)
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{at}.{key}: not an amount: {raw!r}") from None


def invoice(f: InvoiceFacts) -> Invoice:
    """The Invoice, its lines pointing at :func:`charge_items`' resources (``ChargeItem/<id>``)."""
    worked = _checked(f)
    net = f.subtotal - f.discount_total
    return Invoice(
        id=str(f.id),
        meta=Meta(profile=[INVOICE_PROFILE]),
        identifier=[Identifier(system=invoice_system(f.tenant_id), value=_number(f.number))],
        status=_status(f.status),
        type=_invoice_type(f.lines).concept(),
        subject=Reference(reference=f"Patient/{f.patient_id}"),
        date=f.issued_at,
        issuer=Reference(reference=f"Organization/{f.tenant_id}"),
        lineItem=[
            InvoiceLineItem(
                sequence=n,
                chargeItemReference=Reference(
                    reference=f"ChargeItem/{charge_item_id(f.id, n)}", type="ChargeItem"
                ),
                priceComponent=_price_components(line, f.inter_state),
            )
            for n, line in enumerate(worked, start=1)
        ],
        totalNet=_money(net),
        totalGross=_money(f.grand_total),
    )


def charge_items(f: InvoiceFacts) -> list[ChargeItem]:
    """One ChargeItem per line, in the lines' order (what was charged, and how many)."""
    _checked(f)
    context = None if f.visit_id is None else Reference(reference=f"Encounter/{f.visit_id}")
    return [
        ChargeItem(
            id=str(charge_item_id(f.id, n)),
            meta=Meta(profile=[CHARGE_ITEM_PROFILE]),
            status="billed",
            code=LINE_CHARGE_CODES[line.type].concept(),
            subject=Reference(reference=f"Patient/{f.patient_id}"),
            context=context,
            quantity=Quantity(value=line.quantity),
            # Not a pharmacy Medication: the profile then asks for a CodeableConcept, and
            # OPDesk's services carry a description, not a code.
            productCodeableConcept=CodeableConcept(text=line.description.strip()),
        )
        for n, line in enumerate(f.lines, start=1)
    ]


def _checked(f: InvoiceFacts) -> list[money.Line]:
    """The lines worked out again, after every stored amount was found to match them."""
    _status(f.status)
    _number(f.number)
    if f.issued_at is None or f.issued_at.utcoffset() is None:
        raise ValueError("issued_at: an issued invoice's time, with its UTC offset")
    if not f.lines:
        raise ValueError("lines: an invoice has at least one line")
    worked = [_line(line, f"lines[{i}]", f.inter_state) for i, line in enumerate(f.lines)]
    due = money.totals(worked)
    for field, expected in (
        ("subtotal", due.subtotal),
        ("discount_total", due.discount_total),
        ("cgst_total", due.cgst_total),
        ("sgst_total", due.sgst_total),
        ("igst_total", due.igst_total),
        ("tax_total", due.tax_total),
        ("grand_total", due.grand_total),
    ):
        _matches(field, getattr(f, field), expected)
    return worked


def _line(line: InvoiceLineFacts, at: str, inter_state: bool) -> money.Line:
    if line.type not in LINE_CHARGE_CODES:
        raise ValueError(f"{at}.type: one of {', '.join(LINE_CHARGE_CODES)}, not {line.type!r}")
    if not line.description.strip():
        raise ValueError(f"{at}.description: must not be empty")
    quantity = _amount(f"{at}.quantity", line.quantity)
    if quantity == 0:
        raise ValueError(f"{at}.quantity: must be more than zero")
    if line.tax_rate not in money.GST_RATES:
        raise ValueError(f"{at}.tax_rate: not a GST rate: {line.tax_rate}")
    spec = money.LineIn(
        type=line.type,
        description=line.description,
        quantity=quantity,
        unit_price=_amount(f"{at}.unit_price", line.unit_price),
        tax_rate=line.tax_rate,
        discount_amount=_amount(f"{at}.discount_amount", line.discount_amount),
        sac_hsn=line.sac_hsn,
    )
    worked = money.work_out(spec, inter_state=inter_state)
    if worked.taxable < 0:
        raise ValueError(f"{at}.discount_amount: more than the line's {worked.gross}")
    for field, expected in (
        ("taxable", worked.taxable),
        ("cgst", worked.cgst),
        ("sgst", worked.sgst),
        ("igst", worked.igst),
        ("total", worked.total),
    ):
        _matches(f"{at}.{field}", getattr(line, field), expected)
    return worked


def _matches(field: str, stored: Decimal, expected: Decimal) -> None:
    if _amount(field, stored) != expected:
        raise ValueError(f"{field}: {stored} does not add up; the lines give {expected}")


def _amount(field: str, value: Decimal) -> Decimal:
    """A non-negative amount of rupees and paise, exactly (500, 500.0 and 500.00 alike)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{field}: a Decimal amount, not {value!r}")
    if value < 0:
        raise ValueError(f"{field}: cannot be negative")
    if value != money.paise(value):
        raise ValueError(f"{field}: has more than two decimal places (paise)")
    return money.paise(value)


def _price_components(line: money.Line, inter_state: bool) -> list[InvoiceLineItemPriceComponent]:
    """Base (the line's gross), then its discount and its GST, each only when it has one.

    A GST-exempt line (most healthcare services) carries no tax component at all.
    """
    parts = [_component("base", RATE, line.gross)]
    if line.spec.discount_amount > 0:
        parts.append(_component("discount", DISCOUNT, line.spec.discount_amount))
    if line.spec.tax_rate > 0:
        taxes = [(IGST, line.igst)] if inter_state else [(CGST, line.cgst), (SGST, line.sgst)]
        parts.extend(_component("tax", code, amount) for code, amount in taxes)
    return parts


def _component(kind: str, code: Code, amount: Decimal) -> InvoiceLineItemPriceComponent:
    return InvoiceLineItemPriceComponent(type=kind, code=code.concept(), amount=_money(amount))


def _money(amount: Decimal) -> Money:
    return Money(value=money.paise(amount), currency=CURRENCY)


def _invoice_type(lines: Sequence[InvoiceLineFacts]) -> Code:
    kinds = {line.type for line in lines}
    if kinds == {"consult"}:
        return CONSULTATION
    if kinds == {"med"}:
        return PHARMACY
    return OPD


def _status(status: InvoiceStatus) -> str:
    if status == InvoiceStatus.DRAFT:
        raise ValueError("status: a draft has no number yet; only issued invoices are sent")
    if status not in FHIR_INVOICE_STATUS:
        raise ValueError(f"status: one of {', '.join(FHIR_INVOICE_STATUS)}, not {status!r}")
    return FHIR_INVOICE_STATUS[status]


def _number(number: str | None) -> str:
    if number is None or not number.strip():
        raise ValueError("number: an issued invoice's number, such as OPD/26-27/000123")
    return number.strip()
