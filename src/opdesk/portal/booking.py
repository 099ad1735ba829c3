"""Patient pages: the clinic's public booking page (doctor → slot, held while the patient
signs in with a code → confirm) and "my appointments" with cancel, reschedule and
waitlist offers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.context import RequestContext
from opdesk.errors import NotFound, TooManyRequests
from opdesk.identity.deps import NEXT_COOKIE
from opdesk.identity.sessions import Principal
from opdesk.patients import queries as patient_queries
from opdesk.patients.deps import MyFamily, family_of
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
    hold_key,
    page,
)
from opdesk.scheduling.models import DoctorProfile, Slot
from opdesk.security import throttle
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import Anyone, Ctx, DbSession, services
from opdesk.web.pages import attempt, flash, redirect, set_cookie
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
    return attempt(
        request,
        session,
        lambda: booking.book(session, ctx, wanted),
        done=lambda _: _booked(request),
        failed=f"/c/{clinic.slug}/book/confirm",
    )


def _booked(request: Request) -> Response:
    response = flash(request, "/me/appointments", "Your appointment is booked. See you then!")
    response.delete_cookie(HOLD_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ my appointments


@router.get("/me/appointments")
def my_appointments(
    request: Request, session: DbSession, ctx: Ctx, who: Me, family: MyFamily
) -> Response:
    rows = queries.patient_appointments(session, family.ids)
    now = ctx.now()
    upcoming = [
        r
        for r in rows
        if r[1] is not None and r[1].ends_at > now and r[0].status in lifecycle.RESCHEDULABLE
    ]
    past = [r for r in rows if r not in upcoming]
    offers = [
        (o, records.by_id(session, Slot, o.slot_id))
        for o in waitlist.open_offers(session, ctx, family.ids)
    ]
    return page(
        request,
        "portal/appointments.html",
        clinic=tenants.get_tenant(session, who.tenant_id),
        upcoming=upcoming,
        past=past,
        offers=offers,
        tz=who.timezone,
    )


@router.post("/me/appointments/{appointment_id}/cancel")
def cancel_mine(
    request: Request, session: DbSession, ctx: Ctx, _: Me, appointment: Mine, offers: Offers
) -> Response:
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
    request: Request, session: DbSession, ctx: Ctx, who: Me, appointment: Mine, date: str = ""
) -> Response:
    """Pick another time with the same doctor; opens on the appointment's own day."""
    today = tenants.today_at_clinic(session, ctx)
    current = queries.slot_of(session, appointment)
    day = _chosen_day(date, today, current.date if current else None)
    doctor = records.by_id(session, DoctorProfile, appointment.doctor_id)
    window = queries.SlotWindow.checked(today, day, day)
    slots = queries.slots(session, ctx, doctor.id, window, appointment.visit_type)
    base = f"/me/appointments/{appointment.id}/reschedule"
    return page(
        request,
        "portal/reschedule.html",
        appointment=appointment,
        current=current,
        day=day,
        doctor=doctor,
        slots=slots,
        tabs=_day_tabs(base, today, day),
        tz=who.timezone,
    )


@router.post("/me/appointments/{appointment_id}/reschedule")
def reschedule_mine(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Me,
    appointment: Mine,
    slot_id: Annotated[uuid.UUID, Form()],
    offers: Offers,
) -> Response:
    def move() -> object:
        check_changeable(ctx, session, appointment)
        return lifecycle.reschedule(
            session,
            ctx,
            offers,
            appointment_id=appointment.id,
            slot_id=slot_id,
            origin=booking.Origin(online=True),
        )

    return attempt(
        request,
        session,
        move,
        done="/me/appointments",
        message="Your appointment is moved.",
        failed=f"/me/appointments/{appointment.id}/reschedule",
    )


@router.post("/me/waitlist-offers/{offer_id}/accept")
def accept_offer(request: Request, session: DbSession, ctx: Ctx, _: Me, offer: MyOffer) -> Response:
    return attempt(
        request,
        session,
        lambda: waitlist.accept(session, ctx, lock_id=offer.id, channel="web", online=True),
        done="/me/appointments",
        message="Booked from the waitlist.",
    )


@router.post("/me/waitlist-offers/{offer_id}/decline")
def decline_offer(
    request: Request, session: DbSession, ctx: Ctx, _: Me, offer: MyOffer, offers: Offers
) -> Response:
    return attempt(
        request,
        session,
        lambda: waitlist.decline(session, ctx, offers, lock_id=offer.id),
        done="/me/appointments",
        message="Thank you; we will offer it to the next patient.",
    )
