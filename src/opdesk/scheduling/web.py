"""Desk pages: the doctors' calendars (day and week), booking, check-in, the queue board,
walk-ins, and the doctor's own queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.context import RequestContext
from opdesk.errors import NotFound
from opdesk.identity.sessions import Principal
from opdesk.patients import queries as patient_queries
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.deps import STATUS_LABELS, AppointmentInPath, Offers, page
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.security.permissions import allowed
from opdesk.tenancy import service as tenants
from opdesk.web.deps import Cipher, Ctx, DbSession, acting
from opdesk.web.pages import attempt, flash
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (
    NavEntry("Calendar", "/calendar", "appointments:read", "desk"),
    NavEntry("Queue", "/queue", "appointments:read", "desk"),
    NavEntry("Waitlist", "/waitlist", "appointments:read", "desk"),
    NavEntry("My queue", "/my-queue", "visits:read", "clinical"),
)
Reader = Annotated[Principal, acting("appointments:read")]
Writer = Annotated[Principal, acting("appointments:write")]
Doctor = Annotated[Principal, acting("visits:read")]

CHANNEL_LABELS = {"phone": "Phone", "walk-in": "At the desk", "whatsapp": "WhatsApp", "web": "Web"}
# What the desk can do next with an appointment, as buttons.
DESK_ACTIONS = {
    AppointmentStatus.CONFIRMED: (
        (AppointmentStatus.CHECKED_IN, "Check in"),
        (AppointmentStatus.NO_SHOW, "No-show"),
        (AppointmentStatus.CANCELLED, "Cancel"),
    ),
    AppointmentStatus.NO_SHOW: ((AppointmentStatus.CHECKED_IN, "Check in"),),
    AppointmentStatus.CHECKED_IN: (
        (AppointmentStatus.IN_CONSULT, "Send in"),
        (AppointmentStatus.CANCELLED, "Cancel"),
    ),
    AppointmentStatus.IN_CONSULT: ((AppointmentStatus.COMPLETED, "Done"),),
}


def calendar_url(doctor_id: uuid.UUID, day: date, view: str = "day") -> str:
    return f"/calendar?doctor={doctor_id}&date={day.isoformat()}&view={view}"


# ------------------------------------------------------------------ calendar


@dataclass(frozen=True)
class CalendarDay:
    day: date
    rows: list[queries.SheetRow]


def _pick_doctor(session: Session, wanted: str) -> tuple[list[DoctorProfile], DoctorProfile | None]:
    doctors = service.doctors(session)
    chosen = next((d for d in doctors if str(d.id) == wanted), None)
    return doctors, chosen or (doctors[0] if doctors else None)


def _parse_day(text: str, fallback: date) -> date:
    try:
        return date.fromisoformat(text) if text else fallback
    except ValueError:
        return fallback


@router.get("/calendar")
def calendar(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Reader,
    doctor: str = "",
    date: str = "",
    view: str = "day",
) -> Response:
    """One doctor's day or week; each slot coloured by its state, with the patient on it."""
    today = tenants.today_at_clinic(session, ctx)
    day = _parse_day(date, today)
    view = "week" if view == "week" else "day"
    doctors, chosen = _pick_doctor(session, doctor)
    first = day - timedelta(days=day.weekday()) if view == "week" else day
    last = first + timedelta(days=6 if view == "week" else 0)
    days: list[CalendarDay] = []
    if chosen is not None:
        sheet = queries.day_sheet(session, chosen.id, first, last)
        for offset in range((last - first).days + 1):
            current = first + timedelta(days=offset)
            days.append(CalendarDay(current, [r for r in sheet if r.slot.date == current]))
    step = timedelta(days=7 if view == "week" else 1)
    return page(
        request,
        "scheduling/calendar.html",
        doctors=doctors,
        doctor=chosen,
        day=day,
        today=today,
        view=view,
        days=days,
        previous=day - step,
        following=day + step,
        now=ctx.now(),
        zone=tenants.zone_of(session, ctx.tenant_id) if ctx.tenant_id else None,
        may_write=allowed(who.role, "appointments:write"),
        actions=DESK_ACTIONS,
        calendar_url=calendar_url,
    )


@router.get("/calendar/book")
def booking_dialog(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, slot: str = ""
) -> Response:
    """The booking form for one free slot (a dialog with htmx, a page without)."""
    try:
        found = records.by_id(session, Slot, uuid.UUID(slot))
    except ValueError:
        raise NotFound("no slot with that id") from None
    doctor = records.by_id(session, DoctorProfile, found.doctor_id)
    template = (
        "scheduling/_book_dialog.html"
        if request.headers.get("HX-Request")
        else ("scheduling/book.html")
    )
    return page(
        request,
        template,
        slot=found,
        doctor=doctor,
        zone=tenants.zone_of(session, found.tenant_id),
        channels=list(CHANNEL_LABELS.items()),
        visit_types=[v for v in doctor.visit_types if v["code"] in found.meta.get("visitType", [])],
    )


