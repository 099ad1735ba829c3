"""An issued prescription as an A4 PDF: letterhead, doctor with registration number,
patient, medicines, the verification QR code and the signature line. How to take each
medicine is written in English (for the pharmacist) and below it in the patient's language
when it has a translation (Hindi, Marathi, Tamil: prescriptions.patient_line).

Fonts are the Noto faces the consent PDFs use (documents.pdf), one weight only: with a
bold face, fpdf2 2.8 draws the first Devanagari run of a page as boxes. The QR code is
drawn as squares (vector), so it stays sharp at any print size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from fpdf import FPDF

from opdesk.clinical.prescriptions import ItemView, duration_words
from opdesk.documents.pdf import add_faces, body_font

QR_SIZE_MM = 32.0
# Each block starts on a new line at the left margin (fpdf2 otherwise leaves the cursor
# at the right edge of the last cell, and the next line starts there).
NEXT_LINE: dict[str, Any] = {"new_x": "LMARGIN", "new_y": "NEXT"}


@dataclass(frozen=True)
class RxDocument:
    clinic_name: str
    clinic_address: str
    clinic_phone: str
    doctor_name: str
    doctor_specialty: str
    registration_number: str
    patient_name: str
    patient_number: str
    patient_age_sex: str
    issued_on: str
    prescription_id: str
    version: int
    items: list[ItemView]
    verify_url: str
    signed_hash: str
    fee_line: str = ""
    language: str = "en"  # the patient's: how to take each medicine is said in it too


def qr_modules(url: str) -> list[list[bool]]:
    """The QR code's dark modules (medium error correction, as printed)."""
    code = segno.make(url, error="m", micro=False)
    return [[bool(cell) for cell in row] for row in code.matrix]


def _qr(pdf: FPDF, url: str, x: float, y: float, size: float) -> None:
    modules = qr_modules(url)
    step = size / (len(modules) + 8)  # a quiet zone of four modules each side
    pdf.set_fill_color(255, 255, 255)
    pdf.rect(x, y, size, size, style="F")
    pdf.set_fill_color(0, 0, 0)
    for r, row in enumerate(modules):
        for c, dark in enumerate(row):
            if dark:
                pdf.rect(x + (c + 4) * step, y + (r + 4) * step, step, step, style="F")


def _line(item: ItemView) -> tuple[str, str]:
    """A medicine as two lines: what (name, strength, form) and how (dose, when, how long)."""
    what = " ".join(p for p in (item.name, item.strength or "", item.form or "") if p)
    how: list[str] = []
    if item.dose:
        how.append(item.dose)
    if item.frequency:
        words = item.frequency_words
        how.append(
            f"{item.frequency} ({words})" if words and words != item.frequency else item.frequency
        )
    if item.timing_words:
        how.append(item.timing_words)
    if item.route:
        how.append(item.route)
    days = duration_words(item.duration_days)
    if days:
        how.append(days)
    extra = []
    if item.instructions:
        extra.append(item.instructions)
    extra.append("generic allowed" if item.generic_allowed else "dispense as written")
    if item.refill_allowed:
        every = f", every {item.refill_interval_days} days" if item.refill_interval_days else ""
        extra.append(f"refills: {item.refill_remaining}{every}")
    return what, " · ".join(how + extra)


def render(cache: Path, doc: RxDocument) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    add_faces(pdf, cache)
    width = pdf.w - pdf.l_margin - pdf.r_margin

    # Letterhead
    body_font(pdf, 16)
    pdf.multi_cell(width - QR_SIZE_MM - 4, 8, doc.clinic_name, **NEXT_LINE)
    body_font(pdf, 9)
    for line in (doc.clinic_address, doc.clinic_phone):
        if line:
            pdf.multi_cell(width - QR_SIZE_MM - 4, 4.5, line, **NEXT_LINE)
    _qr(pdf, doc.verify_url, pdf.w - pdf.r_margin - QR_SIZE_MM, 14, QR_SIZE_MM)
    pdf.set_y(max(pdf.get_y(), 14 + QR_SIZE_MM) + 2)
    pdf.set_draw_color(60, 60, 60)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(3)

    # Doctor and patient
    body_font(pdf, 11)
    pdf.multi_cell(width, 5.5, f"{doc.doctor_name} · {doc.doctor_specialty}", **NEXT_LINE)
    body_font(pdf, 9)
    pdf.multi_cell(width, 4.5, f"Registration number: {doc.registration_number}", **NEXT_LINE)
    pdf.ln(2)
    body_font(pdf, 11)
    pdf.multi_cell(width, 5.5, f"Patient: {doc.patient_name} ({doc.patient_number})", **NEXT_LINE)
    body_font(pdf, 9)
    pdf.multi_cell(width, 4.5, f"{doc.patient_age_sex} · Date: {doc.issued_on}", **NEXT_LINE)
    pdf.ln(3)

    # Medicines
    body_font(pdf, 18)
    pdf.cell(0, 9, "Rx", new_x="LMARGIN", new_y="NEXT")
    for n, item in enumerate(doc.items, start=1):
        what, how = _line(item)
        body_font(pdf, 11)
        pdf.multi_cell(width, 5.5, f"{n}. {what}", **NEXT_LINE)
        body_font(pdf, 9)
        pdf.set_x(pdf.l_margin + 5)
        pdf.multi_cell(width - 5, 4.5, how, **NEXT_LINE)
        said = item.said_in(doc.language)
        if said:  # the patient's language, below the pharmacist's English
            body_font(pdf, 10)
            pdf.set_x(pdf.l_margin + 5)
            pdf.multi_cell(width - 5, 5.5, said, **NEXT_LINE)
        pdf.ln(1.5)
    if doc.fee_line:
        pdf.ln(2)
        body_font(pdf, 9)
        pdf.multi_cell(width, 4.5, doc.fee_line, **NEXT_LINE)

    # Signature
    pdf.ln(12)
    body_font(pdf, 10)
    x = pdf.w - pdf.r_margin - 70
    pdf.line(x, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.set_x(x)
    pdf.multi_cell(70, 5, f"{doc.doctor_name}\nDigitally signed (Ed25519)", align="C", **NEXT_LINE)
    pdf.ln(6)
    body_font(pdf, 7.5)
    pdf.multi_cell(
        width,
        3.8,
        f"Prescription {doc.prescription_id} · version {doc.version}\n"
        f"Check it at {doc.verify_url}\nSHA-256 {doc.signed_hash}",
    )
    return bytes(pdf.output())
