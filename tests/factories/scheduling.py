"""Doctors' weekly hours and slots, holds, bookings, time away and the waitlist."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.models import (
    Appointment,
    AvailabilityException,
    DoctorProfile,
    Slot,
    WaitlistEntry,
    WaitlistLock,
)
from opdesk.scheduling.service import Opening
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import coming, ctx_for, make_tenant
from tests.factories.people import make_doctor, patients

# The deployment's defaults: they live in Settings, nowhere else.
DEFAULTS = Settings.model_construct()
HOLD_FOR = DEFAULTS.hold_for
OFFER_FOR = DEFAULTS.offer_for

# A fixed Monday for tests that give every day themselves (generation, not booking).
MONDAY = date(2026, 11, 30)
MORNING = Opening(0, time(10), time(13), 15, buffer_after=5)

DAY = coming(0)  # a Monday at least a week ahead, whatever the day and hour of the run


def set_week(db: Database, tenant: Tenant, doctor: DoctorProfile, *openings: Opening) -> None:
    """The doctor's weekly hours, valid from 1 January 2026 (set as of 25 November 2026)."""
    ctx = ctx_for(tenant.id, clock=lambda: datetime(2026, 11, 25, tzinfo=UTC))
    with transaction(db, ctx) as session:
        service.set_templates(
            session, ctx, doctor_id=doctor.id, openings=list(openings), valid_from=date(2026, 1, 1)
        )


def generate(db: Database, tenant: Tenant, doctor: DoctorProfile, first: date, days: int) -> int:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return service.generate_slots(session, ctx, doctor_id=doctor.id, days=days, first_day=first)


def slots_of(db: Database, tenant: Tenant, doctor: DoctorProfile) -> list[Slot]:
    with transaction(db, ctx_for(tenant.id)) as session:
        return list(
            session.execute(
                select(Slot).where(Slot.doctor_id == doctor.id).order_by(Slot.starts_at)
            ).scalars()
        )


def clinic_with_slots(
    db: Database, ident: Any, slots: int, tenant: Tenant | None = None
) -> tuple[Tenant, Any, list[Slot]]:
    """A new doctor (in a new clinic unless given one) with ``slots`` 15-minute slots
    from 09:00 on :data:`DAY`.
    """
    tenant = tenant or make_tenant(db, "Booking Clinic")
    doctor = make_doctor(db, ident, tenant)
    end = (datetime.combine(DAY, time(9)) + timedelta(minutes=15 * slots)).time()
    set_week(db, tenant, doctor, Opening(0, time(9), end, 15))
    assert generate(db, tenant, doctor, DAY, 1) == slots
    return tenant, doctor, slots_of(db, tenant, doctor)


def book(
    db: Database,
    tenant: Tenant,
    slot: Slot,
    patient: Any,
    channel: str = "web",
    **options: Any,
) -> Appointment:
    """One booking attempt in a transaction of its own, as a request would make it."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return booking.book(
            session,
            ctx,
            booking.BookingRequest(
                slot_id=slot.id,
                patient_id=patient.id,
                visit_type="consultation",
                channel=channel,
                origin=booking.Origin(**options),
            ),
        )


def hold(db: Database, tenant: Tenant, slot: Slot) -> booking.Hold:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return booking.hold(session, ctx, slot_id=slot.id, hold_for=HOLD_FOR)


def free(db: Database, tenant: Tenant, slot: Slot) -> list[Slot]:
    """The free slots of ``slot``'s doctor on :data:`DAY`."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return queries.slots(session, ctx, slot.doctor_id, queries.SlotWindow(DAY, DAY), None)


def make_exception(db: Database, ident: Identity, tenant: Tenant) -> AvailabilityException:
    """A new doctor away for four hours, three days from now."""
    doctor = make_doctor(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        starts = ctx.now() + timedelta(days=3)
        away, _ = service.add_exception(
            session,
            ctx,
            doctor_id=doctor.id,
            starts_at=starts,
            ends_at=starts + timedelta(hours=4),
            reason="leave",
        )
        return away


# --------------------------------------------------------------------------- the waitlist


@dataclass
class Line:
    tenant: Tenant
    slot: Slot
    booked: Appointment
    entry: WaitlistEntry
    second: WaitlistEntry
    people: list[Any]


def join(db: Database, tenant: Tenant, patient: Any, doctor_id: Any) -> WaitlistEntry:
    """``patient`` waits for the doctor on :data:`DAY`."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return waitlist.join(
            session,
            ctx,
            patient_id=patient.id,
            doctor_id=doctor_id,
            from_date=DAY,
            until_date=DAY,
            visit_type="consultation",
        )


def waiting(db: Database, ident: Any, tenant: Tenant | None = None) -> Line:
    """One booked slot and two patients waiting for that day, in order."""
    tenant, doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    people = patients(db, ident, tenant, 3)
    booked = book(db, tenant, slots[0], people[0])
    first = join(db, tenant, people[1], doctor.id)
    second = join(db, tenant, people[2], doctor.id)
    return Line(tenant, slots[0], booked, first, second, people)


def cancel(db: Database, ident: Any, tenant: Tenant, appointment_id: uuid.UUID) -> Appointment:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return lifecycle.transition(
            session,
            ctx,
            waitlist.Offers(ident.cipher, OFFER_FOR),
            appointment_id=appointment_id,
            to="cancelled",
        )


def offers(db: Database, tenant: Tenant) -> list[WaitlistLock]:
    """Every waitlist offer of the clinic, oldest first."""
    with transaction(db, ctx_for(tenant.id)) as session:
        return list(
            session.execute(select(WaitlistLock).order_by(WaitlistLock.created_at)).scalars()
        )


def offered(db: Database, ident: Any, tenant: Tenant | None = None) -> WaitlistLock:
    """A cancelled slot offered to the first patient in line."""
    line = waiting(db, ident, tenant)
    cancel(db, ident, line.tenant, line.booked.id)
    return offers(db, line.tenant)[-1]
