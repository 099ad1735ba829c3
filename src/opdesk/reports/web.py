"""The reports dashboard, its CSV exports and the monthly summary PDF.

Two views of one page: ``/reports`` is the clinic's (accounts and admins: every doctor and
the money), ``/reports/mine`` a doctor's own figures, without money. Each view's exports
carry exactly the tables that view shows.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from opdesk.config import Settings
from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.formatting import rupees
from opdesk.identity.sessions import Principal
from opdesk.reports import charts, month_pdf, queries
from opdesk.reports.queries import (
    AgeLine,
    DoctorLine,
    Figures,
    MethodLine,
    NoShows,
    Period,
    Rate,
)
from opdesk.scheduling.models import DoctorProfile
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.validation import ascii_digits
from opdesk.web.deps import AppSettings, Ctx, DbSession, acting
from opdesk.web.pages import render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (
    NavEntry("Reports", "/reports", "reports:read", "billing"),
    NavEntry("My figures", "/reports/mine", "reports:own", "clinical"),
)
Clinic = Annotated[Principal, acting("reports:read")]
Doctor = Annotated[Principal, acting("reports:own")]

PERIOD_CHOICES = "choose 7, 30 or 90 days"


@dataclass(frozen=True)
class Dashboard:
    """What one view of the dashboard shows; ``doctor`` set for a doctor's own view.

    Each part is read when first used, in the request's session: an export of one table
    reads only what that table needs.
    """

    session: Session
    clinic: Tenant
    doctor: DoctorProfile | None
    today: date
    period: Period
    days: list[tuple[date, Figures | None]]

    @property
    def mine(self) -> uuid.UUID | None:
        return self.doctor.id if self.doctor else None

    @cached_property
    def total(self) -> Figures:
        return Figures.added(f for _, f in self.days if f is not None)

    @cached_property
    def now(self) -> Figures:
        zone = ZoneInfo(self.clinic.timezone)
        return queries.today_figures(self.session, self.clinic.id, zone, self.today, self.mine)

    @cached_property
    def no_shows(self) -> NoShows:
        return queries.no_shows(self.session, self.period, self.mine)

    @cached_property
    def doctors(self) -> list[DoctorLine]:
        return [] if self.doctor else queries.doctors(self.session, self.period)

    @cached_property
    def methods(self) -> list[MethodLine]:
        return [] if self.doctor else queries.by_method(self.session, self.period)

    @cached_property
    def owed(self) -> list[AgeLine]:
        zone = ZoneInfo(self.clinic.timezone)
        return [] if self.doctor else queries.owed_by_age(self.session, self.today, zone)

    @property
    def show_money(self) -> bool:
        return self.doctor is None

    @property
    def base(self) -> str:
        return "/reports/mine" if self.doctor else "/reports"


def read_dashboard(
    session: Session, ctx: RequestContext, days: int, doctor: DoctorProfile | None
) -> Dashboard:
    assert ctx.tenant_id is not None
    clinic = tenants.get_tenant(session, ctx.tenant_id)
    zone = ZoneInfo(clinic.timezone)
    today = ctx.now().astimezone(zone).date()
    period = Period.ending_before(today, days)
    trend = queries.trend(session, period, doctor.id if doctor else None)
    return Dashboard(session, clinic, doctor, today, period, trend)


def period_days(days: str) -> int:
    """The ``days`` a page or export was asked for: 7, 30 or 90 (30 when not given)."""
    if not days:
        return 30
    if ascii_digits(days) and int(days) in queries.PERIODS:
        return int(days)
    raise InvalidInput([FieldError("days", PERIOD_CHOICES)])


def own_profile(session: Session, who: Principal) -> DoctorProfile:
    """The signed-in doctor's profile; a doctor account without one has no figures."""
    profile = queries.doctor_of_user(session, who.user_id)
    if profile is None:
        raise NotFound("doctor profile")
    return profile


# --------------------------------------------------------------------------- charts


def share(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 1)


# Narrower than the charts' default, so their text stays readable when a phone scales
# them down to its width.
CHART_WIDTH = 480


def dashboard_charts(d: Dashboard) -> dict[str, Markup]:
    """The charts of one view, rendered on the server as SVG."""
    shown = {
        "completed": charts.line_chart(
            queries.points(d.days, "completed"),
            title="Appointments completed",
            y_label="appointments",
            width=CHART_WIDTH,
        ),
        "no_shows": charts.line_chart(
            queries.points(d.days, "no_show"),
            title="No-shows",
            y_label="no-shows",
            width=CHART_WIDTH,
        ),
        "documented": charts.line_chart(
            [(day, share(f.documented_share) if f else None) for day, f in d.days],
            title="Notes complete (% of visits)",
            y_label="%",
            width=CHART_WIDTH,
        ),
        "weekday": _rates_chart(d.no_shows.by_weekday, "No-show rate by weekday"),
        "hour": _rates_chart(d.no_shows.by_hour, "No-show rate by hour of the slot"),
        "channel": _rates_chart(d.no_shows.by_channel, "No-show rate by how it was booked"),
    }
    if d.show_money:
        shown["net"] = charts.line_chart(
            queries.points(d.days, "net"),
            title="Net revenue",
            y_label="₹",
            money=True,
            width=CHART_WIDTH,
        )
        shown["methods"] = charts.bar_chart(
            [(m.label, m.received) for m in d.methods],
            title="Money received by method",
            money=True,
            width=CHART_WIDTH,
        )
    return shown


