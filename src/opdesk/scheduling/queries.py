"""Reading the calendar: slot search, next available slot, appointments of a day."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import exists, select, true
from sqlalchemy.orm import Session, aliased

from opdesk import records
from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.patients.models import Patient
from opdesk.scheduling.booking import claimable
from opdesk.scheduling.models import (
    IN_LINE,
    Appointment,
    AppointmentStatus,
    DoctorProfile,
    OfferStatus,
    Slot,
    WaitlistEntry,
    WaitlistLock,
    WaitlistStatus,
)

LONGEST_SEARCH = timedelta(days=31)
FURTHEST = timedelta(days=366)


@dataclass(frozen=True)
class SlotWindow:
    first: date
    last: date

    @classmethod
    def checked(cls, today: date, first: date, last: date) -> SlotWindow:
        """Days to search: in order, at most a month, and within a year of today."""
        errors = []
        if first < today - FURTHEST:
            errors.append(FieldError("from", "is more than a year in the past"))
        if last > today + FURTHEST:
            errors.append(FieldError("to", "is more than a year ahead"))
        if last < first:
            errors.append(FieldError("to", "must be on or after from"))
        elif last - first > LONGEST_SEARCH:
            errors.append(FieldError("to", "a search may cover at most 31 days"))
        if errors:
            raise InvalidInput(errors)
        return cls(first, last)


def slots(
    session: Session,
    ctx: RequestContext,
    doctor_id: uuid.UUID,
    window: SlotWindow,
    visit_type: str | None,
    include_taken: bool = False,
) -> list[Slot]:
    stmt = select(Slot).where(
        Slot.doctor_id == doctor_id, Slot.date >= window.first, Slot.date <= window.last
    )
    if not include_taken:
        stmt = stmt.where(claimable(ctx))
    if visit_type is not None:
        stmt = stmt.where(Slot.meta["visitType"].contains([visit_type]))
    return list(session.execute(stmt.order_by(Slot.starts_at)).scalars())


def next_available(
    session: Session, ctx: RequestContext, specialty: str, visit_type: str | None
) -> list[tuple[DoctorProfile, Slot]]:
    """Each active doctor of the specialty with their earliest bookable slot; one index
    walk per doctor (doctor + date), soonest doctor first.
    """
    earliest = select(Slot).where(Slot.doctor_id == DoctorProfile.id, claimable(ctx))
    if visit_type is not None:
        earliest = earliest.where(Slot.meta["visitType"].contains([visit_type]))
    first = earliest.order_by(Slot.date, Slot.starts_at).limit(1).lateral("first_slot")
    slot = aliased(Slot, first)
    rows = session.execute(
        select(DoctorProfile, slot)
        .join(first, true())
        .where(DoctorProfile.specialty == specialty, DoctorProfile.active.is_(True))
        .order_by(slot.starts_at)
    ).all()
    return [(d, s) for d, s in rows]


def appointments(
    session: Session,
    *,
    day: date | None,
    doctor_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    patient_ids: list[uuid.UUID] | None = None,
    limit: int | None = 500,
) -> list[tuple[Appointment, Slot | None]]:
    """Appointments with their slots: a clinic day (by slot date, or queue date for walk-ins)
    or a patient's history; at most ``limit`` (a screen's worth; None: all of them).
    """
    stmt = select(Appointment, Slot).outerjoin(
        Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id)
    )
    if day is not None:
        stmt = stmt.where(
            (Slot.date == day) | ((Appointment.slot_id.is_(None)) & (Appointment.queue_date == day))
        )
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    if patient_id is not None:
        stmt = stmt.where(Appointment.patient_id == patient_id)
    if patient_ids is not None:
        stmt = stmt.where(Appointment.patient_id.in_(patient_ids))
    order = (
        (Slot.starts_at, Appointment.token_number)
        if day
        else (Appointment.timeline_requested_at.desc(),)
    )
    return [(a, s) for a, s in session.execute(stmt.order_by(*order).limit(limit)).all()]


def appointment(session: Session, appointment_id: uuid.UUID) -> Appointment:
    return records.by_id(session, Appointment, appointment_id)


def slot_of(session: Session, appointment: Appointment) -> Slot | None:
    if appointment.slot_id is None:
        return None
    return session.get(Slot, (appointment.tenant_id, appointment.slot_id))


@dataclass(frozen=True)
class SheetRow:
    """One line of a calendar: a slot, and the live appointment on it if any."""

    slot: Slot
    appointment: Appointment | None
    patient: Patient | None


# Appointments a calendar shows on their slot (a no-show stays there, marked).
LIVE = (
    AppointmentStatus.REQUESTED,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.CHECKED_IN,
    AppointmentStatus.IN_CONSULT,
    AppointmentStatus.COMPLETED,
    AppointmentStatus.NO_SHOW,
)


def day_sheet(session: Session, doctor_id: uuid.UUID, first: date, last: date) -> list[SheetRow]:
    """Every slot of the doctor over the days, with who is booked on it (one query)."""
    live = (
        (Appointment.tenant_id == Slot.tenant_id)
        & (Appointment.slot_id == Slot.id)
        & Appointment.status.in_(LIVE)
    )
    rows = session.execute(
        select(Slot, Appointment, Patient)
        .outerjoin(Appointment, live)
        .outerjoin(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .where(Slot.doctor_id == doctor_id, Slot.date >= first, Slot.date <= last)
        .order_by(Slot.starts_at)
    ).all()
    return [SheetRow(s, a, p) for s, a, p in rows]


def clinic_day_sheet(session: Session, day: date) -> list[tuple[DoctorProfile, list[SheetRow]]]:
    """Every active doctor with slots on ``day``, by name, each with their slots and who is
    booked on them: the desk's view of the whole clinic's day (one query).
    """
    live = (
        (Appointment.tenant_id == Slot.tenant_id)
        & (Appointment.slot_id == Slot.id)
        & Appointment.status.in_(LIVE)
    )
    rows = session.execute(
        select(DoctorProfile, Slot, Appointment, Patient)
        .join(
            Slot, (Slot.tenant_id == DoctorProfile.tenant_id) & (Slot.doctor_id == DoctorProfile.id)
        )
        .outerjoin(Appointment, live)
        .outerjoin(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .where(Slot.date == day, DoctorProfile.active.is_(True))
        .order_by(DoctorProfile.display_name, DoctorProfile.id, Slot.starts_at)
    ).all()
    by_doctor: dict[uuid.UUID, tuple[DoctorProfile, list[SheetRow]]] = {}
    for doctor, slot, appointment, patient in rows:
        by_doctor.setdefault(doctor.id, (doctor, []))[1].append(
            SheetRow(slot, appointment, patient)
        )
    return list(by_doctor.values())


@dataclass(frozen=True)
class DayListRow:
    """One patient of a doctor's printed day list."""

    appointment: Appointment
    slot: Slot | None
    patient: Patient


