"""The invoice PDF as documents.py fills it from the records (issue 13, item 8), and the
one Rule 46 particular that the numbering, not the PDF, decides: the length of the number.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import TypeAdapter, ValidationError

from opdesk.billing import documents, money
from opdesk.billing.models import Invoice
from opdesk.db import Database
from opdesk.schemas import InvoicePrefix
from tests.factories import billing as bill
from tests.factories import clinic_session
from tests.factories.clinical_rx import pdf_text
from tests.factories.clinics import make_tenant
from tests.factories.people import make_patient


def test_the_printed_invoice_names_the_document_the_patients_place_and_the_state_code(
    db: Database, ident: Any, settings: Any
) -> None:
    tenant = make_tenant(
        db,
        "Sharma Family Clinic",
        gstin="27AAPFU0939F1ZV",
        address={"line1": "12, MG Road", "city": "Pune", "state": "Maharashtra"},
    )
    patient = make_patient(db, ident, tenant, city="Aundh", pinCode="411007")
    issued = bill.issued(
        db,
        ident,
        tenant,
        bill.line("600.00", type="consult", description="Consultation"),  # exempt
        bill.line("32.50", tax_rate="12", type="med", sac_hsn="30049099"),
        patient_id=patient.id,
    )
    with clinic_session(db, tenant.id) as session:
        invoice = session.get(Invoice, (tenant.id, issued.id))
        assert invoice is not None
        text = " ".join(
            pdf_text(documents.invoice_file(session, settings.data_dir / "fonts", invoice)).split()
        )
    assert issued.number is not None and issued.number in text
    for expected in (
        "Invoice-cum-Bill of Supply",  # Rule 46A: exempt and taxed lines together
        "Original for Recipient",
        "Aundh 411007",
        "Maharashtra (27)",
        "Exempt",
        "Authorised signatory",
    ):
        assert expected in text, expected


def _longest_prefix() -> str:
    """The longest invoice prefix a clinic may choose (schemas.InvoicePrefix)."""
    adapter = TypeAdapter(InvoicePrefix)
    size = 1
    while True:
        try:
            adapter.validate_python("A" * (size + 1))
        except ValidationError:
            return "A" * size
        size += 1


def test_every_invoice_number_is_at_most_sixteen_characters() -> None:
    year = money.financial_year(date(2026, 11, 25))
    for prefix in ("OPD", _longest_prefix()):
        number = money.invoice_number(prefix, year, 999_999)
        assert len(number) <= 16, number