def _rates_chart(rates: list[Rate], title: str) -> Markup:
    worst = max((r.share or 0 for r in rates), default=0)
    return charts.bar_chart(
        [(r.label, share(r.share) or 0) for r in rates],
        title=title,
        percent=True,
        width=CHART_WIDTH,
        highlight={r.label for r in rates if worst and r.share == worst},
    )


# --------------------------------------------------------------------------- tables


def count(n: int) -> str:
    return str(n)


def amount(value: Decimal) -> str:
    return f"{value:.2f}"


def percent(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.1f}"


def seconds(value: int | None) -> str:
    return "" if value is None else str(value)


def _day_row(day: date, f: Figures | None, money: bool) -> list[str]:
    if f is None:
        return [day.isoformat(), *([""] * (9 if money else 7))]
    row = [
        day.isoformat(),
        count(f.requested),
        count(f.confirmed),
        count(f.completed),
        count(f.no_show),
        count(f.visits),
        count(f.documented),
        seconds(f.median_seconds),
    ]
    return [*row, amount(f.gross - f.discounts), amount(f.net)] if money else row


Table = tuple[list[str], list[list[str]]]


def tables(d: Dashboard) -> dict[str, Callable[[], Table]]:
    """Every table of the view, by name, each read when asked for: CSV headers and rows
    (plain numbers, ISO dates).
    """
    day_head = [
        "date",
        "requested",
        "confirmed",
        "completed",
        "no_shows",
        "visits",
        "visits_documented",
        "booking_median_seconds",
    ]
    if d.show_money:
        day_head += ["billed_after_discounts", "net_revenue"]
    rate_head = ["expected", "no_shows", "no_show_rate_percent"]

    def rates(label: str, rows: Callable[[], list[Rate]]) -> Callable[[], Table]:
        return lambda: (
            [label, *rate_head],
            [[r.label, count(r.expected), count(r.missed), percent(r.share)] for r in rows()],
        )

    found: dict[str, Callable[[], Table]] = {
        "days": lambda: (day_head, [_day_row(day, f, d.show_money) for day, f in d.days]),
        "no-shows-by-weekday": rates("weekday", lambda: d.no_shows.by_weekday),
        "no-shows-by-hour": rates("hour", lambda: d.no_shows.by_hour),
        "no-shows-by-channel": rates("channel", lambda: d.no_shows.by_channel),
    }
    if d.show_money:
        found["doctors"] = lambda: (
            ["doctor", "completed", "no_shows", "visits", "visits_documented", "net_revenue"],
            [
                [
                    line.name,
                    count(line.figures.completed),
                    count(line.figures.no_show),
                    count(line.figures.visits),
                    count(line.figures.documented),
                    amount(line.figures.net),
                ]
                for line in d.doctors
            ],
        )
        found["methods"] = lambda: (
            ["method", "received", "payments", "refunded"],
            [
                [m.label, amount(m.received), count(m.payments), amount(m.refunded)]
                for m in d.methods
            ],
        )
        found["owed"] = lambda: (
            ["age", "bills", "owed"],
            [[a.label, count(a.bills), amount(a.owed)] for a in d.owed],
        )
    return found


