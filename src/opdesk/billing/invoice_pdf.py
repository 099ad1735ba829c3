"""Invoice and receipt PDFs (A4 invoice, A5 receipt), from plain data the billing
services fill in; this module reads no database.

Which document an issued invoice is (CGST Rules, 2017; the patient is an unregistered
recipient):

- every line taxed: a "Tax Invoice" (Rule 46);
- every line exempt (tax rate zero: consultations and other healthcare services, and
  nil-rated goods, which section 2(47) of the CGST Act counts as exempt): a "Bill of
  Supply" (Rule 49), drawn without the tax columns;
- some of each: one "Invoice-cum-Bill of Supply" (Rule 46A, which allows a single
  document for taxable and exempt supplies to an unregistered person and asks for the
  particulars of both rules), its exempt lines marked "Exempt";
- a clinic without a GSTIN is not registered and issues none of these: a plain "Invoice".

The kind follows the lines' rates, not the tax total: a taxed line whose tax rounds to
nothing is still a taxable supply.

What a GST document shows (Rule 46; Rule 49 asks for a subset):

- (a) the clinic's name, address and GSTIN, with its state and the state code (the
  first two digits of the GSTIN);
- (b) the number (consecutive per financial year; made in ``invoices``) and (c) the date;
- (d) to (f) the patient's name and, where known, address (a patient has no GSTIN);
- (g) to (k) per line the SAC (services) or HSN (goods) code, the description, the quantity,
  the rate, the discount and the taxable value after it, and the line's total;
- (l) and (m) the rate and amount of tax, as CGST + SGST for a supply within the clinic's
  state or IGST for a supply to another state (only the columns that apply are drawn);
- (n) the place of supply with the state's name and code;
- (p) whether tax is payable on reverse charge (never, for a clinic's own supplies);
- (q) a signature line for the clinic's authorised signatory. The proviso that waives the
  signature covers an invoice issued electronically under the Information Technology
  Act, 2000, which a PDF printed at the desk is not, so the document does not claim it.

Rule 48(2) makes an invoice for services in duplicate, the original marked "Original for
Recipient": the PDF is the patient's copy and says so (the clinic keeps the record).

A receipt acknowledges a payment against an issued invoice (payments refuse a draft), so
it is not the receipt voucher Rule 50 asks for on an advance: a plain, signed receipt.

Fonts are the Noto faces the prescription and consent PDFs use (documents.pdf), one
weight only (see clinical/rx_pdf.py): Latin, with ₹ from the Latin-extended face and
Devanagari and Tamil names by fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from opdesk.billing.words import rupees_in_words
from opdesk.documents.pdf import add_faces, body_font, needs_shaping
from opdesk.formatting import rupees
from opdesk.validation import ascii_digits

NEXT_LINE: dict[str, Any] = {"new_x": "LMARGIN", "new_y": "NEXT"}
GREY = (90, 90, 90)
BLACK = (0, 0, 0)
HEADING_FILL = (232, 232, 232)
ZERO = Decimal(0)
TAX_INVOICE = "Tax Invoice"
BILL_OF_SUPPLY = "Bill of Supply"
INVOICE_CUM_BILL = "Invoice-cum-Bill of Supply"
PLAIN_INVOICE = "Invoice"
GST_TITLES = (TAX_INVOICE, BILL_OF_SUPPLY, INVOICE_CUM_BILL)
TAXED_TITLES = (TAX_INVOICE, INVOICE_CUM_BILL)
COPY_MARK = "Original for Recipient"
# The GST state codes (the first two digits of a GSTIN), by the state's name as a clinic
# writes it; a few names have a second spelling in use.
STATE_CODES = {
    "jammu and kashmir": "01",
    "himachal pradesh": "02",
    "punjab": "03",
    "chandigarh": "04",
    "uttarakhand": "05",
    "haryana": "06",
    "delhi": "07",
    "rajasthan": "08",
    "uttar pradesh": "09",
    "bihar": "10",
    "sikkim": "11",
    "arunachal pradesh": "12",
    "nagaland": "13",
    "manipur": "14",
    "mizoram": "15",
    "tripura": "16",
    "meghalaya": "17",
    "assam": "18",
    "west bengal": "19",
    "jharkhand": "20",
    "odisha": "21",
    "orissa": "21",
    "chhattisgarh": "22",
    "madhya pradesh": "23",
    "gujarat": "24",
    "dadra and nagar haveli and daman and diu": "26",
    "maharashtra": "27",
    "karnataka": "29",
    "goa": "30",
    "lakshadweep": "31",
    "kerala": "32",
    "tamil nadu": "33",
    "puducherry": "34",
    "pondicherry": "34",
    "andaman and nicobar islands": "35",
    "telangana": "36",
    "andhra pradesh": "37",
    "ladakh": "38",
}
STATUS_WORDS = {
    "issued": "Unpaid",
    "partial": "Partly paid",
    "paid": "Paid",
    "refunded": "Refunded",
}


@dataclass(frozen=True)
class Party:
    name: str
    address_lines: list[str]
    gstin: str | None
    state: str | None
    phone: str | None


@dataclass(frozen=True)
class DocLine:
    description: str
    sac_hsn: str | None
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    taxable: Decimal
    tax_rate: Decimal  # percent, the whole GST rate (CGST and SGST are half each)
    cgst: Decimal
    sgst: Decimal
    igst: Decimal
    total: Decimal


@dataclass(frozen=True)
class DocPayment:
    paid_on: str
    method: str
    reference: str | None
    amount: Decimal


@dataclass(frozen=True)
class InvoiceDocument:
    clinic: Party
    patient_name: str
    patient_number: str | None
    patient_phone: str | None
    number: str
    issued_on: str
    place_of_supply: str | None
    inter_state: bool
    lines: list[DocLine]
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    cgst_total: Decimal
    sgst_total: Decimal
    igst_total: Decimal
    grand_total: Decimal
    payments: list[DocPayment]
    amount_paid: Decimal
    balance_due: Decimal
    status: str  # issued / partial / paid / refunded
    patient_address_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceiptDocument:
    clinic: Party
    patient_name: str
    receipt_number: str
    invoice_number: str
    paid_on: str
    method: str
    reference: str | None
    amount: Decimal
    balance_after: Decimal
    kind: str  # "payment" or "refund"


def document_title(doc: InvoiceDocument) -> str:
    """Which document the invoice is, by its lines' rates (see the module's docstring)."""
    if not doc.clinic.gstin:
        return PLAIN_INVOICE
    taxed = [line.tax_rate > 0 for line in doc.lines]
    if not any(taxed):
        return BILL_OF_SUPPLY
    if all(taxed):
        return TAX_INVOICE
    return INVOICE_CUM_BILL


def state_with_code(state: str) -> str:
    """``Karnataka (29)``: a state's name with its GST state code, when it is known."""
    name = " ".join(state.replace("&", " and ").split()).casefold()
    code = STATE_CODES.get(name)
    return f"{state} ({code})" if code else state


