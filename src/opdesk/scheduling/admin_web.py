"""Admin pages: doctor profiles, weekly hours and time away (leave, holidays)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity import queries as identity_queries
from opdesk.identity.sessions import Principal
from opdesk.scheduling import away as doctor_away
from opdesk.scheduling import service
from opdesk.scheduling.deps import DoctorInPath as Doctor
from opdesk.scheduling.deps import page
from opdesk.scheduling.models import DoctorProfile
from opdesk.tenancy import service as tenants
from opdesk.validation import ascii_digits
from opdesk.web.deps import AppSettings, Ctx, DbSession, acting
from opdesk.web.pages import PostedForm, attempt, flash
from opdesk.web.templating import NavEntry, readable

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Doctors", "/admin/doctors", "clinic:manage", "admin"),)
Admin = Annotated[Principal, acting("clinic:manage")]
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
BLANK_ROWS = 3
# The visit types a doctor offers are chosen from this list (minutes can be changed), plus
# one the admin names; the slots and bookings refer to them by code.
COMMON_VISITS = (
    ("consultation", "Consultation", 15),
    ("follow-up", "Follow-up", 10),
    ("new-patient", "New patient", 20),
    ("procedure", "Procedure", 30),
    ("teleconsultation", "Teleconsultation", 15),
    ("vaccination", "Vaccination", 10),
)
DEFAULT_VISITS = ("consultation", "follow-up")


@router.get("/admin/doctors")
def doctors_page(request: Request, session: DbSession, _: Admin) -> Response:
    """The clinic's doctors, and a form to add a profile for a doctor user without one."""
    profiles = service.doctors(session, include_inactive=True)
    with_profile = {d.user_id for d in profiles}
    users = [
        u
        for u in identity_queries.users(session)
        if u.role == "doctor" and u.active and u.id not in with_profile
    ]
    return page(
        request,
        "scheduling/admin_doctors.html",
        doctors=profiles,
        users=users,
        visits=COMMON_VISITS,
        ticked=DEFAULT_VISITS,
    )


def _visit_types(form: dict[str, str]) -> tuple[service.VisitType, ...]:
    """The visit types ticked in the list (each with its minutes), and one more the admin
    may name; the code of each is made from its name, never typed.
    """
    found, errors = [], []
    for code, label, _ in COMMON_VISITS:
        if form.get(f"visit_{code}"):
            minutes = _minutes(form.get(f"minutes_{code}", ""))
            if minutes is None:
                errors.append(FieldError(f"minutes_{code}", "enter 1 to 240 minutes"))
            else:
                found.append(service.VisitType(code, label, minutes))
    other = " ".join(form.get("other_label", "").split())[:80]
    if other:
        minutes = _minutes(form.get("other_minutes", ""))
        code = re.sub(r"[^a-z0-9]+", "-", other.lower()).strip("-") or "other"
        if minutes is None:
            errors.append(FieldError("other_minutes", "enter 1 to 240 minutes"))
        elif code in {v.code for v in found}:
            errors.append(FieldError("other_label", "is already in the list: tick it there"))
        else:
            found.append(service.VisitType(code, other, minutes))
    if not found and not errors:
        errors.append(FieldError("Visit types", "tick at least one"))
    if errors:
        raise InvalidInput(errors)
    return tuple(found)


def _minutes(text: str) -> int | None:
    value = _whole(text.strip()) if ascii_digits(text.strip()) else 0
    return value if 1 <= value <= 240 else None


def _fee(text: str) -> Decimal:
    try:
        fee = Decimal(text.strip() or "0")
    except InvalidOperation:
        raise InvalidInput(
            [FieldError("consultation_fee", "must be an amount in rupees")]
        ) from None
    if fee < 0:
        raise InvalidInput([FieldError("consultation_fee", "cannot be negative")])
    return fee.quantize(Decimal("0.01"))


@router.post("/admin/doctors")
def add_doctor(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Admin,
    user_id: Annotated[uuid.UUID, Form()],
    display_name: Annotated[str, Form(min_length=1, max_length=200)],
    specialty: Annotated[str, Form(min_length=1, max_length=200)],
    registration_number: Annotated[str, Form(min_length=3, max_length=40)],
    form: PostedForm,
    consultation_fee: Annotated[str, Form(max_length=20)] = "0",
) -> Response:
    return attempt(
        request,
        session,
        lambda: service.create_doctor(
            session,
            ctx,
            user_id=user_id,
            fields=service.DoctorFields(
                display_name=display_name.strip(),
                specialty=specialty.strip(),
                registration_number=registration_number.strip(),
                consultation_fee=_fee(consultation_fee),
                visit_types=_visit_types(form),
            ),
        ),
        done=lambda doctor: flash(
            request, f"/admin/doctors/{doctor.id}", "Profile added. Now set the weekly hours."
        ),
        failed="/admin/doctors",
    )


