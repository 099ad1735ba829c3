"""The monthly summary PDF (issue 14, item 3): read back through each font's ToUnicode map
(tests.factories.clinical_rx.pdf_runs), so a glyph the fonts lack would not read back as
its character: the title and time zone, a day's row, the Hindi doctor's name, the no-show
rates, the money, the heading row repeated on the next page, and no money at all in the
copy without it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from opdesk.reports.month_pdf import DayLine, DoctorLine, MonthSummary, render_month
from tests.factories.clinical_rx import page_contents, pdf_runs, pdf_text

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
NOV = date(2026, 11, 1)
HINDI_DOCTOR = "डॉ. अनीता शर्मा"


def day_line(n: int) -> DayLine:
    day = NOV + timedelta(days=n)
    if day.weekday() == 6:  # closed on Sundays
        return DayLine(day, 0, 0, 0, 0, 0, None)
    requested = 20 + n % 7
    no_show = n % 4
    completed = requested - no_show - 1
    return DayLine(
        day=day,
        requested=requested,
        completed=completed,
        no_show=no_show,
        visits=completed,
        documented=completed - n % 3,
        net=Decimal(9000 + 250 * n) + Decimal("0.50"),
    )


@pytest.fixture(scope="module")
def fonts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fonts")


def summary(*, show_money: bool = True) -> MonthSummary:
    totals = [
        ("Appointments requested", "612"),
        ("Appointments completed", "412"),
        ("No-shows", "38"),
        ("Visits documented", "96.1%"),
    ]
    if show_money:
        totals += [("Net revenue", "₹3,75,480.50"), ("Discounts", "₹6,200.00")]
    return MonthSummary(
        clinic_name="Sharma Family Clinic",
        clinic_address="12, MG Road, Kothrud\nPune 411038",
        month=NOV,
        time_zone="Asia/Kolkata",
        generated_at=datetime(2026, 12, 1, 0, 5, tzinfo=UTC),
        show_money=show_money,
        totals=totals,
        days=[day_line(n) for n in range(30)],
        doctors=[
            DoctorLine(HINDI_DOCTOR, 180, 14, 180, 176, Decimal("162000.00")),
            DoctorLine("Dr. Anil Mehta", 150, 16, 149, 140, Decimal("135000.50")),
            DoctorLine("Dr. Kavya Iyer", 82, 8, 0, 0, None),
        ],
        no_show_by_weekday=[
            ("Monday", 96, 12),
            ("Tuesday", 88, 4),
            ("Wednesday", 90, 9),
            ("Thursday", 92, 3),
            ("Friday", 94, 6),
            ("Saturday", 110, 4),
            ("Sunday", 0, 0),
        ],
        revenue_by_method=[
            ("UPI", Decimal("240000.00"), 410),
            ("Cash", Decimal("95480.50"), 180),
            ("Card", Decimal("40000.00"), 52),
        ],
    )


def row_of(data: bytes, first: str) -> list[str]:
    """The texts of the table row whose first cell reads ``first``, left to right: the
    runs drawn one after another on the same line.
    """
    runs = pdf_runs(data)
    for i, (x, y, text) in enumerate(runs):
        if text == first:
            row = [text]
            for x2, y2, text2 in runs[i + 1 :]:
                if abs(y2 - y) > 0.5 or x2 < x:
                    break
                row.append(text2)
            return row
    raise AssertionError(f"no row starts with {first!r}")


def test_the_summary_shows_its_title_days_doctors_rates_and_money(fonts: Path) -> None:
    data = render_month(summary(), fonts)
    text = pdf_text(data)
    assert text.splitlines()[0] == "Sharma Family Clinic"
    assert "Monthly summary — November 2026" in text
    assert "Asia/Kolkata" in text
    assert "Generated 01 Dec 2026, 5:35 am" in text  # 00:05 UTC in the clinic's time zone
    assert HINDI_DOCTOR in text
    for label, value in summary().totals:
        assert label in text and value in text
    # Thursday 12 November (n = 11): 24 requested, 3 no-shows, 20 completed and visits,
    # 18 documented, ₹11,750.50 net.
    assert row_of(data, "Thu 12 Nov") == ["Thu 12 Nov", "24", "20", "3", "20", "18", "11,750.50"]
    assert row_of(data, HINDI_DOCTOR) == [
        HINDI_DOCTOR,
        "180",
        "14",
        "180",
        "176",
        "97.8%",
        "1,62,000.00",
    ]
    assert row_of(data, "Dr. Kavya Iyer")[-2:] == ["—", "—"]  # no visits, no money figure
    assert row_of(data, "Monday") == ["Monday", "96", "12", "12.5%"]
    assert row_of(data, "Sunday") == ["Sunday", "0", "0", "—"]
    assert row_of(data, "UPI") == ["UPI", "410", "2,40,000.00", "63.9%"]
    assert row_of(data, "Total") == ["Total", "642", "3,75,480.50"]
    assert "Net (₹)" in text and "Amount (₹)" in text and "Revenue by payment method" in text


def test_the_month_row_adds_up_the_days(fonts: Path) -> None:
    # 25 open days (n = 0, 7, 14, 21, 28 are Sundays, closed); net 9,000.50 + 250 n a day:
    # 25 * 9,000.50 + 250 * (435 - 70) = 3,16,262.50; requested 20 + n % 7: 500 + 85.
    data = render_month(summary(), fonts)
    assert row_of(data, "Month") == ["Month", "585", "523", "37", "523", "497", "3,16,262.50"]


def test_without_money_no_amount_or_money_column_appears(fonts: Path) -> None:
    data = render_month(summary(show_money=False), fonts)
    text = pdf_text(data)
    assert "₹" not in text
    assert "Revenue by payment method" not in text and "Amount" not in text
    assert "Net" not in text
    assert row_of(data, "Thu 12 Nov") == ["Thu 12 Nov", "24", "20", "3", "20", "18"]
    assert row_of(data, HINDI_DOCTOR) == [HINDI_DOCTOR, "180", "14", "180", "176", "97.8%"]
    # A money total the caller left in is dropped too, not printed.
    leaky = replace(summary(show_money=False), totals=[("Net revenue", "₹3,75,480.50")])
    assert "3,75,480.50" not in pdf_text(render_month(leaky, fonts))


def test_the_day_table_repeats_its_heading_on_the_next_page_with_page_numbers(
    fonts: Path,
) -> None:
    data = render_month(summary(), fonts)
    pages = page_contents(data)
    assert len(pages) >= 2
    text = pdf_text(data)
    # The day table's heading row, on page 1 and again at the top of page 2.
    headings = [(y, t) for _x, y, t in pdf_runs(data) if t == "Day"]
    assert len(headings) == 2
    assert row_of(data, "Day") == [
        "Day",
        "Requested",
        "Completed",
        "No-shows",
        "Visits",
        "Documented",
        "Net (₹)",
    ]
    assert headings[1][0] > 780  # the first line under page 2's top margin (A4: 842 pt)
    assert f"Page 1 of {len(pages)}" in text and f"Page {len(pages)} of {len(pages)}" in text


def test_a_month_given_by_another_day_is_refused(fonts: Path) -> None:
    with pytest.raises(ValueError, match="first day"):
        render_month(replace(summary(), month=date(2026, 11, 5)), fonts)


def test_render_a_summary_for_the_screenshots(fonts: Path) -> None:
    """Writes screenshots/report-month-summary-page-N.png to look at (pdftoppm)."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    SCREENSHOTS.mkdir(exist_ok=True)
    for name, show in (("report-month-summary", True), ("report-month-summary-no-money", False)):
        pdf = SCREENSHOTS / f"{name}.pdf"
        pdf.write_bytes(render_month(summary(show_money=show), fonts))
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", str(pdf), str(SCREENSHOTS / f"{name}-page")],
            check=True,
        )
        pdf.unlink()
        assert (SCREENSHOTS / f"{name}-page-1.png").exists()
