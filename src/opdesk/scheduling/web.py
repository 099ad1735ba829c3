"""Desk pages: the doctors' calendars (day and week), booking, check-in, the queue board,
walk-ins, and the doctor's own queue.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.abdm import share
from opdesk.context import RequestContext
from opdesk.errors import DomainError, InvalidInput, NotFound
from opdesk.formatting import clock_time, day_name
from opdesk.identity.sessions import Principal
from opdesk.notifications import messages
from opdesk.patients import queries as patient_queries
from opdesk.patients.models import Patient
from opdesk.scheduling import away as doctor_away
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.deps import (
    STATUS_LABELS,
    AppointmentInPath,
    DoctorInPath,
    Offers,
    page,
)
from opdesk.scheduling.models import (
    Appointment,
    AppointmentStatus,
    DoctorProfile,
    Slot,
    WaitlistEntry,
)
from opdesk.security.permissions import allowed
from opdesk.tenancy import service as tenants
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting
from opdesk.web.pages import attempt, flash, redirect
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (
    NavEntry("Calendar", "/calendar", "appointments:read", "desk"),
    NavEntry("Queue", "/queue", "appointments:read", "desk"),
    NavEntry("Waitlist", "/waitlist", "appointments:read", "desk"),
    NavEntry("My queue", "/my-queue", "visits:read", "desk"),
)
Reader = Annotated[Principal, acting("appointments:read")]
Writer = Annotated[Principal, acting("appointments:write")]
Doctor = Annotated[Principal, acting("visits:read")]
AwayReader = Annotated[Principal, acting("doctor-away:read")]
AwayMessenger = Annotated[Principal, acting("doctor-away:message")]

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


VIEWS = ("day", "week", "all")


def calendar_url(doctor_id: uuid.UUID, day: date, view: str = "day") -> str:
    return f"/calendar?doctor={doctor_id}&date={day.isoformat()}&view={view}"


def day_list_url(doctor_id: uuid.UUID, day: date) -> str:
    return f"/calendar/doctors/{doctor_id}/day-list?date={day.isoformat()}"


# Where a change made on the calendar returns to: the view it was made from.
ALL_DOCTORS = "all-doctors"


def calendar_back(doctor_id: uuid.UUID, day: date, back: str = "") -> str:
    return calendar_url(doctor_id, day, "all" if back == ALL_DOCTORS else "day")


# ------------------------------------------------------------------ calendar


@dataclass(frozen=True)
class CalendarDay:
    day: date
    rows: list[queries.SheetRow]
    booked: int = 0
    free: int = 0
    # The doctor's time away on this day, each shown as a band where it begins among
    # the rows: before the slot of ``before`` (a slot id), or after the last row.
    away: tuple[doctor_away.AwayBand, ...] = ()
    before: dict[uuid.UUID, list[doctor_away.AwayBand]] = dataclasses.field(default_factory=dict)
    after: tuple[doctor_away.AwayBand, ...] = ()

    def away_over(self, row: queries.SheetRow) -> doctor_away.AwayBand | None:
        """The time away a booked slot lies in (its patient has to be told)."""
        return _band_over(self.away, row)


def _band_over(
    bands: tuple[doctor_away.AwayBand, ...] | list[doctor_away.AwayBand], row: queries.SheetRow
) -> doctor_away.AwayBand | None:
    slot = row.slot
    return next((b for b in bands if b.covers(slot.occupied_from, slot.occupied_until)), None)


def _placed(
    rows: list[queries.SheetRow], bands: list[doctor_away.AwayBand]
) -> tuple[dict[uuid.UUID, list[doctor_away.AwayBand]], tuple[doctor_away.AwayBand, ...]]:
    """Where each band goes among the day's rows: before the first slot that does not end
    before the time away begins; after every row when there is none.
    """
    before: dict[uuid.UUID, list[doctor_away.AwayBand]] = {}
    after = []
    for band in bands:
        first = next((r for r in rows if r.slot.occupied_until > band.away.starts_at), None)
        if first is None:
            after.append(band)
        else:
            before.setdefault(first.slot.id, []).append(band)
    return before, tuple(after)


@dataclass(frozen=True)
class GridRow:
    """One time of the clinic's day: each doctor's slot starting then, or None."""

    starts_at: datetime
    cells: list[queries.SheetRow | None]
    chosen_empty: bool


@dataclass(frozen=True)
class ClinicGrid:
    doctors: list[DoctorProfile]
    rows: list[GridRow]
    chosen: DoctorProfile | None


def _is_free(row: queries.SheetRow, now: datetime) -> bool:
    slot = row.slot
    lapsed = (
        slot.status == "held" and slot.hold_expires_at is not None and slot.hold_expires_at <= now
    )
    return row.appointment is None and (slot.status == "free" or lapsed) and slot.ends_at > now


def _calendar_day(
    day: date,
    rows: list[queries.SheetRow],
    now: datetime,
    away: list[doctor_away.AwayBand] | None = None,
) -> CalendarDay:
    booked = sum(1 for r in rows if r.appointment is not None)
    before, after = _placed(rows, away or [])
    return CalendarDay(
        day,
        rows,
        booked,
        sum(1 for r in rows if _is_free(r, now)),
        tuple(away or ()),
        before,
        after,
    )


def clinic_grid(
    sheet: list[tuple[DoctorProfile, list[queries.SheetRow]]], wanted: uuid.UUID | None
) -> ClinicGrid:
    """The doctors side by side, a row for each time any of them has a slot starting."""
    doctors = [d for d, _ in sheet]
    chosen = next((d for d in doctors if d.id == wanted), doctors[0] if doctors else None)
    times = sorted({r.slot.starts_at for _, rows in sheet for r in rows})
    at = {t: i for i, t in enumerate(times)}
    cells: list[list[queries.SheetRow | None]] = [[None] * len(doctors) for _ in times]
    for column, (_, rows) in enumerate(sheet):
        for r in rows:
            cells[at[r.slot.starts_at]][column] = r
    mine = doctors.index(chosen) if chosen is not None else 0
    grid = [GridRow(t, cells[i], cells[i][mine] is None) for i, t in enumerate(times)]
    return ClinicGrid(doctors, grid, chosen)


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
    """One doctor's day or week, or every doctor's day side by side; each slot coloured
    by its state, with the patient on it.
    """
    today = tenants.today_at_clinic(session, ctx)
    day = _parse_day(date, today)
    view = view if view in VIEWS else "day"
    doctors, chosen = _pick_doctor(session, doctor)
    first = day - timedelta(days=day.weekday()) if view == "week" else day
    last = first + timedelta(days=6 if view == "week" else 0)
    now = ctx.now()
    days: list[CalendarDay] = []
    grid = None
    zone = tenants.zone_of(session, ctx.tenant_id) if ctx.tenant_id else None
    only = None if view == "all" or chosen is None else chosen.id
    bands = doctor_away.bands(session, first, last, zone, only) if zone is not None else {}
    if view == "all":
        grid = clinic_grid(queries.clinic_day_sheet(session, day), chosen.id if chosen else None)
    elif chosen is not None:
        sheet = queries.day_sheet(session, chosen.id, first, last)
        for offset in range((last - first).days + 1):
            current = first + timedelta(days=offset)
            today_rows = [r for r in sheet if r.slot.date == current]
            days.append(_calendar_day(current, today_rows, now, bands.get(current)))
    grid_bands = bands.get(day, []) if view == "all" else []
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
        grid=grid,
        previous=day - step,
        following=day + step,
        now=now,
        zone=zone,
        may_write=allowed(who.role, "appointments:write"),
        actions=DESK_ACTIONS,
        calendar_url=calendar_url,
        day_list_url=day_list_url,
        back=ALL_DOCTORS if view == "all" else "calendar",
        grid_bands=grid_bands,
        away_at=lambda doctor_id, moment: next(
            (b for b in grid_bands if b.doctor_id == doctor_id and b.at(moment)), None
        ),
        away_over=lambda doctor_id, row: _band_over(
            [b for b in grid_bands if b.doctor_id == doctor_id], row
        ),
        away_url=away_url,
        may_see_away=lambda doctor_id: _may_see_away(session, who, doctor_id),
    )


def _may_see_away(session: Session, who: Principal, doctor_id: uuid.UUID) -> bool:
    """Whether the calendar links a band to its list of patients to tell."""
    return allowed(who.role, "doctor-away:read")


@dataclass(frozen=True)
class DayListLine:
    time: str
    token: int | None
    name: str
    number: str
    visit_type: str
    status: str
    phone_last4: str | None
    away: bool = False


@router.get("/calendar/doctors/{doctor_id}/day-list")
def day_list(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Reader,
    cipher: Cipher,
    doctor: DoctorInPath,
    date: str = "",
) -> Response:
    """The doctor's patients of the day on one sheet of A4, to print: time, token, name,
    patient number, visit type, status and the phone's last four digits.
    """
    today = tenants.today_at_clinic(session, ctx)
    day = _parse_day(date, today)
    rows = queries.day_list(session, doctor.id, day)
    clinic_zone = tenants.zone_of(session, doctor.tenant_id)
    zone = str(clinic_zone)
    away = doctor_away.bands(session, day, day, clinic_zone, doctor.id).get(day, [])
    kinds = {v["code"]: v["label"] for v in doctor.visit_types}
    found = patient_queries.summaries(session, cipher, [r.patient for r in rows], today)
    lines = [
        DayListLine(
            time=clock_time(r.slot.starts_at, zone) if r.slot else "Walk-in",
            token=r.appointment.token_number,
            name=r.patient.full_name,
            number=r.patient.display_number,
            visit_type=kinds.get(r.appointment.visit_type, r.appointment.visit_type),
            status=STATUS_LABELS.get(r.appointment.status, r.appointment.status),
            phone_last4=summary.phone_last4,
            away=r.slot is not None
            and any(b.covers(r.slot.occupied_from, r.slot.occupied_until) for b in away),
        )
        for r, summary in zip(rows, found, strict=True)
    ]
    return page(
        request,
        "scheduling/day_list.html",
        doctor=doctor,
        day=day,
        lines=lines,
        clinic=tenants.get_tenant(session, doctor.tenant_id),
        printed=ctx.now(),
        back=calendar_url(doctor.id, day),
        away=away,
    )


def _is_htmx(request: Request) -> bool:
    return bool(request.headers.get("HX-Request"))


def _htmx_follows(request: Request, response: Response) -> Response:
    """An htmx request is sent on with ``HX-Redirect`` on a 200: a 303 would be followed
    inside the request and the next page swapped into the dialog.
    """
    if _is_htmx(request) and response.status_code in (302, 303):
        response.status_code = 200
    return response


def _book_form(
    request: Request,
    session: Session,
    ctx: RequestContext,
    slot: Slot,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    near: str | None = None,
) -> Response:
    """The booking form for one slot: a modal dialog for htmx, a page without; drawn
    again after a mistake with what was typed and the chosen patient kept.
    """
    doctor = records.by_id(session, DoctorProfile, slot.doctor_id)
    values = values or {}
    chosen = _chosen_patient(session, ctx, values.get("patient_id", ""))
    in_dialog = _is_htmx(request)
    failed = bool(errors or near)
    return page(
        request,
        "scheduling/_book_dialog.html" if in_dialog else "scheduling/book.html",
        # htmx swaps only 2xx answers: the dialog comes back as 200 with its errors.
        422 if failed and not in_dialog else 200,
        slot=slot,
        doctor=doctor,
        zone=tenants.zone_of(session, slot.tenant_id),
        channels=list(CHANNEL_LABELS.items()),
        visit_types=[v for v in doctor.visit_types if v["code"] in slot.meta.get("visitType", [])],
        values=values,
        errors=errors or {},
        near=near,
        patients=chosen,
        chosen_id=values.get("patient_id", ""),
        in_dialog=in_dialog,
    )


def _chosen_patient(session: Session, ctx: RequestContext, patient_id: str) -> list[Any]:
    """The patient picked before a form came back, as the one choice, already checked."""
    try:
        wanted = uuid.UUID(patient_id)
    except ValueError:
        return []
    patient = session.get(Patient, (ctx.tenant_id, wanted))
    if patient is None:
        return []
    return [patient_queries.summary(patient, tenants.today_at_clinic(session, ctx))]


@router.get("/calendar/book")
def booking_dialog(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, slot: str = ""
) -> Response:
    """The booking form for one free slot (a modal dialog with htmx, a page without)."""
    try:
        found = records.by_id(session, Slot, uuid.UUID(slot))
    except ValueError:
        raise NotFound("no slot with that id") from None
    return _book_form(request, session, ctx, found)


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


PICK_PATIENT = "Choose the patient: type a name, mobile number or patient number, then pick them."


@router.post("/calendar/book")
def book_from_calendar(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    slot_id: Annotated[uuid.UUID, Form()],
    patient_id: Annotated[str, Form()] = "",
    visit_type: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "phone",
    reason: Annotated[str, Form(max_length=500)] = "",
    q: Annotated[str, Form(max_length=80)] = "",
    allow_near: Annotated[str, Form()] = "",
) -> Response:
    """Book the slot; a missing patient or a second visit close to one the patient
    already has brings the form back (the dialog stays open) with everything kept.
    """
    slot = records.by_id(session, Slot, slot_id)
    url = calendar_back(slot.doctor_id, slot.date, _opened_from(request))
    values = {
        "patient_id": patient_id,
        "visit_type": visit_type,
        "channel": channel,
        "reason": reason,
        "q": q,
    }
    try:
        patient = uuid.UUID(patient_id) if patient_id else None
    except ValueError:
        patient = None
    if patient is None:
        return _book_form(
            request, session, ctx, slot, values=values, errors={"patient_id": PICK_PATIENT}
        )
    if channel not in CHANNEL_LABELS:
        channel = "phone"
    wanted = booking.BookingRequest(
        slot_id=slot.id,
        patient_id=patient,
        visit_type=visit_type,
        channel=channel,
        reason=reason.strip() or None,
        check_near=allow_near != "yes",
    )

    def refused(problem: DomainError) -> Response:
        if isinstance(problem, booking.NearDuplicate):
            return _book_form(request, session, ctx, slot, values=values, near=str(problem))
        if isinstance(problem, InvalidInput):
            errors = {BOOK_FIELDS.get(e.field, e.field): e.reason for e in problem.errors}
            return _book_form(request, session, ctx, slot, values=values, errors=errors)
        return flash(request, url, str(problem), "error")

    return _htmx_follows(
        request,
        attempt(
            request,
            session,
            lambda: booking.book(session, ctx, wanted),
            done=lambda _: flash(request, url, "Booked."),
            failed=refused,
        ),
    )


def _opened_from(request: Request) -> str:
    """Which calendar view the booking dialog was opened on (htmx names the page)."""
    page_url = request.headers.get("HX-Current-URL", "")
    return ALL_DOCTORS if "view=all" in page_url else "calendar"


# The service's names for the booking form's fields.
BOOK_FIELDS = {"visitType": "visit_type", "patientId": "patient_id"}


def _change_slot(
    request: Request,
    session: Session,
    slot_id: uuid.UUID,
    change: Callable[[Slot], object],
    done: str,
    back: str = "",
) -> Response:
    slot = records.by_id(session, Slot, slot_id)
    url = calendar_back(slot.doctor_id, slot.date, back)
    return attempt(request, session, lambda: change(slot), done=url, message=done)


@router.post("/calendar/slots/{slot_id}/block")
def block_slot(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    slot_id: uuid.UUID,
    back: Annotated[str, Form()] = "",
) -> Response:
    """Keep a free slot out of booking (the doctor is called away, an emergency)."""
    return _change_slot(
        request,
        session,
        slot_id,
        lambda slot: service.set_blocked(session, ctx, slot.id, blocked=True),
        "Slot blocked.",
        back,
    )


@router.post("/calendar/slots/{slot_id}/unblock")
def unblock_slot(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    slot_id: uuid.UUID,
    offers: Offers,
    back: Annotated[str, Form()] = "",
) -> Response:
    return _change_slot(
        request,
        session,
        slot_id,
        lambda slot: lifecycle.reopen(session, ctx, offers, slot.id),
        "Slot open for booking again.",
        back,
    )


# ------------------------------------------------------------------ status changes


# Moves the desk confirms first, being told what will follow.
DESTRUCTIVE = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW})


@dataclass(frozen=True)
class Confirmation:
    """A question before a change that cannot simply be taken back, and what will follow
    in plain words. ``fields`` are posted to ``action`` with ``confirmed=yes``.
    """

    question: str
    about: str
    facts: list[str]
    action: str
    fields: dict[str, str]
    yes: str
    no: str
    back: str
    danger: bool = True


def confirm_page(request: Request, confirmation: Confirmation) -> Response:
    """The question as a modal dialog (htmx) or a page of its own (without JavaScript)."""
    template = "scheduling/_confirm_dialog.html" if _is_htmx(request) else "scheduling/confirm.html"
    return page(request, template, c=confirmation)


def _when(session: Session, slot: Slot | None) -> str:
    if slot is None:
        return "today (walk-in)"
    zone = str(tenants.zone_of(session, slot.tenant_id))
    return f"{day_name(slot.date)}, {clock_time(slot.starts_at, zone)}"


def freed_slot_fact(
    session: Session,
    ctx: RequestContext,
    offers: waitlist.Offers,
    slot: Slot | None,
    to: str,
    *,
    name_who: bool = True,
) -> str | None:
    """What happens to the slot when its appointment moves to ``to``: offered to the
    first patient waiting (named for the desk, not for patients), or free to book again.
    """
    if slot is None:
        return None
    zone = str(tenants.zone_of(session, slot.tenant_id))
    at = clock_time(slot.starts_at, zone)
    if not lifecycle.frees_slot(session, ctx, slot, to):
        if slot.starts_at <= ctx.now():
            return f"The {at} slot has already begun, so it is not offered to anyone else."
        return None
    waiting = queries.next_in_line(session, slot)
    if waiting is None:
        return f"The {at} slot will be free for anyone to book again."
    if not name_who:
        return f"The {at} slot will be offered to a patient on the waitlist."
    minutes = int(offers.keep_for.total_seconds() // 60)
    return (
        f"The {at} slot will be offered to {waiting[1].full_name} from the waitlist "
        f"(kept for them for {minutes} minutes)."
    )


def _move_confirmation(
    session: Session,
    ctx: RequestContext,
    offers: waitlist.Offers,
    appointment: Appointment,
    to: str,
    back: str,
) -> Confirmation:
    patient = queries.patient_of(session, appointment)
    doctor = queries.doctor_of(session, appointment)
    slot = queries.slot_of(session, appointment)
    name = patient.full_name
    about = f"{name} · {doctor.display_name} · {_when(session, slot)}"
    token = appointment.token_number
    facts: list[str] = []
    fields = {"to": to, "back": back}
    action = f"/appointments/{appointment.id}/move"
    back_url = _back_url(session, appointment, back)
    freed = freed_slot_fact(session, ctx, offers, slot, to)
    if to == AppointmentStatus.CANCELLED:
        if token and appointment.status == AppointmentStatus.CHECKED_IN:
            facts.append(f"Token {token} comes off today's queue.")
        facts += [freed] if freed else []
        facts.append("A cancelled appointment cannot be brought back; book again if needed.")
        return Confirmation(
            f"Cancel {name}'s appointment?", about, facts, action, fields,
            "Yes, cancel it", "Keep the appointment", back_url,
        )  # fmt: skip
    if to == AppointmentStatus.NO_SHOW:
        facts += [freed] if freed else []
        facts.append(f"If {patient.name_first} arrives after all, Check in still works.")
        return Confirmation(
            f"Mark {name} as not come (no-show)?", about, facts, action, fields,
            "Yes, mark no-show", "Not yet", back_url,
        )  # fmt: skip
    if to == AppointmentStatus.IN_CONSULT:
        busy = queries.with_the_doctor(
            session, appointment.doctor_id, ctx_today(session, ctx), besides=appointment.id
        )
        for other, who in busy:
            facts.append(
                f"{who.full_name} (token {other.token_number}) is still with "
                f"{doctor.display_name}. If they have left, mark them Done first."
            )
        label = f"token {token}" if token else name
        return Confirmation(
            f"Send {label} in while another patient is with the doctor?", about, facts,
            action, fields, "Send in anyway", "Not yet", back_url, danger=False,
        )  # fmt: skip
    label = STATUS_LABELS.get(to, to)
    return Confirmation(
        f"Mark {name} as {label.lower()}?", about, facts, action, fields, "Yes", "No", back_url,
        danger=False,
    )  # fmt: skip


def ctx_today(session: Session, ctx: RequestContext) -> date:
    return tenants.today_at_clinic(session, ctx)


def _needs_confirming(
    session: Session, ctx: RequestContext, appointment: Appointment, to: str
) -> bool:
    """Cancel and no-show always; sending in while someone else is with the doctor."""
    if to in DESTRUCTIVE:
        return True
    if to == AppointmentStatus.IN_CONSULT:
        day = ctx_today(session, ctx)
        return bool(
            queries.with_the_doctor(session, appointment.doctor_id, day, besides=appointment.id)
        )
    return False


@router.get("/appointments/{appointment_id}/move")
def confirm_move(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    appointment: AppointmentInPath,
    offers: Offers,
    to: str = "",
    back: str = "calendar",
) -> Response:
    """Before cancel, no-show or a second patient sent in: what will happen, and a choice."""
    if to not in set(AppointmentStatus):
        raise NotFound("no such status for an appointment")
    return confirm_page(request, _move_confirmation(session, ctx, offers, appointment, to, back))


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
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    """Check in, send in, mark done, no-show or cancel from the calendar or queue. A move
    that needs confirming and is not confirmed changes nothing and asks first.
    """
    if confirmed != "yes" and _needs_confirming(session, ctx, appointment, to):
        return redirect(
            request, f"/appointments/{appointment.id}/move?to={quote(to)}&back={quote(back)}"
        )
    url = _back_url(session, appointment, back)
    return attempt(
        request,
        session,
        lambda: lifecycle.transition(session, ctx, offers, appointment_id=appointment.id, to=to),
        done=lambda moved: flash(request, url, _moved(moved)),
        failed=url,
    )


# ------------------------------------------------------------------ reschedule


@router.get("/appointments/{appointment_id}/reschedule")
def reschedule_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    appointment: AppointmentInPath,
    offers: Offers,
    doctor: str = "",
    date: str = "",
    visit_type: str = "",
    slot_id: str = "",
) -> Response:
    """Move an appointment to another free slot, of the same doctor or another: pick the
    doctor and day, then a time, then confirm what will happen.
    """
    today = ctx_today(session, ctx)
    current = queries.slot_of(session, appointment)
    doctors = service.doctors(session)
    chosen = next((d for d in doctors if str(d.id) == doctor), None) or queries.doctor_of(
        session, appointment
    )
    day = max(_parse_day(date, current.date if current else today), today)
    codes = [v["code"] for v in chosen.visit_types]
    kind = visit_type if visit_type in codes else (
        appointment.visit_type if appointment.visit_type in codes else codes[0]
    )  # fmt: skip
    window = queries.SlotWindow.checked(today, day, day)
    free = queries.slots(session, ctx, chosen.id, window, kind)
    picked = next((s for s in free if str(s.id) == slot_id), None)
    confirmation = None
    if picked is not None:
        confirmation = _reschedule_confirmation(
            session, ctx, offers, appointment, current, chosen, picked, kind
        )
    base = f"/appointments/{appointment.id}/reschedule?doctor={chosen.id}&visit_type={kind}"
    return page(
        request,
        "scheduling/reschedule.html",
        appointment=appointment,
        patient=queries.patient_of(session, appointment),
        current=current,
        current_doctor=queries.doctor_of(session, appointment),
        doctors=doctors,
        doctor=chosen,
        day=day,
        today=today,
        visit_type=kind,
        slots=free,
        picked=picked,
        confirmation=confirmation,
        day_url=lambda d: f"{base}&date={d.isoformat()}",
        previous=day - timedelta(days=1),
        following=day + timedelta(days=1),
        rescheduable=appointment.status in lifecycle.RESCHEDULABLE,
    )


def _reschedule_confirmation(
    session: Session,
    ctx: RequestContext,
    offers: waitlist.Offers,
    appointment: Appointment,
    current: Slot | None,
    doctor: DoctorProfile,
    picked: Slot,
    visit_type: str,
) -> Confirmation:
    patient = queries.patient_of(session, appointment)
    new_time = _when(session, picked)
    facts = [f"{patient.full_name} will be seen by {doctor.display_name} on {new_time}."]
    freed = freed_slot_fact(session, ctx, offers, current, AppointmentStatus.CANCELLED)
    facts += [freed] if freed else []
    facts.append("The appointment keeps its history: it shows as moved, not cancelled.")
    return Confirmation(
        f"Move {patient.full_name} to {new_time}?",
        f"Now: {queries.doctor_of(session, appointment).display_name} · {_when(session, current)}",
        facts,
        f"/appointments/{appointment.id}/reschedule",
        {"slot_id": str(picked.id), "visit_type": visit_type},
        "Yes, move it",
        "Choose another time",
        f"/appointments/{appointment.id}/reschedule?doctor={doctor.id}&date={picked.date}",
        danger=False,
    )


@router.post("/appointments/{appointment_id}/reschedule")
def reschedule_appointment(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    appointment: AppointmentInPath,
    offers: Offers,
    slot_id: Annotated[uuid.UUID, Form()],
    visit_type: Annotated[str, Form()] = "",
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    """Move the appointment: a new one on the chosen slot continues it (``rescheduleOf``),
    the old slot is freed and offered on as for any cancellation. Unconfirmed, it asks.
    """
    slot = records.by_id(session, Slot, slot_id)
    again = f"/appointments/{appointment.id}/reschedule?doctor={slot.doctor_id}&date={slot.date}"
    if confirmed != "yes":
        return redirect(request, f"{again}&visit_type={quote(visit_type)}&slot_id={slot.id}")

    def moved(new: Appointment) -> Response:
        doctor = records.by_id(session, DoctorProfile, new.doctor_id)
        return flash(
            request,
            calendar_url(slot.doctor_id, slot.date),
            f"Moved to {_when(session, slot)} with {doctor.display_name}.",
        )

    return attempt(
        request,
        session,
        lambda: lifecycle.reschedule(
            session,
            ctx,
            offers,
            appointment_id=appointment.id,
            slot_id=slot.id,
            origin=booking.Origin(),
            visit_type=visit_type or None,
        ),
        done=moved,
        failed=again,
    )


def _moved(appointment: Appointment) -> str:
    if appointment.status == AppointmentStatus.CHECKED_IN and appointment.token_number:
        return f"Checked in: token {appointment.token_number}."
    if appointment.status == AppointmentStatus.NO_SHOW:
        return "Marked no-show. If they arrive after all, Check in still works."
    return f"{STATUS_LABELS.get(appointment.status, appointment.status)}."


def _back_url(session: Session, appointment: Appointment, back: str) -> str:
    if back in ("queue", "my-queue"):
        return f"/{back}"
    slot = queries.slot_of(session, appointment)
    day = slot.date if slot is not None else appointment.queue_date
    return calendar_back(appointment.doctor_id, day, back) if day else "/calendar"


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
    # Doctors with a patient in with them now: Send in asks first.
    busy = {r.appointment.doctor_id for r in rows if r.appointment.status == "in-consult"}
    return page(
        request,
        template,
        today=today,
        by_doctor=by_doctor,
        busy=busy,
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
        scanned=share.waiting_at_counters(session, ctx),
        may_write=allowed(who.role, "appointments:write"),
        may_bill=allowed(who.role, "invoices:write"),
        back="queue",
    )


@router.get("/queue/board")
def queue_board(request: Request, session: DbSession, ctx: Ctx, who: Reader) -> Response:
    """The board's rows for the queue page to swap in; opened on its own, the page."""
    if not _is_htmx(request):
        return redirect(request, "/queue")
    return _board(
        request,
        session,
        ctx,
        "scheduling/_queue_board.html",
        board_url="/queue/board",
        may_write=allowed(who.role, "appointments:write"),
        may_bill=allowed(who.role, "invoices:write"),
        back="queue",
    )