@router.get("/admin/doctors/{doctor_id}")
def doctor_page(
    request: Request, session: DbSession, ctx: Ctx, _: Admin, doctor: Doctor, added: str = ""
) -> Response:
    """Weekly hours (as editable rows) and upcoming time away; ``added`` names time away
    just saved, whose booked patients the page then points to.
    """
    rows = [
        {
            "weekday": t.weekday,
            "start_time": t.start_time.strftime("%H:%M"),
            "end_time": t.end_time.strftime("%H:%M"),
            "slot_minutes": t.slot_minutes,
            "buffer_before": t.buffer_before,
            "buffer_after": t.buffer_after,
            "visit_codes": list(t.visit_types),
        }
        for t in service.templates_of(session, doctor.id)
    ]
    return _doctor_page(request, session, ctx, doctor, rows, added=added)


def _doctor_page(
    request: Request,
    session: Session,
    ctx: RequestContext,
    doctor: DoctorProfile,
    rows: list[dict[str, Any]],
    problem: str | None = None,
    added: str = "",
) -> Response:
    away = service.exceptions_of(session, ctx, doctor.id)
    booked = doctor_away.booked_counts(session, away)
    just_added = next((a for a in away if str(a.id) == added and booked.get(a.id)), None)
    return page(
        request,
        "scheduling/admin_doctor.html",
        status_code=422 if problem else 200,
        doctor=doctor,
        rows=rows + [{} for _ in range(BLANK_ROWS)],
        problem=problem,
        weekdays=list(enumerate(WEEKDAYS)),
        away=away,
        booked=booked,
        just_added=just_added,
        away_url=lambda a: f"/calendar/doctors/{doctor.id}/away/{a.id}",
        tz=tenants.zone_of(session, doctor.tenant_id).key,
    )


def _typed_rows(form: dict[str, str]) -> list[dict[str, Any]]:
    """The rows as the admin typed them, to show again next to what was wrong."""
    fields = ("start_time", "end_time", "slot_minutes", "buffer_before", "buffer_after")
    rows: list[dict[str, Any]] = []
    for i in range(_row_count(form)):
        row: dict[str, Any] = {name: form.get(f"{name}_{i}", "") for name in fields}
        if not row["start_time"] and not row["end_time"]:
            rows.append({})  # kept in its place, so "row 3" in a message is the third row
            continue
        row["weekday"] = _weekday(form.get(f"weekday_{i}", ""))
        row["visit_codes"] = _codes(form.get(f"visit_types_{i}", ""))
        rows.append(row)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _whole(text: str) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _weekday(text: str) -> int | None:
    """The day chosen in a row (0 = Monday), or None when none was chosen."""
    return int(text) if ascii_digits(text) and int(text) < len(WEEKDAYS) else None


def _codes(text: str) -> list[str]:
    """The visit types ticked in a row (several boxes of one name arrive comma-joined)."""
    return [c.strip() for c in text.split(",") if c.strip()]


def _row_count(form: dict[str, str]) -> int:
    """How many hours rows the form had (the page says so in a hidden field)."""
    return min(_whole(form.get("rows", "")), 100)


def _openings(
    form: dict[str, str], count: int, known: set[str]
) -> list[tuple[int, service.Opening]]:
    """The hours rows that were filled in, with their place in the form; a row without times
    is blank and left out, and a row with times must name its day and at least one of the
    doctor's visit types.
    """
    openings: list[tuple[int, service.Opening]] = []
    errors: list[FieldError] = []
    for i in range(count):
        start, end = form.get(f"start_time_{i}", ""), form.get(f"end_time_{i}", "")
        if not start and not end:
            continue
        weekday = _weekday(form.get(f"weekday_{i}", ""))
        codes = _codes(form.get(f"visit_types_{i}", ""))
        if weekday is None:
            errors.append(FieldError(f"weekday_{i}", "choose the day"))
        if not codes:
            errors.append(FieldError(f"Visit types, row {i + 1}", "tick at least one"))
        elif set(codes) - known:
            errors.append(
                FieldError(f"Visit types, row {i + 1}", "tick the doctor's visit types only")
            )
        try:
            opening = service.Opening(
                weekday=weekday or 0,
                start_time=time.fromisoformat(start),
                end_time=time.fromisoformat(end),
                slot_minutes=int(form.get(f"slot_minutes_{i}") or 0),
                buffer_before=int(form.get(f"buffer_before_{i}") or 0),
                buffer_after=int(form.get(f"buffer_after_{i}") or 0),
                visit_types=tuple(codes),
            )
        except ValueError:
            errors.append(FieldError(f"row {i + 1}", "times as HH:MM and minutes as numbers"))
            continue
        openings.append((i, opening))
    if errors:
        raise InvalidInput(errors)
    return openings


