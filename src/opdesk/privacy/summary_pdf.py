"""``summary.pdf`` of a patient's data export: the same content as ``patient.json``, for
a person to read. The clinic, the patient, then each section as a short table. It reads
no database: it is drawn from the export's plain JSON data.

Fonts are the Noto faces of the other PDFs (``documents.pdf``), so names in Devanagari
or Tamil draw with real glyphs; shaping is turned on only for tables that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import FontFace

from opdesk.documents.pdf import NotedPdf, add_faces, body_font, needs_shaping

MARGIN = 14.0
GREY = (90, 90, 90)
BLACK = (0, 0, 0)
BORDER = (170, 170, 170)
HEADING_FILL = (232, 232, 232)
NO_VALUE = "—"
RUPEE = "\N{INDIAN RUPEE SIGN}"
NEXT_LINE: dict[str, Any] = {"new_x": "LMARGIN", "new_y": "NEXT"}


KOLKATA = ZoneInfo("Asia/Kolkata")
# The clinic's time zone while one summary is drawn (the tables' row makers read it).
_zone: ContextVar[ZoneInfo | None] = ContextVar("zone", default=None)


def _local(value: str) -> datetime | None:
    """An ISO time in the clinic's zone (None for a plain date)."""
    if len(value) <= 10:
        return None
    return datetime.fromisoformat(value).astimezone(_zone.get() or KOLKATA)


def _day(value: str | None) -> str:
    """``2026-03-01`` (the clinic's day) from an ISO date or time; a dash for none."""
    if not value:
        return NO_VALUE
    local = _local(value)
    return local.date().isoformat() if local is not None else value


def _when(value: str | None) -> str:
    """``2026-03-01 10:30`` in the clinic's time zone, from an ISO time."""
    if not value:
        return NO_VALUE
    local = _local(value)
    return local.strftime("%Y-%m-%d %H:%M") if local is not None else value


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return NO_VALUE
    return str(value)


def _money(value: str | None) -> str:
    return f"{RUPEE}{value}" if value is not None else NO_VALUE


def _heading(pdf: FPDF, text: str, count: int | None = None) -> None:
    pdf.set_text_shaping(needs_shaping([text]))
    pdf.ln(3)
    body_font(pdf, 12)
    title = f"{text} ({count})" if count is not None else text
    pdf.cell(0, 7, title, **NEXT_LINE)


def _muted(pdf: FPDF, text: str) -> None:
    pdf.set_text_shaping(needs_shaping([text]))
    body_font(pdf, 8.5)
    pdf.set_text_color(*GREY)
    pdf.multi_cell(0, 4.5, text, align="L", **NEXT_LINE)
    pdf.set_text_color(*BLACK)


def _table(
    pdf: FPDF,
    head: list[str] | None,
    widths: list[float],
    rows: list[list[str]],
) -> None:
    if not rows:
        _muted(pdf, "None.")
        return
    pdf.set_text_shaping(needs_shaping([t for row in [head or [], *rows] for t in row]))
    body_font(pdf, 8)
    pdf.set_draw_color(*BORDER)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    with pdf.table(
        col_widths=widths,
        width=width,
        align="LEFT",
        text_align="LEFT",
        line_height=4.2,
        padding=(1.1, 1.5),
        first_row_as_headings=head is not None,
        headings_style=FontFace(emphasis="", fill_color=HEADING_FILL),
        repeat_headings=1,
    ) as table:
        if head is not None:
            heading = table.row()
            for text in head:
                heading.cell(text)
        for texts in rows:
            row = table.row()
            for text in texts:
                row.cell(text)


