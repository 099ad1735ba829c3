"""The slot rules: a waitlist offer that lapses passes the slot to the next patient in line,
and a hold that lapses lets the slot go, each at its own ``expires_at`` through an
automation event and the worker, with no sweep run; answering or booking cancels them, and
the sweeps (the safety net) leave no event behind.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import time_machine
from sqlalchemy import select

from opdesk.automation import clinic_rules
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database
from opdesk.scheduling import booking, waitlist
from opdesk.scheduling.models import Slot, WaitlistEntry, WaitlistLock
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    book,
    cancel,
    clinic_with_slots,
    ctx_for,
    events_of,
    hold,
    join,
    offers,
    patients,
    waiting,
)
from tests.factories.automation import make_worker
from tests.factories.scheduling import HOLD_FOR, OFFER_FOR

# Three days before the slots' day (09:00 clinic time on DAY), at noon in the clinic.
START = datetime.combine(DAY - timedelta(days=3), time(12), CLINIC_ZONE).astimezone(UTC)


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def events_for(db: Database, tenant: Tenant, entity_id: uuid.UUID) -> list[AutomationEvent]:
    with transaction(db, ctx_for(tenant.id)) as session:
        return list(
            session.execute(
                select(AutomationEvent)
                .where(AutomationEvent.entity_ref_id == entity_id)
                .order_by(AutomationEvent.created_at, AutomationEvent.scheduled_for)
            ).scalars()
        )


def slot_now(db: Database, tenant: Tenant, slot_id: uuid.UUID) -> Slot:
    with transaction(db, ctx_for(tenant.id)) as session:
        return session.get_one(Slot, (tenant.id, slot_id))


def entry_status(db: Database, tenant: Tenant, entry: WaitlistEntry) -> str:
    with transaction(db, ctx_for(tenant.id)) as session:
        return str(session.get_one(WaitlistEntry, (tenant.id, entry.id)).status)


def offered_at_start(db: Database, ident: Any) -> tuple[Any, WaitlistLock]:
    """A line of two waiting patients; the booked slot is cancelled at :data:`START` and
    offered to the first of them.
    """
    line = waiting(db, ident)
    with time_machine.travel(START, tick=False):
        cancel(db, ident, line.tenant, line.booked.id)
    (offer,) = offers(db, line.tenant)
    return line, offer


# --------------------------------------------------------------------------- offers


def test_an_offer_schedules_its_expiry_for_its_expires_at_once(
    fresh_database: Database, ident: Any
) -> None:
    line, offer = offered_at_start(fresh_database, ident)
    assert offer.expires_at == START + OFFER_FOR
    (event,) = events_for(fresh_database, line.tenant, offer.id)
    assert event.rule == "waitlist-offer-expiry"
    assert event.dedupe_key == f"waitlist-offer-expiry:{offer.id}"
    assert event.scheduled_for == offer.expires_at
    assert event.status == EventStatus.PENDING
    assert event.payload["keepForSeconds"] == OFFER_FOR.total_seconds()

    # Scheduling it again (the offer's code run twice) is the same row.
    ctx = ctx_for(line.tenant.id)
    with transaction(fresh_database, ctx) as session:
        lock = session.get_one(WaitlistLock, (line.tenant.id, offer.id))
        clinic_rules.on_offered(session, ctx, lock, keep_for=OFFER_FOR)
    assert [e.id for e in events_for(fresh_database, line.tenant, offer.id)] == [event.id]


def test_a_lapsed_offer_goes_to_the_next_patient_at_its_expiry_without_the_sweep(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    line, first = offered_at_start(db, ident)
    clock = Clock(first.expires_at - timedelta(seconds=1))
    worker = make_worker(db, cipher, clock=clock)  # no sweep jobs: only the events run
    assert worker.jobs == ()

    worker.run_once()
    assert [o.status for o in offers(db, line.tenant)] == ["offered"]

    clock.now = first.expires_at
    worker.run_once()
    lapsed, second = offers(db, line.tenant)
    assert lapsed.id == first.id and lapsed.status == "expired"
    assert second.patient_id == line.people[2].id and second.status == "offered"
    assert second.expires_at == first.expires_at + OFFER_FOR
    assert entry_status(db, line.tenant, line.entry) == "waiting"  # back in line
    assert entry_status(db, line.tenant, line.second) == "offered"
    slot = slot_now(db, line.tenant, line.slot.id)
    assert slot.status == "held" and slot.meta["waitlistLock"] == str(second.id)

    (ran,) = events_for(db, line.tenant, first.id)
    assert ran.status == EventStatus.SUCCESS
    (following,) = events_for(db, line.tenant, second.id)
    assert (following.status, following.scheduled_for) == (EventStatus.PENDING, second.expires_at)


def test_the_last_offer_lapsing_leaves_the_slot_free_for_everyone(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    line, first = offered_at_start(db, ident)
    clock = Clock(first.expires_at)
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    second = offers(db, line.tenant)[1]
    clock.now = second.expires_at
    worker.run_once()
    assert [o.status for o in offers(db, line.tenant)] == ["expired", "expired"]
    slot = slot_now(db, line.tenant, line.slot.id)
    assert slot.status == "free" and "waitlistLock" not in slot.meta
    assert {e.status for e in events_for(db, line.tenant, second.id)} == {EventStatus.SUCCESS}


def test_accepting_or_declining_cancels_the_offers_expiry(
    fresh_database: Database, ident: Any
) -> None:
    db = fresh_database
    line, first = offered_at_start(db, ident)
    ctx = ctx_for(line.tenant.id, clock=lambda: START + timedelta(minutes=1))
    with transaction(db, ctx) as session:
        waitlist.decline(session, ctx, waitlist.Offers(ident.cipher, OFFER_FOR), lock_id=first.id)
    assert [e.status for e in events_for(db, line.tenant, first.id)] == [EventStatus.CANCELLED]

    second = offers(db, line.tenant)[1]
    assert [e.status for e in events_for(db, line.tenant, second.id)] == [EventStatus.PENDING]
    with transaction(db, ctx) as session:
        waitlist.accept(session, ctx, lock_id=second.id, channel="web", online=True)
    assert [e.status for e in events_for(db, line.tenant, second.id)] == [EventStatus.CANCELLED]


def test_the_sweep_that_lapses_an_offer_first_cancels_its_event(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    line, first = offered_at_start(db, ident)
    ctx = ctx_for(line.tenant.id, clock=lambda: first.expires_at)
    with transaction(db, ctx) as session:
        assert waitlist.lapse_offers(session, ctx, waitlist.Offers(cipher, OFFER_FOR)) == 1
    assert [e.status for e in events_for(db, line.tenant, first.id)] == [EventStatus.CANCELLED]
    second = offers(db, line.tenant)[1]
    # The worker, running late, has nothing left to do for the first offer.
    make_worker(db, cipher, clock=Clock(first.expires_at + timedelta(seconds=5))).run_once()
    assert [o.status for o in offers(db, line.tenant)] == ["expired", "offered"]
    assert offers(db, line.tenant)[1].id == second.id


def test_an_offer_being_answered_while_its_expiry_runs_is_not_waited_for_but_retried(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    line, first = offered_at_start(db, ident)
    clock = Clock(first.expires_at)
    worker = make_worker(db, cipher, clock=clock)
    blocker_ctx = ctx_for(line.tenant.id)
    with transaction(db, blocker_ctx) as blocker:
        # Another transaction (a patient's answer, a sweep) holds the offer's row.
        blocker.execute(
            select(WaitlistLock).where(WaitlistLock.id == first.id).with_for_update()
        ).scalar_one()
        worker.run_once()  # returns: the rule gave way instead of waiting
        (event,) = events_for(db, line.tenant, first.id)
        assert event.status == EventStatus.PENDING and event.attempts == 1
        assert "being changed" in (event.last_error or "")
        assert worker.counts.get("event-retry") == 1
    assert [o.status for o in offers(db, line.tenant)] == ["offered"]

    clock.now = first.expires_at + timedelta(seconds=5)  # past the (short) backoff
    worker.run_once()
    assert [o.status for o in offers(db, line.tenant)] == ["expired", "offered"]
    assert events_for(db, line.tenant, first.id)[0].status == EventStatus.SUCCESS


# --------------------------------------------------------------------------- holds


def held_at_start(db: Database, ident: Any) -> tuple[Tenant, Any, Slot, booking.Hold]:
    tenant, doctor, slots = clinic_with_slots(db, ident, 1)
    with time_machine.travel(START, tick=False):
        taken = hold(db, tenant, slots[0])
    return tenant, doctor, slots[0], taken


def test_a_hold_schedules_its_expiry_and_lets_the_slot_go_at_that_moment(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, _doctor, slot, taken = held_at_start(db, ident)
    assert taken.expires_at == START + HOLD_FOR
    (event,) = events_for(db, tenant, slot.id)
    assert event.rule == "hold-expiry"
    assert event.scheduled_for == taken.expires_at
    assert event.dedupe_key == clinic_rules.hold_key(slot.id, taken.expires_at)

    clock = Clock(taken.expires_at - timedelta(seconds=1))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert slot_now(db, tenant, slot.id).status == "held"

    clock.now = taken.expires_at
    worker.run_once()
    after = slot_now(db, tenant, slot.id)
    assert (after.status, after.hold_expires_at) == ("free", None)
    assert "holdHash" not in after.meta
    assert events_for(db, tenant, slot.id)[0].status == EventStatus.SUCCESS
    trail = [
        (e.entity_id, e.from_state, e.to_state)
        for e in events_of(db, tenant.id)
        if e.entity_collection == "slots" and e.action == "state-transition"
    ]
    assert trail[-1] == (slot.id, "held", "free")


def test_a_lapsed_hold_is_offered_to_a_patient_who_joined_the_line_meanwhile(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, doctor, slot, taken = held_at_start(db, ident)
    (patient,) = patients(db, ident, tenant, 1)
    join(db, tenant, patient, doctor.id)  # the hold hid the last slot: they wait for it
    make_worker(db, cipher, clock=Clock(taken.expires_at)).run_once()
    (offer,) = offers(db, tenant)
    assert offer.patient_id == patient.id and offer.status == "offered"
    after = slot_now(db, tenant, slot.id)
    assert after.status == "held" and after.meta["waitlistLock"] == str(offer.id)


def test_booking_from_the_hold_cancels_its_expiry(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, _doctor, slot, taken = held_at_start(db, ident)
    (patient,) = patients(db, ident, tenant, 1)
    with time_machine.travel(START + timedelta(minutes=1), tick=False):
        appointment = book(db, tenant, slot, patient, hold_token=taken.token)
    assert [e.status for e in events_for(db, tenant, slot.id)] == [EventStatus.CANCELLED]
    make_worker(db, cipher, clock=Clock(taken.expires_at)).run_once()
    assert slot_now(db, tenant, slot.id).status == "booked"
    assert appointment.slot_id == slot.id


def test_the_expiry_of_a_lapsed_hold_leaves_a_newer_hold_of_the_slot_alone(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, _doctor, slot, first = held_at_start(db, ident)
    # Nobody ran the first hold's expiry; a second requester holds the slot after it.
    with time_machine.travel(first.expires_at + timedelta(minutes=1), tick=False):
        second = hold(db, tenant, slot)
    clock = Clock(first.expires_at + timedelta(minutes=1))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    old, new = events_for(db, tenant, slot.id)
    assert old.status == EventStatus.SUCCESS  # it ran, and found another hold
    assert new.status == EventStatus.PENDING
    assert slot_now(db, tenant, slot.id).hold_expires_at == second.expires_at

    clock.now = second.expires_at
    worker.run_once()
    assert slot_now(db, tenant, slot.id).status == "free"


def test_the_sweep_of_lapsed_holds_offers_the_slot_on_and_cancels_the_event(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, doctor, slot, taken = held_at_start(db, ident)
    (patient,) = patients(db, ident, tenant, 1)
    join(db, tenant, patient, doctor.id)
    ctx = ctx_for(tenant.id, clock=lambda: taken.expires_at)
    with transaction(db, ctx) as session:
        released = waitlist.release_lapsed_holds(session, ctx, waitlist.Offers(cipher, OFFER_FOR))
    assert released == 1
    assert [e.status for e in events_for(db, tenant, slot.id)] == [EventStatus.CANCELLED]
    (offer,) = offers(db, tenant)
    assert offer.patient_id == patient.id
