"""The appointment lifecycle's finer rules, each pinned by a test of its own: which moves
give a slot back (and when not), what a reschedule carries over, what a walk-in records,
and how the day's queue is read. Written to kill the mutants of ``scheduling/lifecycle.py``
that survived ``make mutate``; the ids in the comments are mutmut's.
"""

from __future__ import annotations

import threading
import time as clock
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select, text

from opdesk.db import Database
from opdesk.errors import Conflict, Forbidden
from opdesk.scheduling import booking, lifecycle, service, waitlist
from opdesk.scheduling.models import Appointment, Slot
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    book,
    clinic_with_slots,
    ctx_for,
    events_of,
    hold,
    join,
    make_doctor,
    make_patient,
    make_tenant,
    make_user,
    offers,
    patients,
    waiting,
)
from tests.factories.scheduling import OFFER_FOR

# Half an hour before the test slots (09:00 IST on DAY).
CLINIC_MORNING = datetime.combine(DAY, time(8, 30), CLINIC_ZONE).astimezone(UTC)


def the_offers(ident: Any) -> waitlist.Offers:
    return waitlist.Offers(ident.cipher, OFFER_FOR)


def move(db: Database, ident: Any, tenant: Tenant, appointment_id: uuid.UUID, to: str) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        lifecycle.transition(session, ctx, the_offers(ident), appointment_id=appointment_id, to=to)


def slot_status(db: Database, tenant: Tenant, slot_id: uuid.UUID) -> str:
    with transaction(db, ctx_for(tenant.id)) as session:
        return str(session.scalar(select(Slot.status).where(Slot.id == slot_id)))


