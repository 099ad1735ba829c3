"""The demo clinic's doctors, their weekly hours, 60 days of slots, and a busy today.

Today gets appointments in every state (done, with the doctor, waiting with tokens,
confirmed, no-show, cancelled, a walk-in), a blocked and a held slot, and the rest of
the week is partly booked so the week view looks like a real clinic's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal
from random import Random

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.identity import service as identity
from opdesk.identity.models import User
from opdesk.identity.service import Identity
from opdesk.patients.models import Patient
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.models import Appointment, DoctorProfile, Slot
from opdesk.scheduling.service import Opening
from opdesk.tenancy import service as tenants


@dataclass(frozen=True)
class DemoDoctor:
    email: str
    name: str
    specialty: str
    registration: str
    fee: str
    minutes: int
    openings: tuple[Opening, ...]


GP_WEEK = tuple(
    o
    for day in range(6)  # Monday to Saturday
    for o in (
        Opening(day, time(9, 30), time(13, 30), 15, visit_types=("consultation", "follow-up")),
        Opening(day, time(17), time(20), 15, visit_types=("consultation", "follow-up")),
    )
)
DEMO_DOCTORS = (
    DemoDoctor(
        "doctor@sunrise-clinic.example",
        "Dr. Anjali Deshmukh",
        "General medicine",
        "MMC-2011-04512",
        "500.00",
        15,
        GP_WEEK,
    ),
    DemoDoctor(
        "paediatrics@sunrise-clinic.example",
        "Dr. Farhan Shaikh",
        "Paediatrics",
        "MMC-2015-11873",
        "600.00",
        20,
        tuple(
            Opening(day, time(10), time(13), 20, buffer_after=5, visit_types=("consultation",))
            for day in range(5)
        ),
    ),
    DemoDoctor(
        "skin@sunrise-clinic.example",
        "Dr. Revathi Menon",
        "Dermatology",
        "TNMC-2009-30211",
        "800.00",
        20,
        tuple(
            o
            for day in (1, 3, 5)
            for o in (
                Opening(day, time(11), time(14), 20, visit_types=("consultation", "follow-up")),
                Opening(day, time(16), time(19), 20, visit_types=("consultation", "follow-up")),
            )
        ),
    ),
)


def _doctor(
    session: Session, ctx: RequestContext, ident: Identity, spec: DemoDoctor
) -> DoctorProfile:
    user = session.execute(select(User).where(User.email == spec.email)).scalar_one_or_none()
    if user is None:
        # Only the first doctor signs in to the demo; the others get a password nobody knows.
        user = identity.create_user(
            session,
            ctx,
            ident,
            name=spec.name,
            role="doctor",
            email=spec.email,
            password=f"unused-{secrets.token_urlsafe(18)}",
        )
    existing = service.doctor_of_user(session, user.id)
    if existing is not None:
        return existing
    fields = service.DoctorFields(
        display_name=spec.name,
        specialty=spec.specialty,
        registration_number=spec.registration,
        consultation_fee=Decimal(spec.fee),
        visit_types=(
            service.VisitType("consultation", "Consultation", spec.minutes),
            service.VisitType("follow-up", "Follow-up", spec.minutes),
        ),
    )
    doctor = service.create_doctor(session, ctx, user_id=user.id, fields=fields)
    today = tenants.today_at_clinic(session, ctx)
    service.set_templates(
        session, ctx, doctor_id=doctor.id, openings=list(spec.openings), valid_from=today
    )
    return doctor


def refresh_demo_schedule(session: Session, ctx: RequestContext, ident: Identity) -> int:
    """Doctors, slots for 60 days, and today's and this week's appointments (once a day)."""
    doctors = [_doctor(session, ctx, ident, spec) for spec in DEMO_DOCTORS]
    days = ident.settings.slot_days_ahead
    made = sum(service.generate_slots(session, ctx, doctor_id=d.id, days=days) for d in doctors)
    today = tenants.today_at_clinic(session, ctx)
    # Once per week of calendar: a refresh the same week leaves the bookings as they are.
    booked_soon = session.execute(
        select(func.count())
        .select_from(Appointment)
        .join(Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id))
        .where(Slot.date >= today, Slot.date <= today + timedelta(days=6))
    ).scalar_one()
    if booked_soon == 0:
        people = list(
            session.execute(select(Patient).order_by(Patient.number).limit(200)).scalars()
        )
        rng = Random(today.toordinal())
        rng.shuffle(people)
        _busy_today(session, ctx, ident, doctors[0], people[:20])
        _rest_of_week(session, ctx, doctors, people[20:], rng)
    return made


def _book(
    session: Session, ctx: RequestContext, slot: Slot, patient: Patient, channel: str
) -> Appointment:
    return booking.book(
        session,
        ctx,
        booking.BookingRequest(
            slot_id=slot.id,
            patient_id=patient.id,
            visit_type="consultation",
            channel=channel,
            reason="Fever and cough" if patient.number % 3 == 0 else None,
        ),
    )


# The morning as it stands at the desk: who is done, who is in, who waits.
TODAY_PLAN = (
    "completed",
    "completed",
    "no-show",
    "completed",
    "in-consult",
    "checked-in",
    "checked-in",
    "cancelled",
    "confirmed",
    "confirmed",
    "blocked",
    "confirmed",
    "held",
    "confirmed",
)
STEPS = {
    "completed": ("checked-in", "in-consult", "completed"),
    "in-consult": ("checked-in", "in-consult"),
    "checked-in": ("checked-in",),
    "no-show": ("no-show",),
    "cancelled": ("cancelled",),
    "confirmed": (),
}


def _busy_today(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    doctor: DoctorProfile,
    people: list[Patient],
) -> None:
    """Today's first slots as the desk would have lived them: each step happens at the
    time it would have (booked the day before, checked in ten minutes early...), so the
    timeline and tokens read true whenever the demo is made. Those audit events carry
    the same times.
    """
    today = tenants.today_at_clinic(session, ctx)
    rows = _first_open_day(session, ctx, doctor)
    moment = [ctx.now()]
    lived = ctx.for_tenant(doctor.tenant_id)
    lived.clock = lambda: moment[0]
    lived.pending_audit = ctx.pending_audit
    channels = ("phone", "walk-in", "web", "whatsapp")
    offers = waitlist.Offers(ident.cipher, ident.settings.offer_for)
    for i, (state, slot) in enumerate(zip(TODAY_PLAN, rows, strict=False)):
        moment[0] = slot.starts_at - timedelta(days=1)
        if state == "blocked":
            service.set_blocked(session, lived, slot.id, blocked=True)
            continue
        if state == "held":
            if slot.ends_at > ctx.now():  # a slot already over cannot be held any more
                moment[0] = max(ctx.now(), slot.starts_at - timedelta(minutes=30))
                booking.hold(session, lived, slot_id=slot.id, hold_for=timedelta(minutes=30))
            continue
        appointment = _book(session, lived, slot, people[i], channels[i % len(channels)])
        for step in STEPS[state]:
            moment[0] = slot.starts_at + STEP_AT[step]
            lifecycle.transition(
                session,
                lived,
                offers,
                appointment_id=appointment.id,
                to=step,
            )
    if rows:
        moment[0] = rows[0].starts_at + timedelta(minutes=40)
        lifecycle.walk_in(
            session, lived, patient_id=people[-1].id, doctor_id=doctor.id, visit_type="consultation"
        )
    waitlist.join(
        session,
        ctx,
        patient_id=people[-2].id,
        doctor_id=doctor.id,
        from_date=today,
        until_date=today + timedelta(days=3),
        visit_type="consultation",
    )


def _first_open_day(session: Session, ctx: RequestContext, doctor: DoctorProfile) -> list[Slot]:
    """Today's slots, or the next day's the doctor works (the demo may be made on a Sunday)."""
    today = tenants.today_at_clinic(session, ctx)
    for offset in range(7):
        day = today + timedelta(days=offset)
        rows = queries.slots(session, ctx, doctor.id, queries.SlotWindow(day, day), None, True)
        if rows:
            return rows
    return []


# When each step happens, counted from the slot's start.
STEP_AT = {
    "checked-in": timedelta(minutes=-10),
    "in-consult": timedelta(minutes=0),
    "completed": timedelta(minutes=14),
    "no-show": timedelta(minutes=15),
    "cancelled": timedelta(hours=-3),
}


def _rest_of_week(
    session: Session,
    ctx: RequestContext,
    doctors: list[DoctorProfile],
    people: list[Patient],
    rng: Random,
) -> None:
    today = tenants.today_at_clinic(session, ctx)
    window = queries.SlotWindow(today, today + timedelta(days=6))
    pool = iter(people * 3)
    for doctor in doctors:
        for slot in queries.slots(session, ctx, doctor.id, window, None):
            if rng.random() < 0.4:
                _book(session, ctx, slot, next(pool), rng.choice(("phone", "web", "whatsapp")))