def day_list(session: Session, doctor_id: uuid.UUID, day: date) -> list[DayListRow]:
    """The doctor's patients of ``day`` (booked on a slot, or walked in), by time then
    token; cancelled appointments are left out.
    """
    rows = session.execute(
        select(Appointment, Slot, Patient)
        .outerjoin(
            Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id)
        )
        .join(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .where(
            Appointment.doctor_id == doctor_id,
            Appointment.status.in_(LIVE),
            (Slot.date == day) | (Appointment.slot_id.is_(None) & (Appointment.queue_date == day)),
        )
        .order_by(
            Slot.starts_at.asc().nulls_last(),
            Appointment.token_number.asc().nulls_last(),
            Appointment.id,
        )
    ).all()
    return [DayListRow(a, s, p) for a, s, p in rows]


@dataclass(frozen=True)
class QueueRow:
    appointment: Appointment
    patient: Patient
    doctor: DoctorProfile


def queue_board(session: Session, day: date, doctor_id: uuid.UUID | None = None) -> list[QueueRow]:
    """The day's tokens with names, by doctor then token."""
    stmt = (
        select(Appointment, Patient, DoctorProfile)
        .join(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .join(
            DoctorProfile,
            (DoctorProfile.tenant_id == Appointment.tenant_id)
            & (DoctorProfile.id == Appointment.doctor_id),
        )
        .where(Appointment.queue_date == day, Appointment.token_number.is_not(None))
        .order_by(DoctorProfile.display_name, Appointment.token_number)
    )
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    return [QueueRow(a, p, d) for a, p, d in session.execute(stmt).all()]


def patient_appointments(
    session: Session, patient_ids: list[uuid.UUID]
) -> list[tuple[Appointment, Slot | None, DoctorProfile, Patient]]:
    """A family's appointments, newest slot first, with doctor and patient for display."""
    if not patient_ids:
        return []
    rows = session.execute(
        select(Appointment, Slot, DoctorProfile, Patient)
        .outerjoin(
            Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id)
        )
        .join(
            DoctorProfile,
            (DoctorProfile.tenant_id == Appointment.tenant_id)
            & (DoctorProfile.id == Appointment.doctor_id),
        )
        .join(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .where(Appointment.patient_id.in_(patient_ids))
        .order_by(Appointment.timeline_requested_at.desc())
        .limit(100)
    ).all()
    return [(a, s, d, p) for a, s, d, p in rows]


@dataclass(frozen=True)
class WaitingRow:
    entry: WaitlistEntry
    patient: Patient
    doctor: DoctorProfile
    offer: WaitlistLock | None
    offered_slot: Slot | None


def waiting_list(session: Session, now: datetime) -> list[WaitingRow]:
    """Who is waiting for which doctor, with the open offer (and its slot) if there is one."""
    open_offer = (
        (WaitlistLock.tenant_id == WaitlistEntry.tenant_id)
        & (WaitlistLock.entry_id == WaitlistEntry.id)
        & (WaitlistLock.status == OfferStatus.OFFERED)
        & (WaitlistLock.expires_at > now)
    )
    rows = session.execute(
        select(WaitlistEntry, Patient, DoctorProfile, WaitlistLock, Slot)
        .join(
            Patient,
            (Patient.tenant_id == WaitlistEntry.tenant_id)
            & (Patient.id == WaitlistEntry.patient_id),
        )
        .join(
            DoctorProfile,
            (DoctorProfile.tenant_id == WaitlistEntry.tenant_id)
            & (DoctorProfile.id == WaitlistEntry.doctor_id),
        )
        .outerjoin(WaitlistLock, open_offer)
        .outerjoin(
            Slot, (Slot.tenant_id == WaitlistLock.tenant_id) & (Slot.id == WaitlistLock.slot_id)
        )
        .where(WaitlistEntry.status.in_(IN_LINE))
        .order_by(WaitlistEntry.created_at)
    ).all()
    return [WaitingRow(e, p, d, o, s) for e, p, d, o, s in rows]


# ------------------------------------------------------------------ before a change is made


def next_in_line(session: Session, slot: Slot) -> tuple[WaitlistEntry, Patient] | None:
    """Who the waitlist would offer ``slot`` to if it were freed now: the same choice as
    ``waitlist.offer_next`` makes, read without locking, for a confirmation to name.
    """
    already_offered = exists().where(
        WaitlistLock.slot_id == slot.id, WaitlistLock.entry_id == WaitlistEntry.id
    )
    has_slot_already = exists().where(
        Appointment.slot_id == slot.id, Appointment.patient_id == WaitlistEntry.patient_id
    )
    found = session.execute(
        select(WaitlistEntry, Patient)
        .join(
            Patient,
            (Patient.tenant_id == WaitlistEntry.tenant_id)
            & (Patient.id == WaitlistEntry.patient_id),
        )
        .where(
            WaitlistEntry.doctor_id == slot.doctor_id,
            WaitlistEntry.status == WaitlistStatus.WAITING,
            WaitlistEntry.from_date <= slot.date,
            WaitlistEntry.until_date >= slot.date,
            WaitlistEntry.visit_type.in_(slot.meta.get("visitType") or []),
            ~already_offered,
            ~has_slot_already,
        )
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
        .limit(1)
    ).first()
    return None if found is None else (found[0], found[1])


def with_the_doctor(
    session: Session, doctor_id: uuid.UUID, day: date, *, besides: uuid.UUID | None = None
) -> list[tuple[Appointment, Patient]]:
    """The doctor's patients in consultation on ``day`` (normally one at most), by token."""
    stmt = (
        select(Appointment, Patient)
        .join(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .where(
            Appointment.doctor_id == doctor_id,
            Appointment.queue_date == day,
            Appointment.status == AppointmentStatus.IN_CONSULT,
        )
        .order_by(Appointment.token_number)
    )
    if besides is not None:
        stmt = stmt.where(Appointment.id != besides)
    return [(a, p) for a, p in session.execute(stmt).all()]


def patient_of(session: Session, appointment: Appointment) -> Patient:
    found = session.get(Patient, (appointment.tenant_id, appointment.patient_id))
    assert found is not None  # a foreign key
    return found


def doctor_of(session: Session, appointment: Appointment) -> DoctorProfile:
    found = session.get(DoctorProfile, (appointment.tenant_id, appointment.doctor_id))
    assert found is not None  # a foreign key
    return found
