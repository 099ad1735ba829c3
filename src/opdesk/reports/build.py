"""Building ``report_daily``: a clinic's figures per clinic-local day, from its records.

A build of days ``first``..``last`` reads what happened in those days and writes, for each
of them, one clinic row (``report_daily``), one row per doctor who had anything that day
(``report_daily_doctors``) and the no-show counts (``report_daily_no_shows``). Days with
nothing get a clinic row of zeros, so a chart has no holes. Building a day again writes the
same figures (a clinic row whose figures did not change is left as it was, ``built_at``
included), so the nightly rule, a catch-up and ``opdesk report build`` may all run.

Each figure is counted on the day its event happened, in the clinic's time zone:

* **appointments** requested / confirmed / completed / no-show: appointments whose
  ``timeline.requestedAt`` (``confirmedAt``, ``completedAt``, ``noShowAt``) falls in the
  day. A booking requested at 23:50 and confirmed at 00:10 counts as requested on the first
  day and confirmed on the second.
* **bookingMedianSeconds**: the median of ``confirmedAt - requestedAt``, in whole seconds,
  over the appointments *requested* that day that have been confirmed; empty when none
  were. A booking the desk makes is confirmed at once (0 s); one from the clinic's page
  that must be paid first waits for its payment.
* **revenue**: *gross* is what the invoices issued that day charged before their
  discounts (their grand totals plus their discounts, tax included); *discounts* is
  those discounts; *net* is gross minus discounts minus the credit notes written that
  day (a refund's credit note or a cancelled bill's), so a refund lowers the day it was
  given, not the day of the bill.
* **visits**: visits opened that day; *documentedComplete* counts those whose note is
  signed with at least one diagnosis (as of the build: a note signed the next morning
  counts once the day is built again, which the nightly rule does for the past week).
* **prescriptions** and **dietPlans**: issued that day; a corrected version of one already
  issued is not counted again.
* **payments.failures**: payments that failed that day.
* **no-shows by slot** (``report_daily_no_shows``): by the slot's day and hour, doctor and
  booking channel: the appointments still booked when their time came (confirmed, arrived,
  seen or missed, not cancelled) and how many of them were missed.

A doctor's row counts what belongs to the doctor: their appointments, visits,
prescriptions and diet plans, and the money of invoices for their appointments or visits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, or_, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.reports.models import ReportDaily, ReportDailyDoctor, ReportNoShow

ZERO = Decimal("0.00")
# The most days one build may cover: a year and a bit (a leap year, and the day of a
# clinic that changed zone); longer ranges are built a year at a time.
MAX_DAYS = 400
# The past days the nightly rule builds again with yesterday's, so late changes land: a
# note signed the next morning, a no-show marked after closing.
TRAILING_DAYS = 7

# Appointments still booked when their time came: the no-show rate's denominator.
EXPECTED_STATUSES = ("confirmed", "checked-in", "in-consult", "completed", "no-show")

COUNTS = (
    "appointments_requested",
    "appointments_confirmed",
    "appointments_completed",
    "appointments_no_show",
    "visits_total",
    "visits_documented_complete",
    "prescriptions_total",
    "diet_plans_total",
    "payments_failures",
)
AMOUNTS = ("revenue_gross", "revenue_discounts", "revenue_credits")
FIGURES = (*COUNTS, *AMOUNTS)


@dataclass(frozen=True)
class Source:
    """One kind of event: the rows it comes from, when it happened, whose it is, and
    what it adds to each figure (the others get 0).
    """

    rows: str
    alias: str
    at: str
    doctor: str
    adds: dict[str, str]
    wait: str = "NULL"
    only: str = ""


# Whose an invoice is: its appointment's doctor, else its visit's (a counter sale: no one's).
INVOICE_DOCTOR = (
    " LEFT JOIN appointments ia ON ia.tenant_id = i.tenant_id AND ia.id = i.appointment_id"
    " LEFT JOIN visits iv ON iv.tenant_id = i.tenant_id AND iv.id = i.visit_id"
)
INVOICE_OF = "JOIN invoices i ON i.tenant_id = {0}.tenant_id AND i.id = {0}.invoice_id"
INVOICES_DOCTOR = "coalesce(ia.doctor_id, iv.doctor_id)"
SIGNED_WITH_DIAGNOSIS = (
    "CASE WHEN v.status = 'signed' AND EXISTS (SELECT 1 FROM visits_diagnoses g "
    "WHERE g.tenant_id = v.tenant_id AND g.visit_id = v.id) THEN 1 ELSE 0 END"
)


def _appointments(at: str, figure: str, wait: str = "NULL") -> Source:
    return Source("appointments a", "a", f"a.timeline_{at}_at", "a.doctor_id", {figure: "1"}, wait)


# ``:tenant``, ``:zone``, ``:lo`` and ``:hi`` (the range's first and after-last instants)
# are bound.
SOURCES = (
    _appointments(
        "requested",
        "appointments_requested",
        wait="extract(epoch FROM a.timeline_confirmed_at - a.timeline_requested_at)",
    ),
    _appointments("confirmed", "appointments_confirmed"),
    _appointments("completed", "appointments_completed"),
    _appointments("no_show", "appointments_no_show"),
    Source(
        "visits v",
        "v",
        "v.created_at",
        "v.doctor_id",
        {"visits_total": "1", "visits_documented_complete": SIGNED_WITH_DIAGNOSIS},
    ),
    Source(
        "prescriptions r",
        "r",
        "r.issued_at",
        "r.doctor_id",
        {"prescriptions_total": "1"},
        only="r.supersedes IS NULL",
    ),
    Source(
        "diet_plans p",
        "p",
        "p.issued_at",
        "p.doctor_id",
        {"diet_plans_total": "1"},
        only="p.supersedes IS NULL",
    ),
    Source(
        "invoices i" + INVOICE_DOCTOR,
        "i",
        "i.issued_at",
        INVOICES_DOCTOR,
        {
            "revenue_gross": "i.grand_total + i.discount_total",
            "revenue_discounts": "i.discount_total",
        },
    ),
    Source(
        "ledger_entries l " + INVOICE_OF.format("l") + INVOICE_DOCTOR,
        "l",
        "l.created_at",
        INVOICES_DOCTOR,
        {"revenue_credits": "l.amount"},
        only="l.kind = 'credit-note'",
    ),
    Source(
        "payments y " + INVOICE_OF.format("y") + INVOICE_DOCTOR,
        "y",
        "y.failed_at",
        INVOICES_DOCTOR,
        {"payments_failures": "1"},
        only="y.status = 'failed'",
    ),
)


def _branch(source: Source) -> str:
    """One event kind's rows of the figures; every part is a constant of this module."""
    figures = ", ".join(f"{source.adds.get(name, '0')} AS {name}" for name in FIGURES)
    only = f" AND {source.only}" if source.only else ""
    return (
        f"SELECT ({source.at} AT TIME ZONE :zone)::date AS day, {source.doctor} AS doctor_id, "  # noqa: S608
        f"{figures}, {source.wait} AS wait FROM {source.rows} "
        f"WHERE {source.alias}.tenant_id = :tenant AND {source.at} >= :lo "
        f"AND {source.at} < :hi{only}"
    )