# ------------------------------------------------------------------ waiting-room display


# Tokens shown as "next" for each doctor; the rest are counted.
NEXT_SHOWN = 3
# Virama and other joining signs (canonical combining class 9): not left dangling after
# an Indic initial ("क्" + "षत्रिय" shows as "क.").
VIRAMA_CLASS = 9


def initial(word: str) -> str:
    """The first letter of ``word`` as a reader sees it: with its vowel signs and marks
    (a Devanagari or Tamil letter is often more than one code point).
    """
    word = word.strip()
    if not word:
        return ""
    letter = word[0]
    for mark in word[1:]:
        if not unicodedata.category(mark).startswith("M"):
            break
        if unicodedata.combining(mark) == VIRAMA_CLASS:
            break
        letter += mark
    return letter


def public_name(first: str, last: str) -> str:
    """A name fit for a screen in the waiting room: the first name and the surname's
    initial ("Suresh J."), never the whole name.
    """
    letter = initial(last)
    first = first.strip()
    return f"{first} {letter}.".strip() if letter else first


@dataclass(frozen=True)
class Called:
    token: int
    name: str


@dataclass(frozen=True)
class DoctorDisplay:
    doctor: str
    now: list[Called]
    next: list[Called]
    waiting: int


def serving(rows: list[queries.QueueRow]) -> list[DoctorDisplay]:
    """For each doctor with tokens today: who is with them now, and who goes in next."""
    by_doctor: dict[uuid.UUID, list[queries.QueueRow]] = {}
    for row in rows:
        by_doctor.setdefault(row.doctor.id, []).append(row)
    shown = []
    for doctor_rows in by_doctor.values():

        def called(status: str, rows: list[queries.QueueRow] = doctor_rows) -> list[Called]:
            return [
                Called(
                    r.appointment.token_number or 0,
                    public_name(r.patient.name_first, r.patient.name_last),
                )
                for r in rows
                if r.appointment.status == status
            ]

        waiting = called(AppointmentStatus.CHECKED_IN)
        shown.append(
            DoctorDisplay(
                doctor_rows[0].doctor.display_name,
                called(AppointmentStatus.IN_CONSULT),
                waiting[:NEXT_SHOWN],
                len(waiting),
            )
        )
    return shown


