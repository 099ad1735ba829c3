"""What the dashboard reads, over the known clinic's built days (see
:func:`tests.factories.reports.known_clinic`): today live, the period's days, the doctors,
no-show rates, money by method and what is still owed by age.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.reports import queries
from opdesk.reports.queries import Figures, Period, Rate
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for
from tests.factories.reports import D1, D2, D, KnownClinic, build_days, known_clinic

INDIA = ZoneInfo("Asia/Kolkata")
# The period of the three built days, as the dashboard sees it the morning after D+2.
PERIOD = Period.ending_before(D2 + timedelta(days=1), 3)


@pytest.fixture
def clinic(db: Database, ident: Identity) -> KnownClinic:
    known = known_clinic(db, ident)
    build_days(db, known.tenant, D, D2)
    return known


def test_a_period_adds_its_days_and_takes_the_median_of_their_medians(
    db: Database, clinic: KnownClinic
) -> None:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        days = queries.trend(session, PERIOD)
        longer = queries.trend(session, Period.ending_before(D2 + timedelta(days=1), 4))
    assert [day for day, _ in days] == [D, D1, D2]
    total = Figures.added(f for _, f in days if f is not None)
    assert (total.requested, total.completed, total.no_show, total.visits) == (4, 3, 1, 3)
    assert (total.gross, total.discounts, total.net) == (
        Decimal("1890.00"),
        Decimal("50.00"),
        Decimal("1640.00"),
    )
    assert total.median_seconds == 600  # D's median; D+1 and D+2 have none
    assert total.documented_share == pytest.approx(2 / 3)
    assert longer[0] == (D - timedelta(days=1), None)  # a day never built shows as a gap


def test_a_doctors_trend_is_their_own_rows_only(db: Database, clinic: KnownClinic) -> None:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        a_days = dict(queries.trend(session, PERIOD, doctor_id=clinic.a))
    on_d, on_d1 = a_days[D], a_days[D1]
    assert on_d is not None and on_d.requested == 1
    assert on_d1 is not None and on_d1.net == Decimal("-200.00")
    assert a_days[D2] == Figures()  # built, nothing of theirs


def test_doctors_side_by_side(db: Database, clinic: KnownClinic) -> None:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        lines = queries.doctors(session, PERIOD)
    assert [(line.name, line.figures.completed, line.figures.net) for line in lines] == [
        ("Dr. Asha Rao", 1, Decimal("250.00")),  # 450 on D, less the 200 refunded on D+1
        ("Dr. Bala Iyer", 2, Decimal("1180.00")),
    ]


def test_no_show_rates_by_weekday_hour_and_channel(db: Database, clinic: KnownClinic) -> None:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        found = queries.no_shows(session, PERIOD)
        dr_b = queries.no_shows(session, PERIOD, doctor_id=clinic.b)
    # D is a Tuesday (3 expected, 1 missed), D+1 a Wednesday (1 expected).
    assert [(r.label, r.expected, r.missed) for r in found.by_weekday if r.expected] == [
        ("Tuesday", 3, 1),
        ("Wednesday", 1, 0),
    ]
    assert len(found.by_weekday) == 7
    assert found.by_hour == [
        Rate("10:00", 2, 0),
        Rate("11:00", 1, 1),
        Rate("12:00", 1, 0),
    ]
    assert found.by_channel == [Rate("Online", 2, 1), Rate("Phone", 1, 0), Rate("Walk-in", 1, 0)]
    assert found.overall == Rate("All", 4, 1)
    assert found.by_channel[0].share == 0.5
    assert dr_b.overall == Rate("All", 2, 0)


def test_money_by_method_and_owed_by_age(db: Database, clinic: KnownClinic) -> None:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        methods = queries.by_method(session, PERIOD)
        owed = queries.owed_by_age(session, D2 + timedelta(days=40), INDIA)
    assert [(m.label, m.received, m.payments, m.refunded) for m in methods] == [
        ("Cash", Decimal("660.00"), 2, Decimal("200.00")),
        ("UPI", Decimal("1180.00"), 1, Decimal("0.00")),
    ]
    # The factory's invoices stay "issued" with their whole total due (the report reads
    # payments from their own rows): 450 + 1,180 + 210, issued 42 days before.
    assert [(a.label, a.bills, a.owed) for a in owed] == [
        ("Up to 30 days", 0, Decimal("0.00")),
        ("31 to 60 days", 3, Decimal("1840.00")),
        ("61 to 90 days", 0, Decimal("0.00")),
        ("Over 90 days", 0, Decimal("0.00")),
    ]


def test_today_is_read_live_from_the_records(db: Database, clinic: KnownClinic) -> None:
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        clinic_today = queries.today_figures(session, clinic.tenant.id, INDIA, D1)
        a_today = queries.today_figures(session, clinic.tenant.id, INDIA, D1, clinic.a)
        quiet = queries.today_figures(session, clinic.tenant.id, INDIA, D2, clinic.b)
    assert (clinic_today.requested, clinic_today.completed, clinic_today.net) == (
        1,
        1,
        Decimal("-200.00"),
    )
    assert (a_today.requested, a_today.completed, a_today.net) == (1, 0, Decimal("-200.00"))
    assert quiet == Figures()
