"""The desk's home page: how today is going, in three blocks read with few queries.

* :func:`todays_totals`: how many patients the day holds and where each of them is;
* :func:`arrivals`: who is due in the next hour and has not checked in yet;
* :func:`running_late`: for each doctor with a queue, how long the people waiting will
  take and whether that makes the doctor late for the patients booked after them.

"Today" is the clinic's day in its own time zone. An appointment belongs to the day of its
slot; a walk-in (no slot) to the day of its token. A doctor sees their own numbers; the
desk and admins the whole clinic. Nothing here is money.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from opdesk.context import RequestContext
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.scheduling.service import doctor_of_user
from opdesk.tenancy import service as tenants

# The window of "arrivals expected": slots starting from now until an hour from now.
ARRIVALS_WITHIN = timedelta(hours=1)
# Completed consultations today from which the doctor's own average is trusted.
TRUSTED_AFTER = 3
# The consultation length assumed when a doctor has neither an average nor slots today.
DEFAULT_CONSULT = timedelta(minutes=15)
# Lateness is said to the nearest five minutes; less than that is "on time".
LATE_STEP = timedelta(minutes=5)

STILL_TO_COME = (AppointmentStatus.REQUESTED, AppointmentStatus.CONFIRMED)
ARRIVED = (AppointmentStatus.CHECKED_IN, AppointmentStatus.IN_CONSULT)
_CANCELLED = (AppointmentStatus.CANCELLED, AppointmentStatus.REFUNDED)


def _on_day(day: date) -> ColumnElement[bool]:
    """An appointment of ``day``: by its slot's date, or a walk-in's token date."""
    return (Slot.date == day) | (Appointment.slot_id.is_(None) & (Appointment.queue_date == day))


def _slot_join() -> ColumnElement[bool]:
    return (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id)


# ------------------------------------------------------------------ today's totals


@dataclass(frozen=True)
class Totals:
    """Today's appointments by where they stand. ``booked`` is everyone on today's list
    who has not cancelled (walk-ins included, counted again in ``walk_ins``), so
    ``booked == still_to_come + arrived + seen + no_shows``. An appointment moved to
    another time is not a cancellation: it counts once, at its new time.
    """

    booked: int = 0
    walk_ins: int = 0
    arrived: int = 0
    seen: int = 0
    no_shows: int = 0
    cancelled: int = 0
    still_to_come: int = 0


def _bucket() -> ColumnElement[str]:
    """Where an appointment stands; a refunded one by the step its timeline reached."""
    status = Appointment.status
    refunded = status == AppointmentStatus.REFUNDED
    return case(
        (status.in_(STILL_TO_COME), "still_to_come"),
        (status.in_(ARRIVED), "arrived"),
        (status == AppointmentStatus.COMPLETED, "seen"),
        (refunded & Appointment.timeline_completed_at.is_not(None), "seen"),
        (status == AppointmentStatus.NO_SHOW, "no_shows"),
        (refunded & Appointment.timeline_cancelled_at.is_(None), "no_shows"),
        else_="cancelled",
    )


def todays_totals(
    session: Session, *, tenant_id: uuid.UUID, day: date, doctor_id: uuid.UUID | None = None
) -> Totals:
    """The day's appointments counted by where they stand (one query)."""
    later = aliased(Appointment)
    moved = exists().where(
        later.tenant_id == Appointment.tenant_id, later.reschedule_of == Appointment.id
    )
    bucket = _bucket().label("bucket")
    walk_in = func.count().filter(Appointment.channel == "walk-in")
    stmt = (
        select(bucket, func.count(), walk_in)
        .select_from(Appointment)
        .outerjoin(Slot, _slot_join())
        .where(Appointment.tenant_id == tenant_id, _on_day(day))
        # A move cancels the old appointment and books a new one: count the new one only.
        .where(~(Appointment.status.in_(_CANCELLED) & moved))
        .group_by(bucket)
    )
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    counts = {name: (n, w) for name, n, w in session.execute(stmt).all()}

    def n(name: str) -> int:
        return int(counts.get(name, (0, 0))[0])

    kept = ("still_to_come", "arrived", "seen", "no_shows")
    return Totals(
        booked=sum(n(k) for k in kept),
        walk_ins=sum(int(counts.get(k, (0, 0))[1]) for k in kept),
        arrived=n("arrived"),
        seen=n("seen"),
        no_shows=n("no_shows"),
        cancelled=n("cancelled"),
        still_to_come=n("still_to_come"),
    )


# ------------------------------------------------------------------ arrivals


