"""Invoice and ChargeItem output of issued invoices: golden files, codes, exact money, refusals.

The facts are made the way billing makes an invoice (``money.work_out`` and ``money.totals``
over ``money.LineIn``s), then read back through ``line_facts`` as a stored row would be.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.invoice import Invoice

from opdesk.billing import money
from opdesk.billing.models import InvoiceStatus
from opdesk.fhir import billing
from opdesk.fhir.billing import InvoiceFacts, InvoiceLineFacts
from tests.fhir.test_resources import AMIT, CLINIC_ID

GOLDEN = Path(__file__).parent / "golden" / "billing"
IST = timezone(timedelta(hours=5, minutes=30))
INVOICE_ID = uuid.UUID("9d2e4f6a-8b1c-4d3e-a5f7-0b2c4d6e8f10")
VISIT_ID = uuid.UUID("1f3e5d7c-9b2a-4c4e-8d6f-a0b1c2d3e4f5")
NRCES_PRICE = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-price-components"
NRCES_BILLING = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-billing-codes"

# A consultation (GST-exempt), a strip of tablets with a discount at 12% GST, and a
# blood test at 18%: the kinds of line a clinic bills, and odd paise to round.
LINES = (
    money.LineIn("consult", "परामर्श शुल्क (Consultation)", Decimal("1"), Decimal("500.00")),
    money.LineIn(
        "med",
        "Paracetamol 650 mg, 15 tablets",
        Decimal("15"),
        Decimal("2.35"),
        Decimal("12"),
        Decimal("1.50"),
        "30049099",
    ),
    money.LineIn("lab", "CBC", Decimal("1"), Decimal("349.99"), Decimal("18"), sac_hsn="999316"),
)


def facts(
    lines: tuple[money.LineIn, ...] = LINES,
    *,
    inter_state: bool = False,
    status: InvoiceStatus = InvoiceStatus.PAID,
) -> InvoiceFacts:
    worked = [money.work_out(spec, inter_state=inter_state) for spec in lines]
    totals = money.totals(worked)
    return InvoiceFacts(
        id=INVOICE_ID,
        tenant_id=CLINIC_ID,
        patient_id=AMIT.id,
        visit_id=VISIT_ID,
        number="OPD/26-27/000123",
        status=status,
        issued_at=datetime(2026, 5, 4, 11, 30, tzinfo=IST),
        inter_state=inter_state,
        lines=tuple(
            billing.line_facts(line.as_json(), f"lines[{i}]") for i, line in enumerate(worked)
        ),
        subtotal=totals.subtotal,
        discount_total=totals.discount_total,
        tax_total=totals.tax_total,
        cgst_total=totals.cgst_total,
        sgst_total=totals.sgst_total,
        igst_total=totals.igst_total,
        grand_total=totals.grand_total,
    )


PAID = facts()
TO_ANOTHER_STATE = facts(inter_state=True, status=InvoiceStatus.ISSUED)


def as_json(value: Any) -> Any:
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value.model_dump(mode="json", exclude_none=True)


def golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


CASES: dict[str, Any] = {
    "invoice_intra_state": lambda: billing.invoice(PAID),
    "invoice_inter_state": lambda: billing.invoice(TO_ANOTHER_STATE),
    "charge_items": lambda: billing.charge_items(PAID),
}


@pytest.mark.parametrize("name", CASES)
def test_output_matches_its_golden_file(name: str) -> None:
    assert as_json(CASES[name]()) == golden(name)


def test_golden_files_are_valid_r4b_resources() -> None:
    for name in ("invoice_intra_state", "invoice_inter_state"):
        data = golden(name)
        assert as_json(Invoice.model_validate(data)) == data
    for data in golden("charge_items"):
        assert as_json(ChargeItem.model_validate(data)) == data


def test_resources_claim_the_nrces_profiles() -> None:
    invoice = billing.invoice(PAID)
    assert invoice.meta is not None
    assert invoice.meta.profile == ["https://nrces.in/ndhm/fhir/r4/StructureDefinition/Invoice"]
    for item in billing.charge_items(PAID):
        assert item.meta is not None
        assert item.meta.profile == ["https://nrces.in/ndhm/fhir/r4/StructureDefinition/ChargeItem"]


def test_invoice_is_identified_by_its_number_within_the_clinic() -> None:
    (identifier,) = billing.invoice(PAID).identifier or []
    assert identifier.system == f"https://opdesk.in/fhir/sid/invoice/{CLINIC_ID}"
    assert identifier.value == "OPD/26-27/000123"


@pytest.mark.parametrize(
    ("status", "fhir"),
    [
        (InvoiceStatus.ISSUED, "issued"),
        (InvoiceStatus.PARTIAL, "issued"),
        (InvoiceStatus.PAID, "balanced"),
        (InvoiceStatus.REFUNDED, "cancelled"),
    ],
)
def test_status_maps_to_invoice_status(status: InvoiceStatus, fhir: str) -> None:
    assert billing.invoice(replace(PAID, status=status)).status == fhir


def test_totals_are_exact_decimals_net_of_discount_and_gross_of_tax() -> None:
    invoice = billing.invoice(PAID)
    assert invoice.totalNet is not None
    assert invoice.totalGross is not None
    # 500.00 + (35.25 - 1.50) + 349.99 before tax; GST 2.03 + 2.03 + 31.50 + 31.50.
    assert invoice.totalNet.value == Decimal("883.74")
    assert invoice.totalGross.value == Decimal("950.80")
    assert invoice.totalGross.value == PAID.grand_total
    assert invoice.totalNet.currency == invoice.totalGross.currency == "INR"
    for line in invoice.lineItem or []:
        for part in line.priceComponent or []:
            assert part.amount is not None
            assert isinstance(part.amount.value, Decimal)
            assert part.amount.value.as_tuple().exponent == -2


def components(invoice: Invoice) -> list[list[tuple[str | None, str | None, Decimal | None]]]:
    """Each line's price components as (type, code, amount)."""
    out = []
    for line in invoice.lineItem or []:
        parts = []
        for part in line.priceComponent or []:
            assert part.code is not None
            (coding,) = part.code.coding or []
            assert part.amount is not None
            parts.append((part.type, coding.code, part.amount.value))
        out.append(parts)
    return out


