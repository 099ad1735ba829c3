"""The monthly summary PDF (issue 14, item 3): one clinic's month on A4 portrait, from plain
data the reports code fills in; this module reads no database.

What it shows, in order:

- the clinic's name and address, "Monthly summary — November 2026", and the time zone the
  days are counted in (a day runs from the clinic's local midnight to the next);
- the month's totals, as the caller words and formats them;
- a line a day: appointments requested, completed and no-shows, visits, visits documented
  (a signed note with at least one diagnosis) and the net revenue;
- a line a doctor, with the share of visits documented;
- no-shows by weekday, the rate being no-shows out of the appointments scheduled that
  weekday;
- revenue by payment method, with each method's share.

``show_money`` False (a doctor's copy, or a role that may not see money) leaves every
amount out: the net columns, the revenue table, and any total written in rupees; the
columns are dropped, not left blank.

Tables that run over a page repeat their heading row; each page's footer says when the
summary was made and "Page n of N". Fonts are the Noto faces of the other PDFs
(``documents.pdf``), one weight, so names in Devanagari or Tamil draw with real glyphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from opdesk.documents.pdf import NotedPdf, add_faces, body_font, needs_shaping
from opdesk.formatting import day_name, local_time, rupees

NEXT_LINE: dict[str, Any] = {"new_x": "LMARGIN", "new_y": "NEXT"}
GREY = (90, 90, 90)
BLACK = (0, 0, 0)
RULE = (150, 150, 150)
BORDER = (170, 170, 170)
HEADING_FILL = (232, 232, 232)
WEEKEND_FILL = (246, 246, 246)
TOTAL_FILL = (238, 238, 238)
MARGIN = 14.0
NO_VALUE = "—"
RUPEE = "\N{INDIAN RUPEE SIGN}"


@dataclass(frozen=True)
class DayLine:
    day: date
    requested: int
    completed: int
    no_show: int
    visits: int
    documented: int
    net: Decimal | None  # None: no revenue figure for the day


@dataclass(frozen=True)
class DoctorLine:
    name: str
    completed: int
    no_show: int
    visits: int
    documented: int
    net: Decimal | None


@dataclass(frozen=True)
class MonthSummary:
    clinic_name: str
    clinic_address: str | None
    month: date  # the month's first day
    time_zone: str  # the clinic's, e.g. "Asia/Kolkata"
    generated_at: datetime  # aware; shown in the clinic's time zone
    show_money: bool
    totals: list[tuple[str, str]]  # (label, formatted value): ("Appointments completed", "412")
    days: list[DayLine]  # one a day of the month
    doctors: list[DoctorLine]
    no_show_by_weekday: list[tuple[str, int, int]]  # (weekday, scheduled, no-shows)
    revenue_by_method: list[tuple[str, Decimal, int]]  # (method, amount, payments)


def month_title(month: date) -> str:
    """``Monthly summary — November 2026``."""
    return f"Monthly summary \N{EM DASH} {month:%B %Y}"


def _figure(amount: Decimal | None) -> str:
    """An amount in a column headed (₹): ``1,23,456.50``; a dash for no figure."""
    if amount is None:
        return NO_VALUE
    return rupees(amount).replace(RUPEE, "")


def _rate(part: int, whole: int) -> str:
    """``12.5%``: part of whole to one decimal; a dash when there is no whole."""
    if whole <= 0:
        return NO_VALUE
    share = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{share}%"


def _count(value: int) -> str:
    """``1,234``: Indian digit grouping, as the money figures have."""
    return rupees(Decimal(value)).replace(RUPEE, "").removesuffix(".00")


def _new_pdf(fonts: Path, note: str) -> NotedPdf:
    pdf = NotedPdf(format="A4")
    pdf.note = note
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(True, margin=18)
    add_faces(pdf, fonts)
    pdf.alias_nb_pages()
    pdf.add_page()
    return pdf


def _rule(pdf: FPDF, gap: float = 2.5) -> None:
    pdf.ln(gap)
    pdf.set_draw_color(*RULE)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(gap)


def _section(pdf: FPDF, title: str, width: float, *, keep: float = 30.0) -> None:
    """A section's heading, on the next page when fewer than ``keep`` mm are left under it
    (so a heading never stands alone at the foot of a page).
    """
    if pdf.get_y() + 8 + keep > pdf.page_break_trigger:
        pdf.add_page()
    pdf.ln(4)
    body_font(pdf, 11)
    pdf.cell(width, 6, title, **NEXT_LINE)
    pdf.ln(1)


def _table(
    pdf: FPDF,
    width: float,
    head: list[str],
    widths: list[float],
    rows: list[list[str]],
    *,
    fills: list[tuple[int, int, int] | None] | None = None,
) -> None:
    """A table with its heading row repeated on every page it runs onto; the first column
    left-aligned, the figures right-aligned; ``fills`` shades chosen rows.
    """
    pdf.set_text_shaping(needs_shaping([text for row in rows for text in row]))
    body_font(pdf, 8)
    pdf.set_draw_color(*BORDER)
    align = ["LEFT"] + ["RIGHT"] * (len(head) - 1)
    with pdf.table(
        col_widths=widths,
        width=width,
        align="LEFT",
        text_align=align,
        line_height=4.2,
        padding=(1.1, 1.5),
        headings_style=FontFace(emphasis="", fill_color=HEADING_FILL),
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for text in head:
            heading.cell(text)
        for i, texts in enumerate(rows):
            fill = fills[i] if fills else None
            row = table.row(style=FontFace(fill_color=fill) if fill else None)
            for text in texts:
                row.cell(text)
    pdf.set_text_shaping(True)


def _header(pdf: FPDF, summary: MonthSummary, width: float) -> None:
    body_font(pdf, 15)
    pdf.multi_cell(width, 7, summary.clinic_name, **NEXT_LINE)
    if summary.clinic_address:
        body_font(pdf, 8.5)
        for line in summary.clinic_address.splitlines():
            if line.strip():
                pdf.multi_cell(width, 4.2, line.strip(), **NEXT_LINE)
    pdf.ln(3)
    body_font(pdf, 13)
    pdf.cell(width, 7, month_title(summary.month), **NEXT_LINE)
    body_font(pdf, 8.5)
    pdf.set_text_color(*GREY)
    pdf.multi_cell(
        width,
        4.4,
        f"Days run from midnight to midnight in the clinic's time zone, {summary.time_zone}. "
        f"Generated {local_time(summary.generated_at, summary.time_zone)}.",
        **NEXT_LINE,
    )
    pdf.set_text_color(*BLACK)
    _rule(pdf)


def _totals(pdf: FPDF, totals: list[tuple[str, str]], width: float) -> None:
    """The month's totals as tiles, four to a row: a grey label over a large figure."""
    per_row = 4
    tile_w = width / per_row
    for start in range(0, len(totals), per_row):
        row = totals[start : start + per_row]
        if pdf.get_y() + 13 > pdf.page_break_trigger:
            pdf.add_page()
        top = pdf.get_y()
        for k, (label, value) in enumerate(row):
            x = pdf.l_margin + k * tile_w
            pdf.set_xy(x, top)
            body_font(pdf, 7.5)
            pdf.set_text_color(*GREY)
            pdf.cell(tile_w - 3, 4, label, **NEXT_LINE)
            pdf.set_text_color(*BLACK)
            pdf.set_x(x)
            body_font(pdf, 12)
            pdf.cell(tile_w - 3, 6.5, value)
        pdf.set_xy(pdf.l_margin, top + 12.5)