def csv_response(name: str, head: list[str], rows: list[list[str]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(head)
    writer.writerows(_safe(row) for row in rows)
    return Response(
        # a byte-order mark: spreadsheet programs then read Hindi names as UTF-8
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _safe(row: list[str]) -> list[str]:
    """A cell a spreadsheet would run as a formula (a name starting ``=``) is quoted."""
    return [
        "'" + cell if cell[:1] in ("=", "+", "-", "@") and not _number(cell) else cell
        for cell in row
    ]


def _number(cell: str) -> bool:
    try:
        Decimal(cell)
    except ArithmeticError:
        return False
    return True


# --------------------------------------------------------------------------- pages


def _page(request: Request, d: Dashboard) -> Response:
    return render(
        request,
        "reports/dashboard.html",
        d=d,
        charts=dashboard_charts(d),
        periods=queries.PERIODS,
        inr=rupees,
    )


@router.get("/reports")
def clinic_dashboard(
    request: Request, _: Clinic, session: DbSession, ctx: Ctx, days: str = ""
) -> Response:
    return _page(request, read_dashboard(session, ctx, period_days(days), None))


@router.get("/reports/mine")
def my_dashboard(
    request: Request, who: Doctor, session: DbSession, ctx: Ctx, days: str = ""
) -> Response:
    doctor = own_profile(session, who)
    return _page(request, read_dashboard(session, ctx, period_days(days), doctor))


def _export(d: Dashboard, table: str) -> Response:
    found = tables(d).get(table)
    if found is None:
        raise NotFound("report table")
    head, rows = found()
    return csv_response(f"{table}-{d.period.first}-to-{d.period.last}", head, rows)


@router.get("/reports/export/{table}.csv")
def clinic_export(_: Clinic, session: DbSession, ctx: Ctx, table: str, days: str = "") -> Response:
    return _export(read_dashboard(session, ctx, period_days(days), None), table)


@router.get("/reports/mine/export/{table}.csv")
def my_export(who: Doctor, session: DbSession, ctx: Ctx, table: str, days: str = "") -> Response:
    doctor = own_profile(session, who)
    return _export(read_dashboard(session, ctx, period_days(days), doctor), table)


# --------------------------------------------------------------------------- the month


def month_of(value: str, today: date) -> date:
    """The first day of the month ``YYYY-MM`` names (last month when not given); a month
    still to come has nothing to show.
    """
    if not value:
        return (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    try:
        first = datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise InvalidInput([FieldError("month", "give a month such as 2026-11")]) from None
    if first > today:
        raise InvalidInput([FieldError("month", "choose a month that has begun")])
    return first


def month_summary(
    session: Session, ctx: RequestContext, month: str, doctor: DoctorProfile | None
) -> month_pdf.MonthSummary:
    assert ctx.tenant_id is not None
    clinic = tenants.get_tenant(session, ctx.tenant_id)
    zone = ZoneInfo(clinic.timezone)
    today = ctx.now().astimezone(zone).date()
    first = month_of(month, today)
    following = (first + timedelta(days=32)).replace(day=1)
    last = min(following, today) - timedelta(days=1)
    period = Period(first, last, (last - first).days + 1)
    mine = doctor.id if doctor else None
    days = [(day, f) for day, f in queries.trend(session, period, mine) if f is not None]
    total = Figures.added(f for _, f in days)
    money = doctor is None
    rates = queries.no_shows(session, period, mine)
    return month_pdf.MonthSummary(
        clinic_name=clinic.name,
        clinic_address=", ".join(
            p for p in (clinic.address_line1, clinic.address_city, clinic.address_state) if p
        )
        or None,
        month=first,
        time_zone=clinic.timezone,
        generated_at=ctx.now(),
        show_money=money,
        totals=_month_totals(total, rates, money, doctor),
        days=[
            month_pdf.DayLine(
                day,
                f.requested,
                f.completed,
                f.no_show,
                f.visits,
                f.documented,
                f.net if money else None,
            )
            for day, f in days
        ],
        doctors=[
            month_pdf.DoctorLine(
                line.name,
                line.figures.completed,
                line.figures.no_show,
                line.figures.visits,
                line.figures.documented,
                line.figures.net,
            )
            for line in ([] if doctor else queries.doctors(session, period))
        ],
        no_show_by_weekday=[(r.label, r.expected, r.missed) for r in rates.by_weekday],
        revenue_by_method=[
            (m.label, m.received, m.payments)
            for m in (queries.by_method(session, period) if money else [])
        ],
    )


def _month_totals(
    total: Figures, rates: NoShows, money: bool, doctor: DoctorProfile | None
) -> list[tuple[str, str]]:
    lines = [
        ("Doctor", doctor.display_name) if doctor else None,
        ("Appointments booked", str(total.requested)),
        ("Appointments completed", str(total.completed)),
        ("No-shows", str(total.no_show)),
        ("No-show rate", percent(rates.overall.share) + " %" if rates.overall.expected else "—"),
        ("Visits", str(total.visits)),
        (
            "Notes complete",
            percent(total.documented_share) + " %" if total.documented_share is not None else "—",
        ),
        ("Prescriptions", str(total.prescriptions)),
        ("Diet plans", str(total.diet_plans)),
        ("Net revenue", rupees(total.net)) if money else None,
        ("Discounts given", rupees(total.discounts)) if money else None,
        ("Failed payments", str(total.failures)) if money else None,
    ]
    return [line for line in lines if line is not None]


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
    )


def _month_pdf(summary: month_pdf.MonthSummary, settings: Settings) -> Response:
    data = month_pdf.render_month(summary, settings.data_dir / "fonts")
    return _pdf(data, f"summary-{summary.month:%Y-%m}")


@router.get("/reports/month.pdf")
def clinic_month(
    _: Clinic,
    session: DbSession,
    ctx: Ctx,
    settings: AppSettings,
    month: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return _month_pdf(month_summary(session, ctx, month, None), settings)


@router.get("/reports/mine/month.pdf")
def my_month(
    who: Doctor,
    session: DbSession,
    ctx: Ctx,
    settings: AppSettings,
    month: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    doctor = own_profile(session, who)
    return _month_pdf(month_summary(session, ctx, month, doctor), settings)