def test_price_components_are_base_discount_and_cgst_sgst_within_the_state() -> None:
    assert components(billing.invoice(PAID)) == [
        [("base", "01", Decimal("500.00"))],
        [
            ("base", "01", Decimal("35.25")),
            ("discount", "02", Decimal("1.50")),
            ("tax", "03", Decimal("2.03")),
            ("tax", "04", Decimal("2.03")),
        ],
        [
            ("base", "01", Decimal("349.99")),
            ("tax", "03", Decimal("31.50")),
            ("tax", "04", Decimal("31.50")),
        ],
    ]


def test_nrces_codes_are_used_and_igst_gets_opdesks_code() -> None:
    intra = billing.invoice(PAID)
    systems = {
        coding.system
        for line in intra.lineItem or []
        for part in line.priceComponent or []
        for coding in (part.code.coding if part.code else None) or []
    }
    assert systems == {NRCES_PRICE}
    inter = billing.invoice(TO_ANOTHER_STATE)
    taxes = [
        (coding.system, coding.code, coding.display)
        for line in inter.lineItem or []
        for part in line.priceComponent or []
        if part.type == "tax"
        for coding in (part.code.coding if part.code else None) or []
    ]
    assert taxes == [("https://opdesk.in/fhir/CodeSystem/price-component", "IGST", "IGST")] * 2
    # IGST is worked out on the full rate: 4.05, where CGST and SGST rounded to 2.03 each.
    assert [p[-1] for p in components(inter)[1] if p[0] == "tax"] == [Decimal("4.05")]


@pytest.mark.parametrize(
    ("kinds", "code", "display"),
    [
        (("consult",), "00", "Consultation"),
        (("med", "med"), "01", "Pharmacy"),
        (("consult", "lab"), "03", "OPD"),
        (("package",), "03", "OPD"),
    ],
)
def test_invoice_type_follows_what_was_billed(
    kinds: tuple[str, ...], code: str, display: str
) -> None:
    lines = tuple(money.LineIn(kind, kind, Decimal("1"), Decimal("100.00")) for kind in kinds)
    invoice_type = billing.invoice(facts(lines)).type
    assert invoice_type is not None
    (coding,) = invoice_type.coding or []
    assert (coding.system, coding.code, coding.display) == (NRCES_BILLING, code, display)


def test_each_line_points_at_its_charge_item() -> None:
    invoice = billing.invoice(PAID)
    items = billing.charge_items(PAID)
    pointed = [
        line.chargeItemReference.reference
        for line in invoice.lineItem or []
        if line.chargeItemReference is not None
    ]
    assert pointed == [f"ChargeItem/{item.id}" for item in items]
    assert [line.sequence for line in invoice.lineItem or []] == [1, 2, 3]
    # The same invoice gives the same ids every time it is sent.
    assert [item.id for item in billing.charge_items(PAID)] == [item.id for item in items]
    assert items[0].id == str(billing.charge_item_id(INVOICE_ID, 1))