def _replace_hours(
    session: Session, ctx: RequestContext, doctor: DoctorProfile, form: dict[str, str], days: int
) -> int:
    known = {v["code"] for v in doctor.visit_types}
    filled = _openings(form, _row_count(form), known)
    today = tenants.today_at_clinic(session, ctx)
    try:
        service.set_templates(
            session, ctx, doctor_id=doctor.id, openings=[o for _, o in filled], valid_from=today
        )
    except InvalidInput as refused:
        rows = [i for i, _ in filled]
        raise InvalidInput([_in_form_rows(e, rows) for e in refused.errors]) from None
    return service.generate_slots(session, ctx, doctor_id=doctor.id, days=days)


def _in_form_rows(error: FieldError, rows: list[int]) -> FieldError:
    """A rule's error about the n-th opening, told about the form row it came from (blank
    rows before it are left out of the openings).
    """

    def field(match: re.Match[str]) -> str:
        return f"templates.{rows[int(match[1])]}"

    def reason(match: re.Match[str]) -> str:
        return f"overlaps row {rows[int(match[1])] + 1}"

    return FieldError(
        re.sub(r"^templates\.(\d+)", field, error.field),
        re.sub(r"overlaps template (\d+)", reason, error.reason),
    )


async def _hours_form(request: Request) -> dict[str, str]:
    """The posted hours form; the visit-type boxes ticked in a row (one name, several
    values) arrive joined with commas.
    """
    form = await request.form()
    return {key: ",".join(v for v in form.getlist(key) if isinstance(v, str)) for key in set(form)}


HoursForm = Annotated[dict[str, str], Depends(_hours_form)]


@router.post("/admin/doctors/{doctor_id}/hours")
def save_hours(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Admin,
    doctor: Doctor,
    form: HoursForm,
    settings: AppSettings,
) -> Response:
    """Replace the weekly hours and make the slots; a mistake shows the rows as typed."""
    days = settings.slot_days_ahead
    return attempt(
        request,
        session,
        lambda: _replace_hours(session, ctx, doctor, form, days),
        done=lambda made: flash(
            request,
            f"/admin/doctors/{doctor.id}",
            f"Weekly hours saved; {made} slots ready for booking.",
        ),
        failed=lambda bad: _doctor_page(
            request, session, ctx, doctor, _typed_rows(form), problem=readable(bad)
        ),
    )


@router.post("/admin/doctors/{doctor_id}/away")
def add_time_away(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Admin,
    doctor: Doctor,
    starts_at: Annotated[str, Form()],
    ends_at: Annotated[str, Form()],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    url = f"/admin/doctors/{doctor.id}"
    zone = tenants.zone_of(session, doctor.tenant_id)
    try:
        begins = datetime.fromisoformat(starts_at).replace(tzinfo=zone)
        ends = datetime.fromisoformat(ends_at).replace(tzinfo=zone)
    except ValueError:
        return flash(request, url, "Give both the start and the end of the time away.", "error")
    return attempt(
        request,
        session,
        lambda: service.add_exception(
            session, ctx, doctor_id=doctor.id, starts_at=begins, ends_at=ends, reason=reason or None
        ),
        done=lambda added: flash(
            request,
            f"{url}?added={added[0].id}#away-{added[0].id}" if added[1] else url,
            _away_saved(kept=added[1]),
        ),
        failed=url,
    )


def _away_saved(kept: int) -> str:
    if not kept:
        return "Time away saved; its free slots are closed."
    booked = "1 booked appointment falls" if kept == 1 else f"{kept} booked appointments fall"
    return (
        f"Time away saved; its free slots are closed. {booked} in it: "
        "open “Patients to tell” to message or call them."
    )


@router.post("/admin/doctors/{doctor_id}/away/{exception_id}/remove")
def remove_time_away(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Admin,
    doctor: Doctor,
    exception_id: uuid.UUID,
    settings: AppSettings,
) -> Response:
    service.remove_exception(session, ctx, doctor_id=doctor.id, exception_id=exception_id)
    made = service.generate_slots(session, ctx, doctor_id=doctor.id, days=settings.slot_days_ahead)
    return flash(request, f"/admin/doctors/{doctor.id}", f"Removed; {made} slots open again.")