def _figures_sql() -> str:
    sums = ", ".join(f"sum({name}) AS {name}" for name in FIGURES)
    facts = "\nUNION ALL\n".join(_branch(s) for s in SOURCES)
    return (
        f"WITH facts AS ({facts})\n"
        f"SELECT day, doctor_id, GROUPING(doctor_id) = 1 AS whole_clinic, {sums}, "
        "round(percentile_cont(0.5) WITHIN GROUP (ORDER BY wait))::int AS median_wait "
        "FROM facts GROUP BY GROUPING SETS ((day), (day, doctor_id))"
    )


FIGURES_SQL = text(_figures_sql())

MONEY_SQL = text(
    """
    SELECT 'in' AS way, (p.captured_at AT TIME ZONE :zone)::date AS day,
           coalesce(part ->> 'method', p.method) AS method,
           sum(coalesce((part ->> 'amount')::numeric, p.amount)) AS amount, count(*) AS n
    FROM payments p
    LEFT JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(p.split) = 'array' THEN p.split ELSE '[]'::jsonb END
    ) part ON true
    WHERE p.tenant_id = :tenant AND p.status IN ('captured', 'partial', 'refunded')
      AND p.captured_at >= :lo AND p.captured_at < :hi
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT 'out', (f.processed_at AT TIME ZONE :zone)::date, f.method, sum(f.amount), count(*)
    FROM payments_refunds f
    WHERE f.tenant_id = :tenant AND f.status = 'processed'
      AND f.processed_at >= :lo AND f.processed_at < :hi
    GROUP BY 1, 2, 3
    """
)