def _profile_rows(p: dict[str, Any]) -> list[list[str]]:
    name = " ".join(part for part in (p["name"]["first"], p["name"].get("last")) if part)
    contact = p.get("emergencyContact") or {}
    rows = [
        ["Name", name],
        ["Patient number", p["number"]],
        ["Date of birth", _day(p.get("dob")) if p.get("dob") else f"about {p['ageYears']} years"],
        ["Gender", p["gender"]],
        ["Mobile", _text(p.get("phone"))],
        ["Email", _text(p.get("email"))],
        ["Address", ", ".join(x for x in (p.get("address"), p.get("city"), p.get("pinCode")) if x)],
        ["Blood group", _text(p.get("bloodGroup"))],
        ["ABHA number", _text(p.get("abhaNumber"))],
        ["ABHA address", _text(p.get("abhaAddress"))],
        ["Allergies", ", ".join(a["substance"] for a in p.get("allergies") or [])],
        ["Conditions", ", ".join(p.get("chronicConditions") or [])],
        ["Medications", ", ".join(m["name"] for m in p.get("ongoingMedications") or [])],
        ["Emergency contact", _text(contact.get("name"))],
        ["Registered", _day(p.get("createdAt"))],
    ]
    return [[label, value or NO_VALUE] for label, value in rows]


def _visit_note(v: dict[str, Any]) -> str:
    note = v.get("note")
    if not note:
        return "Not signed yet" if v["status"] != "signed" else NO_VALUE
    labels = {"s": "Complaint", "o": "Findings", "a": "Assessment", "p": "Plan"}
    return "\n".join(f"{labels[k]}: {note[k]}" for k in "soap" if note.get(k))


SECTIONS: list[tuple[str, str, list[str], list[float], Callable[[dict[str, Any]], list[str]]]] = [
    (
        "consents",
        "Consents",
        ["Consent", "Version", "Given", "Withdrawn"],
        [3, 1, 2, 2],
        lambda c: [c["label"], f"v{c['version']}", _when(c["signedAt"]), _when(c["revokedAt"])],
    ),
    (
        "documents",
        "Documents",
        ["File in this archive", "Kind", "Version", "Added"],
        [4, 2, 1, 2],
        lambda d: [d["file"], d["category"], str(d["version"]), _when(d["createdAt"])],
    ),
    (
        "appointments",
        "Appointments",
        ["When", "Doctor", "Type", "Status"],
        [2, 3, 2, 2],
        lambda a: [
            _when(a["startsAt"]) if a["startsAt"] else _day(a["queueDate"] or a["requestedAt"]),
            _text(a["doctor"]),
            a["visitType"],
            a["status"],
        ],
    ),
    (
        "visits",
        "Visits",
        ["Date", "Doctor", "Note", "Diagnoses", "Vitals"],
        [1.6, 2, 5, 2.4, 2],
        lambda v: [
            _day(v["createdAt"]),
            _text(v["doctor"]),
            _visit_note(v) + "".join(f"\nAddendum: {a['text']}" for a in v["addenda"]),
            "\n".join(" ".join(x for x in (d["code"], d["text"]) if x) for d in v["diagnoses"])
            or NO_VALUE,
            "\n".join(f"{r['type']} {r['value']} {r['unit']}" for r in v["vitals"]) or NO_VALUE,
        ],
    ),
    (
        "prescriptions",
        "Prescriptions",
        ["Issued", "Doctor", "Medicines"],
        [1.6, 2, 7],
        lambda p: [
            _day(p["issuedAt"]),
            _text(p["doctor"]),
            "\n".join(
                " · ".join(
                    x
                    for x in (
                        i["name"],
                        i["dose"],
                        i["frequency"],
                        f"{i['durationDays']} days" if i["durationDays"] else None,
                        i["instructions"],
                    )
                    if x
                )
                for i in p["items"]
            ),
        ],
    ),
    (
        "dietPlans",
        "Diet plans",
        ["Issued", "Doctor", "Days", "Days followed"],
        [2, 3, 1, 2],
        lambda d: [
            _day(d["issuedAt"]),
            _text(d["doctor"]),
            str(len(d["schedule"])),
            str(d["completedDays"]),
        ],
    ),
    (
        "orders",
        "Lab and other orders",
        ["Ordered", "Tests", "Status", "Result"],
        [1.6, 3, 1.6, 4],
        lambda o: [
            _day(o["orderedAt"]),
            ", ".join(i.get("name") or "" for i in o["items"]),
            o["status"],
            _text(o["resultNote"]),
        ],
    ),
    (
        "invoices",
        "Bills",
        ["Number", "Date", "Status", "Total", "Paid", "Due"],
        [2, 1.6, 1.4, 1.6, 1.6, 1.6],
        lambda i: [
            _text(i["number"]),
            _day(i["issuedAt"] or i["createdAt"]),
            i["status"],
            _money(i["grandTotal"]),
            _money(i["amountPaid"]),
            _money(i["balanceDue"]),
        ],
    ),
    (
        "payments",
        "Payments",
        ["Date", "Bill", "Method", "Amount", "Status"],
        [1.6, 2, 1.4, 1.6, 1.4],
        lambda p: [
            _day(p["capturedAt"] or p["createdAt"]),
            _text(p["invoiceNumber"]),
            p["method"],
            _money(p["amount"]),
            p["status"],
        ],
    ),
    (
        "refunds",
        "Refunds",
        ["Date", "Bill", "Amount", "Status", "Reason"],
        [1.6, 2, 1.6, 1.4, 3],
        lambda r: [
            _day(r["createdAt"]),
            _text(r["invoiceNumber"]),
            _money(r["amount"]),
            r["status"],
            _text(r["reason"]),
        ],
    ),
    (
        "messages",
        "Messages sent to you",
        ["Date", "Channel", "Kind", "Status"],
        [2, 1.5, 3, 1.5],
        lambda m: [_when(m["createdAt"]), m["channel"], m["kind"], m["status"]],
    ),
]
WITHHELD = {
    "unsignedVisitNotes": "visit notes not yet signed by the doctor",
    "draftPrescriptions": "prescriptions not yet issued",
    "draftDietPlans": "diet plans not yet issued",
    "unreviewedResults": "results not yet reviewed by a doctor",
}


