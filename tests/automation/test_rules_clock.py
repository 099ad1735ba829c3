"""The appointment reminders against the clinic's clock: quiet hours defer a reminder (to
08:00 clinic time), never drop it; a 24 h reminder that falls just after IST midnight; and
clinics in other time zones, whose quiet hours are their own.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database
from opdesk.notifications.models import OutboxMessage
from opdesk.notifications.service import read as read_message
from opdesk.scheduling.models import Appointment, Slot
from opdesk.scheduling.service import Opening
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    book,
    coming,
    ctx_for,
    generate,
    make_doctor,
    make_patient,
    make_tenant,
    set_week,
    slots_of,
)
from tests.factories.automation import make_worker
from tests.factories.messages import consent_to

DUBAI = ZoneInfo("Asia/Dubai")
LONDON = ZoneInfo("Europe/London")


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), zone).astimezone(UTC)


def clinic_with(
    db: Database,
    ident: Any,
    cipher: FieldCipher,
    zone: ZoneInfo,
    weekday: int,
    starts: time,
) -> tuple[Tenant, date, Slot, Any]:
    """A clinic in ``zone`` whose doctor has one 15-minute slot at ``starts`` (clinic time)
    on a ``weekday`` at least a week ahead, and a patient who agreed to SMS.
    """
    tenant = make_tenant(db, "Clock Clinic", timezone=zone.key)
    doctor = make_doctor(db, ident, tenant)
    ends = (datetime.combine(date(2000, 1, 1), starts) + timedelta(minutes=15)).time()
    set_week(db, tenant, doctor, Opening(weekday, starts, ends, 15))
    day = coming(weekday, zone)
    assert generate(db, tenant, doctor, day, 1) == 1
    patient = make_patient(db, ident, tenant)
    consent_to(db, cipher, tenant, patient.id, "sms")
    (slot,) = slots_of(db, tenant, doctor)
    return tenant, day, slot, patient


def booked_at(
    db: Database, tenant: Tenant, slot: Slot, patient: Any, when: datetime
) -> Appointment:
    with time_machine.travel(when, tick=False):
        return book(db, tenant, slot, patient)


def event(db: Database, tenant: Tenant, appointment: Appointment, rule: str) -> AutomationEvent:
    with transaction(db, ctx_for(tenant.id)) as session:
        return session.execute(
            select(AutomationEvent).where(
                AutomationEvent.entity_ref_id == appointment.id, AutomationEvent.rule == rule
            )
        ).scalar_one()


def reminder(
    db: Database, cipher: FieldCipher, tenant: Tenant, appointment: Appointment
) -> tuple[OutboxMessage, str] | None:
    """The 24 h reminder's outbox row and its text, if it was written."""
    with transaction(db, ctx_for(tenant.id)) as session:
        found = session.execute(
            select(OutboxMessage).where(
                OutboxMessage.dedupe_key == f"reminder-24h:{appointment.id}"
            )
        ).scalar_one_or_none()
        if found is None:
            return None
        return found, read_message(cipher, found, tenant.name).text


def test_a_reminder_due_at_22_ist_is_deferred_to_08_and_then_sent(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slot, patient = clinic_with(db, ident, cipher, CLINIC_ZONE, 0, time(22))
    appointment = booked_at(
        db, tenant, slot, patient, at(day - timedelta(days=4), 12, 0, CLINIC_ZONE)
    )
    ten_pm = at(day - timedelta(days=1), 22, 0, CLINIC_ZONE)
    assert event(db, tenant, appointment, "reminder-24h").scheduled_for == ten_pm

    clock = Clock(ten_pm)
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert event(db, tenant, appointment, "reminder-24h").status == EventStatus.SUCCESS
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None
    message, _ = written
    morning = at(day, 8, 0, CLINIC_ZONE)
    assert (message.status, message.scheduled_for) == ("pending", morning)  # deferred, kept

    clock.now = morning - timedelta(minutes=1)
    worker.run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None and written[0].status == "pending"

    clock.now = morning
    worker.run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None
    message, text = written
    assert message.status == "sent"
    assert f"{day:%a %d %b}, 10:00 PM" in text


def test_a_24h_reminder_just_after_ist_midnight_runs_then_waits_for_that_mornings_eight(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    # Tuesday 00:15 in India is Monday 18:45 UTC: the reminder falls on Monday 00:15 IST,
    # which is still Sunday in UTC.
    tenant, day, slot, patient = clinic_with(db, ident, cipher, CLINIC_ZONE, 1, time(0, 15))
    assert slot.starts_at == datetime.combine(day - timedelta(days=1), time(18, 45), UTC)
    appointment = booked_at(
        db, tenant, slot, patient, at(day - timedelta(days=5), 12, 0, CLINIC_ZONE)
    )
    due = event(db, tenant, appointment, "reminder-24h").scheduled_for
    assert due == at(day - timedelta(days=1), 0, 15, CLINIC_ZONE)
    assert due == datetime.combine(day - timedelta(days=2), time(18, 45), UTC)

    clock = Clock(due - timedelta(seconds=1))  # 00:14:59 IST, Sunday 18:44:59 UTC
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert reminder(db, cipher, tenant, appointment) is None

    clock.now = due
    worker.run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None
    # Deferred to 08:00 on Monday in India (the same clinic day), not Sunday's or Tuesday's.
    assert written[0].scheduled_for == at(day - timedelta(days=1), 8, 0, CLINIC_ZONE)

    clock.now = at(day - timedelta(days=1), 8, 0, CLINIC_ZONE)
    worker.run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None
    message, text = written
    assert message.status == "sent"
    assert f"{day:%a %d %b}, 12:15 AM" in text  # Tuesday, as the clinic says it


def test_quiet_hours_are_the_london_clinics_own(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slot, patient = clinic_with(db, ident, cipher, LONDON, 1, time(21, 30))
    appointment = booked_at(db, tenant, slot, patient, at(day - timedelta(days=5), 12, 0, LONDON))
    due = at(day - timedelta(days=1), 21, 30, LONDON)  # Monday 21:30 in London
    assert event(db, tenant, appointment, "reminder-24h").scheduled_for == due

    clock = Clock(due)
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None
    # 21:30 in London is quiet there: deferred to 08:00 London time on Tuesday.
    assert written[0].scheduled_for == at(day, 8, 0, LONDON)
    clock.now = at(day, 8, 0, LONDON)
    worker.run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None and written[0].status == "sent"


def test_a_dubai_reminder_at_2030_goes_out_though_it_is_22_in_india(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, day, slot, patient = clinic_with(db, ident, cipher, DUBAI, 0, time(20, 30))
    appointment = booked_at(db, tenant, slot, patient, at(day - timedelta(days=4), 12, 0, DUBAI))
    due = at(day - timedelta(days=1), 20, 30, DUBAI)
    assert due == at(day - timedelta(days=1), 22, 0, CLINIC_ZONE)  # quiet in India, not Dubai
    assert event(db, tenant, appointment, "reminder-24h").scheduled_for == due

    make_worker(db, cipher, clock=Clock(due)).run_once()
    written = reminder(db, cipher, tenant, appointment)
    assert written is not None
    message, text = written
    assert message.status == "sent"
    assert f"{day:%a %d %b}, 08:30 PM" in text  # the clinic's own clock
