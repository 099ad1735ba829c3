"""REST for patients: the clinic's public booking page and "my appointments".

Anyone may see a clinic's doctors and free slots and hold one (holds per address are
limited); booking needs the patient's OTP session, the hold token, and a patient who
is not blocked from booking online.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from opdesk import idempotency
from opdesk.automation import clinic_rules
from opdesk.billing import prepay
from opdesk.billing.deps import PayAheadDep
from opdesk.billing.schemas import PrepaymentOut
from opdesk.errors import NotFound, TooManyRequests
from opdesk.identity.deps import Ident
from opdesk.patients import service as patients
from opdesk.patients.deps import MyFamily
from opdesk.patients.schemas import OnlineSignedUp, OnlineSignUp
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.deps import (
    PUBLIC_HOLDS,
    Clinic,
    HoldFor,
    IdempotencyKey,
    Me,
    Mine,
    MyOffer,
    Offers,
    check_changeable,
    check_movable,
    doctor_in_path,
    hold_key,
)
from opdesk.scheduling.models import Appointment, AppointmentStatus
from opdesk.scheduling.schemas import (
    AppointmentOut,
    HoldOut,
    OfferOut,
    PortalBookingIn,
    PublicDoctor,
    RescheduleIn,
    SlotOut,
)
from opdesk.schemas import PROBLEM_RESPONSES, ApiModel
from opdesk.security import throttle
from opdesk.tenancy import service as tenants
from opdesk.web.deps import Anyone, Cipher, Ctx, DbSession, answer

router = APIRouter(tags=["self-booking"], responses=PROBLEM_RESPONSES)

# Enough for a family booking a few visits; too few to hold a doctor's whole day.


@router.get("/public/clinics/{slug}/doctors", response_model=list[PublicDoctor])
def public_doctors(clinic: Clinic, session: DbSession, _: Anyone) -> list[PublicDoctor]:
    return [PublicDoctor.model_validate(d) for d in service.doctors(session)]


@router.get("/public/clinics/{slug}/slots", response_model=list[SlotOut])
def public_slots(
    clinic: Clinic,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    doctor_id: Annotated[uuid.UUID, Query(alias="doctorId")],
    from_date: Annotated[date, Query(alias="from")],
    to_date: Annotated[date | None, Query(alias="to")] = None,
    visit_type: Annotated[str | None, Query(alias="visitType", max_length=40)] = None,
) -> list[SlotOut]:
    """Free slots of one doctor (a hold past its expiry is free)."""
    doctor = doctor_in_path(doctor_id, session)
    today = tenants.today_at_clinic(session, ctx)
    window = queries.SlotWindow.checked(today, max(from_date, today), to_date or from_date)
    now = ctx.now()
    return [SlotOut.of(s, now) for s in queries.slots(session, ctx, doctor.id, window, visit_type)]


class PublicHoldIn(ApiModel):
    slot_id: uuid.UUID


@router.post("/public/clinics/{slug}/holds", response_model=HoldOut, status_code=201)
def public_hold(
    body: PublicHoldIn,
    clinic: Clinic,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    hold_for: HoldFor,
) -> HoldOut:
    """Keep a slot while the patient signs in with a code; the token books it."""
    key, now = hold_key(ctx, clinic), ctx.now()
    wait = throttle.retry_after(session, PUBLIC_HOLDS, key, now)
    if wait is not None:
        raise TooManyRequests(
            f"too many holds; try again in {int(wait.total_seconds() // 60) + 1} minutes",
            retry_after=wait,
        )
    held = booking.hold(session, ctx, slot_id=body.slot_id, hold_for=hold_for)
    throttle.count(session, PUBLIC_HOLDS, key, now)
    return HoldOut(slot_id=held.slot_id, hold_token=held.token, expires_at=held.expires_at)


@router.post(
    "/public/clinics/{slug}/patients",
    response_model=OnlineSignedUp,
    status_code=201,
    responses={200: {"model": OnlineSignedUp, "description": "Already registered"}},
)
def sign_up_online(
    body: OnlineSignUp,
    clinic: Clinic,
    response: Response,
    session: DbSession,
    ctx: Ctx,
    _: Anyone,
    ident: Ident,
) -> OnlineSignedUp:
    """A patient new to the clinic registers while booking, and gets a session.

    Send the `proof` of a verified code (`POST /auth/otp/verify`) for this clinic and
    the phone it went to. The record is flagged for the desk to complete. A phone that
    already has a patient here signs in to that record instead (200, `created: false`).
    The proof works once (401 after), for this and the session together.
    """
    made = patients.register_online(session, ctx, ident, clinic=clinic, sign_up=body)
    if not made.created:
        response.status_code = 200
    return OnlineSignedUp(
        patient_id=made.patient.id,
        created=made.created,
        token=made.signed_in.token,
        stage=made.signed_in.stage,
        device_token=made.signed_in.device_token,
    )


@router.get("/me/appointments", response_model=list[AppointmentOut])
def my_appointments(session: DbSession, _: Me, family: MyFamily) -> list[AppointmentOut]:
    found = queries.appointments(session, day=None, patient_ids=family.ids)
    return [AppointmentOut.of(a) for a, _slot in found]


@router.post("/me/appointments", response_model=AppointmentOut, status_code=201)
def book_online(
    body: PortalBookingIn,
    session: DbSession,
    ctx: Ctx,
    who: Me,
    family: MyFamily,
    cipher: Cipher,
    pay: PayAheadDep,
    key: IdempotencyKey = None,
) -> Any:
    """Confirm a held slot for yourself or a family member.

    A clinic that asks for payment ahead answers with the appointment ``requested``: its
    payment link follows at ``GET /me/appointments/{id}/payment``; paid, the appointment is
    ``confirmed``; unpaid by ``payBy`` it is cancelled and the time goes to others.
    """
    patient = family.patient(session, body.patient_id)
    request = booking.BookingRequest(
        slot_id=body.slot_id,
        patient_id=patient.id,
        visit_type=body.visit_type,
        channel="web",
        reason=body.reason,
        origin=booking.Origin(hold_token=body.hold_token, online=True),
    )

    def book() -> Appointment:
        made = booking.book(session, ctx, request)
        if made.status == AppointmentStatus.REQUESTED:  # the clinic wants it paid first
            pay.link(session, ctx, cipher, made.id)
        return made

    return answer(
        idempotency.run_once(
            session,
            ctx,
            actor_key=str(who.user_id),
            key=key,
            operation="book-online",
            body=body.model_dump(mode="json"),
            act=lambda: AppointmentOut.of(book()),
            status_code=201,
        )
    )


@router.get("/me/appointments/{appointment_id}/payment", response_model=PrepaymentOut)
def my_payment(_: Me, appointment: Mine, session: DbSession) -> PrepaymentOut:
    """The payment an online booking waits for (404 when it waits for none)."""
    paying = prepay.of_appointment(session, appointment)
    if paying is None:
        raise NotFound("this appointment has nothing to pay online")
    payment = paying.payment
    return PrepaymentOut(
        appointment_id=appointment.id,
        state=paying.state,
        amount=payment.amount if payment is not None else paying.invoice.balance_due,
        invoice_number=paying.invoice.number,
        link_url=payment.link_url if payment is not None else None,
        pay_by=clinic_rules.payment_due_by(session, appointment.id),
        failure_reason=payment.failure_reason if payment is not None else None,
    )


@router.post("/me/appointments/{appointment_id}/cancel", response_model=AppointmentOut)
def cancel_mine(
    _: Me, appointment: Mine, request: Request, session: DbSession, ctx: Ctx, offers: Offers
) -> AppointmentOut:
    check_changeable(ctx, session, appointment)
    cancelled = lifecycle.transition(
        session, ctx, offers, appointment_id=appointment.id, to="cancelled"
    )
    return AppointmentOut.of(cancelled)


class PortalRescheduleIn(RescheduleIn):
    hold_token: Annotated[str, Field(min_length=1, max_length=100)]


@router.post(
    "/me/appointments/{appointment_id}/reschedule", response_model=AppointmentOut, status_code=201
)
def reschedule_mine(
    _: Me,
    appointment: Mine,
    body: PortalRescheduleIn,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    offers: Offers,
) -> AppointmentOut:
    """Move to a slot you hold; the old slot is freed for others."""
    check_changeable(ctx, session, appointment)
    check_movable(appointment)
    moved = lifecycle.reschedule(
        session,
        ctx,
        offers,
        appointment_id=appointment.id,
        slot_id=body.slot_id,
        origin=booking.Origin(hold_token=body.hold_token, online=True),
        visit_type=body.visit_type,
    )
    return AppointmentOut.of(moved)


@router.get("/me/waitlist-offers", response_model=list[OfferOut])
def my_offers(session: DbSession, ctx: Ctx, _: Me, family: MyFamily) -> list[OfferOut]:
    offers = waitlist.open_offers(session, ctx, family.ids)
    return [OfferOut.model_validate(o) for o in offers]


@router.post(
    "/me/waitlist-offers/{offer_id}/accept", response_model=AppointmentOut, status_code=201
)
def accept_my_offer(_: Me, offer: MyOffer, session: DbSession, ctx: Ctx) -> AppointmentOut:
    appointment = waitlist.accept(session, ctx, lock_id=offer.id, channel="web", online=True)
    return AppointmentOut.of(appointment)


@router.post("/me/waitlist-offers/{offer_id}/decline", response_model=OfferOut)
def decline_my_offer(
    _: Me, offer: MyOffer, request: Request, session: DbSession, ctx: Ctx, offers: Offers
) -> OfferOut:
    return OfferOut.model_validate(waitlist.decline(session, ctx, offers, lock_id=offer.id))
