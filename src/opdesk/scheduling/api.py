"""REST for the front desk and admins: doctors, availability, slots, appointments, queue."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity.sessions import Principal
from opdesk.scheduling import away as doctor_away
from opdesk.scheduling import booking, hot, lifecycle, queries, service, waitlist
from opdesk.scheduling.deps import (
    AppointmentInPath as InPath,
)
from opdesk.scheduling.deps import (
    DoctorInPath as Doctor,
)
from opdesk.scheduling.deps import (
    HoldFor,
    IdempotencyKey,
    Offers,
    doctor_in_path,
)
from opdesk.scheduling.models import Appointment, DoctorProfile
from opdesk.scheduling.schemas import (
    AppointmentOut,
    AwayAffectedOut,
    AwayAppointment,
    AwayMessagedOut,
    BookingIn,
    DoctorCreate,
    DoctorFieldsIn,
    DoctorOut,
    ExceptionCreated,
    ExceptionIn,
    ExceptionOut,
    GenerateIn,
    GenerateOut,
    HoldOut,
    NextSlot,
    OfferOut,
    PublicDoctor,
    RescheduleIn,
    SlotOut,
    TemplateOut,
    TemplatesIn,
    TransitionIn,
    WaitlistIn,
    WaitlistOut,
    WalkInIn,
)
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.security.permissions import allowed
from opdesk.tenancy import service as tenants
from opdesk.uow import transaction
from opdesk.web.deps import (
    AppSettings,
    Cipher,
    Ctx,
    DbSession,
    HotPath,
    act_as,
    acting,
    caller_refusal,
    request_context,
    signed_in,
)

router = APIRouter(tags=["scheduling"], responses=PROBLEM_RESPONSES)
# The desk's busiest writes (DESIGN, "Hot paths"), matched before every other route of
# the app: FastAPI tries routes one by one, and these would otherwise wait behind dozens.
hot_router = APIRouter(tags=["scheduling"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, acting("appointments:read")]
Writer = Annotated[Principal, acting("appointments:write")]
Manager = Annotated[Principal, acting("clinic:manage")]
AwayReader = Annotated[Principal, acting("doctor-away:read")]
AwayMessenger = Annotated[Principal, acting("doctor-away:message")]


def fields_of(body: DoctorFieldsIn) -> service.DoctorFields:
    return service.DoctorFields(
        display_name=body.display_name,
        specialty=body.specialty,
        registration_number=body.registration_number,
        consultation_fee=body.consultation_fee,
        visit_types=tuple(service.VisitType(**v.model_dump()) for v in body.visit_types),
        active=body.active,
    )


@router.post("/doctors", response_model=DoctorOut, status_code=201)
def create_doctor(
    body: DoctorCreate,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
) -> DoctorOut:
    """A doctor profile for a user with the doctor role (one per user; 409 for a second)."""
    doctor = service.create_doctor(session, ctx, user_id=body.user_id, fields=fields_of(body))
    return DoctorOut.model_validate(doctor)


@router.get("/doctors", response_model=list[DoctorOut])
def list_doctors(
    session: DbSession,
    _: Reader,
    specialty: Annotated[str | None, Query(max_length=200)] = None,
) -> list[DoctorOut]:
    return [DoctorOut.model_validate(d) for d in service.doctors(session, specialty=specialty)]


@router.get("/doctors/{doctor_id}", response_model=DoctorOut)
def get_doctor(_: Reader, doctor: Doctor) -> DoctorOut:
    return DoctorOut.model_validate(doctor)


@router.put("/doctors/{doctor_id}", response_model=DoctorOut)
def update_doctor(
    body: DoctorFieldsIn,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    doctor: Doctor,
) -> DoctorOut:
    updated = service.update_doctor(session, ctx, doctor_id=doctor.id, fields=fields_of(body))
    return DoctorOut.model_validate(updated)


@router.get("/doctors/{doctor_id}/templates", response_model=list[TemplateOut])
def get_templates(_: Reader, session: DbSession, doctor: Doctor) -> list[TemplateOut]:
    return [TemplateOut.model_validate(t) for t in service.templates_of(session, doctor.id)]


@router.put("/doctors/{doctor_id}/templates", response_model=list[TemplateOut])
def put_templates(
    body: TemplatesIn,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    doctor: Doctor,
    settings: AppSettings,
) -> list[TemplateOut]:
    """Replace the weekly openings. Future free slots are remade from them at once;
    booked and held slots stay as they are.
    """
    _check_codes(doctor, [(f"templates.{i}", o.visit_types) for i, o in enumerate(body.templates)])
    today = tenants.today_at_clinic(session, ctx)
    rows = service.set_templates(
        session,
        ctx,
        doctor_id=doctor.id,
        openings=[
            service.Opening(**{**o.model_dump(), "visit_types": tuple(o.visit_types)})
            for o in body.templates
        ],
        valid_from=body.valid_from or today,
    )
    service.generate_slots(session, ctx, doctor_id=doctor.id, days=settings.slot_days_ahead)
    return [TemplateOut.model_validate(t) for t in rows]


def _check_codes(doctor: DoctorProfile, wanted: list[tuple[str, list[str]]]) -> None:
    known = {v["code"] for v in doctor.visit_types}
    errors = [
        FieldError(f"{where}.visitTypes", f"{code!r} is not one of this doctor's visit types")
        for where, codes in wanted
        for code in codes
        if code not in known
    ]
    if errors:
        raise InvalidInput(errors)


@router.get("/doctors/{doctor_id}/exceptions", response_model=list[ExceptionOut])
def list_exceptions(
    session: DbSession,
    ctx: Ctx,
    _: Reader,
    doctor: Doctor,
) -> list[ExceptionOut]:
    return [ExceptionOut.model_validate(e) for e in service.exceptions_of(session, ctx, doctor.id)]


@router.post("/doctors/{doctor_id}/exceptions", response_model=ExceptionCreated, status_code=201)
def add_exception(
    body: ExceptionIn,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    doctor: Doctor,
) -> ExceptionCreated:
    """Leave, a holiday, a blocked afternoon: free slots inside it go at once."""
    away, kept = service.add_exception(
        session,
        ctx,
        doctor_id=doctor.id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
    )
    return ExceptionCreated(**ExceptionOut.model_validate(away).model_dump(), booked_inside=kept)


@router.delete("/doctors/{doctor_id}/exceptions/{exception_id}", status_code=204)
def remove_exception(
    exception_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    doctor: Doctor,
) -> Response:
    service.remove_exception(session, ctx, doctor_id=doctor.id, exception_id=exception_id)
    return Response(status_code=204)


@router.get(
    "/doctors/{doctor_id}/exceptions/{exception_id}/appointments", response_model=AwayAffectedOut
)
def away_appointments(
    exception_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    who: AwayReader,
    cipher: Cipher,
    doctor: Doctor,
) -> AwayAffectedOut:
    """The patients booked inside the time away (still booked: cancelled and moved ones
    leave the list), whether each was already messaged or cannot be (no channel they
    agreed to: call them), and the doctor's next free slots. Doctors see any colleague's
    list (they cover for each other).
    """
    doctor_away.away_of(session, doctor_id=doctor.id, away_id=exception_id)  # 404 first
    found = doctor_away.report(session, ctx, cipher, doctor_id=doctor.id, away_id=exception_id)
    phones = allowed(who.role, "patients:read")
    now = ctx.now()
    return AwayAffectedOut(
        exception=ExceptionOut.model_validate(found.away),
        doctor_id=doctor.id,
        appointments=[
            AwayAppointment(
                appointment_id=a.appointment.id,
                patient_id=a.patient.id,
                patient_name=a.patient.full_name,
                phone=a.phone if phones else None,
                start=a.slot.starts_at,
                end=a.slot.ends_at,
                status=a.appointment.status,
                channel=a.channel,
                messaged=a.messaged is not None,
                message_status=a.messaged.status if a.messaged is not None else None,
                not_messaged=a.not_messaged,
            )
            for a in found.affected
        ],
        next_free=[SlotOut.of(s, now) for s in found.next_free],
    )


@router.post(
    "/doctors/{doctor_id}/exceptions/{exception_id}/messages", response_model=AwayMessagedOut
)
def message_away_patients(
    exception_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: AwayMessenger,
    cipher: Cipher,
    doctor: Doctor,
    settings: AppSettings,
) -> AwayMessagedOut:
    """Message every patient booked inside the time away with a link to choose another
    time (the portal's reschedule page). Each patient is messaged once per away period:
    calling this again queues nothing new. Patients without a channel they agreed to are
    listed in ``toCall``; the appointments themselves are left as they are.
    """
    done = doctor_away.message_all(
        session,
        ctx,
        cipher,
        doctor_id=doctor.id,
        away_id=exception_id,
        base_url=settings.base_url,
    )
    return AwayMessagedOut(
        queued=[a.appointment.id for a in done.queued],
        already_messaged=[a.appointment.id for a in done.already],
        to_call=[a.appointment.id for a in done.to_call],
    )


@router.post("/doctors/{doctor_id}/slots/generate", response_model=GenerateOut)
def generate_slots(
    body: GenerateIn,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    doctor: Doctor,
    settings: AppSettings,
) -> GenerateOut:
    """Make slots ``days`` ahead from the templates; running it again makes none twice."""
    days = body.days or settings.slot_days_ahead
    return GenerateOut(created=service.generate_slots(session, ctx, doctor_id=doctor.id, days=days))


@router.get("/slots", response_model=list[SlotOut])
def search_slots(
    session: DbSession,
    ctx: Ctx,
    _: Reader,
    doctor_id: Annotated[uuid.UUID, Query(alias="doctorId")],
    from_date: Annotated[date, Query(alias="from")],
    to_date: Annotated[date | None, Query(alias="to")] = None,
    visit_type: Annotated[str | None, Query(alias="visitType", max_length=40)] = None,
    include_taken: Annotated[bool, Query(alias="includeTaken")] = False,
) -> list[SlotOut]:
    """Bookable slots of one doctor over clinic-local days (at most 31); a hold past its
    expiry counts as free. ``includeTaken`` lists every slot, for calendars.
    """
    doctor_in_path(doctor_id, session)
    window = queries.SlotWindow.checked(
        tenants.today_at_clinic(session, ctx), from_date, to_date or from_date
    )
    found = queries.slots(session, ctx, doctor_id, window, visit_type, include_taken)
    now = ctx.now()
    return [SlotOut.of(s, now) for s in found]


@router.get("/slots/next", response_model=list[NextSlot])
def next_available(
    session: DbSession,
    ctx: Ctx,
    _: Reader,
    specialty: Annotated[str, Query(min_length=1, max_length=200)],
    visit_type: Annotated[str | None, Query(alias="visitType", max_length=40)] = None,
) -> list[NextSlot]:
    """The earliest bookable slot of each doctor of a specialty, soonest first."""
    now = ctx.now()
    return [
        NextSlot(doctor=PublicDoctor.model_validate(d), slot=SlotOut.of(s, now))
        for d, s in queries.next_available(session, ctx, specialty, visit_type)
    ]


@hot_router.post(
    "/slots/{slot_id}/hold",
    response_model=HoldOut,
    status_code=201,
    dependencies=[Depends(HotPath(hot.ACTION))],
)
async def hold_slot(slot_id: uuid.UUID, request: Request, hold_for: HoldFor) -> Any:
    """Keep a slot for a few minutes; only the returned token can book it meanwhile."""
    return await hot.hold(request, slot_id, hold_for)


@router.post("/slots/{slot_id}/block", response_model=SlotOut)
def block_slot(
    slot_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
) -> SlotOut:
    """Take a free slot out of booking (the doctor is called away, an emergency)."""
    return SlotOut.of(service.set_blocked(session, ctx, slot_id, blocked=True), ctx.now())


@router.post("/slots/{slot_id}/unblock", response_model=SlotOut)
def unblock_slot(
    slot_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    offers: Offers,
) -> SlotOut:
    """Open a blocked slot again; it goes to the waitlist first."""
    slot = lifecycle.reopen(session, ctx, offers, slot_id)
    return SlotOut.of(slot, ctx.now())


def _booking_request(body: BookingIn) -> booking.BookingRequest:
    return booking.BookingRequest(
        slot_id=body.slot_id,
        patient_id=body.patient_id,
        visit_type=body.visit_type,
        channel=body.channel,
        reason=body.reason,
        notes=body.notes,
        origin=booking.Origin(hold_token=body.hold_token, follow_up_for=body.follow_up_for),
        check_near=not body.allow_near_duplicate,
    )


@hot_router.post(
    "/appointments",
    response_model=AppointmentOut,
    status_code=201,
    dependencies=[Depends(HotPath(hot.ACTION))],
)
async def book_appointment(body: BookingIn, request: Request, key: IdempotencyKey = None) -> Any:
    """Book a slot, from a hold (``holdToken``) or directly. Concurrent attempts on one
    slot make one appointment; the others get 409. With an ``Idempotency-Key`` a retry
    returns the first answer; the same key with another body is 409. When the patient
    already has an appointment with the doctor within 30 minutes on the same day, the
    answer is 409 naming it (``nearby``) unless ``allowNearDuplicate`` is true.
    """
    return await hot.book(request, body, key)


@router.get("/appointments", response_model=list[AppointmentOut])
def list_appointments(
    session: DbSession,
    ctx: Ctx,
    _: Reader,
    day: Annotated[date | None, Query(alias="date")] = None,
    doctor_id: Annotated[uuid.UUID | None, Query(alias="doctorId")] = None,
    patient_id: Annotated[uuid.UUID | None, Query(alias="patientId")] = None,
) -> list[AppointmentOut]:
    """A day's appointments (default today), or a patient's, newest first."""
    found = queries.appointments(
        session,
        day=None if patient_id else (day or tenants.today_at_clinic(session, ctx)),
        doctor_id=doctor_id,
        patient_id=patient_id,
    )
    return [AppointmentOut.of(a) for a, _slot in found]


@router.get("/appointments/{appointment_id}", response_model=AppointmentOut)
def get_appointment(
    _: Reader,
    appointment: InPath,
) -> AppointmentOut:
    return AppointmentOut.of(appointment)


@hot_router.post(
    "/appointments/{appointment_id}/status",
    response_model=AppointmentOut,
    dependencies=[Depends(HotPath(hot.ACTION, subject=("appointment_id", Appointment)))],
)
async def change_status(
    appointment_id: uuid.UUID, body: TransitionIn, request: Request, offers: Offers
) -> Any:
    """Move along the lifecycle; a move the table forbids is 409 naming both states.
    Check-in hands out the day's next token for the doctor.
    """
    if body.status in hot.DESK_MOVES:
        return await hot.move(request, appointment_id, body.status)
    refusal = await caller_refusal(request, hot.ACTION)
    if refusal is not None:
        raise refusal
    ctx = act_as(await request_context(request), signed_in(request.state.principal))
    return await run_in_threadpool(_move_by_service, request, ctx, offers, appointment_id, body)


def _move_by_service(
    request: Request,
    ctx: RequestContext,
    offers: Offers,
    appointment_id: uuid.UUID,
    body: TransitionIn,
) -> AppointmentOut:
    """Confirming and cancelling: the move and all that follows it, in one transaction."""
    with transaction(request.app.state.db, ctx) as session:
        moved = lifecycle.transition(
            session, ctx, offers, appointment_id=appointment_id, to=body.status
        )
        return AppointmentOut.of(moved)


@router.post(
    "/appointments/{appointment_id}/reschedule", response_model=AppointmentOut, status_code=201
)
def reschedule(
    body: RescheduleIn,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    appointment: InPath,
    offers: Offers,
) -> AppointmentOut:
    """A new appointment (``rescheduleOf``) on another slot; the old one is cancelled
    and its slot freed in the same transaction.
    """
    moved = lifecycle.reschedule(
        session,
        ctx,
        offers,
        appointment_id=appointment.id,
        slot_id=body.slot_id,
        origin=booking.Origin(hold_token=body.hold_token),
        visit_type=body.visit_type,
    )
    return AppointmentOut.of(moved)


@router.post("/walk-ins", response_model=AppointmentOut, status_code=201)
def walk_in(
    body: WalkInIn,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
) -> AppointmentOut:
    """A patient without a slot joins today's queue with the doctor's next token."""
    appointment = lifecycle.walk_in(
        session,
        ctx,
        patient_id=body.patient_id,
        doctor_id=body.doctor_id,
        visit_type=body.visit_type,
        reason=body.reason,
    )
    return AppointmentOut.of(appointment)


@router.get("/queue", response_model=list[AppointmentOut])
def day_queue(
    session: DbSession,
    ctx: Ctx,
    _: Reader,
    doctor_id: Annotated[uuid.UUID | None, Query(alias="doctorId")] = None,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> list[AppointmentOut]:
    """Today's tokens in order (checked in, with the doctor, done, or gone)."""
    today = day or tenants.today_at_clinic(session, ctx)
    return [
        AppointmentOut.of(a) for a in lifecycle.queue(session, ctx, doctor_id=doctor_id, day=today)
    ]


@router.post("/waitlist", response_model=WaitlistOut, status_code=201)
def join_waitlist(
    body: WaitlistIn,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
) -> WaitlistOut:
    entry = waitlist.join(
        session,
        ctx,
        patient_id=body.patient_id,
        doctor_id=body.doctor_id,
        from_date=body.from_date,
        until_date=body.until_date,
        visit_type=body.visit_type,
    )
    return WaitlistOut.model_validate(entry)


@router.get("/waitlist", response_model=list[WaitlistOut])
def list_waitlist(
    session: DbSession,
    _: Reader,
    doctor_id: Annotated[uuid.UUID | None, Query(alias="doctorId")] = None,
) -> list[WaitlistOut]:
    return [WaitlistOut.model_validate(e) for e in waitlist.entries(session, doctor_id=doctor_id)]


@router.delete("/waitlist/{entry_id}", response_model=WaitlistOut)
def withdraw_from_waitlist(
    entry_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
) -> WaitlistOut:
    return WaitlistOut.model_validate(waitlist.withdraw(session, ctx, entry_id=entry_id))


@router.post("/waitlist-offers/{offer_id}/accept", response_model=AppointmentOut, status_code=201)
def accept_offer(
    offer_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
) -> AppointmentOut:
    """The patient said yes (on the phone, at the desk): book it for them."""
    appointment = waitlist.accept(session, ctx, lock_id=offer_id, channel="phone", online=False)
    return AppointmentOut.of(appointment)


@router.post("/waitlist-offers/{offer_id}/decline", response_model=OfferOut)
def decline_offer(
    offer_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    offers: Offers,
) -> OfferOut:
    """The patient said no: the slot goes to the next in line."""
    lock = waitlist.decline(session, ctx, offers, lock_id=offer_id)
    return OfferOut.model_validate(lock)