def _day_table(pdf: FPDF, summary: MonthSummary, width: float) -> None:
    money = summary.show_money
    head = ["Day", "Requested", "Completed", "No-shows", "Visits", "Documented"]
    if money:
        head.append(f"Net ({RUPEE})")
    rows: list[list[str]] = []
    fills: list[tuple[int, int, int] | None] = []
    for line in summary.days:
        cells = [
            day_name(line.day),
            _count(line.requested),
            _count(line.completed),
            _count(line.no_show),
            _count(line.visits),
            _count(line.documented),
        ]
        if money:
            cells.append(_figure(line.net))
        rows.append(cells)
        fills.append(WEEKEND_FILL if line.day.weekday() == 6 else None)
    if summary.days:
        nets = [line.net for line in summary.days if line.net is not None]
        total = [
            "Month",
            _count(sum(line.requested for line in summary.days)),
            _count(sum(line.completed for line in summary.days)),
            _count(sum(line.no_show for line in summary.days)),
            _count(sum(line.visits for line in summary.days)),
            _count(sum(line.documented for line in summary.days)),
        ]
        if money:
            total.append(_figure(sum(nets, Decimal(0))) if nets else NO_VALUE)
        rows.append(total)
        fills.append(TOTAL_FILL)
    widths = [30.0] + [0.0] * (len(head) - 1)
    rest = (width - widths[0]) / (len(head) - 1)
    widths[1:] = [rest] * (len(head) - 1)
    _section(pdf, "Day by day", width)
    _table(pdf, width, head, widths, rows, fills=fills)
    body_font(pdf, 7.5)
    pdf.set_text_color(*GREY)
    pdf.ln(1)
    pdf.multi_cell(
        width,
        4,
        "Documented: visits with a signed note that has at least one diagnosis. "
        "Sundays are shaded.",
        **NEXT_LINE,
    )
    pdf.set_text_color(*BLACK)


