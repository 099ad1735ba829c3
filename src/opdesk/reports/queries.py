"""What the reports dashboard reads: today's figures live, the built days of a period, the
doctors side by side, which slots go empty, money by method, and what patients still owe.

Past days come from ``report_daily`` (built each night); today is read from the records as
the page is asked for, with the same definitions (:mod:`opdesk.reports.build`). A doctor's
view reads only that doctor's rows and carries no money.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Self
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, case, func, literal, select, type_coerce
from sqlalchemy.orm import Session

from opdesk.billing.models import Invoice, InvoiceStatus
from opdesk.reports.build import COUNTS, days_between, figure
from opdesk.reports.models import ReportDaily, ReportDailyDoctor, ReportNoShow
from opdesk.scheduling.models import DoctorProfile

ZERO = Decimal("0.00")
PERIODS = (7, 30, 90)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CHANNEL_LABELS = {"web": "Online", "whatsapp": "WhatsApp", "phone": "Phone", "walk-in": "Walk-in"}
METHOD_LABELS = {
    "cash": "Cash",
    "card": "Card",
    "upi": "UPI",
    "link": "Payment link",
    "gateway": "Online (gateway)",
}
# Money still owed, by how long ago the bill was issued.
AGES = ((0, 30, "Up to 30 days"), (31, 60, "31 to 60 days"), (61, 90, "61 to 90 days"))
OLDER = "Over 90 days"


@dataclass(frozen=True)
class Period:
    """The ``days`` whole days that ended yesterday (today is shown on its own)."""

    first: date
    last: date
    days: int

    @classmethod
    def ending_before(cls, today: date, days: int) -> Self:
        return cls(today - timedelta(days=days), today - timedelta(days=1), days)

    def dates(self) -> list[date]:
        return list(days_between(self.first, self.last))


COUNT_FIELDS = (
    "requested",
    "confirmed",
    "completed",
    "no_show",
    "visits",
    "documented",
    "prescriptions",
    "diet_plans",
    "failures",
)
AMOUNT_FIELDS = ("gross", "discounts", "net")
# The stored columns a period adds up (the median wait is not one of them).
SUMMED = (*COUNTS, "revenue_gross", "revenue_discounts", "revenue_net")


def median_of(medians: Sequence[int]) -> int | None:
    """A period's median wait: the median of its days' medians, in whole seconds."""
    return round(statistics.median(medians)) if medians else None


@dataclass(frozen=True)
class Figures:
    """A day's figures, or a period's added up."""

    requested: int = 0
    confirmed: int = 0
    completed: int = 0
    no_show: int = 0
    gross: Decimal = ZERO
    discounts: Decimal = ZERO
    net: Decimal = ZERO
    visits: int = 0
    documented: int = 0
    prescriptions: int = 0
    diet_plans: int = 0
    failures: int = 0
    # a day's median wait; for a period, the median of its days' medians
    median_seconds: int | None = None

    @classmethod
    def of(cls, row: Any) -> Self:
        """From a stored row (clinic or doctor) or a freshly read day's columns."""
        get: Callable[[str], Any] = (
            row.__getitem__ if isinstance(row, dict) else partial(getattr, row)
        )
        return cls(
            requested=get("appointments_requested"),
            confirmed=get("appointments_confirmed"),
            completed=get("appointments_completed"),
            no_show=get("appointments_no_show"),
            gross=get("revenue_gross"),
            discounts=get("revenue_discounts"),
            net=get("revenue_net"),
            visits=get("visits_total"),
            documented=get("visits_documented_complete"),
            prescriptions=get("prescriptions_total"),
            diet_plans=get("diet_plans_total"),
            failures=get("payments_failures"),
            median_seconds=get("booking_median_seconds"),
        )

    @classmethod
    def added(cls, days: Iterable[Figures]) -> Self:
        days = list(days)
        sums: dict[str, Any] = {n: sum(getattr(d, n) for d in days) for n in COUNT_FIELDS}
        sums |= {n: sum((getattr(d, n) for d in days), ZERO) for n in AMOUNT_FIELDS}
        medians = [d.median_seconds for d in days if d.median_seconds is not None]
        return cls(**sums, median_seconds=median_of(medians))

    @property
    def documented_share(self) -> float | None:
        """Of the visits, the share whose note is signed with a diagnosis."""
        return self.documented / self.visits if self.visits else None


