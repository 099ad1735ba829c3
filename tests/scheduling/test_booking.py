"""Holds and bookings: exactly one appointment per slot under real concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.errors import Conflict, Forbidden
from opdesk.scheduling.models import Appointment, Slot
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    book,
    clinic_with_slots,
    ctx_for,
    free,
    hold,
    make_tenant,
    patients,
    slots_of,
)
from tests.factories.scheduling import HOLD_FOR


def race(db: Database, tenant: Tenant, people: list[Any], slots: list[Slot]) -> list[str]:
    """20 threads, 10 attempts each, all on the same 20 slots; returns every outcome."""
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def attempt(worker: int) -> None:
        start.wait()
        for k in range(10):
            person = people[worker * 10 + k]
            slot = slots[(worker + k) % len(slots)]
            try:
                book(db, tenant, slot, person)
                outcomes.append("booked")
            except Conflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(w,)) for w in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_200_concurrent_bookings_on_20_slots_make_exactly_20_appointments(
    db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Busy Clinic")
    people = patients(db, ident, tenant, 200)
    for _round in range(10):
        # A new doctor each round: 20 fresh slots, the same 200 patients competing.
        _tenant, doctor, slots = clinic_with_slots(db, ident, 20, tenant)
        outcomes = race(db, tenant, people, slots)
        assert outcomes.count("booked") == 20
        assert outcomes.count("conflict") == 180
        with transaction(db, ctx_for(tenant.id)) as session:
            booked = session.execute(
                select(func.count())
                .select_from(Slot)
                .where(Slot.doctor_id == doctor.id, Slot.status == "booked")
            ).scalar_one()
            appointments = session.execute(
                select(func.count(), func.count(func.distinct(Appointment.slot_id))).where(
                    Appointment.doctor_id == doctor.id
                )
            ).one()
        assert booked == 20
        assert tuple(appointments) == (20, 20)


def test_a_hold_keeps_the_slot_for_its_holder_only(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    mine, other = patients(db, ident, tenant, 2)
    slot = slots[0]
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        held = hold(db, tenant, slot)
        with pytest.raises(Conflict):
            hold(db, tenant, slot)
        with pytest.raises(Conflict):  # someone else's token
            book(db, tenant, slot, other, hold_token="x" * 43)
        assert slot.id not in {s.id for s in free(db, tenant, slot)}
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        appointment = book(db, tenant, slot, mine, hold_token=held.token)
    assert appointment.status == "confirmed"


def test_an_expired_hold_counts_as_free_at_once(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (late,) = patients(db, ident, tenant, 1)
    slot = slots[0]
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        held = hold(db, tenant, slot)
    with time_machine.travel(start + HOLD_FOR + timedelta(seconds=1), tick=False):
        assert [s.id for s in free(db, tenant, slot)] == [slot.id]  # no sweeper has run
        book(db, tenant, slot, late, channel="phone")
        with pytest.raises(Conflict):  # the old hold is dead
            book(db, tenant, slot, late, hold_token=held.token)


def test_a_hold_never_outlives_its_slot(db: Database, ident: Any) -> None:
    """A hold taken a minute before the slot ends lasts longer than the slot; once the slot
    is over, its holder cannot book it either.
    """
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (holder,) = patients(db, ident, tenant, 1)
    slot = slots[0]
    assert timedelta(minutes=1) < HOLD_FOR
    with time_machine.travel(slot.ends_at - timedelta(minutes=1), tick=False):
        held = hold(db, tenant, slot)
    after = time_machine.travel(slot.ends_at + timedelta(seconds=1), tick=False)
    with after, pytest.raises(Conflict, match="already over"):
        book(db, tenant, slot, holder, hold_token=held.token)


def test_blocked_patients_cannot_book_online(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (blocked,) = patients(db, ident, tenant, 1, flags={"vip": False, "blocked": True})
    with pytest.raises(Forbidden):
        book(db, tenant, slots[0], blocked, online=True)
    book(db, tenant, slots[0], blocked, channel="walk-in")  # the front desk may still


def test_the_sweeper_releases_lapsed_holds(db: Database, ident: Any) -> None:
    from opdesk.scheduling import waitlist

    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        hold(db, tenant, slots[0])
        hold(db, tenant, slots[1])
    with time_machine.travel(start + HOLD_FOR + timedelta(seconds=1), tick=False):
        hold(db, tenant, slots[1])  # taken again after it lapsed: still held
        ctx = ctx_for(tenant.id)
        with transaction(db, ctx) as session:
            released = waitlist.release_lapsed_holds(session, ctx)
    assert released == 1
    states = {s.id: s.status for s in slots_of(db, tenant, _doctor)}
    assert states == {slots[0].id: "free", slots[1].id: "held"}
