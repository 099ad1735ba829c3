"""Invoice and receipt PDFs (issue 13, item 8): what a GST tax invoice shows (Rule 46 of
the CGST Rules), which document it is (tax invoice, bill of supply under Rule 49, one
invoice-cum-bill of supply under Rule 46A), its copy marked for the recipient (Rule 48),
the signature line, the tax columns that apply, ₹ and Devanagari drawn with real glyphs,
long tables over several pages with the heading row repeated, and the receipts.

The text is read back from the PDF through each font's ToUnicode map
(tests.factories.clinical_rx.pdf_runs), so a glyph missing from the fonts would not read
back as its character.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from opdesk.billing.invoice_pdf import (
    DocLine,
    DocPayment,
    InvoiceDocument,
    Party,
    ReceiptDocument,
    document_title,
    invoice_pdf,
    receipt_pdf,
)
from opdesk.documents.pdf import FACES, _truetype
from tests.factories.clinical_rx import pdf_runs, pdf_text

D = Decimal
CLINIC = Party(
    name="Sharma Family Clinic",
    address_lines=["12, MG Road, Kothrud", "Pune 411038"],
    gstin="27AAPFS1234K1Z5",
    state="Maharashtra",
    phone="+91 20 2546 1234",
)
LONG = (
    "Nebulisation with salbutamol and ipratropium, with the mask and tubing the patient "
    "takes home for the following days"
)
# (description, SAC/HSN, quantity, unit price, discount, GST rate %)
ITEMS = [
    ("Consultation, Dr. Anil Mehta (General Medicine)", "999312", D(1), D(600), D(0), D(0)),
    ("Paracetamol 500 mg tablets (strip of 15)", "30049099", D(2), D("32.50"), D(0), D(12)),
    (LONG, "999316", D(1), D(450), D(50), D(18)),
]


def make_line(item: tuple[str, str, D, D, D, D], *, inter: bool) -> DocLine:
    description, code, quantity, price, discount, rate = item
    taxable = quantity * price - discount
    tax = (taxable * rate / 100).quantize(D("0.01"))
    half = (tax / 2).quantize(D("0.01"))
    return DocLine(
        description=description,
        sac_hsn=code,
        quantity=quantity,
        unit_price=price,
        discount=discount,
        taxable=taxable,
        tax_rate=rate,
        cgst=D(0) if inter else half,
        sgst=D(0) if inter else tax - half,
        igst=tax if inter else D(0),
        total=taxable + tax,
    )


def make_invoice(
    *,
    inter: bool = False,
    items: list[tuple[str, str, D, D, D, D]] | None = None,
    clinic: Party = CLINIC,
    paid: D = D(500),
) -> InvoiceDocument:
    lines = [make_line(item, inter=inter) for item in (items or ITEMS)]
    subtotal = sum((line.quantity * line.unit_price for line in lines), D(0))
    discount = sum((line.discount for line in lines), D(0))
    cgst = sum((line.cgst for line in lines), D(0))
    sgst = sum((line.sgst for line in lines), D(0))
    igst = sum((line.igst for line in lines), D(0))
    grand = subtotal - discount + cgst + sgst + igst
    return InvoiceDocument(
        clinic=clinic,
        patient_name="सुनीता शर्मा",
        patient_number="P-000123",
        patient_phone="+91 98220 12345",
        number="OPD/2026-27/000123",
        issued_on="25/11/2026",
        place_of_supply="Karnataka" if inter else "Maharashtra",  # as invoices store it
        inter_state=inter,
        lines=lines,
        subtotal=subtotal,
        discount_total=discount,
        tax_total=cgst + sgst + igst,
        cgst_total=cgst,
        sgst_total=sgst,
        igst_total=igst,
        grand_total=grand,
        payments=[DocPayment("25/11/2026", "UPI", "UTR 432112345678", paid)] if paid else [],
        amount_paid=paid,
        balance_due=grand - paid,
        status="partial" if paid else "issued",
    )


RECEIPT = ReceiptDocument(
    clinic=CLINIC,
    patient_name="सुनीता शर्मा",
    receipt_number="RCP/2026-27/000045",
    invoice_number="OPD/2026-27/000123",
    paid_on="25/11/2026",
    method="UPI",
    reference="UTR 432112345678",
    amount=D("1234.50"),
    balance_after=D("260.30"),
    kind="payment",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fonts")


def pages(data: bytes) -> list[tuple[float, float]]:
    """Each page's size in points (fpdf2 writes one MediaBox, on the page tree)."""
    count = len(re.findall(rb"/Type /Page\b(?!s)", data))
    size = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", data)
    assert size is not None
    return [(float(size.group(1)), float(size.group(2)))] * count