@dataclass(frozen=True)
class Arrival:
    """A patient due within the hour who has not checked in."""

    appointment_id: uuid.UUID
    status: str
    starts_at: datetime
    day: date
    patient_id: uuid.UUID
    patient_name: str
    patient_number: str
    doctor_id: uuid.UUID
    doctor_name: str
    token: int | None


def arrivals(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    now: datetime,
    doctor_id: uuid.UUID | None = None,
    within: timedelta = ARRIVALS_WITHIN,
) -> list[Arrival]:
    """Appointments whose slot starts in ``[now, now + within)`` and that are still to
    come (not checked in, not cancelled, not marked no-show), soonest first (one query).
    """
    stmt = (
        select(Appointment, Slot, Patient, DoctorProfile)
        .join(Slot, _slot_join())
        .join(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .join(
            DoctorProfile,
            (DoctorProfile.tenant_id == Appointment.tenant_id)
            & (DoctorProfile.id == Appointment.doctor_id),
        )
        .where(
            Appointment.tenant_id == tenant_id,
            Appointment.status.in_(STILL_TO_COME),
            Slot.starts_at >= now,
            Slot.starts_at < now + within,
        )
        .order_by(Slot.starts_at, DoctorProfile.display_name, Appointment.id)
    )
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    return [
        Arrival(
            appointment_id=a.id,
            status=a.status,
            starts_at=s.starts_at,
            day=s.date,
            patient_id=p.id,
            patient_name=p.full_name,
            patient_number=p.display_number,
            doctor_id=d.id,
            doctor_name=d.display_name,
            token=a.token_number,
        )
        for a, s, p, d in session.execute(stmt).all()
    ]


# ------------------------------------------------------------------ running late


@dataclass(frozen=True)
class Pace:
    """One doctor's queue now. See :func:`running_late` for what each figure means."""

    doctor_id: uuid.UUID
    doctor_name: str
    waiting: int
    with_doctor: int
    seen: int
    consult: timedelta
    # "today": the average of today's consultations; "slot": the doctor's slot length
    # today; "default": neither was there (DEFAULT_CONSULT).
    basis: str
    expected_wait: timedelta
    due_at: datetime | None
    late_by: timedelta | None

    @property
    def consult_minutes(self) -> int:
        return _minutes(self.consult)

    @property
    def wait_minutes(self) -> int:
        return _minutes(self.expected_wait)

    @property
    def late_minutes(self) -> int:
        """Minutes late to the nearest five; 0 is on time."""
        if self.late_by is None or self.late_by <= timedelta(0):
            return 0
        steps = round(self.late_by / LATE_STEP)
        return int(steps * LATE_STEP.total_seconds() // 60)

    @property
    def late(self) -> bool:
        return self.late_minutes > 0


def _minutes(span: timedelta) -> int:
    return round(span.total_seconds() / 60)


@dataclass
class _Queue:
    name: str
    waiting: int = 0
    with_doctor: int = 0
    last_waiting_end: datetime | None = None
    consults: list[timedelta] | None = None


def running_late(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    day: date,
    now: datetime,
    doctor_id: uuid.UUID | None = None,
) -> list[Pace]:
    """Which doctor is running late, for each doctor with a token today (two queries).

    * **Waiting**: the doctor's patients checked in today and not yet sent in.
    * **Consultation time**: the average of today's completed consultations (from
      "in consultation" to "done") once there are at least :data:`TRUSTED_AFTER`; before
      that the length of the doctor's slots today, or :data:`DEFAULT_CONSULT` when the
      doctor has no slots today (walk-ins only). ``basis`` says which was used.
    * **Expected wait** = waiting times consultation time: how long the doctor needs to see
      everyone now waiting (the patient with the doctor now is not counted).
    * **Due**: when the day's plan has the doctor ready for the next patient after those
      waiting: the slot time of the next booked patient still to come (slot starting now
      or later), or, if sooner, the end of the latest slot among those waiting (they
      should have been seen by then). Walk-ins have no slot and set no time.
    * **Late by** = now + expected wait - due, said to the nearest five minutes; none when
      there is nothing to compare with (only walk-ins and nobody else booked).

    So at 10:30 with three patients waiting for 10:30, 10:45 and 11:00 and the next
    booked at 11:15, 15-minute consultations clear the queue at 11:15: on time. If the
    same three had been booked for 10:00, 10:15 and 10:30, due is 10:45 and the doctor
    is running about 30 minutes late.
    """
    stmt = (
        select(
            Appointment.doctor_id,
            DoctorProfile.display_name,
            Appointment.status,
            Appointment.timeline_in_consult_at,
            Appointment.timeline_completed_at,
            Slot.ends_at,
        )
        .outerjoin(Slot, _slot_join())
        .join(
            DoctorProfile,
            (DoctorProfile.tenant_id == Appointment.tenant_id)
            & (DoctorProfile.id == Appointment.doctor_id),
        )
        .where(
            Appointment.tenant_id == tenant_id,
            Appointment.queue_date == day,
            Appointment.token_number.is_not(None),
            Appointment.status.in_(
                (*ARRIVED, AppointmentStatus.COMPLETED, AppointmentStatus.REFUNDED)
            ),
        )
    )
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    queues: dict[uuid.UUID, _Queue] = {}
    for doctor, name, status, sent_in, done, slot_end in session.execute(stmt).all():
        queue = queues.setdefault(doctor, _Queue(name, consults=[]))
        if status == AppointmentStatus.CHECKED_IN:
            queue.waiting += 1
            if slot_end is not None and (
                queue.last_waiting_end is None or slot_end > queue.last_waiting_end
            ):
                queue.last_waiting_end = slot_end
        elif status == AppointmentStatus.IN_CONSULT:
            queue.with_doctor += 1
        elif sent_in is not None and done is not None and done >= sent_in:
            assert queue.consults is not None
            queue.consults.append(done - sent_in)
    if not queues:
        return []
    plans = _plans(session, tenant_id, day, now, list(queues))
    paces = []
    for doctor, queue in queues.items():
        slot_length, next_booked = plans.get(doctor, (None, None))
        consults = queue.consults or []
        if len(consults) >= TRUSTED_AFTER:
            consult, basis = sum(consults, timedelta()) / len(consults), "today"
        elif slot_length is not None:
            consult, basis = slot_length, "slot"
        else:
            consult, basis = DEFAULT_CONSULT, "default"
        expected = consult * queue.waiting
        marks = [t for t in (next_booked, queue.last_waiting_end) if t is not None]
        due = min(marks) if marks else None
        paces.append(
            Pace(
                doctor_id=doctor,
                doctor_name=queue.name,
                waiting=queue.waiting,
                with_doctor=queue.with_doctor,
                seen=len(consults),
                consult=consult,
                basis=basis,
                expected_wait=expected,
                due_at=due,
                late_by=None if due is None else now + expected - due,
            )
        )
    return sorted(paces, key=lambda p: (-p.late_minutes, p.doctor_name, str(p.doctor_id)))


def _plans(
    session: Session, tenant_id: uuid.UUID, day: date, now: datetime, doctors: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[timedelta | None, datetime | None]]:
    """Each doctor's slot length today (the average, whole minutes) and the slot time of
    their next booked patient still to come (one query).
    """
    to_come = (
        (Appointment.tenant_id == Slot.tenant_id)
        & (Appointment.slot_id == Slot.id)
        & Appointment.status.in_(STILL_TO_COME)
    )
    length = func.avg(Slot.ends_at - Slot.starts_at)
    next_booked = func.min(Slot.starts_at).filter(
        Appointment.id.is_not(None), Slot.starts_at >= now
    )
    rows = session.execute(
        select(Slot.doctor_id, length, next_booked)
        .outerjoin(Appointment, to_come)
        .where(Slot.tenant_id == tenant_id, Slot.date == day, Slot.doctor_id.in_(doctors))
        .group_by(Slot.doctor_id)
    ).all()
    return {
        doctor: (None if span is None else timedelta(minutes=_minutes(span)), first)
        for doctor, span, first in rows
    }


# ------------------------------------------------------------------ the page


@dataclass(frozen=True)
class DeskToday:
    """Everything the home page shows about today, for the clinic or one doctor."""

    day: date
    now: datetime
    totals: Totals
    arrivals: list[Arrival]
    pace: list[Pace]
    doctor: DoctorProfile | None = None


def desk_today(
    session: Session, ctx: RequestContext, *, role: str, user_id: uuid.UUID
) -> DeskToday | None:
    """Today for whoever is looking: a doctor their own patients, anyone else the clinic.
    None for a doctor without a doctor profile (there is nothing of theirs to count).
    """
    assert ctx.tenant_id is not None  # staff act inside their clinic
    tenant_id = ctx.tenant_id
    doctor = doctor_of_user(session, user_id) if role == "doctor" else None
    if role == "doctor" and doctor is None:
        return None
    only = doctor.id if doctor is not None else None
    now = ctx.now()
    day = now.astimezone(tenants.zone_of(session, tenant_id)).date()
    return DeskToday(
        day=day,
        now=now,
        totals=todays_totals(session, tenant_id=tenant_id, day=day, doctor_id=only),
        arrivals=arrivals(session, tenant_id=tenant_id, now=now, doctor_id=only),
        pace=running_late(session, tenant_id=tenant_id, day=day, now=now, doctor_id=only),
        doctor=doctor,
    )