class _Pdf(FPDF):
    """A page footer on every page: the document's title and number, and "Page n of N"."""

    note = ""

    def footer(self) -> None:
        self.set_y(-12)
        body_font(self, 7)
        self.set_text_color(*GREY)
        width = self.w - self.l_margin - self.r_margin
        self.cell(width - 25, 4, self.note)
        self.cell(25, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(*BLACK)


def _new_pdf(cache: Path, page_format: str | tuple[float, float], margin: float, note: str) -> _Pdf:
    pdf = _Pdf(format=page_format)
    pdf.note = note
    pdf.set_margins(margin, margin, margin)
    pdf.set_auto_page_break(True, margin=18)
    add_faces(pdf, cache)
    pdf.alias_nb_pages()
    pdf.add_page()
    return pdf


def _figure(amount: Decimal) -> str:
    """An amount in a column headed (₹): ``1,23,456.50`` without the sign."""
    return rupees(amount).replace("\N{INDIAN RUPEE SIGN}", "")


def _quantity(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}%"


def _state_line(party: Party) -> str:
    parts = []
    if party.state:
        parts.append(f"State: {party.state}")
    if party.gstin and ascii_digits(party.gstin[:2]):
        parts.append(f"State code: {party.gstin[:2]}")
    return " · ".join(parts)


def _letterhead(pdf: FPDF, clinic: Party, width: float) -> None:
    body_font(pdf, 15)
    pdf.multi_cell(width, 7, clinic.name, **NEXT_LINE)
    body_font(pdf, 8.5)
    for line in clinic.address_lines:
        if line:
            pdf.multi_cell(width, 4.2, line, **NEXT_LINE)
    if clinic.phone:
        pdf.multi_cell(width, 4.2, f"Phone: {clinic.phone}", **NEXT_LINE)
    if clinic.gstin:
        pdf.multi_cell(width, 4.2, f"GSTIN: {clinic.gstin}", **NEXT_LINE)
    state = _state_line(clinic)
    if state:
        pdf.multi_cell(width, 4.2, state, **NEXT_LINE)


def _label_values(
    pdf: FPDF, x: float, rows: list[tuple[str, str]], label_w: float, value_w: float
) -> None:
    for label, value in rows:
        pdf.set_x(x)
        body_font(pdf, 8.5)
        pdf.set_text_color(*GREY)
        pdf.cell(label_w, 4.6, label)
        pdf.set_text_color(*BLACK)
        body_font(pdf, 8.5)
        pdf.multi_cell(value_w, 4.6, value, **NEXT_LINE)


def _rule(pdf: FPDF, gap: float = 2.5) -> None:
    pdf.ln(gap)
    pdf.set_draw_color(150, 150, 150)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(gap)


def _columns(doc: InvoiceDocument, title: str) -> tuple[list[str], list[float], list[str]]:
    """Headings, widths (mm) and alignment of the line table: the tax columns that apply."""
    head = ["#", "Description", "SAC/HSN", "Qty", "Rate (₹)", "Discount (₹)"]
    widths = [6.0, 0.0, 15.0, 9.0, 16.0, 15.0]
    if title == BILL_OF_SUPPLY or (title == PLAIN_INVOICE and doc.tax_total == 0):
        head += ["Amount (₹)"]
        widths += [20.0]
    elif doc.inter_state:
        head += ["Taxable value (₹)", "IGST rate", "IGST (₹)", "Total (₹)"]
        widths += [18.0, 12.0, 16.0, 19.0]
    else:
        head += ["Taxable value (₹)", "GST rate", "CGST (₹)", "SGST (₹)", "Total (₹)"]
        widths += [18.0, 15.0, 15.0, 15.0, 19.0]
    align = ["RIGHT", "LEFT", "LEFT"] + ["RIGHT"] * (len(head) - 3)
    return head, widths, align


def _line_cells(doc: InvoiceDocument, title: str, n: int, line: DocLine, count: int) -> list[str]:
    cells = [
        str(n),
        line.description,
        line.sac_hsn or "",
        _quantity(line.quantity),
        _figure(line.unit_price),
        _figure(line.discount),
    ]
    if count == 7:  # no tax columns
        return [*cells, _figure(line.total)]
    cells.append(_figure(line.taxable))
    if title in GST_TITLES and not line.tax_rate:
        # An exempt line of an invoice-cum-bill of supply: no tax, and said so.
        zero = [_figure(ZERO)] * (1 if doc.inter_state else 2)
        return [*cells, "Exempt", *zero, _figure(line.total)]
    if doc.inter_state:
        return [*cells, _percent(line.tax_rate), _figure(line.igst), _figure(line.total)]
    half = _percent(line.tax_rate / 2)
    rate = f"{half} + {half}" if line.tax_rate else "0%"
    return [*cells, rate, _figure(line.cgst), _figure(line.sgst), _figure(line.total)]


def _totals(pdf: FPDF, rows: list[tuple[str, str]], *, strong_last: bool = True) -> None:
    """Label and amount pairs in a block at the right edge."""
    label_w, value_w = 52.0, 32.0
    x = pdf.w - pdf.r_margin - label_w - value_w
    for i, (label, value) in enumerate(rows):
        last = strong_last and i == len(rows) - 1
        size = 10.5 if last else 8.5
        if last:
            pdf.set_draw_color(150, 150, 150)
            pdf.line(x, pdf.get_y() + 0.5, pdf.w - pdf.r_margin, pdf.get_y() + 0.5)
            pdf.ln(1)
        pdf.set_x(x)
        body_font(pdf, size)
        pdf.cell(label_w, 5.5 if last else 4.6, label)
        body_font(pdf, size)
        pdf.cell(value_w, 5.5 if last else 4.6, value, align="R", **NEXT_LINE)


def _signature(pdf: FPDF, clinic: str, block_w: float) -> None:
    """ "For <clinic>", room to sign, a line and "Authorised signatory" at the right edge,
    kept together: on a new page when the rest of this one is too short.
    """
    height = 26.0
    if pdf.get_y() + 6 + height > pdf.page_break_trigger:
        pdf.add_page()
    pdf.ln(6)
    x = pdf.w - pdf.r_margin - block_w
    pdf.set_x(x)
    body_font(pdf, 8.5)
    pdf.multi_cell(block_w, 4.6, f"For {clinic}", align="C", **NEXT_LINE)
    pdf.ln(12)
    pdf.set_draw_color(150, 150, 150)
    pdf.line(x, pdf.get_y(), x + block_w, pdf.get_y())
    pdf.ln(1)
    pdf.set_x(x)
    pdf.set_text_color(*GREY)
    pdf.cell(block_w, 4.6, "Authorised signatory", align="C", **NEXT_LINE)
    pdf.set_text_color(*BLACK)


def invoice_pdf(cache: Path, doc: InvoiceDocument) -> bytes:
    """The invoice as an A4 PDF (see the module's docstring for what it shows)."""
    title = document_title(doc)
    pdf = _new_pdf(cache, "A4", 12, f"{title} {doc.number}")
    width = pdf.w - pdf.l_margin - pdf.r_margin
    right_w = 68.0
    left_w = width - right_w - 6

    # Clinic (left) and the document's title, number and date (right)
    top = pdf.get_y()
    _letterhead(pdf, doc.clinic, left_w)
    below_left = pdf.get_y()
    x = pdf.w - pdf.r_margin - right_w
    pdf.set_xy(x, top)
    body_font(pdf, 15)
    if pdf.get_string_width(title) > right_w:
        body_font(pdf, 12)  # "Invoice-cum-Bill of Supply"
    pdf.cell(right_w, 7, title, align="R", **NEXT_LINE)
    if title in GST_TITLES:
        pdf.set_x(x)
        body_font(pdf, 8)
        pdf.set_text_color(*GREY)
        pdf.cell(right_w, 4.2, COPY_MARK, align="R", **NEXT_LINE)
        pdf.set_text_color(*BLACK)
    rows = [
        ("Bill no." if title == BILL_OF_SUPPLY else "Invoice no.", doc.number),
        ("Date", doc.issued_on),
        ("Status", STATUS_WORDS.get(doc.status, doc.status.capitalize())),
    ]
    _label_values(pdf, x, rows, 22, right_w - 22)
    pdf.set_y(max(below_left, pdf.get_y()))
    _rule(pdf)

    # Patient (left) and place of supply (right)
    top = pdf.get_y()
    body_font(pdf, 8.5)
    pdf.set_text_color(*GREY)
    pdf.cell(left_w, 4.6, "Billed to", **NEXT_LINE)
    pdf.set_text_color(*BLACK)
    body_font(pdf, 11)
    pdf.multi_cell(left_w, 5.5, doc.patient_name, **NEXT_LINE)
    body_font(pdf, 8.5)
    details = []
    if doc.patient_number:
        details.append(f"Patient no. {doc.patient_number}")
    if doc.patient_phone:
        details.append(f"Phone {doc.patient_phone}")
    for line in doc.patient_address_lines:
        if line:
            pdf.multi_cell(left_w, 4.6, line, **NEXT_LINE)
    if details:
        pdf.multi_cell(left_w, 4.6, " · ".join(details), **NEXT_LINE)
    below_left = pdf.get_y()
    pdf.set_xy(x, top)
    place = doc.place_of_supply or doc.clinic.state
    supply = [("Place of supply", state_with_code(place) if place else "—")]
    if title in TAXED_TITLES:
        supply.append(("Supply", "Inter-state (IGST)" if doc.inter_state else "Intra-state"))
        supply.append(("Reverse charge", "No"))
    _label_values(pdf, x, supply, 26, right_w - 26)
    pdf.set_y(max(below_left, pdf.get_y()))
    pdf.ln(4)

    # Lines
    head, widths, align = _columns(doc, title)
    widths[1] = width - sum(widths)
    cells = [
        _line_cells(doc, title, n, line, len(head)) for n, line in enumerate(doc.lines, start=1)
    ]
    pdf.set_text_shaping(needs_shaping([line.description for line in doc.lines]))
    body_font(pdf, 7.5)
    pdf.set_draw_color(170, 170, 170)
    with pdf.table(
        col_widths=widths,
        width=width,
        text_align=align,
        line_height=3.8,
        padding=(1.2, 1.2),
        headings_style=FontFace(emphasis="", fill_color=HEADING_FILL),
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for text in head:
            heading.cell(text)
        for texts in cells:
            row = table.row()
            for text in texts:
                row.cell(text)
    pdf.set_text_shaping(True)
    pdf.ln(3)

    # Totals
    totals = [("Subtotal", rupees(doc.subtotal))]
    if doc.discount_total:
        totals.append(("Discount", rupees(-doc.discount_total)))
    if title in TAXED_TITLES or doc.tax_total:
        if doc.inter_state:
            totals.append(("IGST", rupees(doc.igst_total)))
        else:
            totals.append(("CGST", rupees(doc.cgst_total)))
            totals.append(("SGST", rupees(doc.sgst_total)))
        totals.append(("Total tax", rupees(doc.tax_total)))
    totals.append(("Grand total", rupees(doc.grand_total)))
    _totals(pdf, totals)
    pdf.ln(2)
    body_font(pdf, 8.5)
    pdf.set_text_color(*GREY)
    pdf.cell(width, 4.6, "Amount in words", **NEXT_LINE)
    pdf.set_text_color(*BLACK)
    body_font(pdf, 9.5)
    pdf.multi_cell(width, 5, rupees_in_words(doc.grand_total), **NEXT_LINE)
    exempt_note = {
        BILL_OF_SUPPLY: "The services and goods on this bill are exempt from GST; "
        "no tax is charged.",
        INVOICE_CUM_BILL: "The lines marked Exempt are exempt from GST and carry no tax; "
        "GST is charged on the other lines.",
    }.get(title)
    if exempt_note:
        body_font(pdf, 8)
        pdf.set_text_color(*GREY)
        pdf.multi_cell(width, 4.2, exempt_note, **NEXT_LINE)
        pdf.set_text_color(*BLACK)
    _rule(pdf, 3)

    # Payments and what is still owed
    body_font(pdf, 10)
    pdf.cell(width, 5.5, "Payments received", **NEXT_LINE)
    pdf.ln(1)
    if doc.payments:
        body_font(pdf, 8)
        with pdf.table(
            col_widths=(30, 30, width - 30 - 30 - 32, 32),
            width=width,
            text_align=("LEFT", "LEFT", "LEFT", "RIGHT"),
            line_height=4,
            padding=(1.2, 1.2),
            headings_style=FontFace(emphasis="", fill_color=HEADING_FILL),
        ) as table:
            heading = table.row()
            for text in ("Date", "Method", "Reference", "Amount"):
                heading.cell(text)
            for payment in doc.payments:
                row = table.row()
                row.cell(payment.paid_on)
                row.cell(payment.method)
                row.cell(payment.reference or "")
                row.cell(rupees(payment.amount))
        pdf.ln(2)
    else:
        body_font(pdf, 8.5)
        pdf.cell(width, 4.6, "None yet.", **NEXT_LINE)
        pdf.ln(1)
    _totals(
        pdf, [("Amount paid", rupees(doc.amount_paid)), ("Balance due", rupees(doc.balance_due))]
    )
    _signature(pdf, doc.clinic.name, 62.0)
    return bytes(pdf.output())


def receipt_pdf(cache: Path, doc: ReceiptDocument) -> bytes:
    """A payment or refund receipt on one A5 page."""
    if doc.kind not in ("payment", "refund"):
        raise ValueError(f"kind: must be payment or refund, got {doc.kind!r}")
    refund = doc.kind == "refund"
    title = "Refund Receipt" if refund else "Payment Receipt"
    pdf = _new_pdf(
        cache,
        (148, 210),  # A5, given in mm (fpdf2 warns about the named format)
        11,
        f"{title} {doc.receipt_number}",
    )
    width = pdf.w - pdf.l_margin - pdf.r_margin
    _letterhead(pdf, doc.clinic, width)
    _rule(pdf, 3)
    body_font(pdf, 14)
    pdf.cell(width, 7, title, **NEXT_LINE)
    pdf.ln(1)
    rows = [
        ("Receipt no.", doc.receipt_number),
        ("Date", doc.paid_on),
        ("Invoice no.", doc.invoice_number),
        ("Refunded to" if refund else "Received from", doc.patient_name),
        ("Method", doc.method),
    ]
    if doc.reference:
        rows.append(("Reference", doc.reference))
    _label_values(pdf, pdf.l_margin, rows, 32, width - 32)
    pdf.ln(4)
    body_font(pdf, 8.5)
    pdf.set_text_color(*GREY)
    pdf.cell(width, 4.6, "Amount refunded" if refund else "Amount received", **NEXT_LINE)
    pdf.set_text_color(*BLACK)
    body_font(pdf, 18)
    pdf.cell(width, 9, rupees(doc.amount), **NEXT_LINE)
    body_font(pdf, 9.5)
    pdf.multi_cell(width, 5, rupees_in_words(doc.amount), **NEXT_LINE)
    pdf.ln(3)
    body_font(pdf, 9)
    pdf.multi_cell(
        width,
        5,
        f"Balance due on invoice {doc.invoice_number} after this "
        f"{'refund' if refund else 'payment'}: {rupees(doc.balance_after)}",
        **NEXT_LINE,
    )
    _signature(pdf, doc.clinic.name, 56.0)
    return bytes(pdf.output())