def flat(data: bytes) -> str:
    return " ".join(pdf_text(data).split())


def test_an_intra_state_invoice_shows_what_rule_46_asks_for(cache: Path) -> None:
    data = invoice_pdf(cache, make_invoice())  # an exempt consultation and taxed goods
    assert data.startswith(b"%PDF-")
    assert len(pages(data)) == 1
    text = flat(data)
    for expected in (
        "Invoice-cum-Bill of Supply",
        "Sharma Family Clinic",
        "12, MG Road, Kothrud",
        "GSTIN: 27AAPFS1234K1Z5",
        "State: Maharashtra",
        "State code: 27",
        "OPD/2026-27/000123",
        "25/11/2026",
        "Partly paid",
        "सुनीता शर्मा",
        "+91 98220 12345",
        "Place of supply",
        "Maharashtra (27)",
        "Reverse charge",
        "SAC/HSN",
        "999312",
        "30049099",
        "999316",
        "Taxable value (₹)",
        "CGST (₹)",
        "SGST (₹)",
        "6% + 6%",
        "9% + 9%",
        "400.00",  # the nebulisation's taxable value after its discount
        "₹1,115.00",  # subtotal
        "\N{MINUS SIGN}₹50.00",  # discount
        "₹39.90",  # CGST and SGST totals
        "₹79.80",  # tax total
        "₹1,144.80",
        "Rupees One Thousand One Hundred Forty-Four and Eighty Paise Only",
        "UTR 432112345678",
        "₹500.00",
        "Balance due",
        "₹644.80",
        "Original for Recipient",
        "For Sharma Family Clinic",
        "Authorised signatory",
        "Page 1 of 1",
    ):
        assert expected in text, expected
    assert "IGST" not in text


def test_an_inter_state_invoice_has_igst_columns_and_no_cgst_or_sgst(cache: Path) -> None:
    text = flat(invoice_pdf(cache, make_invoice(inter=True, items=ITEMS[1:])))  # all taxed
    for expected in (
        "Tax Invoice",
        "IGST (₹)",
        "IGST rate",
        "18%",
        "72.00",
        "₹79.80",
        "Karnataka (29)",
    ):
        assert expected in text, expected
    assert "Inter-state" in text
    assert "CGST" not in text and "SGST" not in text


def test_an_invoice_with_no_tax_is_a_bill_of_supply_without_tax_columns(cache: Path) -> None:
    exempt = [(*item[:5], D(0)) for item in ITEMS]
    doc = make_invoice(items=exempt)
    assert doc.tax_total == 0
    text = flat(invoice_pdf(cache, doc))
    assert "Bill of Supply" in text and "Tax Invoice" not in text
    assert "Bill no." in text and "exempt from GST" in text
    for absent in ("CGST", "SGST", "IGST", "Taxable value"):
        assert absent not in text, absent
    assert "999312" in text and "₹1,065.00" in text  # codes and the total still shown
    assert "Rupees One Thousand Sixty-Five Only" in text


def test_a_clinic_without_a_gstin_issues_a_plain_invoice(cache: Path) -> None:
    doc = make_invoice(
        clinic=replace(CLINIC, gstin=None),
        items=[(*item[:5], D(0)) for item in ITEMS],
    )
    assert document_title(doc) == "Invoice"
    text = flat(invoice_pdf(cache, doc))
    assert "Invoice" in text and "GSTIN" not in text
    assert "Tax Invoice" not in text and "Bill of Supply" not in text


def test_an_invoice_without_payments_says_none_and_owes_the_whole(cache: Path) -> None:
    text = flat(invoice_pdf(cache, make_invoice(paid=D(0))))
    assert "Payments received" in text and "None yet." in text
    assert "Unpaid" in text and "₹0.00" in text
    assert text.count("₹1,144.80") == 2  # the grand total and the balance due


def test_the_rupee_sign_is_drawn_with_a_face_that_has_it(cache: Path) -> None:
    data = invoice_pdf(cache, make_invoice())
    assert "₹1,144.80" in pdf_text(data)
    # The body face has no ₹; the Latin-extended face it falls back to does.
    faces = {name: (script, stem) for name, script, stem in FACES}
    latin = TTFont(_truetype(cache, *faces["noto-latin"], 400)).getBestCmap()
    extended = TTFont(_truetype(cache, *faces["noto-latin-ext"], 400)).getBestCmap()
    assert 0x20B9 not in latin and 0x20B9 in extended
    assert b"noto-sans-devanagari-latin-ext" in data or b"NotoSansDevanagari" in data