NO_SHOWS_SQL = text(
    """
    INSERT INTO report_daily_no_shows
        (tenant_id, date, doctor_id, hour, channel, expected, no_show)
    SELECT a.tenant_id, (w.at AT TIME ZONE :zone)::date,
           a.doctor_id, extract(hour FROM w.at AT TIME ZONE :zone)::smallint, a.channel,
           count(*), count(*) FILTER (WHERE a.status = 'no-show')
    FROM appointments a
    LEFT JOIN slots s ON s.tenant_id = a.tenant_id AND s.id = a.slot_id
    CROSS JOIN LATERAL (SELECT coalesce(s.starts_at, a.timeline_requested_at) AS at) w
    WHERE a.tenant_id = :tenant
      AND a.status = ANY(:expected)
      AND w.at >= :lo AND w.at < :hi
    GROUP BY 1, 2, 3, 4, 5
    """
)


@dataclass
class DayFigures:
    """One clinic's (or one doctor's) figures for one day, as they are being added up."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    amounts: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(AMOUNTS, ZERO))
    median_wait: int | None = None

    def columns(self) -> dict[str, Any]:
        gross = self.amounts["revenue_gross"]
        discounts = self.amounts["revenue_discounts"]
        return {
            **self.counts,
            "revenue_gross": gross,
            "revenue_discounts": discounts,
            "revenue_net": gross - discounts - self.amounts["revenue_credits"],
            "booking_median_seconds": self.median_wait,
        }


@dataclass(frozen=True)
class Built:
    first: date
    last: date
    days: int
    doctor_rows: int
    changed: int


def days_between(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


@dataclass(frozen=True)
class Figured:
    """A range's figures as read from the records, before anything is written."""

    clinic: dict[date, DayFigures]
    doctors: dict[tuple[date, uuid.UUID], DayFigures]
    # {("in" | "out", day): {method: {"amount": "1500.00", "count": 3}}}
    money: dict[tuple[str, date], dict[str, dict[str, Any]]]


def bounds_of(tenant: uuid.UUID, zone: ZoneInfo, first: date, last: date) -> dict[str, Any]:
    """The statements' parameters: the clinic, its zone, and the range's first and
    after-last instants.
    """
    lo = datetime.combine(first, datetime.min.time(), zone)
    hi = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    return {"tenant": tenant, "zone": zone.key, "lo": lo, "hi": hi}


def figure(session: Session, tenant: uuid.UUID, zone: ZoneInfo, first: date, last: date) -> Figured:
    """Read the figures of ``first``..``last`` (today's, live, for the dashboard)."""
    bounds = bounds_of(tenant, zone, first, last)
    clinic, doctors = _figures(session, bounds)
    return Figured(clinic, doctors, _money(session, bounds))