@dataclass(frozen=True)
class DoctorLine:
    doctor_id: uuid.UUID
    name: str
    figures: Figures


@dataclass(frozen=True)
class Rate:
    """Of the appointments still booked when their time came, how many were missed."""

    label: str
    expected: int
    missed: int

    @property
    def share(self) -> float | None:
        return self.missed / self.expected if self.expected else None


@dataclass(frozen=True)
class NoShows:
    by_weekday: list[Rate]
    by_hour: list[Rate]
    by_channel: list[Rate]

    @property
    def overall(self) -> Rate:
        return Rate(
            "All",
            sum(r.expected for r in self.by_weekday),
            sum(r.missed for r in self.by_weekday),
        )


@dataclass(frozen=True)
class MethodLine:
    method: str
    label: str
    received: Decimal
    payments: int
    refunded: Decimal


@dataclass(frozen=True)
class AgeLine:
    label: str
    bills: int
    owed: Decimal


def today_figures(
    session: Session,
    tenant: uuid.UUID,
    zone: ZoneInfo,
    today: date,
    doctor_id: uuid.UUID | None = None,
) -> Figures:
    """Today so far, read from the records now."""
    found = figure(session, tenant, zone, today, today)
    day = found.clinic.get(today) if doctor_id is None else found.doctors.get((today, doctor_id))
    return Figures.of(day.columns()) if day else Figures()


def trend(
    session: Session, period: Period, doctor_id: uuid.UUID | None = None
) -> list[tuple[date, Figures | None]]:
    """Each day of the period with its built figures; ``None`` for a day not built yet
    (a doctor's day with nothing of theirs is all zeros).
    """
    built: dict[date, Figures] = {}
    if doctor_id is None:
        for row in session.scalars(
            select(ReportDaily).where(ReportDaily.date.between(period.first, period.last))
        ):
            built[row.date] = Figures.of(row)
        return [(day, built.get(day)) for day in period.dates()]
    built_days = set(
        session.scalars(
            select(ReportDaily.date).where(ReportDaily.date.between(period.first, period.last))
        )
    )
    for doctor_row in session.scalars(
        select(ReportDailyDoctor).where(
            ReportDailyDoctor.doctor_id == doctor_id,
            ReportDailyDoctor.date.between(period.first, period.last),
        )
    ):
        built[doctor_row.date] = Figures.of(doctor_row)
    return [
        (day, built.get(day, Figures()) if day in built_days else None) for day in period.dates()
    ]


def doctors(session: Session, period: Period) -> list[DoctorLine]:
    """Every doctor of the clinic with their figures over the period, by name (added up
    by the database: a 90-day period of a large clinic is thousands of doctor-days).
    """
    stored = ReportDailyDoctor.__table__.c
    waits = ReportDailyDoctor.booking_median_seconds
    query = (
        select(
            ReportDailyDoctor.doctor_id,
            *(func.sum(stored[name]).label(name) for name in SUMMED),
            func.array_agg(waits).filter(waits.is_not(None)).label("medians"),
        )
        .where(ReportDailyDoctor.date.between(period.first, period.last))
        .group_by(ReportDailyDoctor.doctor_id)
    )
    added = {
        row.doctor_id: Figures.of(
            {**row._mapping, "booking_median_seconds": median_of(row.medians or [])}
        )
        for row in session.execute(query)
    }
    names = session.execute(select(DoctorProfile.id, DoctorProfile.display_name)).all()
    lines = [DoctorLine(i, name, added.get(i, Figures())) for i, name in names]
    return sorted(lines, key=lambda line: line.name.casefold())