def test_a_long_description_wraps_inside_its_cell(cache: Path) -> None:
    runs = pdf_runs(invoice_pdf(cache, make_invoice()))
    pieces = [(y, text) for _x, y, text in runs if text and text in LONG]
    assert len({y for y, _ in pieces}) >= 3, pieces  # on three lines or more
    assert " ".join(text for _, text in sorted(pieces, key=lambda p: -p[0])) == LONG


def test_a_devanagari_description_in_the_table_reads_back(cache: Path) -> None:
    items = [("पैरासिटामोल 500 mg गोली", "30049099", D(2), D("32.50"), D(0), D(12)), *ITEMS]
    text = flat(invoice_pdf(cache, make_invoice(items=items)))
    assert "पैरासिटामोल 500 mg गोली" in text and "सुनीता शर्मा" in text


def test_sixty_lines_run_over_pages_with_the_heading_row_on_each(cache: Path) -> None:
    items = [(f"Item {n:02d} {ITEMS[n % 3][0]}", *ITEMS[n % 3][1:]) for n in range(1, 61)]
    doc = make_invoice(items=items)
    data = invoice_pdf(cache, doc)
    count = len(pages(data))
    assert count > 1
    flat_text = flat(data)
    assert flat_text.count("SAC/HSN") == count  # the heading row repeated on every page
    assert flat_text.count("Taxable value (₹)") == count
    for n in (1, 30, 60):
        assert f"Item {n:02d}" in flat_text
    assert f"Page {count} of {count}" in flat_text
    assert "Rupees" in flat_text and "Balance due" in flat_text


def test_a_payment_receipt_is_one_a5_page_with_the_amount_in_figures_and_words(
    cache: Path,
) -> None:
    data = receipt_pdf(cache, RECEIPT)
    assert data.startswith(b"%PDF-")
    assert [(round(w), round(h)) for w, h in pages(data)] == [(420, 595)]  # A5 in points
    text = flat(data)
    for expected in (
        "Payment Receipt",
        "RCP/2026-27/000045",
        "OPD/2026-27/000123",
        "Received from",
        "सुनीता शर्मा",
        "UPI",
        "UTR 432112345678",
        "₹1,234.50",
        "Rupees One Thousand Two Hundred Thirty-Four and Fifty Paise Only",
        "₹260.30",
        "GSTIN: 27AAPFS1234K1Z5",
    ):
        assert expected in text, expected
    assert "Refund" not in text


def test_a_refund_receipt_says_refund(cache: Path) -> None:
    doc = replace(RECEIPT, kind="refund", amount=D("500"), balance_after=D(0), reference=None)
    text = flat(receipt_pdf(cache, doc))
    for expected in ("Refund Receipt", "Refunded to", "Amount refunded", "₹500.00"):
        assert expected in text, expected
    assert "Rupees Five Hundred Only" in text
    assert "Payment Receipt" not in text and "Reference" not in text


def test_a_receipt_of_an_unknown_kind_is_refused(cache: Path) -> None:
    with pytest.raises(ValueError, match=r"^kind:"):
        receipt_pdf(cache, replace(RECEIPT, kind="credit"))


EXEMPT = ITEMS[0]  # a consultation: healthcare services are exempt
TAXED = ITEMS[1]  # medicines: taxed at 12%


@pytest.mark.parametrize(
    ("gstin", "items", "title"),
    [
        ("27AAPFS1234K1Z5", [TAXED, ITEMS[2]], "Tax Invoice"),  # Rule 46
        ("27AAPFS1234K1Z5", [EXEMPT, (*TAXED[:5], D(0))], "Bill of Supply"),  # Rule 49
        ("27AAPFS1234K1Z5", [EXEMPT, TAXED], "Invoice-cum-Bill of Supply"),  # Rule 46A
        (None, [EXEMPT], "Invoice"),  # not registered: no GST document at all
    ],
    ids=["all-taxed", "all-exempt", "mixed", "no-gstin"],
)
def test_the_document_is_named_by_the_rule_its_lines_fall_under(
    gstin: str | None, items: list[tuple[str, str, D, D, D, D]], title: str
) -> None:
    doc = make_invoice(clinic=replace(CLINIC, gstin=gstin), items=items)
    assert document_title(doc) == title


def test_a_taxed_line_whose_tax_rounds_to_nothing_still_makes_a_tax_invoice() -> None:
    # 5% of 5 paise is a quarter paisa: the tax total is zero, but the supply is taxable.
    doc = make_invoice(items=[("Cotton swab", "30059090", D(1), D("0.05"), D(0), D(5))])
    assert doc.tax_total == 0
    assert document_title(doc) == "Tax Invoice"


