"""Patient pages: the clinic's public booking page (doctor → slot, held while the patient
signs in with a code → confirm) and "my appointments" with cancel, reschedule and
waitlist offers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.automation import clinic_rules
from opdesk.billing import prepay
from opdesk.billing import settings as billing_settings
from opdesk.billing.deps import PayAheadDep
from opdesk.context import RequestContext
from opdesk.errors import Conflict, NotFound, TooManyRequests
from opdesk.formatting import clock_time, day_name, rupees
from opdesk.identity.deps import NEXT_COOKIE
from opdesk.identity.sessions import Principal
from opdesk.patients import queries as patient_queries
from opdesk.patients.deps import MyFamily, family_of
from opdesk.patients.models import Patient
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.deps import (
    PUBLIC_HOLDS,
    Clinic,
    HoldFor,
    Me,
    Mine,
    MyOffer,
    Offers,
    check_changeable,
    check_movable,
    hold_key,
    page,
)
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.security import throttle
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import Anyone, Cipher, Ctx, DbSession, services
from opdesk.web.pages import attempt, delete_cookie, flash, redirect, set_cookie
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("My appointments", "/me/appointments", "portal:self", "patient"),)
HOLD_COOKIE = "opdesk_hold"
DAYS_SHOWN = 7
DAYS_AHEAD = 60  # the furthest day a patient may pick online


@dataclass(frozen=True)
class DayChoice:
    day: date
    url: str
    current: bool


def _day_tabs(base: str, today: date, chosen: date) -> list[DayChoice]:
    """A week of day links from today, or around the chosen day when it lies further on."""
    first = today
    if chosen >= today + timedelta(days=DAYS_SHOWN):
        last_first = today + timedelta(days=DAYS_AHEAD - DAYS_SHOWN + 1)
        first = min(chosen - timedelta(days=DAYS_SHOWN // 2), last_first)
    days = [first + timedelta(days=i) for i in range(DAYS_SHOWN)]
    joint = "&" if "?" in base else "?"
    return [DayChoice(d, f"{base}{joint}date={d.isoformat()}", d == chosen) for d in days]


def _chosen_day(text: str, today: date, default: date | None = None) -> date:
    """The day asked for in ``?date=`` (else ``default``, else today), kept to the days
    that can be booked.
    """
    fallback = default or today
    try:
        wanted = date.fromisoformat(text) if text else fallback
    except ValueError:
        wanted = fallback
    return min(max(wanted, today), today + timedelta(days=DAYS_AHEAD))


def _doctor_or_none(session: Session, wanted: str) -> DoctorProfile | None:
    try:
        found = records.by_id(session, DoctorProfile, uuid.UUID(wanted))
    except (ValueError, NotFound):
        return None
    return found if found.active else None


@router.get("/c/{slug}/book")
def booking_page(
    request: Request,
    clinic: Clinic,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    doctor: str = "",
    date: str = "",
) -> Response:
    """Step 1: pick a doctor; step 2: pick a time on one of the next days."""
    today = tenants.today_at_clinic(session, ctx)
    chosen = _doctor_or_none(session, doctor) if doctor else None
    day = _chosen_day(date, today)
    slots: list[Slot] = []
    tabs: list[DayChoice] = []
    if chosen is not None:
        window = queries.SlotWindow.checked(today, day, day)
        slots = queries.slots(session, ctx, chosen.id, window, None)
        tabs = _day_tabs(f"/c/{clinic.slug}/book?doctor={chosen.id}", today, day)
    return page(
        request,
        "portal/book.html",
        clinic=clinic,
        doctors=service.doctors(session),
        doctor=chosen,
        day=day,
        tabs=tabs,
        slots=slots,
        tz=clinic.timezone,
    )


@router.post("/c/{slug}/book/hold")
def hold_for_patient(
    request: Request,
    clinic: Clinic,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    slot_id: Annotated[uuid.UUID, Form()],
    hold_for: HoldFor,
) -> Response:
    """Keep the chosen time while the patient signs in (a few minutes)."""
    back = f"/c/{clinic.slug}/book"
    key, now = hold_key(ctx, clinic), ctx.now()
    if throttle.retry_after(session, PUBLIC_HOLDS, key, now) is not None:
        return flash(request, back, str(TooManyRequests("too many holds")), "error")
    keep = hold_for

    def hold() -> booking.Hold:
        held = booking.hold(session, ctx, slot_id=slot_id, hold_for=keep)
        throttle.count(session, PUBLIC_HOLDS, key, now)
        return held

    return attempt(
        request, session, hold, done=lambda held: _to_confirm(request, clinic, held), failed=back
    )


def _to_confirm(request: Request, clinic: Tenant, held: booking.Hold) -> Response:
    """On to step 3, keeping the hold and the way back after signing in as cookies."""
    confirm = f"/c/{clinic.slug}/book/confirm"
    response = redirect(request, confirm)
    seconds = int(services(request).hold_for.total_seconds())
    set_cookie(request, response, HOLD_COOKIE, f"{held.slot_id}.{held.token}", seconds)
    set_cookie(request, response, NEXT_COOKIE, confirm, seconds)
    return response


@dataclass(frozen=True)
class HeldSlot:
    slot: Slot
    token: str
    doctor: DoctorProfile


def _held(request: Request, session: Session, ctx: RequestContext) -> HeldSlot | None:
    """The slot this browser holds, if the hold is still alive."""
    raw = request.cookies.get(HOLD_COOKIE, "")
    slot_text, _, token = raw.partition(".")
    try:
        slot_id = uuid.UUID(slot_text)
    except ValueError:
        return None
    slot = session.get(Slot, (ctx.tenant_id, slot_id))
    if slot is None or slot.status != "held" or slot.hold_expires_at is None:
        return None
    if slot.hold_expires_at <= ctx.now():
        return None
    doctor = session.get(DoctorProfile, (slot.tenant_id, slot.doctor_id))
    assert doctor is not None
    return HeldSlot(slot, token, doctor)


def _hold_lost(request: Request, clinic: Tenant) -> Response:
    return flash(
        request,
        f"/c/{clinic.slug}/book",
        "That time is no longer held; please pick again.",
        "warning",
    )


def _patient_here(request: Request, clinic: Tenant) -> Principal | None:
    principal: Principal | None = request.state.principal
    if principal and principal.active and principal.role == "patient":
        return principal if principal.tenant_id == clinic.id else None
    return None


@router.get("/c/{slug}/book/confirm")
def confirm_page(
    request: Request, clinic: Clinic, session: DbSession, ctx: Ctx, _: Anyone
) -> Response:
    """Step 3: a signed-in patient confirms; anyone else is asked to sign in first."""
    held = _held(request, session, ctx)
    if held is None:
        return _hold_lost(request, clinic)
    who = _patient_here(request, clinic)
    family = patient_queries.of_portal_user(session, who.user_id) if who else []
    return page(
        request,
        "portal/confirm.html",
        clinic=clinic,
        held=held,
        signed_in=who is not None,
        family=family,
        visit_types=[
            v for v in held.doctor.visit_types if v["code"] in held.slot.meta["visitType"]
        ],
        pay_within=billing_settings.prepay_window(session, clinic.id),
        tz=clinic.timezone,
    )


@router.post("/c/{slug}/book/confirm")
def confirm_booking(
    request: Request,
    clinic: Clinic,
    session: DbSession,
    ctx: Ctx,
    who: Me,
    patient_id: Annotated[uuid.UUID, Form()],
    visit_type: Annotated[str, Form()],
    cipher: Cipher,
    pay: PayAheadDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    if who.tenant_id != clinic.id:
        raise NotFound("sign in to this clinic to book here")
    held = _held(request, session, ctx)
    if held is None:
        return _hold_lost(request, clinic)
    patient = family_of(request, session, ctx).patient(session, patient_id)
    wanted = booking.BookingRequest(
        slot_id=held.slot.id,
        patient_id=patient.id,
        visit_type=visit_type,
        channel="web",
        reason=reason.strip() or None,
        origin=booking.Origin(hold_token=held.token, online=True),
    )

    def book() -> Appointment:
        made = booking.book(session, ctx, wanted)
        if made.status == AppointmentStatus.REQUESTED:  # the clinic wants it paid first
            pay.link(session, ctx, cipher, made.id)
        return made

    return attempt(
        request,
        session,
        book,
        done=lambda made: _booked(request, made),
        failed=f"/c/{clinic.slug}/book/confirm",
    )


def _booked(request: Request, appointment: Appointment) -> Response:
    if appointment.status == AppointmentStatus.REQUESTED:
        response = redirect(request, f"/me/appointments/{appointment.id}/pay")
    else:
        response = flash(request, "/me/appointments", "Your appointment is booked. See you then!")
    delete_cookie(request, response, HOLD_COOKIE)
    return response


# ------------------------------------------------------------------ paying ahead


def _pay_context(session: Session, appointment: Appointment) -> dict[str, Any]:
    paying = prepay.of_appointment(session, appointment)
    if paying is None:
        raise NotFound("this appointment has nothing to pay online")
    return {
        "appointment": appointment,
        "paying": paying,
        "slot": queries.slot_of(session, appointment),
        "doctor": records.by_id(session, DoctorProfile, appointment.doctor_id),
        "patient": records.by_id(session, Patient, appointment.patient_id),
        "due_by": clinic_rules.payment_due_by(session, appointment.id),
        "rupees": rupees,
    }


@router.get("/me/appointments/{appointment_id}/pay")
def pay_page(request: Request, session: DbSession, who: Me, appointment: Mine) -> Response:
    """Pay for a booking that waits for its payment; the state refreshes itself (htmx)
    until the payment arrives, the link fails, or the time runs out.
    """
    context = _pay_context(session, appointment)
    fragment = request.headers.get("HX-Request") == "true"
    template = "portal/_pay_state.html" if fragment else "portal/pay.html"
    return page(request, template, tz=who.timezone, **context)


@router.post("/me/appointments/{appointment_id}/pay")
def pay_again(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Me,
    appointment: Mine,
    cipher: Cipher,
    pay: PayAheadDep,
) -> Response:
    """A new link when the last one could not be made (Razorpay refused or was down)."""
    back = f"/me/appointments/{appointment.id}/pay"

    def again() -> None:
        paying = prepay.of_appointment(session, appointment)
        waiting = appointment.status == AppointmentStatus.REQUESTED
        if paying is None or not waiting or paying.state != "failed":
            raise Conflict("this appointment is not waiting for a new payment link")
        pay.link(session, ctx, cipher, appointment.id)

    return attempt(
        request, session, again, done=back, message="Making a new payment link…", failed=back
    )


# ------------------------------------------------------------------ my appointments


@dataclass(frozen=True)
class MyVisit:
    """One of the family's appointments as the patient's page shows it."""

    appointment: Appointment
    slot: Slot | None
    doctor: DoctorProfile
    patient: Patient
    changeable: bool
    awaits_payment: bool = False
    moved_to: Slot | None = None
    moved_from: Slot | None = None


# Appointments that still stand: booked, or the patient is at the clinic for it.
STANDING = frozenset(
    {
        AppointmentStatus.REQUESTED,
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.CHECKED_IN,
        AppointmentStatus.IN_CONSULT,
    }
)


def _ahead(appointment: Appointment, slot: Slot | None, today: date) -> bool:
    """Still to come or under way today (its time may have passed while they wait)."""
    if appointment.status not in STANDING:
        return False
    if slot is None:  # a walk-in: in today's queue
        return appointment.queue_date == today
    return slot.date >= today


def my_visits(
    session: Session, ctx: RequestContext, ids: list[uuid.UUID], today: date
) -> tuple[list[MyVisit], list[MyVisit]]:
    """The family's appointments: what is coming up (soonest first) and what is past,
    cancelled or moved (latest first); a moved one names its new time.
    """
    rows = queries.patient_appointments(session, ids)
    slots = {a.id: slot for a, slot, _d, _p in rows}
    successor = {a.reschedule_of: slot for a, slot, _d, _p in rows if a.reschedule_of}
    now = ctx.now()
    upcoming: list[MyVisit] = []
    earlier: list[MyVisit] = []
    for a, slot, doctor, patient in rows:
        visit = MyVisit(
            a,
            slot,
            doctor,
            patient,
            changeable=(
                a.status in lifecycle.RESCHEDULABLE and slot is not None and slot.starts_at > now
            ),
            awaits_payment=a.status == AppointmentStatus.REQUESTED,
            moved_to=successor.get(a.id),
            moved_from=slots.get(a.reschedule_of) if a.reschedule_of else None,
        )
        (upcoming if _ahead(a, slot, today) else earlier).append(visit)

    def moment(v: MyVisit) -> datetime:
        return v.slot.starts_at if v.slot is not None else v.appointment.timeline_requested_at

    return sorted(upcoming, key=moment), sorted(earlier, key=moment, reverse=True)


@router.get("/me/appointments")
def my_appointments(
    request: Request, session: DbSession, ctx: Ctx, who: Me, family: MyFamily
) -> Response:
    today = tenants.today_at_clinic(session, ctx)
    upcoming, earlier = my_visits(session, ctx, family.ids, today)
    offers = []
    for offer in waitlist.open_offers(session, ctx, family.ids):
        slot = records.by_id(session, Slot, offer.slot_id)
        offers.append(
            (
                offer,
                slot,
                records.by_id(session, DoctorProfile, slot.doctor_id),
                records.by_id(session, Patient, offer.patient_id),
            )
        )
    return page(
        request,
        "portal/appointments.html",
        clinic=tenants.get_tenant(session, who.tenant_id),
        upcoming=upcoming,
        past=earlier,
        offers=offers,
        tz=who.timezone,
    )


def _when(slot: Slot | None, tz: str) -> str:
    if slot is None:
        return "today"
    return f"{day_name(slot.date)}, {clock_time(slot.starts_at, tz)}"


def _confirm(request: Request, **c: object) -> Response:
    """A question before a change the patient cannot take back (a page of its own)."""
    return page(request, "scheduling/confirm.html", c={"danger": True, "fields": {}, **c})


def _money_back(session: Session, appointment: Appointment) -> list[str]:
    """What cancelling does to money paid online for the appointment."""
    charge = prepay.charge_of(session, appointment.id)
    if charge is None or not prepay.paid_by_link(session, charge):
        return []
    paid = rupees(charge.amount_paid - charge.amount_refunded)
    return [f"The {paid} you paid online is refunded to you (banks take 5 to 7 working days)."]


@router.get("/me/appointments/{appointment_id}/cancel")
def confirm_cancel(
    request: Request, session: DbSession, ctx: Ctx, who: Me, appointment: Mine
) -> Response:
    """Before cancelling: which appointment, and what follows."""
    slot = queries.slot_of(session, appointment)
    doctor = records.by_id(session, DoctorProfile, appointment.doctor_id)
    patient = records.by_id(session, Patient, appointment.patient_id)
    return _confirm(
        request,
        question="Cancel this appointment?",
        about=f"{patient.full_name} · {doctor.display_name} · {_when(slot, who.timezone)}",
        facts=[
            "The time will be given to another patient; it cannot be taken back.",
            *_money_back(session, appointment),
            "To come another day instead, choose Change time.",
        ],
        action=f"/me/appointments/{appointment.id}/cancel",
        yes="Yes, cancel it",
        no="Keep my appointment",
        back="/me/appointments",
    )


@router.post("/me/appointments/{appointment_id}/cancel")
def cancel_mine(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Me,
    appointment: Mine,
    offers: Offers,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    if confirmed != "yes":  # an old page or a stray tap: ask first
        return redirect(request, f"/me/appointments/{appointment.id}/cancel")

    def cancel() -> object:
        check_changeable(ctx, session, appointment)
        return lifecycle.transition(
            session, ctx, offers, appointment_id=appointment.id, to="cancelled"
        )

    return attempt(
        request, session, cancel, done="/me/appointments", message="Your appointment is cancelled."
    )


@router.get("/me/appointments/{appointment_id}/reschedule")
def reschedule_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Me,
    appointment: Mine,
    date: str = "",
    slot_id: str = "",
) -> Response:
    """Pick another time with the same doctor (opens on the appointment's own day), then
    confirm the move.
    """
    today = tenants.today_at_clinic(session, ctx)
    current = queries.slot_of(session, appointment)
    day = _chosen_day(date, today, current.date if current else None)
    doctor = records.by_id(session, DoctorProfile, appointment.doctor_id)
    window = queries.SlotWindow.checked(today, day, day)
    slots = queries.slots(session, ctx, doctor.id, window, appointment.visit_type)
    base = f"/me/appointments/{appointment.id}/reschedule"
    picked = next((s for s in slots if str(s.id) == slot_id), None)
    return page(
        request,
        "portal/reschedule.html",
        appointment=appointment,
        current=current,
        day=day,
        doctor=doctor,
        slots=slots,
        picked=picked,
        back_url=f"{base}?date={day.isoformat()}",
        tabs=_day_tabs(base, today, day),
        tz=who.timezone,
    )


@router.post("/me/appointments/{appointment_id}/reschedule")
def reschedule_mine(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Me,
    appointment: Mine,
    slot_id: Annotated[uuid.UUID, Form()],
    offers: Offers,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    base = f"/me/appointments/{appointment.id}/reschedule"
    if confirmed != "yes":  # a tap on a time asks first
        return redirect(request, f"{base}?slot_id={slot_id}")

    def move() -> Appointment:
        check_changeable(ctx, session, appointment)
        check_movable(appointment)
        return lifecycle.reschedule(
            session,
            ctx,
            offers,
            appointment_id=appointment.id,
            slot_id=slot_id,
            origin=booking.Origin(online=True),
        )

    def moved(new: Appointment) -> Response:
        slot = queries.slot_of(session, new)
        return flash(request, "/me/appointments", f"Moved to {_when(slot, who.timezone)}.")

    return attempt(request, session, move, done=moved, failed=base)


@router.post("/me/waitlist-offers/{offer_id}/accept")
def accept_offer(request: Request, session: DbSession, ctx: Ctx, _: Me, offer: MyOffer) -> Response:
    return attempt(
        request,
        session,
        lambda: waitlist.accept(session, ctx, lock_id=offer.id, channel="web", online=True),
        done="/me/appointments",
        message="Booked from the waitlist.",
    )


@router.get("/me/waitlist-offers/{offer_id}/decline")
def confirm_decline(
    request: Request, session: DbSession, ctx: Ctx, who: Me, offer: MyOffer
) -> Response:
    slot = records.by_id(session, Slot, offer.slot_id)
    doctor = records.by_id(session, DoctorProfile, slot.doctor_id)
    patient = records.by_id(session, Patient, offer.patient_id)
    return _confirm(
        request,
        question="Say no to this time?",
        about=f"{patient.full_name} · {doctor.display_name} · {_when(slot, who.timezone)}",
        facts=[
            "The time goes to the next patient waiting; it cannot be offered to you again.",
            f"{patient.name_first} stays on the waitlist for another time.",
        ],
        action=f"/me/waitlist-offers/{offer.id}/decline",
        yes="Yes, say no",
        no="Go back",
        back="/me/appointments",
    )


@router.post("/me/waitlist-offers/{offer_id}/decline")
def decline_offer(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Me,
    offer: MyOffer,
    offers: Offers,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    if confirmed != "yes":
        return redirect(request, f"/me/waitlist-offers/{offer.id}/decline")
    return attempt(
        request,
        session,
        lambda: waitlist.decline(session, ctx, offers, lock_id=offer.id),
        done="/me/appointments",
        message="Thank you; we will offer it to the next patient.",
    )