def no_shows(session: Session, period: Period, doctor_id: uuid.UUID | None = None) -> NoShows:
    """No-show rates by weekday, by the slot's hour and by booking channel (each added up
    by the database in one pass: GROUPING SETS).
    """
    weekday = type_coerce(func.extract("isodow", ReportNoShow.date), Integer)
    query = (
        select(
            weekday,
            ReportNoShow.hour,
            ReportNoShow.channel,
            func.sum(ReportNoShow.expected),
            func.sum(ReportNoShow.no_show),
        )
        .where(ReportNoShow.date.between(period.first, period.last))
        .group_by(func.grouping_sets(weekday, ReportNoShow.hour, ReportNoShow.channel))
    )
    if doctor_id is not None:
        query = query.where(ReportNoShow.doctor_id == doctor_id)
    days: dict[int, list[int]] = {}
    hours: dict[int, list[int]] = {}
    channels: dict[str, list[int]] = {}
    for isodow, hour, channel, expected, missed in session.execute(query):
        # each row is one grouping set's: the other two columns are NULL
        bucket, key = (
            (days, int(isodow)) if isodow is not None else
            (hours, hour) if hour is not None else
            (channels, channel)
        )  # fmt: skip
        bucket[key] = [int(expected), int(missed)]
    return NoShows(
        by_weekday=[Rate(WEEKDAYS[d - 1], *days.get(d, [0, 0])) for d in range(1, 8)],
        by_hour=[Rate(f"{h:02d}:00", *hours[h]) for h in sorted(hours)],
        by_channel=[
            Rate(CHANNEL_LABELS.get(c, c), *channels[c])
            for c in sorted(
                channels, key=lambda c: list(CHANNEL_LABELS).index(c) if c in CHANNEL_LABELS else 99
            )
        ],
    )


def by_method(session: Session, period: Period) -> list[MethodLine]:
    """Money received and given back over the period, by payment method."""
    received: dict[str, list[Decimal]] = {}
    refunded: dict[str, Decimal] = {}
    for money_in, money_out in session.execute(
        select(ReportDaily.money_in, ReportDaily.money_out).where(
            ReportDaily.date.between(period.first, period.last)
        )
    ):
        for method, part in money_in.items():
            line = received.setdefault(method, [ZERO, Decimal(0)])
            line[0] += Decimal(part["amount"])
            line[1] += part["count"]
        for method, part in money_out.items():
            refunded[method] = refunded.get(method, ZERO) + Decimal(part["amount"])
    methods = [m for m in METHOD_LABELS if m in received or m in refunded]
    methods += sorted(m for m in {*received, *refunded} if m not in METHOD_LABELS)
    return [
        MethodLine(
            m,
            METHOD_LABELS.get(m, m),
            received.get(m, [ZERO, Decimal(0)])[0],
            int(received.get(m, [ZERO, Decimal(0)])[1]),
            refunded.get(m, ZERO),
        )
        for m in methods
    ]


def owed_by_age(session: Session, today: date, zone: ZoneInfo) -> list[AgeLine]:
    """Issued bills with a balance still due, by how many days ago they were issued."""
    issued_on = func.date(func.timezone(zone.key, Invoice.issued_at))
    age = type_coerce(literal(today, Date) - issued_on, Integer)  # date - date: whole days
    bucket = case(
        *((age <= high, label) for _low, high, label in AGES),
        else_=OLDER,
    )
    rows = {
        label: (bills, owed)
        for label, bills, owed in session.execute(
            select(bucket, func.count(), func.sum(Invoice.balance_due))
            .where(
                Invoice.status.in_((InvoiceStatus.ISSUED, InvoiceStatus.PARTIAL)),
                Invoice.balance_due > 0,
            )
            .group_by(bucket)
        )
    }
    labels = [label for _low, _high, label in AGES] + [OLDER]
    return [AgeLine(label, *rows.get(label, (0, ZERO))) for label in labels]


def doctor_of_user(session: Session, user_id: uuid.UUID) -> DoctorProfile | None:
    """The signed-in doctor's profile (a doctor's own figures are read by it)."""
    return session.scalars(select(DoctorProfile).where(DoctorProfile.user_id == user_id)).first()


def points(days: Sequence[tuple[date, Figures | None]], name: str) -> list[tuple[date, Any]]:
    """One figure of each day, for a chart (``None`` where the day is not built)."""
    return [(day, getattr(f, name) if f is not None else None) for day, f in days]
