"""The appointment lifecycle: the transition table, tokens, walk-ins, reschedules, and a
hold running out while someone books.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select, text

from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.scheduling import booking, lifecycle, waitlist
from opdesk.scheduling.models import Appointment, Slot
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    book,
    clinic_with_slots,
    ctx_for,
    hold,
    make_doctor,
    make_tenant,
    patients,
)
from tests.factories.scheduling import HOLD_FOR, OFFER_FOR

# Half an hour before the test slots (09:00 IST on DAY), so check-in dates match.
CLINIC_MORNING = datetime.combine(DAY, time(8, 30), CLINIC_ZONE).astimezone(UTC)


def move(
    db: Database, ident: Any, tenant: Tenant, appointment: Appointment, to: str
) -> Appointment:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return lifecycle.transition(
            session,
            ctx,
            waitlist.Offers(ident.cipher, OFFER_FOR),
            appointment_id=appointment.id,
            to=to,
        )


def audit_trail(db: Database, tenant: Tenant, appointment: Appointment) -> list[tuple[Any, ...]]:
    with transaction(db, ctx_for(tenant.id)) as session:
        rows = session.execute(
            text(
                "select action, from_state, to_state from audit_events "
                "where entity_id = :id order by seq"
            ),
            {"id": appointment.id},
        ).all()
    return [tuple(r) for r in rows]


def test_the_whole_visit_stamps_every_step_and_audits_from_and_to(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(db, tenant, slots[0], patient)
    with time_machine.travel(CLINIC_MORNING, tick=False):
        for step in ("checked-in", "in-consult", "completed"):
            appointment = move(db, ident, tenant, appointment, step)
    assert appointment.status == "completed"
    assert appointment.timeline_checked_in_at == CLINIC_MORNING
    assert appointment.timeline_in_consult_at == CLINIC_MORNING
    assert appointment.timeline_completed_at == CLINIC_MORNING
    assert appointment.token_number == 1 and appointment.queue_date == DAY
    assert audit_trail(db, tenant, appointment) == [
        ("create", None, "confirmed"),
        ("state-transition", "confirmed", "checked-in"),
        ("state-transition", "checked-in", "in-consult"),
        ("state-transition", "in-consult", "completed"),
    ]


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [
        (["checked-in", "in-consult", "completed"], "confirmed"),
        (["cancelled"], "checked-in"),
        ([], "completed"),
        (["checked-in", "in-consult"], "cancelled"),
    ],
)
def test_a_forbidden_transition_is_409_naming_both_states(
    db: Database, ident: Any, path: list[str], forbidden: str
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(db, tenant, slots[0], patient)
    with time_machine.travel(CLINIC_MORNING, tick=False):
        for step in path:
            appointment = move(db, ident, tenant, appointment, step)
    with pytest.raises(Conflict) as refused:
        move(db, ident, tenant, appointment, forbidden)
    assert (
        str(refused.value) == f"an appointment cannot go from {appointment.status} to {forbidden}"
    )
    assert len(audit_trail(db, tenant, appointment)) == 1 + len(path)


def test_tokens_count_per_doctor_per_day_and_walk_ins_join_the_same_queue(
    db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 3)
    other = make_doctor(db, ident, tenant)
    people = patients(db, ident, tenant, 4)
    first, second = (book(db, tenant, s, p) for s, p in zip(slots[:2], people, strict=False))
    ctx = ctx_for(tenant.id)
    with time_machine.travel(CLINIC_MORNING, tick=False):
        second = move(db, ident, tenant, second, "checked-in")
        with transaction(db, ctx) as session:
            walked = lifecycle.walk_in(
                session,
                ctx,
                patient_id=people[2].id,
                doctor_id=doctor.id,
                visit_type="consultation",
            )
            elsewhere = lifecycle.walk_in(
                session, ctx, patient_id=people[3].id, doctor_id=other.id, visit_type="consultation"
            )
        first = move(db, ident, tenant, first, "checked-in")
        with transaction(db, ctx) as session:
            line = lifecycle.queue(session, ctx, doctor_id=doctor.id, day=DAY)
    assert (second.token_number, walked.token_number, first.token_number) == (1, 2, 3)
    assert elsewhere.token_number == 1
    assert walked.channel == "walk-in" and walked.slot_id is None
    assert [a.id for a in line] == [second.id, walked.id, first.id]


def test_concurrent_check_ins_never_share_a_token(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 12)
    people = patients(db, ident, tenant, 12)
    booked = [book(db, tenant, s, p) for s, p in zip(slots, people, strict=True)]
    tokens: list[int] = []
    start = threading.Barrier(len(booked))

    def check_in(appointment: Appointment) -> None:
        start.wait()
        done = move(db, ident, tenant, appointment, "checked-in")
        assert done.token_number is not None
        tokens.append(done.token_number)

    with time_machine.travel(CLINIC_MORNING, tick=False):
        threads = [threading.Thread(target=check_in, args=(a,)) for a in booked]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(tokens) == list(range(1, 13))


def reschedule(
    db: Database, ident: Any, tenant: Tenant, appointment: Appointment, slot: Slot
) -> Appointment:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return lifecycle.reschedule(
            session,
            ctx,
            waitlist.Offers(ident.cipher, OFFER_FOR),
            appointment_id=appointment.id,
            slot_id=slot.id,
            origin=booking.Origin(),
        )


def slot_status(db: Database, tenant: Tenant, slot: Slot) -> str:
    with transaction(db, ctx_for(tenant.id)) as session:
        found = session.get(Slot, (tenant.id, slot.id))
        assert found is not None
        return found.status


def test_reschedule_moves_the_appointment_and_frees_the_old_slot(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient,) = patients(db, ident, tenant, 1)
    old = book(db, tenant, slots[0], patient)
    new = reschedule(db, ident, tenant, old, slots[1])
    assert new.reschedule_of == old.id and new.patient_id == patient.id
    assert new.status == "confirmed"
    assert slot_status(db, tenant, slots[0]) == "free"
    assert slot_status(db, tenant, slots[1]) == "booked"
    with pytest.raises(Conflict, match="cancelled appointment cannot be rescheduled"):
        reschedule(db, ident, tenant, old, slots[0])


def test_a_follow_up_points_at_the_earlier_visit(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 2)
    (patient, stranger) = patients(db, ident, tenant, 2)
    first = book(db, tenant, slots[0], patient)
    follow = book(db, tenant, slots[1], patient, follow_up_for=first.id)
    assert follow.follow_up_for == first.id
    move(db, ident, tenant, follow, "cancelled")
    from opdesk.errors import InvalidInput

    with pytest.raises(InvalidInput, match="followUpFor"):
        book(db, tenant, slots[1], stranger, follow_up_for=first.id)


def test_concurrent_reschedules_of_one_appointment_one_wins(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 9)
    (patient,) = patients(db, ident, tenant, 1)
    old = book(db, tenant, slots[0], patient)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def attempt(slot: Slot) -> None:
        start.wait()
        try:
            reschedule(db, ident, tenant, old, slot)
            outcomes.append("moved")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(s,)) for s in slots[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["moved"]
    with transaction(db, ctx_for(tenant.id)) as session:
        live = session.execute(
            select(func.count()).select_from(Appointment).where(Appointment.status == "confirmed")
        ).scalar_one()
        booked = session.execute(
            select(func.count()).select_from(Slot).where(Slot.status == "booked")
        ).scalar_one()
    assert (live, booked) == (1, 1)


def race_at_expiry(
    db: Database, tenant: Tenant, slot: Slot, token: str, people: list[Any]
) -> list[str]:
    """The holder (with their token) and a newcomer (without) book at the same moment."""
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attempt(patient: Any, hold_token: str | None) -> None:
        barrier.wait()
        try:
            book(db, tenant, slot, patient, hold_token=hold_token)
            outcomes.append("booked")
        except Conflict:
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=attempt, args=(people[0], token)),
        threading.Thread(target=attempt, args=(people[1], None)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_a_hold_running_out_while_another_books(db: Database, ident: Any) -> None:
    """At the moment the hold lapses its holder and a newcomer race: exactly one wins."""
    tenant = make_tenant(db, "Expiry Clinic")
    for _round in range(5):
        _t, _doctor, (slot,) = clinic_with_slots(db, ident, 1, tenant)
        people = patients(db, ident, tenant, 2)
        start = datetime.now(UTC)
        with time_machine.travel(start, tick=False):
            held = hold(db, tenant, slot)
        with time_machine.travel(start + HOLD_FOR, tick=False):
            outcomes = race_at_expiry(db, tenant, slot, held.token, people)
        assert sorted(outcomes) == ["booked", "conflict"]
        assert slot_status(db, tenant, slot) == "booked"


def test_a_no_show_on_a_future_slot_frees_it_for_someone_else(db: Database, ident: Any) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    first, second = patients(db, ident, tenant, 2)
    gone = move(db, ident, tenant, book(db, tenant, slots[0], first), "no-show")
    assert gone.timeline_no_show_at is not None
    assert slot_status(db, tenant, slots[0]) == "free"
    again = book(db, tenant, slots[0], second)
    assert again.slot_id == slots[0].id
