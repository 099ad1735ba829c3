"""The clinic's appointment rules: booking confirmation, reminders 24 h and 2 h before, and
no-show marking; scheduled by booking, cancelled by cancelling, moved by rescheduling, and
run through the worker with its clock moved to when they fall due.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select, text

from opdesk import records
from opdesk.automation import clinic_rules
from opdesk.automation import settings as automation_settings
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database
from opdesk.notifications.models import OutboxMessage
from opdesk.scheduling import booking, lifecycle, waitlist
from opdesk.scheduling.models import Appointment, Slot
from opdesk.scheduling.service import Opening
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    book,
    cancel,
    coming,
    ctx_for,
    generate,
    make_doctor,
    make_patient,
    make_tenant,
    set_week,
    slots_of,
    unaudited,
)
from tests.factories.automation import make_worker
from tests.factories.messages import consent_to
from tests.factories.scheduling import OFFER_FOR

DUBAI = ZoneInfo("Asia/Dubai")


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def clinic(
    db: Database, ident: Any, cipher: FieldCipher, *, zone: ZoneInfo = CLINIC_ZONE, **settings: Any
) -> tuple[Tenant, date, list[Slot], Any]:
    """A clinic in ``zone`` with two 15-minute slots (00:30, 00:45 and 09:00, 09:15 local)
    on a Monday a week or more ahead, and a patient who agreed to SMS.
    """
    tenant = make_tenant(db, "Rules Clinic", timezone=zone.key)
    if settings:
        with transaction(db, ctx_for(tenant.id)) as session:
            unaudited(session)  # a clinic's settings, as an admin page would set them
            session.execute(
                text("update tenants set automation_settings = cast(:s as jsonb) where id = :id"),
                {"s": json.dumps(settings), "id": tenant.id},
            )
    doctor = make_doctor(db, ident, tenant)
    set_week(
        db,
        tenant,
        doctor,
        Opening(0, time(0, 30), time(1), 15),
        Opening(0, time(9), time(9, 30), 15),
    )
    day = coming(0, zone)
    assert generate(db, tenant, doctor, day, 1) == 4
    patient = make_patient(db, ident, tenant)
    consent_to(db, cipher, tenant, patient.id, "sms")
    return tenant, day, slots_of(db, tenant, doctor), patient


def at(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), zone).astimezone(UTC)


def events(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> dict[str, AutomationEvent]:
    with transaction(db, ctx_for(tenant.id)) as session:
        rows = session.execute(
            select(AutomationEvent).where(AutomationEvent.entity_ref_id == appointment_id)
        ).scalars()
        return {row.rule: row for row in rows}


def messages(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> dict[str, OutboxMessage]:
    """The outbox rows written for the appointment, by the rule that wrote them."""
    with transaction(db, ctx_for(tenant.id)) as session:
        rows = session.execute(
            select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"%:{appointment_id}"))
        ).scalars()
        return {str(row.dedupe_key).split(":")[0]: row for row in rows}


def status_of(db: Database, tenant: Tenant, appointment_id: uuid.UUID) -> str:
    with transaction(db, ctx_for(tenant.id)) as session:
        return str(records.by_id(session, Appointment, appointment_id).status)


def booked_at(
    db: Database, tenant: Tenant, slot: Slot, patient: Any, when: datetime
) -> Appointment:
    with time_machine.travel(when, tick=False):
        return book(db, tenant, slot, patient)


def move(db: Database, ident: Any, tenant: Tenant, appointment_id: uuid.UUID, to: str) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        lifecycle.transition(
            session,
            ctx,
            waitlist.Offers(ident.cipher, OFFER_FOR),
            appointment_id=appointment_id,
            to=to,
        )


# --------------------------------------------------------------------------- scheduling


def test_booking_schedules_the_confirmation_both_reminders_and_the_no_show_check(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    now = at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    nine = slots[2]
    appointment = booked_at(db, tenant, nine, patient, now)

    planned = events(db, tenant, appointment.id)
    assert {rule: e.scheduled_for for rule, e in planned.items()} == {
        "booking-confirmation": now,
        "reminder-24h": at(day - timedelta(days=1), 9, 0, CLINIC_ZONE),
        "reminder-2h": at(day, 7, 0, CLINIC_ZONE),
        "no-show": at(day, 9, 30, CLINIC_ZONE),  # 09:15 end + 15 minutes' grace
    }
    assert {e.dedupe_key for e in planned.values()} == {
        f"{rule}:{appointment.id}" for rule in planned
    }
    assert all(e.status == EventStatus.PENDING for e in planned.values())


def test_a_reminder_whose_moment_has_passed_at_booking_is_not_scheduled(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    # Booked at 08:00 on the day for 09:00: the 24 h and the 2 h moments are over.
    appointment = booked_at(db, tenant, slots[2], patient, at(day, 8, 0, CLINIC_ZONE))
    assert set(events(db, tenant, appointment.id)) == {"booking-confirmation", "no-show"}


def test_clinic_settings_turn_reminders_off_change_their_hours_and_the_grace(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(
        db,
        ident,
        cipher,
        reminders={"24h": False, "2h": {"on": True, "hours": 3}},
        noShowGraceMinutes=40,
    )
    appointment = booked_at(
        db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    )
    planned = events(db, tenant, appointment.id)
    assert "reminder-24h" not in planned
    assert planned["reminder-2h"].scheduled_for == at(day, 6, 0, CLINIC_ZONE)
    assert planned["no-show"].scheduled_for == at(day, 9, 55, CLINIC_ZONE)


def test_scheduling_an_appointments_events_twice_makes_one_row_each(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    appointment = booked_at(
        db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    )
    before = events(db, tenant, appointment.id)
    ctx = ctx_for(tenant.id, clock=lambda: at(day - timedelta(days=3), 12, 0, CLINIC_ZONE))
    with transaction(db, ctx) as session:
        again = records.by_id(session, Appointment, appointment.id)
        clinic_rules.on_booked(
            session, ctx, again, starts_at=slots[2].starts_at, ends_at=slots[2].ends_at
        )
    after = events(db, tenant, appointment.id)
    assert {r: e.id for r, e in after.items()} == {r: e.id for r, e in before.items()}
    with transaction(db, ctx_for(tenant.id)) as session:
        count = session.execute(
            text("select count(*) from automation_events where entity_ref_id = :id"),
            {"id": appointment.id},
        ).scalar_one()
    assert count == 4


def test_cancelling_the_appointment_cancels_its_events(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, _day, slots, patient = clinic(db, ident, cipher)
    appointment = book(db, tenant, slots[2], patient)
    cancel(db, ident, tenant, appointment.id)
    statuses = {r: e.status for r, e in events(db, tenant, appointment.id).items()}
    assert statuses == dict.fromkeys(clinic_rules.ALL_RULES, EventStatus.CANCELLED)


def test_rescheduling_moves_the_events_to_the_new_appointment(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    now = at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    old = booked_at(db, tenant, slots[2], patient, now)
    ctx = ctx_for(tenant.id, clock=lambda: now)
    with transaction(db, ctx) as session:
        new = lifecycle.reschedule(
            session,
            ctx,
            waitlist.Offers(ident.cipher, OFFER_FOR),
            appointment_id=old.id,
            slot_id=slots[3].id,  # 09:15
            origin=booking.Origin(),
        )
    assert {e.status for e in events(db, tenant, old.id).values()} == {EventStatus.CANCELLED}
    moved = events(db, tenant, new.id)
    assert {r: (e.status, e.scheduled_for) for r, e in moved.items()} == {
        "booking-confirmation": (EventStatus.PENDING, now),
        "reminder-24h": (EventStatus.PENDING, at(day - timedelta(days=1), 9, 15, CLINIC_ZONE)),
        "reminder-2h": (EventStatus.PENDING, at(day, 7, 15, CLINIC_ZONE)),
        "no-show": (EventStatus.PENDING, at(day, 9, 45, CLINIC_ZONE)),
    }


# --------------------------------------------------------------------------- running them


def test_the_confirmation_and_reminders_go_out_when_due_and_not_before(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    booked = at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    appointment = booked_at(db, tenant, slots[2], patient, booked)
    clock = Clock(booked)
    worker = make_worker(db, cipher, clock=clock)

    worker.run_once()
    sent = messages(db, tenant, appointment.id)
    assert set(sent) == {"booking-confirmation"}
    assert sent["booking-confirmation"].template == "booking-confirmation"

    clock.now = at(day - timedelta(days=1), 8, 59, CLINIC_ZONE)
    worker.run_once()
    assert set(messages(db, tenant, appointment.id)) == {"booking-confirmation"}

    clock.now = at(day - timedelta(days=1), 9, 0, CLINIC_ZONE)
    worker.run_once()
    sent = messages(db, tenant, appointment.id)
    assert set(sent) == {"booking-confirmation", "reminder-24h"}
    assert sent["reminder-24h"].template == "appointment-reminder"
    assert events(db, tenant, appointment.id)["reminder-24h"].status == EventStatus.SUCCESS


def test_a_reminder_across_ist_midnight_goes_out_the_evening_before(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    half_past_midnight = slots[0]
    appointment = booked_at(
        db, tenant, half_past_midnight, patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    )
    evening_before = at(day - timedelta(days=1), 22, 30, CLINIC_ZONE)
    planned = events(db, tenant, appointment.id)
    assert planned["reminder-2h"].scheduled_for == evening_before  # Sunday 22:30 in the clinic
    assert planned["reminder-24h"].scheduled_for == at(day - timedelta(days=1), 0, 30, CLINIC_ZONE)

    clock = Clock(evening_before - timedelta(minutes=1))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert "reminder-2h" not in messages(db, tenant, appointment.id)
    clock.now = evening_before
    worker.run_once()
    assert "reminder-2h" in messages(db, tenant, appointment.id)


def test_a_clinic_in_dubai_is_reminded_by_its_own_clock(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher, zone=DUBAI)
    appointment = booked_at(
        db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, DUBAI)
    )
    planned = events(db, tenant, appointment.id)
    # 09:00 in Dubai is 05:00 UTC (10:30 in India).
    assert slots[2].starts_at == datetime.combine(day, time(5), UTC)
    assert planned["reminder-24h"].scheduled_for == at(day - timedelta(days=1), 9, 0, DUBAI)
    assert planned["reminder-2h"].scheduled_for == datetime.combine(day, time(3), UTC)
    assert planned["no-show"].scheduled_for == at(day, 9, 30, DUBAI)

    clock = Clock(at(day, 7, 0, DUBAI))
    make_worker(db, cipher, clock=clock).run_once()
    assert {"reminder-24h", "reminder-2h"} <= set(messages(db, tenant, appointment.id))


def test_a_reminder_for_an_appointment_cancelled_without_the_hook_sends_nothing(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    appointment = booked_at(
        db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    )
    with transaction(db, ctx_for(tenant.id)) as session:
        unaudited(session)  # a cancellation that went around the lifecycle (and its hook)
        session.execute(
            text("update appointments set status = 'cancelled' where id = :id"),
            {"id": appointment.id},
        )
    clock = Clock(at(day, 7, 0, CLINIC_ZONE))
    make_worker(db, cipher, clock=clock).run_once()

    assert messages(db, tenant, appointment.id) == {}
    ran = events(db, tenant, appointment.id)
    assert ran["reminder-24h"].status == EventStatus.SUCCESS  # it ran, and chose silence
    assert ran["reminder-2h"].status == EventStatus.SUCCESS


def test_the_no_show_rule_marks_a_patient_who_never_came_after_the_grace(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    other = make_patient(db, ident, tenant)
    missed = booked_at(
        db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    )
    came = booked_at(db, tenant, slots[3], other, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE))
    with time_machine.travel(at(day, 9, 5, CLINIC_ZONE), tick=False):
        move(db, ident, tenant, came.id, "checked-in")
    assert events(db, tenant, came.id)["no-show"].status == EventStatus.CANCELLED

    clock = Clock(at(day, 9, 29, CLINIC_ZONE))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert status_of(db, tenant, missed.id) == "confirmed"  # still within the grace

    clock.now = at(day, 9, 30, CLINIC_ZONE)
    worker.run_once()
    assert status_of(db, tenant, missed.id) == "no-show"
    assert events(db, tenant, missed.id)["no-show"].status == EventStatus.SUCCESS
    assert status_of(db, tenant, came.id) == "checked-in"
    with transaction(db, ctx_for(tenant.id)) as session:
        trail = session.execute(
            text(
                "select from_state, to_state from audit_events "
                "where entity_id = :id and action = 'state-transition'"
            ),
            {"id": missed.id},
        ).all()
    assert ("confirmed", "no-show") in [tuple(row) for row in trail]


def test_the_no_show_rule_leaves_a_checked_in_appointment_alone_even_if_its_event_runs(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    came = booked_at(db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE))
    with transaction(db, ctx_for(tenant.id)) as session:
        unaudited(session)  # checked in around the lifecycle: the no-show event stays pending
        session.execute(
            text("update appointments set status = 'checked-in' where id = :id"), {"id": came.id}
        )
    make_worker(db, cipher, clock=Clock(at(day, 10, 0, CLINIC_ZONE))).run_once()
    assert events(db, tenant, came.id)["no-show"].status == EventStatus.SUCCESS
    assert status_of(db, tenant, came.id) == "checked-in"


def test_a_visit_types_setting_overrides_the_clinics_for_its_appointments() -> None:
    settings = {
        "reminders": {"24h": True, "2h": {"on": True, "hours": 3}},
        "visitTypes": {"procedure": {"reminders": {"24h": False, "2h": {"hours": 4}}}},
    }
    starts = datetime(2031, 3, 10, 4, 0, tzinfo=UTC)
    booked = starts - timedelta(days=5)

    def planned(visit_type: str) -> dict[str, datetime]:
        return clinic_rules.plan(
            automation_settings.from_stored(settings),
            now=booked,
            visit_type=visit_type,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=15),
        )

    consultation = planned("consultation")
    assert consultation["reminder-24h"] == starts - timedelta(hours=24)
    assert consultation["reminder-2h"] == starts - timedelta(hours=3)
    procedure = planned("procedure")
    assert "reminder-24h" not in procedure
    assert procedure["reminder-2h"] == starts - timedelta(hours=4)  # still on, 4 h before


def test_nonsense_settings_fall_back_to_the_defaults() -> None:
    settings = {"reminders": {"24h": "yes", "2h": {"hours": -1}}, "noShowGraceMinutes": "soon"}
    starts = datetime(2031, 3, 10, 4, 0, tzinfo=UTC)
    assert clinic_rules.plan(
        automation_settings.from_stored(settings),
        now=starts - timedelta(days=5),
        visit_type=None,
        starts_at=starts,
        ends_at=starts + timedelta(minutes=15),
    ) == {
        "booking-confirmation": starts - timedelta(days=5),
        "reminder-24h": starts - timedelta(hours=24),
        "reminder-2h": starts - timedelta(hours=2),
        "no-show": starts + timedelta(minutes=30),
    }


def test_a_reminder_the_clinic_turned_off_after_the_booking_sends_nothing(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slots, patient = clinic(db, ident, cipher)
    appointment = booked_at(
        db, tenant, slots[2], patient, at(day - timedelta(days=3), 12, 0, CLINIC_ZONE)
    )
    with transaction(db, ctx_for(tenant.id)) as session:
        unaudited(session)
        session.execute(
            text(
                "update tenants set automation_settings = "
                """'{"reminders": {"2h": false}}'::jsonb where id = :id"""
            ),
            {"id": tenant.id},
        )
    make_worker(db, cipher, clock=Clock(at(day, 7, 0, CLINIC_ZONE))).run_once()
    sent = messages(db, tenant, appointment.id)
    assert "reminder-24h" in sent
    assert "reminder-2h" not in sent