def build(session: Session, ctx: RequestContext, zone: ZoneInfo, first: date, last: date) -> Built:
    """Build the clinic's days ``first``..``last`` (clinic-local, both included)."""
    if last < first:
        raise ValueError("the last day comes before the first")
    if (last - first).days >= MAX_DAYS:
        raise ValueError(f"build at most {MAX_DAYS} days at a time")
    tenant = ctx.tenant_id
    assert tenant is not None, "a report belongs to a clinic"
    found = figure(session, tenant, zone, first, last)
    changed = _write_clinic_days(session, ctx, zone, first, last, found.clinic, found.money)
    _replace(session, tenant, first, last, found.doctors)
    session.execute(
        NO_SHOWS_SQL,
        {**bounds_of(tenant, zone, first, last), "expected": list(EXPECTED_STATUSES)},
    )
    built = Built(first, last, (last - first).days + 1, len(found.doctors), changed)
    audit.record(
        ctx,
        entity="report_daily",
        entity_id=None,
        action="update",
        diff={
            "updated": {
                "reportDaily": {
                    "from": first.isoformat(),
                    "to": last.isoformat(),
                    "timeZone": zone.key,
                    "days": built.days,
                    "changed": changed,
                }
            }
        },
    )
    return built


def _figures(
    session: Session, bounds: dict[str, Any]
) -> tuple[dict[date, DayFigures], dict[tuple[date, uuid.UUID], DayFigures]]:
    clinic: dict[date, DayFigures] = {}
    doctors: dict[tuple[date, uuid.UUID], DayFigures] = {}
    for row in session.execute(FIGURES_SQL, bounds).mappings():
        figures = DayFigures(
            counts={name: int(row[name]) for name in COUNTS},
            amounts={name: Decimal(row[name]) for name in AMOUNTS},
            median_wait=row["median_wait"],
        )
        if row["whole_clinic"]:
            clinic[row["day"]] = figures
        elif row["doctor_id"] is not None:  # money not tied to a doctor is the clinic's only
            doctors[(row["day"], row["doctor_id"])] = figures
    return clinic, doctors


def _money(
    session: Session, bounds: dict[str, Any]
) -> dict[tuple[str, date], dict[str, dict[str, Any]]]:
    """``{("in" | "out", day): {method: {"amount": "1500.00", "count": 3}}}``."""
    found: dict[tuple[str, date], dict[str, dict[str, Any]]] = {}
    for way, day, method, amount, count in session.execute(MONEY_SQL, bounds):
        found.setdefault((way, day), {})[method] = {
            "amount": str(Decimal(amount).quantize(Decimal("0.01"))),
            "count": int(count),
        }
    return found


def _write_clinic_days(
    session: Session,
    ctx: RequestContext,
    zone: ZoneInfo,
    first: date,
    last: date,
    clinic: dict[date, DayFigures],
    money: dict[tuple[str, date], dict[str, dict[str, Any]]],
) -> int:
    """Upsert one row per day; a row whose figures are unchanged is left alone. Returns
    how many rows were written.
    """
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "id": uuid.uuid4(),
            "date": day,
            "time_zone": zone.key,
            "money_in": money.get(("in", day), {}),
            "money_out": money.get(("out", day), {}),
            "built_at": ctx.now(),
            **clinic.get(day, DayFigures()).columns(),
        }
        for day in days_between(first, last)
    ]
    values = pg_insert(ReportDaily).values(rows)
    kept = ("tenant_id", "id", "date", "built_at")
    updates = {c: values.excluded[c] for c in rows[0] if c not in kept}
    columns = ReportDaily.__table__.c
    upsert = values.on_conflict_do_update(
        index_elements=["tenant_id", "date"],
        set_={**updates, "built_at": values.excluded["built_at"]},
        where=or_(*(columns[c].is_distinct_from(new) for c, new in updates.items())),
    ).returning(ReportDaily.id)
    return len(session.execute(upsert).all())


def _replace(
    session: Session,
    tenant: uuid.UUID,
    first: date,
    last: date,
    doctors: dict[tuple[date, uuid.UUID], DayFigures],
) -> None:
    for model in (ReportDailyDoctor, ReportNoShow):
        session.execute(
            delete(model).where(model.tenant_id == tenant, model.date >= first, model.date <= last)
        )
    rows: Sequence[dict[str, Any]] = [
        {"tenant_id": tenant, "date": day, "doctor_id": doctor, **figures.columns()}
        for (day, doctor), figures in sorted(
            doctors.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))
        )
    ]
    if rows:
        session.execute(insert(ReportDailyDoctor), rows)