def stored(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> Appointment:
    with transaction(db, ctx_for(tenant.id)) as session:
        found = session.get(Appointment, (tenant.id, appointment_id))
        assert found is not None
        return found


def offered_to(db: Database, tenant: Tenant) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(slot, patient) of every waitlist offer of the clinic, oldest first."""
    return [(o.slot_id, o.patient_id) for o in offers(db, tenant)]


# --------------------------------------------------------------------------- giving slots back


def test_checking_in_before_the_slot_starts_keeps_it_booked_and_offers_nothing(
    db: Database, ident: Any
) -> None:
    # x__move__mutmut_18: any move of an appointment with a slot (here a check-in)
    # released the slot to the waitlist while its patient sat in the waiting room.
    line = waiting(db, ident)
    with time_machine.travel(CLINIC_MORNING, tick=False):
        move(db, ident, line.tenant, line.booked.id, "checked-in")
    assert slot_status(db, line.tenant, line.slot.id) == "booked"
    assert offered_to(db, line.tenant) == []


def test_a_slot_that_has_begun_stays_booked_when_its_appointment_is_cancelled(
    db: Database, ident: Any
) -> None:
    # x__release__mutmut_10 (no time condition), _14 (>=: freed at the very minute it
    # starts): a slot already running was offered to the waitlist.
    line = waiting(db, ident)
    with time_machine.travel(line.slot.starts_at, tick=False):
        move(db, ident, line.tenant, line.booked.id, "cancelled")
    assert slot_status(db, line.tenant, line.slot.id) == "booked"
    assert offered_to(db, line.tenant) == []


def test_cancelling_a_late_arrival_leaves_the_offer_of_their_slot_standing(
    db: Database, ident: Any
) -> None:
    # x__release__mutmut_9: a slot no longer booked (held for the first patient waiting,
    # after its patient was marked no-show) was freed again and offered to the second.
    line = waiting(db, ident)
    move(db, ident, line.tenant, line.booked.id, "no-show")
    first_offer = [(line.slot.id, line.people[1].id)]
    assert offered_to(db, line.tenant) == first_offer
    move(db, ident, line.tenant, line.booked.id, "checked-in")
    move(db, ident, line.tenant, line.booked.id, "cancelled")
    assert slot_status(db, line.tenant, line.slot.id) == "held"
    assert offered_to(db, line.tenant) == first_offer


def test_only_cancelling_or_missing_a_booked_slot_still_to_come_gives_it_back(
    db: Database,
) -> None:
    # x_frees_slot__mutmut_1 to _7: the rule the desk's confirmation states was untested.
    now = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
    ctx = ctx_for(None, clock=lambda: now)

    def slot(status: str, starts_in: timedelta) -> Slot:
        starts = now + starts_in
        return Slot(
            tenant_id=uuid.uuid4(),
            doctor_id=uuid.uuid4(),
            status=status,
            starts_at=starts,
            occupied_from=starts,
            occupied_until=starts + timedelta(minutes=15),
        )

    later = timedelta(minutes=30)
    with transaction(db, ctx) as session:

        def frees(slot_: Slot | None, to: str) -> bool:
            return lifecycle.frees_slot(session, ctx, slot_, to)

        assert frees(slot("booked", later), "cancelled")
        assert frees(slot("booked", later), "no-show")
        assert not frees(slot("booked", later), "checked-in")
        assert not frees(None, "cancelled")
        assert not frees(slot("held", later), "cancelled")
        assert not frees(slot("free", later), "cancelled")
        assert not frees(slot("booked", timedelta(0)), "cancelled")
        assert not frees(slot("booked", -later), "no-show")


def test_reopening_a_blocked_slot_offers_it_to_the_first_patient_waiting(
    db: Database, ident: Any
) -> None:
    # x_reopen__mutmut_1 to _18: no test reached lifecycle.reopen.
    tenant, doctor, (slot,) = clinic_with_slots(db, ident, 1)
    first, second = patients(db, ident, tenant, 2)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        service.set_blocked(session, ctx, slot.id, blocked=True)
    join(db, tenant, first, doctor.id)
    join(db, tenant, second, doctor.id)
    with transaction(db, ctx) as session:
        reopened = lifecycle.reopen(session, ctx, the_offers(ident), slot.id)
        assert reopened.id == slot.id
    assert offered_to(db, tenant) == [(slot.id, first.id)]
    assert slot_status(db, tenant, slot.id) == "held"


# --------------------------------------------------------------------------- reschedules


def reschedule(
    db: Database,
    ident: Any,
    tenant: Tenant,
    appointment_id: uuid.UUID,
    slot_id: uuid.UUID,
    origin: booking.Origin | None = None,
) -> Appointment:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return lifecycle.reschedule(
            session,
            ctx,
            the_offers(ident),
            appointment_id=appointment_id,
            slot_id=slot_id,
            origin=origin or booking.Origin(),
        )


def test_a_reschedule_keeps_the_reason_and_the_visit_it_follows_up(
    db: Database, ident: Any
) -> None:
    # x_reschedule__mutmut_24, _30 (the reason dropped), _36, _40 (follow_up_for dropped).
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    (patient,) = patients(db, ident, tenant, 1)
    first = book(db, tenant, slots[0], patient)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        follow = booking.book(
            session,
            ctx,
            booking.BookingRequest(
                slot_id=slots[1].id,
                patient_id=patient.id,
                visit_type="consultation",
                channel="phone",
                reason="knee pain review",
                origin=booking.Origin(follow_up_for=first.id),
            ),
        )
    moved = reschedule(db, ident, tenant, follow.id, slots[2].id)
    again = stored(db, tenant, moved.id)
    assert (again.reason, again.follow_up_for, again.channel) == (
        "knee pain review",
        first.id,
        "phone",
    )


def test_a_reschedule_takes_the_slot_its_caller_holds(db: Database, ident: Any) -> None:
    # x_reschedule__mutmut_33, _37: the caller's hold token was dropped, so the slot they
    # held for the move counted as someone else's.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient,) = patients(db, ident, tenant, 1)
    old = book(db, tenant, slots[0], patient)
    held = hold(db, tenant, slots[1])
    with pytest.raises(Conflict):
        reschedule(db, ident, tenant, old.id, slots[1].id)
    moved = reschedule(
        db, ident, tenant, old.id, slots[1].id, booking.Origin(hold_token=held.token)
    )
    assert moved.slot_id == slots[1].id
    assert slot_status(db, tenant, slots[1].id) == "booked"


def test_a_patient_barred_from_booking_online_cannot_reschedule_online(
    db: Database, ident: Any
) -> None:
    # x_reschedule__mutmut_34, _38: a reschedule made online was treated as the desk's.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    barred = make_patient(db, ident, tenant, flags={"blocked": True})
    old = book(db, tenant, slots[0], barred)
    with pytest.raises(Forbidden) as refused:
        reschedule(db, ident, tenant, old.id, slots[1].id, booking.Origin(online=True))
    assert refused.value.detail == "this patient cannot book online; please call the clinic"
    assert stored(db, tenant, old.id).status == "confirmed"
    assert slot_status(db, tenant, slots[1].id) == "free"


def test_the_slot_a_reschedule_leaves_is_offered_to_the_first_patient_waiting(
    db: Database, ident: Any
) -> None:
    # x_reschedule__mutmut_43: the old slot was released without the waitlist's offers.
    tenant, doctor, slots = clinic_with_slots(db, ident, 2)
    patient, first, second = patients(db, ident, tenant, 3)
    old = book(db, tenant, slots[0], patient)
    join(db, tenant, first, doctor.id)
    join(db, tenant, second, doctor.id)
    reschedule(db, ident, tenant, old.id, slots[1].id)
    assert offered_to(db, tenant) == [(slots[0].id, first.id)]


def wait_until_blocked_by(db: Database, tenant: Tenant, blocker: int) -> None:
    """Until some session waits for a lock that the backend ``blocker`` holds (30 s at most)."""
    deadline = clock.monotonic() + 30
    while clock.monotonic() < deadline:
        with transaction(db, ctx_for(tenant.id)) as session:
            blocked = session.scalar(
                text(
                    "select count(*) from pg_locks "
                    "where not granted and :blocker = any(pg_blocking_pids(pid))"
                ),
                {"blocker": blocker},
            )
        if blocked:
            return
        clock.sleep(0.05)
    raise AssertionError("the second reschedule never waited for the first")


def test_a_reschedule_waits_for_another_and_then_says_the_appointment_was_cancelled(
    db: Database, ident: Any
) -> None:
    # x_reschedule__mutmut_5, _9, _10: read without its lock, the appointment looked still
    # confirmed to a second reschedule, which booked a slot and only then failed on a bare
    # "cannot go from cancelled to cancelled".
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    (patient,) = patients(db, ident, tenant, 1)
    old = book(db, tenant, slots[0], patient)
    refused: list[str] = []

    def second() -> None:
        try:
            reschedule(db, ident, tenant, old.id, slots[2].id)
        except Conflict as conflict:
            refused.append(conflict.detail)

    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        lifecycle.reschedule(
            session,
            ctx,
            the_offers(ident),
            appointment_id=old.id,
            slot_id=slots[1].id,
            origin=booking.Origin(),
        )
        first = session.scalar(text("select pg_backend_pid()"))
        racer = threading.Thread(target=second)
        racer.start()
        wait_until_blocked_by(db, tenant, first)
    racer.join()
    assert refused == ["a cancelled appointment cannot be rescheduled"]
    assert [slot_status(db, tenant, s.id) for s in slots] == ["free", "booked", "free"]


# --------------------------------------------------------------------------- walk-ins and queue


def test_a_walk_in_records_who_added_it_why_and_when_and_audits_it(
    db: Database, ident: Any
) -> None:
    # x_walk_in__mutmut_22, _36 (reason), _26, _40 (confirmed at), _27, _41 (checked in
    # at), _28, _42 (created by), _57, _63 (the event's to-state), _58, _64, _70, _73 to
    # _79 (the event's diff).
    tenant = make_tenant(db, "Walk-in Clinic")
    doctor = make_doctor(db, ident, tenant)
    patient = make_patient(db, ident, tenant)
    desk = make_user(db, ident, tenant, "frontdesk")
    ctx = ctx_for(tenant.id, actor_id=desk.id)
    with time_machine.travel(CLINIC_MORNING, tick=False), transaction(db, ctx) as session:
        walked = lifecycle.walk_in(
            session,
            ctx,
            patient_id=patient.id,
            doctor_id=doctor.id,
            visit_type="consultation",
            reason="fever since Sunday",
        )
    again = stored(db, tenant, walked.id)
    assert (again.status, again.channel, again.slot_id) == ("checked-in", "walk-in", None)
    assert (again.token_number, again.queue_date) == (1, DAY)
    assert again.reason == "fever since Sunday"
    assert again.created_by == desk.id
    assert again.timeline_requested_at == again.timeline_confirmed_at == CLINIC_MORNING
    assert again.timeline_checked_in_at == again.updated_at == CLINIC_MORNING
    (event,) = [e for e in events_of(db, tenant.id) if e.entity_id == walked.id]
    assert (event.entity_collection, event.action) == ("appointments", "create")
    assert (event.from_state, event.to_state) == (None, "checked-in")
    assert event.diff == {
        "added": {"patientId": str(patient.id), "channel": "walk-in"},
        "updated": {},
        "removed": {},
    }


def test_the_queue_of_a_day_lists_each_doctors_tokens_in_order_and_no_other_day(
    db: Database, ident: Any
) -> None:
    # x_queue__mutmut_4 (every day's tokens), _16 (tokens of all doctors interleaved),
    # _17 (a doctor's tokens in the order the rows happen to be stored).
    tenant = make_tenant(db, "Queue Clinic")
    doctors = [make_doctor(db, ident, tenant) for _ in range(2)]
    people = patients(db, ident, tenant, 5)
    ctx = ctx_for(tenant.id)

    def walk_in(patient: Any, doctor: Any) -> Appointment:
        with transaction(db, ctx) as session:
            return lifecycle.walk_in(
                session, ctx, patient_id=patient.id, doctor_id=doctor.id, visit_type="consultation"
            )

    with time_machine.travel(CLINIC_MORNING - timedelta(days=1), tick=False):
        walk_in(people[4], doctors[0])
    with time_machine.travel(CLINIC_MORNING, tick=False):
        today = [walk_in(p, doctors[i % 2]) for i, p in enumerate(people[:4])]
        # The first token of each doctor goes in: its row is written again, after the others.
        for first in today[:2]:
            move(db, ident, tenant, first.id, "in-consult")
    expected = sorted(((a.doctor_id, a.token_number, a.id) for a in today), key=lambda t: t[:2])
    assert [t for _d, t, _a in expected] == [1, 2, 1, 2]
    # The order must not depend on the plan: read it through the token index, and again
    # from the table itself, where the rows lie in the order they were last written.
    for indexes in ("on", "off"):
        with transaction(db, ctx) as session:
            for scan in ("indexscan", "indexonlyscan", "bitmapscan"):
                session.execute(text(f"set local enable_{scan} = {indexes}"))
            line = lifecycle.queue(session, ctx, doctor_id=None, day=DAY)
        assert [(a.doctor_id, a.token_number, a.id) for a in line] == expected, indexes
