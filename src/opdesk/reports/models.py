"""The seed's ``report_daily``, its per-doctor rows and the no-show counts behind the
"which slots go empty" tables.

Every row is derived: :mod:`opdesk.reports.build` writes them from appointments, visits,
prescriptions, diet plans, invoices, payments and the ledger, and can write any day again
with the same result. Nothing else writes here.

The seed nests the figures under ``metrics`` (``metrics.appointments.requested``...); here
each figure is a typed column named after its path without the ``metrics`` prefix
(``appointments_requested``), so sums over a quarter are plain SQL and money stays exact
(declared in docs/seed-deviations.toml).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped

# Figures of a whole month of a busy clinic fit; a day's never comes close.
MONEY = Numeric(14, 2)


class _Figures:
    """The figures a clinic's day and a doctor's day both have."""

    appointments_requested: Mapped[int] = mapped_column(Integer)
    appointments_confirmed: Mapped[int] = mapped_column(Integer)
    appointments_completed: Mapped[int] = mapped_column(Integer)
    appointments_no_show: Mapped[int] = mapped_column(Integer)
    revenue_gross: Mapped[Decimal] = mapped_column(MONEY)
    revenue_discounts: Mapped[Decimal] = mapped_column(MONEY)
    revenue_net: Mapped[Decimal] = mapped_column(MONEY)
    visits_total: Mapped[int] = mapped_column(Integer)
    visits_documented_complete: Mapped[int] = mapped_column(Integer)
    prescriptions_total: Mapped[int] = mapped_column(Integer)
    diet_plans_total: Mapped[int] = mapped_column(Integer)
    payments_failures: Mapped[int] = mapped_column(Integer)
    booking_median_seconds: Mapped[int | None] = mapped_column(Integer)


COUNTS_NOT_NEGATIVE = (
    "appointments_requested >= 0 AND appointments_confirmed >= 0 "
    "AND appointments_completed >= 0 AND appointments_no_show >= 0 AND visits_total >= 0 "
    "AND visits_documented_complete BETWEEN 0 AND visits_total AND prescriptions_total >= 0 "
    "AND diet_plans_total >= 0 AND payments_failures >= 0 "
    "AND (booking_median_seconds IS NULL OR booking_median_seconds >= 0)"
)


class ReportDaily(_Figures, TenantScoped, Base):
    """Seed ``report_daily``: one clinic's figures for one clinic-local date."""

    __tablename__ = "report_daily"

    date: Mapped[date] = mapped_column(Date)
    # The zone the day was cut in: a clinic that moves zone keeps its old days as built.
    time_zone: Mapped[str] = mapped_column(Text)
    # Money that came in that day and went back, by method:
    # {"cash": {"amount": "1500.00", "count": 3}, ...}
    money_in: Mapped[dict[str, Any]] = mapped_column(JSONB)
    money_out: Mapped[dict[str, Any]] = mapped_column(JSONB)
    built_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(COUNTS_NOT_NEGATIVE, name="counts_not_negative"),
        # Also serves the seed's plain `date` index: every tenant-scoped index leads with
        # tenant_id, which RLS adds to every query anyway.
        Index("uq_report_daily_tenant_id_date", "tenant_id", "date", unique=True),
    )


class ReportDailyDoctor(_Figures, Base):
    """One doctor's figures for one clinic-local date (the clinic's row is their sum, but
    for the median and for money not tied to a doctor, such as a counter sale).
    """

    __tablename__ = "report_daily_doctors"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    doctor_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)

    __table_args__ = (
        CheckConstraint(COUNTS_NOT_NEGATIVE, name="counts_not_negative"),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index(None, "tenant_id", "doctor_id", "date"),
    )


class ReportNoShow(Base):
    """How many appointments were still expected when their time came, and how many of
    those the patient missed, by the slot's clinic-local date and hour, doctor and channel.
    The weekday follows from the date.
    """

    __tablename__ = "report_daily_no_shows"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    doctor_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    expected: Mapped[int] = mapped_column(Integer)
    no_show: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("hour BETWEEN 0 AND 23", name="hour_of_day"),
        CheckConstraint("no_show BETWEEN 0 AND expected", name="no_show_within_expected"),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
    )