def test_charge_items_say_what_how_many_and_for_whom() -> None:
    items = billing.charge_items(PAID)
    codes = []
    for item in items:
        assert item.code is not None
        (coding,) = item.code.coding or []
        codes.append((coding.system, coding.code, coding.display))
    assert codes == [
        (NRCES_BILLING, "00", "Consultation"),
        (NRCES_BILLING, "05", "Medicines"),
        (NRCES_BILLING, "04", "Pathology"),
    ]
    assert [item.quantity.value for item in items if item.quantity] == [1, 15, 1]
    assert items[0].productCodeableConcept is not None
    assert items[0].productCodeableConcept.text == "परामर्श शुल्क (Consultation)"
    assert {item.subject.reference for item in items} == {f"Patient/{AMIT.id}"}
    assert {item.context.reference for item in items if item.context} == {f"Encounter/{VISIT_ID}"}
    assert {item.status for item in items} == {"billed"}
    assert billing.charge_items(replace(PAID, visit_id=None))[0].context is None


def test_devanagari_survives() -> None:
    text = json.dumps(as_json(billing.charge_items(PAID)), ensure_ascii=False)
    assert "परामर्श शुल्क" in text


def test_a_stored_line_reads_back_as_facts() -> None:
    line = money.work_out(LINES[1], inter_state=False)
    assert billing.line_facts(line.as_json()) == InvoiceLineFacts(
        type="med",
        description="Paracetamol 650 mg, 15 tablets",
        sac_hsn="30049099",
        quantity=Decimal("15"),
        unit_price=Decimal("2.35"),
        discount_amount=Decimal("1.50"),
        tax_rate=Decimal("12"),
        taxable=Decimal("33.75"),
        cgst=Decimal("2.03"),
        sgst=Decimal("2.03"),
        igst=Decimal("0.00"),
        total=Decimal("37.81"),
    )


def test_a_stored_line_with_a_bad_amount_is_refused_naming_it() -> None:
    item = money.work_out(LINES[0], inter_state=False).as_json()
    with pytest.raises(ValueError, match=r"^lines\[2\]\.cgst: "):
        billing.line_facts({**item, "cgst": "abc"}, "lines[2]")
    item.pop("taxable")
    with pytest.raises(ValueError, match=r"^lines\[0\]\.taxable: missing"):
        billing.line_facts(item)


def with_line(index: int, **changes: Any) -> InvoiceFacts:
    lines = list(PAID.lines)
    lines[index] = replace(lines[index], **changes)
    return replace(PAID, lines=tuple(lines))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (replace(PAID, status=InvoiceStatus.DRAFT), "status"),
        (replace(PAID, number=None), "number"),
        (replace(PAID, number="  "), "number"),
        (replace(PAID, issued_at=None), "issued_at"),
        (replace(PAID, issued_at=datetime(2026, 5, 4, 11, 30)), "issued_at"),
        (replace(PAID, lines=()), "lines"),
        (replace(PAID, grand_total=PAID.grand_total + Decimal("0.01")), "grand_total"),
        (replace(PAID, subtotal=Decimal("885.25")), "subtotal"),
        (replace(PAID, discount_total=Decimal("0.00")), "discount_total"),
        (replace(PAID, cgst_total=PAID.sgst_total + Decimal("1")), "cgst_total"),
        (replace(PAID, igst_total=Decimal("0.001")), "igst_total"),
        (replace(PAID, tax_total=Decimal("-1")), "tax_total"),
        (with_line(1, cgst=Decimal("4.06")), r"lines\[1\]\.cgst"),
        (with_line(1, igst=Decimal("4.05")), r"lines\[1\]\.igst"),
        (with_line(2, taxable=Decimal("350.00")), r"lines\[2\]\.taxable"),
        (with_line(2, total=Decimal("412.98")), r"lines\[2\]\.total"),
        (with_line(0, unit_price=Decimal("500.001")), r"lines\[0\]\.unit_price"),
        (with_line(0, unit_price=Decimal("NaN")), r"lines\[0\]\.unit_price"),
        (with_line(0, quantity=Decimal("0")), r"lines\[0\]\.quantity"),
        (with_line(0, discount_amount=Decimal("-5")), r"lines\[0\]\.discount_amount"),
        (with_line(0, discount_amount=Decimal("600.00")), r"lines\[0\]\.discount_amount"),
        (with_line(0, tax_rate=Decimal("7")), r"lines\[0\]\.tax_rate"),
        (with_line(0, type="pharmacy"), r"lines\[0\]\.type"),
        (with_line(0, description=" "), r"lines\[0\]\.description"),
    ],
)
def test_invalid_fact_raises_value_error_naming_the_field(bad: InvoiceFacts, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        billing.invoice(bad)
    with pytest.raises(ValueError, match=rf"^{field}: "):
        billing.charge_items(bad)


def test_a_utc_issue_time_is_kept_as_given() -> None:
    issued = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
    assert billing.invoice(replace(PAID, issued_at=issued)).date == issued
