"""Slot generation: idempotent, never overlapping (enforced by PostgreSQL), time-zone exact."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from opdesk.db import Database, new_id
from opdesk.errors import InvalidInput
from opdesk.scheduling import service
from opdesk.scheduling.models import Slot
from opdesk.scheduling.service import Opening
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    MONDAY,
    MORNING,
    book,
    ctx_for,
    generate,
    make_doctor,
    make_tenant,
    patients,
    set_week,
    slots_of,
    unaudited,
)


def test_generation_follows_the_template_in_clinic_time_and_is_idempotent(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    set_week(db, tenant, doctor, MORNING)
    assert generate(db, tenant, doctor, MONDAY, 7) == 9  # 10:00 .. 12:40 every 20 minutes
    assert generate(db, tenant, doctor, MONDAY, 7) == 0
    slots = slots_of(db, tenant, doctor)
    ist = ZoneInfo("Asia/Kolkata")
    assert [s.starts_at.astimezone(ist).time() for s in slots][:3] == [
        time(10),
        time(10, 20),
        time(10, 40),
    ]
    assert all(s.date == MONDAY and s.status == "free" for s in slots)
    assert slots[-1].ends_at.astimezone(ist).time() == time(12, 55)
    assert slots[0].meta == {"visitType": ["consultation"], "bufferBefore": 0, "bufferAfter": 5}


def test_postgresql_refuses_overlapping_slots_of_one_doctor(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    start = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)

    def slot(minutes: int) -> Slot:
        begins = start + timedelta(minutes=minutes)
        return Slot(
            tenant_id=tenant.id,
            id=new_id(),
            doctor_id=doctor.id,
            date=begins.date(),
            starts_at=begins,
            ends_at=begins + timedelta(minutes=15),
            occupied_from=begins,
            occupied_until=begins + timedelta(minutes=15),
            status="free",
            meta={},
        )

    with transaction(db, ctx_for(tenant.id)) as session:
        unaudited(session)
        session.add(slot(0))
    with (
        pytest.raises(IntegrityError, match="ex_slots_no_overlap"),
        transaction(db, ctx_for(tenant.id)) as session,
    ):
        unaudited(session)
        session.add(slot(10))
    other = make_doctor(db, ident, tenant)
    with transaction(db, ctx_for(tenant.id)) as session:  # another doctor may overlap
        unaudited(session)
        clash = slot(10)
        clash.doctor_id = other.id
        session.add(clash)


@pytest.mark.parametrize(
    ("opening", "field"),
    [
        (Opening(0, time(13), time(10), 15), "templates.0.endTime"),
        (Opening(0, time(10), time(13), 0), "templates.0.slotMinutes"),
        (Opening(7, time(10), time(13), 15), "templates.0.weekday"),
    ],
)
def test_bad_templates_name_the_field(
    db: Database, ident: Any, tenant: Tenant, opening: Opening, field: str
) -> None:
    doctor = make_doctor(db, ident, tenant)
    with pytest.raises(InvalidInput) as info:
        set_week(db, tenant, doctor, opening)
    assert field in [e.field for e in info.value.errors]


def test_overlapping_templates_are_refused(db: Database, ident: Any, tenant: Tenant) -> None:
    doctor = make_doctor(db, ident, tenant)
    with pytest.raises(InvalidInput, match="overlaps template 0"):
        set_week(db, tenant, doctor, MORNING, Opening(0, time(12), time(14), 15))


def test_exceptions_leave_gaps(db: Database, ident: Any, tenant: Tenant) -> None:
    doctor = make_doctor(db, ident, tenant)
    set_week(db, tenant, doctor, MORNING)
    ist = ZoneInfo("Asia/Kolkata")
    # Added as of 25 November 2026, when the Monday's hours still lay ahead.
    ctx = ctx_for(tenant.id, clock=lambda: datetime(2026, 11, 25, tzinfo=UTC))
    with transaction(db, ctx) as session:
        service.add_exception(
            session,
            ctx,
            doctor_id=doctor.id,
            starts_at=datetime.combine(MONDAY, time(11), ist),
            ends_at=datetime.combine(MONDAY, time(12), ist),
            reason="Hospital round",
        )
    generate(db, tenant, doctor, MONDAY, 1)
    times = [s.starts_at.astimezone(ist).time() for s in slots_of(db, tenant, doctor)]
    assert time(11) not in times and time(11, 20) not in times
    assert time(10, 20) in times and time(12) in times


def test_a_daylight_saving_day_in_a_non_indian_clinic(db: Database, ident: Any) -> None:
    clinic = make_tenant(db, "Edison Clinic", timezone="America/New_York")
    doctor = make_doctor(db, ident, clinic)
    # 8 March 2026: clocks jump from 02:00 to 03:00 in New York.
    set_week(db, clinic, doctor, Opening(6, time(1), time(4), 30))
    generate(db, clinic, doctor, date(2026, 3, 8), 1)
    ny = ZoneInfo("America/New_York")
    slots = slots_of(db, clinic, doctor)
    assert [s.starts_at.astimezone(ny).strftime("%H:%M") for s in slots] == [
        "01:00",
        "01:30",
        "03:00",
        "03:30",
    ]
    assert all(s.ends_at - s.starts_at == timedelta(minutes=30) for s in slots)


def test_the_autumn_day_with_an_hour_twice_makes_no_overlap(db: Database, ident: Any) -> None:
    clinic = make_tenant(db, "Hudson Clinic", timezone="America/New_York")
    doctor = make_doctor(db, ident, clinic)
    # 1 November 2026: clocks go back from 02:00 to 01:00; 01:00-02:00 happens twice.
    set_week(db, clinic, doctor, Opening(6, time(1), time(3), 30))
    generate(db, clinic, doctor, date(2026, 11, 1), 1)
    ny = ZoneInfo("America/New_York")
    slots = slots_of(db, clinic, doctor)
    assert [s.starts_at.astimezone(ny).strftime("%H:%M %Z") for s in slots] == [
        "01:00 EDT",
        "01:30 EDT",
        "02:00 EST",
        "02:30 EST",
    ]
    assert all(s.ends_at - s.starts_at == timedelta(minutes=30) for s in slots)
    assert all(a.ends_at <= b.starts_at for a, b in pairwise(slots))


def test_changing_the_template_keeps_booked_slots(db: Database, ident: Any, tenant: Tenant) -> None:
    doctor = make_doctor(db, ident, tenant)
    set_week(db, tenant, doctor, MORNING)
    generate(db, tenant, doctor, MONDAY, 1)
    first = slots_of(db, tenant, doctor)[0]
    (patient,) = patients(db, ident, tenant, 1)
    with time_machine.travel(datetime(2026, 11, 25, tzinfo=UTC), tick=False):  # still ahead
        book(db, tenant, first, patient)
    set_week(db, tenant, doctor, Opening(0, time(10), time(12), 30))
    generate(db, tenant, doctor, MONDAY, 1)
    slots = slots_of(db, tenant, doctor)
    ist = ZoneInfo("Asia/Kolkata")
    assert slots[0].id == first.id and slots[0].status == "booked"
    # The new 10:00 slot would overlap the booked one, so the next begins at 10:30.
    assert [s.starts_at.astimezone(ist).time() for s in slots] == [
        time(10),
        time(10, 30),
        time(11),
        time(11, 30),
    ]
    with transaction(db, ctx_for(tenant.id)) as session:
        total = session.execute(
            select(func.count()).select_from(Slot).where(Slot.doctor_id == doctor.id)
        ).scalar_one()
    assert total == 4