@router.get("/queue/display")
def waiting_room_display(request: Request, session: DbSession, ctx: Ctx, _: Reader) -> Response:
    """ "Now serving" for a television in the waiting room: each doctor's token now in
    and the next ones, with first names and an initial only; nothing to press. The page
    fetches itself again every few seconds and keeps what it shows if that fails.
    """
    today = tenants.today_at_clinic(session, ctx)
    assert ctx.tenant_id is not None  # staff act inside their clinic
    return page(
        request,
        "scheduling/display.html",
        clinic=tenants.get_tenant(session, ctx.tenant_id),
        today=today,
        boards=serving(queries.queue_board(session, today)),
        updated=ctx.now(),
        every=10,
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
    if not _is_htmx(request):
        return redirect(request, "/my-queue")
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


def _waitlist_page(
    request: Request,
    session: Session,
    ctx: RequestContext,
    who: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    today = tenants.today_at_clinic(session, ctx)
    values = values or {}
    return page(
        request,
        "scheduling/waitlist.html",
        422 if errors else 200,
        rows=queries.waiting_list(session, ctx.now()),
        doctors=service.doctors(session),
        today=today,
        may_write=allowed(who.role, "appointments:write"),
        values=values,
        errors=errors or {},
        patients=_chosen_patient(session, ctx, values.get("patient_id", "")),
        chosen_id=values.get("patient_id", ""),
    )


@router.get("/waitlist")
def waitlist_page(request: Request, session: DbSession, ctx: Ctx, who: Reader) -> Response:
    """Patients waiting for a doctor's free slot, and the offers out to them right now."""
    return _waitlist_page(request, session, ctx, who)


# The service's names for the waitlist form's fields: the form's field and its label.
WAIT_FIELDS = {"fromDate": ("from_date", "From"), "untilDate": ("until_date", "Until")}


def _wait_errors(problem: DomainError) -> dict[str, str]:
    """The refusal as sentences beside the fields, naming them as the form labels them."""
    if not isinstance(problem, InvalidInput):
        return {"__all__": str(problem)}
    errors: dict[str, str] = {}
    for e in problem.errors:
        name, label = WAIT_FIELDS.get(e.field, (e.field, e.field))
        reason = e.reason
        for field, (_, other) in WAIT_FIELDS.items():
            reason = reason.replace(field, f"“{other}”")
        errors.setdefault(name, f"{label} {reason}.")
    return errors


@router.post("/waitlist")
def join_waitlist(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Writer,
    doctor_id: Annotated[uuid.UUID, Form()],
    from_date: Annotated[date, Form()],
    until_date: Annotated[date, Form()],
    patient_id: Annotated[str, Form()] = "",
    q: Annotated[str, Form(max_length=80)] = "",
) -> Response:
    """Put a patient in line; a mistake brings the form back with the patient kept."""
    values = {
        "patient_id": patient_id,
        "q": q,
        "doctor_id": str(doctor_id),
        "from_date": from_date.isoformat(),
        "until_date": until_date.isoformat(),
    }
    try:
        patient = uuid.UUID(patient_id) if patient_id else None
    except ValueError:
        patient = None
    if patient is None:
        return _waitlist_page(
            request, session, ctx, who, values=values, errors={"patient_id": PICK_PATIENT}
        )
    doctor = records.by_id(session, DoctorProfile, doctor_id)

    def refused(problem: DomainError) -> Response:
        errors = _wait_errors(problem)
        return _waitlist_page(request, session, ctx, who, values=values, errors=errors)

    return attempt(
        request,
        session,
        lambda: waitlist.join(
            session,
            ctx,
            patient_id=patient,
            doctor_id=doctor.id,
            from_date=from_date,
            until_date=until_date,
            visit_type=doctor.visit_types[0]["code"],
        ),
        done=lambda _: flash(
            request, "/waitlist", "Added to the waitlist; we will offer the first free slot."
        ),
        failed=refused,
    )


def _withdraw_confirmation(session: Session, entry: WaitlistEntry) -> Confirmation:
    patient = records.by_id(session, Patient, entry.patient_id)
    doctor = records.by_id(session, DoctorProfile, entry.doctor_id)
    days = day_name(entry.from_date)
    if entry.until_date != entry.from_date:
        days += f" to {day_name(entry.until_date)}"
    facts = [f"{patient.full_name} will no longer be offered freed slots of {doctor.display_name}."]
    if entry.status == "offered":
        facts.append("The offer already made stays open until it runs out; they may still take it.")
    facts.append("To put them back, add them again: they go to the end of the line.")
    return Confirmation(
        f"Take {patient.full_name} off the waitlist?",
        f"{patient.full_name} · {doctor.display_name} · {days}",
        facts,
        f"/waitlist/{entry.id}/withdraw",
        {},
        "Yes, take them off",
        "Keep them waiting",
        "/waitlist",
    )


@router.get("/waitlist/{entry_id}/withdraw")
def confirm_withdraw(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, entry_id: uuid.UUID
) -> Response:
    entry = records.by_id(session, WaitlistEntry, entry_id)
    return confirm_page(request, _withdraw_confirmation(session, entry))


@router.post("/waitlist/{entry_id}/withdraw")
def withdraw(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    entry_id: uuid.UUID,
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    entry = records.by_id(session, WaitlistEntry, entry_id)
    if confirmed != "yes":
        return redirect(request, f"/waitlist/{entry.id}/withdraw")
    return attempt(
        request,
        session,
        lambda: waitlist.withdraw(session, ctx, entry_id=entry.id),
        done="/waitlist",
        message="Taken off the waitlist.",
    )


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


# ------------------------------------------------------------------ doctor away


def away_url(doctor_id: uuid.UUID, away_id: uuid.UUID) -> str:
    return f"/calendar/doctors/{doctor_id}/away/{away_id}"


CHANNEL_NAMES = {"whatsapp": "WhatsApp", "sms": "SMS"}
# Where a queued message is, as the desk reads it.
SENT_WORDS = {
    "pending": "waiting to go",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed: call",
    "cancelled": "cancelled",
}


@router.get("/calendar/doctors/{doctor_id}/away/{exception_id}")
def away_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: AwayReader,
    cipher: Cipher,
    settings: AppSettings,
    doctor: DoctorInPath,
    exception_id: uuid.UUID,
) -> Response:
    """The patients booked inside a doctor's time away: name, phone, time and status, who
    was already messaged and who must be called; one button messages all the others with
    a link to choose another time. Each row links to the desk's reschedule page.
    """
    doctor_away.away_of(session, doctor_id=doctor.id, away_id=exception_id)  # 404 first
    found = doctor_away.report(session, ctx, cipher, doctor_id=doctor.id, away_id=exception_id)
    zone = found.zone
    sample = found.to_message[0] if found.to_message else None
    preview = None
    if sample is not None:
        assert ctx.tenant_id is not None
        first_free = found.next_free[0] if found.next_free else None
        preview = messages.render(
            doctor_away.TEMPLATE,
            sample.channel or "sms",
            "en",
            {
                "patient": sample.patient.full_name,
                "doctor": doctor.display_name,
                "startsAt": doctor_away.when(sample.slot, zone),
                "clinic": tenants.get_tenant(session, ctx.tenant_id).name,
                "link": doctor_away.rebook_link(settings.base_url, sample.appointment, first_free),
            },
        ).text
    starts = found.away.starts_at
    return page(
        request,
        "scheduling/away.html",
        r=found,
        doctor=doctor,
        span=doctor_away.span_of(found.away, zone),
        when=lambda slot: doctor_away.when(slot, zone),
        channels=CHANNEL_NAMES,
        sent_words=SENT_WORDS,
        show_phone=allowed(who.role, "patients:read"),
        may_message=allowed(who.role, "doctor-away:message"),
        may_write=allowed(who.role, "appointments:write"),
        rescheduable=lifecycle.RESCHEDULABLE,
        preview=preview,
        calendar=calendar_url(doctor.id, starts.astimezone(zone).date()),
    )


def _messaged_note(done: doctor_away.Messaged) -> str:
    def patients(n: int) -> str:
        return f"{n} patient{'' if n == 1 else 's'}"

    parts = []
    if done.queued:
        parts.append(f"Messaged {patients(len(done.queued))} with a link to choose another time.")
    else:
        parts.append("No new messages sent.")
    if done.already:
        parts.append(f"{patients(len(done.already))} had been messaged already (not sent again).")
    if done.to_call:
        parts.append(f"{patients(len(done.to_call))} cannot be messaged: please call them.")
    return " ".join(parts)


@router.post("/calendar/doctors/{doctor_id}/away/{exception_id}/message")
def message_away_patients(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: AwayMessenger,
    cipher: Cipher,
    settings: AppSettings,
    doctor: DoctorInPath,
    exception_id: uuid.UUID,
) -> Response:
    """Message every patient of the list who can be and was not yet (once per away period)."""
    doctor_away.away_of(session, doctor_id=doctor.id, away_id=exception_id)  # 404 first
    url = away_url(doctor.id, exception_id)
    return attempt(
        request,
        session,
        lambda: doctor_away.message_all(
            session,
            ctx,
            cipher,
            doctor_id=doctor.id,
            away_id=exception_id,
            base_url=settings.base_url,
        ),
        done=lambda done: flash(request, url, _messaged_note(done)),
        failed=url,
    )