@router.get("/calendar/patients")
def patient_options(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, cipher: Cipher, q: str = ""
) -> Response:
    """Patients matching the dialog's search box, as choices (htmx swaps them in)."""
    today = tenants.today_at_clinic(session, ctx)
    found = patient_queries.search(session, cipher, q[:80]) if q.strip() else []
    return page(
        request,
        "scheduling/_patient_options.html",
        q=q,
        patients=[patient_queries.summary(p, today) for p in found],
    )


@router.post("/calendar/book")
def book_from_calendar(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    slot_id: Annotated[uuid.UUID, Form()],
    patient_id: Annotated[uuid.UUID | None, Form()] = None,
    visit_type: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "phone",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    slot = records.by_id(session, Slot, slot_id)
    url = calendar_url(slot.doctor_id, slot.date)
    if patient_id is None:
        return flash(request, url, "Choose a patient for the booking.", "error")
    if channel not in CHANNEL_LABELS:
        channel = "phone"
    wanted = booking.BookingRequest(
        slot_id=slot.id,
        patient_id=patient_id,
        visit_type=visit_type,
        channel=channel,
        reason=reason.strip() or None,
    )
    return attempt(
        request, session, lambda: booking.book(session, ctx, wanted), done=url, message="Booked."
    )


def _change_slot(
    request: Request,
    session: Session,
    slot_id: uuid.UUID,
    change: Callable[[Slot], object],
    done: str,
) -> Response:
    slot = records.by_id(session, Slot, slot_id)
    url = calendar_url(slot.doctor_id, slot.date)
    return attempt(request, session, lambda: change(slot), done=url, message=done)


@router.post("/calendar/slots/{slot_id}/block")
def block_slot(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, slot_id: uuid.UUID
) -> Response:
    """Keep a free slot out of booking (the doctor is called away, an emergency)."""
    return _change_slot(
        request,
        session,
        slot_id,
        lambda slot: service.set_blocked(session, ctx, slot.id, blocked=True),
        "Slot blocked.",
    )


@router.post("/calendar/slots/{slot_id}/unblock")
def unblock_slot(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, slot_id: uuid.UUID, offers: Offers
) -> Response:
    return _change_slot(
        request,
        session,
        slot_id,
        lambda slot: lifecycle.reopen(session, ctx, offers, slot.id),
        "Slot open for booking again.",
    )


# ------------------------------------------------------------------ status changes


@router.post("/appointments/{appointment_id}/move")
def move_appointment(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    appointment: AppointmentInPath,
    to: Annotated[str, Form()],
    offers: Offers,
    back: Annotated[str, Form()] = "calendar",
) -> Response:
    """Check in, send in, mark done, no-show or cancel from the calendar or queue."""
    url = _back_url(session, appointment, back)
    return attempt(
        request,
        session,
        lambda: lifecycle.transition(session, ctx, offers, appointment_id=appointment.id, to=to),
        done=lambda moved: flash(request, url, _moved(moved)),
        failed=url,
    )


def _moved(appointment: Appointment) -> str:
    if appointment.status == AppointmentStatus.CHECKED_IN and appointment.token_number:
        return f"Checked in: token {appointment.token_number}."
    return f"{STATUS_LABELS.get(appointment.status, appointment.status)}."


def _back_url(session: Session, appointment: Appointment, back: str) -> str:
    if back in ("queue", "my-queue"):
        return f"/{back}"
    slot = queries.slot_of(session, appointment)
    day = slot.date if slot is not None else appointment.queue_date
    return calendar_url(appointment.doctor_id, day) if day else "/calendar"


# ------------------------------------------------------------------ queue


def _board(
    request: Request, session: Session, ctx: RequestContext, template: str, **extra: Any
) -> Response:
    today = tenants.today_at_clinic(session, ctx)
    doctor_id = extra.pop("doctor_id", None)
    rows = queries.queue_board(session, today, doctor_id)
    by_doctor: dict[str, list[queries.QueueRow]] = {}
    for row in rows:
        by_doctor.setdefault(row.doctor.display_name, []).append(row)
    return page(
        request,
        template,
        today=today,
        by_doctor=by_doctor,
        actions=DESK_ACTIONS,
        updated=ctx.now(),
        zone=tenants.zone_of(session, rows[0].doctor.tenant_id) if rows else None,
        **extra,
    )


@router.get("/queue")
def queue_page(request: Request, session: DbSession, ctx: Ctx, who: Reader) -> Response:
    """Today's tokens for every doctor; the board refreshes itself every few seconds."""
    return _board(
        request,
        session,
        ctx,
        "scheduling/queue.html",
        board_url="/queue/board",
        doctors=service.doctors(session),
        may_write=allowed(who.role, "appointments:write"),
        back="queue",
    )


@router.get("/queue/board")
def queue_board(request: Request, session: DbSession, ctx: Ctx, who: Reader) -> Response:
    return _board(
        request,
        session,
        ctx,
        "scheduling/_queue_board.html",
        board_url="/queue/board",
        may_write=allowed(who.role, "appointments:write"),
        back="queue",
    )


@router.post("/queue/walk-in")
def walk_in(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    doctor_id: Annotated[uuid.UUID, Form()],
    patient_id: Annotated[uuid.UUID | None, Form()] = None,
    visit_type: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """A patient without an appointment gets the doctor's next token."""
    if patient_id is None:
        return flash(request, "/queue", "Choose the patient who walked in.", "error")
    doctor = records.by_id(session, DoctorProfile, doctor_id)
    appointment = lifecycle.walk_in(
        session,
        ctx,
        patient_id=patient_id,
        doctor_id=doctor.id,
        visit_type=visit_type or doctor.visit_types[0]["code"],
        reason=reason.strip() or None,
    )
    return flash(request, "/queue", f"Walk-in added: token {appointment.token_number}.")


def _my_doctor(session: Session, who: Principal) -> DoctorProfile:
    doctor = service.doctor_of_user(session, who.user_id)
    if doctor is None:
        raise NotFound("you have no doctor profile yet; ask the clinic admin")
    return doctor


@router.get("/my-queue")
def my_queue(request: Request, session: DbSession, ctx: Ctx, who: Doctor) -> Response:
    """The doctor's own patients today, in token order."""
    doctor = _my_doctor(session, who)
    return _board(
        request,
        session,
        ctx,
        "scheduling/my_queue.html",
        board_url="/my-queue/board",
        doctor_id=doctor.id,
        doctor=doctor,
        may_write=True,
        back="my-queue",
    )


@router.get("/my-queue/board")
def my_queue_board(request: Request, session: DbSession, ctx: Ctx, who: Doctor) -> Response:
    doctor = _my_doctor(session, who)
    return _board(
        request,
        session,
        ctx,
        "scheduling/_queue_board.html",
        board_url="/my-queue/board",
        doctor_id=doctor.id,
        may_write=True,
        back="my-queue",
    )


# ------------------------------------------------------------------ waitlist


@router.get("/waitlist")
def waitlist_page(request: Request, session: DbSession, ctx: Ctx, who: Reader) -> Response:
    """Patients waiting for a doctor's free slot, and the offers out to them right now."""
    today = tenants.today_at_clinic(session, ctx)
    return page(
        request,
        "scheduling/waitlist.html",
        rows=queries.waiting_list(session, ctx.now()),
        doctors=service.doctors(session),
        today=today,
        may_write=allowed(who.role, "appointments:write"),
    )


@router.post("/waitlist")
def join_waitlist(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    doctor_id: Annotated[uuid.UUID, Form()],
    from_date: Annotated[date, Form()],
    until_date: Annotated[date, Form()],
    patient_id: Annotated[uuid.UUID | None, Form()] = None,
) -> Response:
    if patient_id is None:
        return flash(request, "/waitlist", "Choose the patient who wants to wait.", "error")
    doctor = records.by_id(session, DoctorProfile, doctor_id)
    return attempt(
        request,
        session,
        lambda: waitlist.join(
            session,
            ctx,
            patient_id=patient_id,
            doctor_id=doctor.id,
            from_date=from_date,
            until_date=until_date,
            visit_type=doctor.visit_types[0]["code"],
        ),
        done="/waitlist",
        message="Added to the waitlist; we will offer the first free slot.",
    )


@router.post("/waitlist/{entry_id}/withdraw")
def withdraw(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, entry_id: uuid.UUID
) -> Response:
    waitlist.withdraw(session, ctx, entry_id=entry_id)
    return flash(request, "/waitlist", "Taken off the waitlist.")


@router.post("/waitlist/offers/{offer_id}/accept")
def accept_offer(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, offer_id: uuid.UUID
) -> Response:
    """The patient said yes on the phone."""
    waitlist.offer(session, offer_id)  # 404 for an unknown or foreign offer, not a flash
    return attempt(
        request,
        session,
        lambda: waitlist.accept(session, ctx, lock_id=offer_id, channel="phone", online=False),
        done="/waitlist",
        message="Booked from the waitlist.",
    )


@router.post("/waitlist/offers/{offer_id}/decline")
def decline_offer(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, offer_id: uuid.UUID, offers: Offers
) -> Response:
    waitlist.offer(session, offer_id)
    return attempt(
        request,
        session,
        lambda: waitlist.decline(session, ctx, offers, lock_id=offer_id),
        done="/waitlist",
        message="Declined; the slot goes to the next patient in line.",
    )