def _doctor_table(pdf: FPDF, summary: MonthSummary, width: float) -> None:
    money = summary.show_money
    head = ["Doctor", "Completed", "No-shows", "Visits", "Documented", "% documented"]
    if money:
        head.append(f"Net ({RUPEE})")
    rows = []
    for line in summary.doctors:
        cells = [
            line.name,
            _count(line.completed),
            _count(line.no_show),
            _count(line.visits),
            _count(line.documented),
            _rate(line.documented, line.visits),
        ]
        if money:
            cells.append(_figure(line.net))
        rows.append(cells)
    first = 44.0
    widths = [first] + [(width - first) / (len(head) - 1)] * (len(head) - 1)
    _section(pdf, "By doctor", width)
    if rows:
        _table(pdf, width, head, widths, rows)
    else:
        _none(pdf, width, "No doctor saw patients this month.")


def _weekday_table(pdf: FPDF, summary: MonthSummary, width: float) -> None:
    head = ["Weekday", "Scheduled", "No-shows", "No-show rate"]
    rows = [
        [name, _count(scheduled), _count(no_show), _rate(no_show, scheduled)]
        for name, scheduled, no_show in summary.no_show_by_weekday
    ]
    table_w = min(width, 120.0)
    widths = [36.0] + [(table_w - 36.0) / 3] * 3
    _section(pdf, "No-shows by weekday", width)
    if rows:
        _table(pdf, table_w, head, widths, rows)
        body_font(pdf, 7.5)
        pdf.set_text_color(*GREY)
        pdf.ln(1)
        pdf.multi_cell(
            width, 4, "No-show rate: no-shows out of the appointments scheduled.", **NEXT_LINE
        )
        pdf.set_text_color(*BLACK)
    else:
        _none(pdf, width, "No appointments were scheduled this month.")


def _revenue_table(pdf: FPDF, summary: MonthSummary, width: float) -> None:
    head = ["Method", "Payments", f"Amount ({RUPEE})", "Share"]
    methods = summary.revenue_by_method
    total = sum((amount for _, amount, _ in methods), Decimal(0))
    rows = [
        [
            method,
            _count(count),
            _figure(amount),
            _share(amount, total),
        ]
        for method, amount, count in methods
    ]
    fills: list[tuple[int, int, int] | None] = [None] * len(rows)
    if methods:
        rows.append(["Total", _count(sum(c for _, _, c in methods)), _figure(total), ""])
        fills.append(TOTAL_FILL)
    table_w = min(width, 120.0)
    widths = [36.0] + [(table_w - 36.0) / 3] * 3
    _section(pdf, "Revenue by payment method", width)
    if methods:
        _table(pdf, table_w, head, widths, rows, fills=fills)
    else:
        _none(pdf, width, "No payments were received this month.")


def _share(amount: Decimal, total: Decimal) -> str:
    if total <= 0:
        return NO_VALUE
    return f"{(amount * 100 / total).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def _none(pdf: FPDF, width: float, text: str) -> None:
    body_font(pdf, 8.5)
    pdf.set_text_color(*GREY)
    pdf.cell(width, 5, text, **NEXT_LINE)
    pdf.set_text_color(*BLACK)


def render_month(summary: MonthSummary, fonts: Path) -> bytes:
    """The month's summary as an A4 PDF (see the module's docstring for what it shows);
    ``fonts`` is the folder the TrueType faces are kept in (``<data dir>/fonts``).
    """
    if summary.month.day != 1:
        raise ValueError(f"month: give the month's first day, got {summary.month}")
    title = month_title(summary.month)
    generated = local_time(summary.generated_at, summary.time_zone)
    pdf = _new_pdf(fonts, f"{summary.clinic_name} · {title} · Generated {generated}")
    width = pdf.w - pdf.l_margin - pdf.r_margin
    _header(pdf, summary, width)
    totals = summary.totals
    if not summary.show_money:
        totals = [(label, value) for label, value in totals if RUPEE not in value]
    if totals:
        _totals(pdf, totals, width)
    _day_table(pdf, summary, width)
    _doctor_table(pdf, summary, width)
    _weekday_table(pdf, summary, width)
    if summary.show_money:
        _revenue_table(pdf, summary, width)
    return bytes(pdf.output())