def render(fonts: Path, data: dict[str, Any]) -> bytes:
    """The summary as an A4 PDF; ``fonts`` is ``<data dir>/fonts``."""
    clinic, patient = data["clinic"], data["patient"]
    _zone.set(ZoneInfo(clinic["timeZone"]) if clinic.get("timeZone") else KOLKATA)
    name = " ".join(x for x in (patient["name"]["first"], patient["name"].get("last")) if x)
    pdf = NotedPdf(format="A4")
    pdf.note = f"{clinic['name']} · {name} · made {_when(data['generatedAt'])}"
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(True, margin=18)
    add_faces(pdf, fonts)
    pdf.alias_nb_pages()
    pdf.add_page()

    pdf.set_text_shaping(needs_shaping([clinic["name"], name]))
    body_font(pdf, 16)
    pdf.multi_cell(0, 8, "Your data at " + clinic["name"], **NEXT_LINE)
    details = " · ".join(x for x in (clinic.get("address"), clinic.get("phone")) if x)
    if details:
        _muted(pdf, details)
    _muted(
        pdf,
        f"Everything the clinic holds about {name} on {_day(data['generatedAt'])}. "
        "patient.json in this archive has the same in full, for other software; "
        "the documents are in the folder documents/.",
    )

    _heading(pdf, "Profile")
    _table(pdf, None, [1, 3], _profile_rows(patient))

    for key, title, head, widths, row in SECTIONS:
        rows = data[key]
        _heading(pdf, title, len(rows))
        _table(pdf, head, widths, [row(r) for r in rows])

    waiting = [f"{n} {WITHHELD[k]}" for k, n in data["withheld"].items() if n]
    if waiting:
        _heading(pdf, "Not included yet")
        _muted(
            pdf,
            "Not yet final, so not in this archive: "
            + "; ".join(waiting)
            + ". Ask again once the clinic has finished them.",
        )
    return bytes(pdf.output())
