"""``report_daily``: every figure equals the one worked out by hand from a known clinic
day (its records are listed in :func:`tests.factories.reports.known_clinic`).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.scheduling.models import AppointmentStatus as S
from tests.factories.clinics import make_tenant
from tests.factories.people import make_doctor, patients
from tests.factories.reports import (
    D1,
    D2,
    D,
    History,
    KnownClinic,
    build_days,
    clinic_days,
    doctor_days,
    known_clinic,
    no_show_rows,
)

INDIA = ZoneInfo("Asia/Kolkata")
DUBAI = ZoneInfo("Asia/Dubai")


def money(value: str) -> Decimal:
    return Decimal(value)


@pytest.fixture
def clinic(db: Database, ident: Identity) -> KnownClinic:
    return known_clinic(db, ident)


def figures(row: object) -> dict[str, object]:
    names = (
        "appointments_requested",
        "appointments_confirmed",
        "appointments_completed",
        "appointments_no_show",
        "revenue_gross",
        "revenue_discounts",
        "revenue_net",
        "visits_total",
        "visits_documented_complete",
        "prescriptions_total",
        "diet_plans_total",
        "payments_failures",
        "booking_median_seconds",
    )
    return {n: getattr(row, n) for n in names}


def expect(**given: object) -> dict[str, object]:
    """The figures of a day: zeros, an empty median, and what ``given`` says."""
    base: dict[str, object] = {
        "appointments_requested": 0,
        "appointments_confirmed": 0,
        "appointments_completed": 0,
        "appointments_no_show": 0,
        "revenue_gross": money("0.00"),
        "revenue_discounts": money("0.00"),
        "revenue_net": money("0.00"),
        "visits_total": 0,
        "visits_documented_complete": 0,
        "prescriptions_total": 0,
        "diet_plans_total": 0,
        "payments_failures": 0,
        "booking_median_seconds": None,
    }
    return {**base, **given}


def test_the_clinics_days_are_the_sums_worked_out_by_hand(
    db: Database, clinic: KnownClinic
) -> None:
    tenant = clinic.tenant
    built = build_days(db, tenant, D, D2)
    assert (built.days, built.changed) == (3, 3)
    days = clinic_days(db, tenant)
    assert sorted(days) == [D, D1, D2]
    assert figures(days[D]) == expect(
        appointments_requested=3,  # a2, a3 and a4 (23:50 IST); a1 was requested the day before
        appointments_confirmed=2,  # a2, a3; a4's confirmation fell after midnight
        appointments_completed=2,
        appointments_no_show=1,
        booking_median_seconds=600,  # of 600, 0 and 1,800
        revenue_gross=money("1890.00"),  # 500 + 1,180 + 210, before the discount, with tax
        revenue_discounts=money("50.00"),
        revenue_net=money("1840.00"),
        visits_total=2,
        visits_documented_complete=1,  # a3's note is unsigned
        prescriptions_total=1,  # the correction is not a second prescription
        diet_plans_total=1,
        payments_failures=1,
    )
    assert days[D].money_in == {
        "cash": {"amount": "660.00", "count": 2},
        "upi": {"amount": "1180.00", "count": 1},
    }
    assert days[D].money_out == {}
    assert figures(days[D1]) == expect(
        appointments_requested=1,
        appointments_confirmed=1,
        appointments_completed=1,
        booking_median_seconds=None,  # a5, the only booking, was never confirmed
        revenue_net=money("-200.00"),  # the refund lands on its own day, not the bill's
        visits_total=1,
        visits_documented_complete=1,
        prescriptions_total=1,
    )
    assert days[D1].money_in == {}
    assert days[D1].money_out == {"cash": {"amount": "200.00", "count": 1}}
    assert figures(days[D2]) == expect()
    assert {d.time_zone for d in days.values()} == {"Asia/Kolkata"}


def test_each_doctors_days_count_only_their_own(db: Database, clinic: KnownClinic) -> None:
    tenant, a, b = clinic.tenant, clinic.a, clinic.b
    build_days(db, tenant, D, D2)
    rows = {key: figures(row) for key, row in doctor_days(db, tenant).items()}
    assert rows == {
        (D, a): expect(
            appointments_requested=1,
            appointments_confirmed=1,
            appointments_completed=1,
            appointments_no_show=1,
            booking_median_seconds=600,
            revenue_gross=money("500.00"),
            revenue_discounts=money("50.00"),
            revenue_net=money("450.00"),
            visits_total=1,
            visits_documented_complete=1,
            prescriptions_total=1,
            diet_plans_total=1,
        ),
        (D, b): expect(
            appointments_requested=2,
            appointments_confirmed=1,
            appointments_completed=1,
            booking_median_seconds=900,  # the middle of 0 and 1,800
            revenue_gross=money("1180.00"),
            revenue_net=money("1180.00"),
            visits_total=1,
            payments_failures=1,
        ),
        (D1, a): expect(appointments_requested=1, revenue_net=money("-200.00")),
        (D1, b): expect(
            appointments_confirmed=1,
            appointments_completed=1,
            visits_total=1,
            visits_documented_complete=1,
            prescriptions_total=1,
        ),
    }


def test_no_shows_are_counted_by_the_slots_hour_doctor_and_channel(
    db: Database, clinic: KnownClinic
) -> None:
    tenant, a, b = clinic.tenant, clinic.a, clinic.b
    build_days(db, tenant, D, D2)
    assert no_show_rows(db, tenant) == {
        (D, a, 10, "phone", 1, 0),
        (D, a, 11, "web", 1, 1),
        (D, b, 12, "walk-in", 1, 0),
        (D1, b, 10, "web", 1, 0),  # a4, booked the evening before; a5 was cancelled
    }


def test_building_a_day_again_leaves_the_same_rows(db: Database, clinic: KnownClinic) -> None:
    tenant = clinic.tenant
    build_days(db, tenant, D, D2)
    before = clinic_days(db, tenant)
    doctors_before = {k: figures(v) for k, v in doctor_days(db, tenant).items()}
    no_shows_before = no_show_rows(db, tenant)

    again = build_days(db, tenant, D, D1)
    assert again.changed == 0
    after = clinic_days(db, tenant)
    assert len(after) == 3
    for day, row in before.items():
        assert {c: getattr(after[day], c) for c in columns(row)} == {
            c: getattr(row, c) for c in columns(row)
        }
    assert {k: figures(v) for k, v in doctor_days(db, tenant).items()} == doctors_before
    assert no_show_rows(db, tenant) == no_shows_before


def columns(row: object) -> list[str]:
    return [c.key for c in row.__table__.columns]  # type: ignore[attr-defined]


def test_a_later_change_reaches_the_day_when_it_is_built_again(
    db: Database, clinic: KnownClinic
) -> None:
    tenant = clinic.tenant
    build_days(db, tenant, D, D)
    first = clinic_days(db, tenant)[D]
    h = History(db, tenant, INDIA)
    # A payment on D that arrives in the records late (a gateway's webhook, say).
    late = h.invoice(clinic.patients[0], issued=h.at(D, 18), subtotal="300.00")
    h.payment(late, amount="300.00", method="card", at=h.at(D, 18, 5))
    again = build_days(db, tenant, D, D)
    assert again.changed == 1
    row = clinic_days(db, tenant)[D]
    assert row.id == first.id  # the same row, updated: one row per clinic and date
    assert row.revenue_gross == first.revenue_gross + 300
    assert row.money_in["card"] == {"amount": "300.00", "count": 1}


def test_a_clinic_in_dubai_cuts_its_days_at_its_own_midnight(
    db: Database, ident: Identity, clinic: KnownClinic
) -> None:
    tenant = make_tenant(db, "Gulf Clinic", timezone=DUBAI.key)
    doctor = make_doctor(db, ident, tenant, name="Dr. Omar Haddad")
    (p,) = patients(db, ident, tenant, 1)
    h = History(db, tenant, DUBAI)
    # 23:30 and 00:30 in Dubai are 19:30 and 20:30 UTC: one UTC date, two clinic days;
    # in India both would be the next day (01:00 and 02:00 on D+1).
    h.appointment(
        doctor, p, slot_at=h.at(D1, 9), status=S.CONFIRMED,
        requested=h.at(D, 23, 30), confirmed=h.at(D, 23, 30),
    )  # fmt: skip
    h.appointment(
        doctor, p, slot_at=h.at(D1, 10), status=S.CONFIRMED,
        requested=h.at(D1, 0, 30), confirmed=h.at(D1, 0, 30),
    )  # fmt: skip
    build_days(db, tenant, D, D1)
    days = clinic_days(db, tenant)
    assert [days[D].appointments_requested, days[D1].appointments_requested] == [1, 1]
    assert {d.time_zone for d in days.values()} == {"Asia/Dubai"}
    # The other clinic's report is untouched and its records never counted here.
    assert clinic_days(db, clinic.tenant) == {}


def test_a_build_refuses_a_backwards_or_overlong_range(db: Database, clinic: KnownClinic) -> None:
    tenant = clinic.tenant
    with pytest.raises(ValueError, match="before the first"):
        build_days(db, tenant, D1, D)
    with pytest.raises(ValueError, match="at most 400 days"):
        build_days(db, tenant, D, D + timedelta(days=400))
    assert clinic_days(db, tenant) == {}