def test_a_mix_of_exempt_and_taxed_lines_is_one_invoice_cum_bill_of_supply(cache: Path) -> None:
    """Rule 46A: a registered clinic supplying exempt and taxed items to a patient (an
    unregistered person) may issue one invoice-cum-bill of supply carrying the particulars
    of both Rule 46 and Rule 49."""
    text = flat(invoice_pdf(cache, make_invoice()))  # consultation exempt, medicines taxed
    assert "Invoice-cum-Bill of Supply" in text
    assert "Tax Invoice" not in text
    for expected in (
        "Invoice no.",
        "Taxable value (₹)",
        "Exempt",  # the consultation's rate
        "6% + 6%",
        "Reverse charge",
        "Original for Recipient",
        "exempt from GST",
    ):
        assert expected in text, expected


def test_every_gst_document_is_the_original_for_the_recipient(cache: Path) -> None:
    """Rule 48(2): an invoice for services is made in duplicate, the original marked
    "Original for Recipient"; the copy a patient is given or sent is that original."""
    exempt = [(*item[:5], D(0)) for item in ITEMS]
    taxed = [item for item in ITEMS if item[5]]
    for items in (ITEMS, exempt, taxed):
        assert "Original for Recipient" in flat(invoice_pdf(cache, make_invoice(items=items)))
    unregistered = make_invoice(clinic=replace(CLINIC, gstin=None), items=exempt)
    assert "Original for Recipient" not in flat(invoice_pdf(cache, unregistered))


def test_an_invoice_has_a_signature_line_and_claims_no_exemption_from_it(cache: Path) -> None:
    """Rule 46(q) and Rule 49(h): the supplier's or its authorised representative's
    signature. The proviso that waives it covers only an invoice issued electronically
    under the Information Technology Act, which a PDF printed at the desk is not."""
    exempt = [(*item[:5], D(0)) for item in ITEMS]
    for doc in (make_invoice(), make_invoice(items=exempt)):
        text = flat(invoice_pdf(cache, doc))
        assert "For Sharma Family Clinic" in text and "Authorised signatory" in text
        assert "without a signature" not in text
        assert text.index("Authorised signatory") > text.index("Balance due")


def test_the_signature_line_moves_to_a_new_page_rather_than_split(cache: Path) -> None:
    moved = 0
    for count in range(8, 22):  # the end of the invoice walks down page one and over
        items = [(f"Item {n:02d}", *ITEMS[n % 3][1:]) for n in range(count)]
        runs = pdf_runs(invoice_pdf(cache, make_invoice(items=items)))
        ys = {
            text: [y for _x, y, run in runs if run == text]
            for text in ("Balance due", "For Sharma Family Clinic", "Authorised signatory")
        }
        assert all(len(found) == 1 for found in ys.values()), (count, ys)
        (due,), (clinic,), (signatory,) = ys.values()
        assert 0 < clinic - signatory < 60, (count, ys)  # together, on one page
        moved += clinic > due  # higher up than the balance: on the next page
    assert moved  # some of these lengths did need the new page


def test_the_place_of_supply_gives_the_state_and_its_code(cache: Path) -> None:
    """Rule 46(n): the place of supply with the name of the State (and, for an unregistered
    recipient, Rule 46(e)/(f), the State's code)."""
    doc = replace(make_invoice(inter=True), place_of_supply="Karnataka")
    text = flat(invoice_pdf(cache, doc))
    assert "Karnataka (29)" in text and "Inter-state (IGST)" in text
    home = replace(make_invoice(), place_of_supply="Maharashtra")
    assert "Maharashtra (27)" in flat(invoice_pdf(cache, home))
    unknown = replace(make_invoice(), place_of_supply="Atlantis")
    assert "Atlantis" in flat(invoice_pdf(cache, unknown))


def test_the_patients_address_is_printed_below_the_name(cache: Path) -> None:
    """Rule 46(e)/(f): the unregistered recipient's name and address."""
    doc = replace(make_invoice(), patient_address_lines=("Aundh", "Pune 411007"))
    text = flat(invoice_pdf(cache, doc))
    assert text.index("सुनीता शर्मा") < text.index("Aundh") < text.index("Pune 411007")


def test_a_receipt_is_a_payment_receipt_with_a_signature_line(cache: Path) -> None:
    """A payment is only taken against an issued invoice, so its receipt is not the
    receipt voucher Rule 50 asks for on an advance: no GST title, but signed."""
    text = flat(receipt_pdf(cache, RECEIPT))
    assert "Payment Receipt" in text and "Voucher" not in text
    assert "For Sharma Family Clinic" in text and "Authorised signatory" in text
    assert "without a signature" not in text
