"""Pages: patient search (the front desk's home), registration, profile, edit, delete."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.clinical.models import Visit as Consultation
from opdesk.consents import service as consents
from opdesk.context import RequestContext
from opdesk.documents import service as documents
from opdesk.documents.deps import Store
from opdesk.documents.storage import StorageFailed
from opdesk.errors import Conflict, DomainError, InvalidInput, NotFound
from opdesk.formatting import local_time, short_date
from opdesk.identity.deps import Ident
from opdesk.identity.sessions import Principal
from opdesk.patients import queries, service
from opdesk.patients.deps import PatientInPath
from opdesk.patients.models import BLOOD_GROUPS, GENDERS, Patient
from opdesk.patients.schemas import LANGUAGE_NAMES, PatientCreate, PatientUpdate
from opdesk.scheduling import booking, lifecycle
from opdesk.scheduling import queries as scheduling_queries
from opdesk.scheduling import service as scheduling
from opdesk.scheduling.deps import STATUS_LABELS, Offers
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.security.permissions import allowed, may_read_document
from opdesk.tenancy import service as tenants
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting, services
from opdesk.web.pages import attempt, flash, render
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Patients", "/patients", "patients:read", "desk"),)
Reader = Annotated[Principal, acting("patients:read")]
Writer = Annotated[Principal, acting("patients:write")]
Deleter = Annotated[Principal, acting("patients:delete")]
Booker = Annotated[Principal, acting("appointments:write")]

GENDER_LABELS = {
    "female": "Female",
    "male": "Male",
    "other": "Other",
    "undisclosed": "Prefer not to say",
}
SEVERITIES = ("mild", "moderate", "severe")
_ALLERGY = re.compile(
    r"^\s*(?P<substance>[^:(]+?)\s*(?::\s*(?P<reaction>[^(]+?))?\s*(?:\((?P<severity>\w+)\))?\s*$"
)
TEXT_FIELDS = (
    "name.first",
    "name.last",
    "phone",
    "email",
    "dob",
    "age_years",
    "gender",
    "city",
    "address",
    "pin_code",
    "blood_group",
    "preferred_language",
    "abha_number",
    "abha_address",
    "record_complete",
    "allergies",
    "chronic_conditions",
    "ongoing_medications",
    "emergency_contact.name",
    "emergency_contact.phone",
    "guardian",
    "guardian_relation",
)


BLOOD_GROUP_CHOICES = [("", "Not known"), *((g, g) for g in BLOOD_GROUPS)]


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("genders", list(GENDER_LABELS.items()))
    context.setdefault("blood_groups", BLOOD_GROUP_CHOICES)
    context.setdefault("languages", list(LANGUAGE_NAMES.items()))
    return render(request, template, status_code, **context)


# ------------------------------------------------------------------ search


@router.get("/patients")
def search_page(
    request: Request, session: DbSession, ctx: Ctx, who: Reader, q: str = ""
) -> Response:
    results = _results(request, session, ctx, q)
    return _page(
        request,
        "patients/search.html",
        q=q,
        results=results,
        may_register=allowed(who.role, "patients:write"),
        may_restore=allowed(who.role, "patients:delete"),
        check_ins=_check_ins(session, ctx, who, results),
    )


@router.get("/patients/results")
def search_results(
    request: Request, session: DbSession, ctx: Ctx, who: Reader, q: str = ""
) -> Response:
    """The live results under the search box (htmx swaps this in as you type)."""
    results = _results(request, session, ctx, q)
    return _page(
        request,
        "patients/_results.html",
        q=q,
        results=results,
        check_ins=_check_ins(session, ctx, who, results),
    )


def _check_ins(
    session: Session, ctx: RequestContext, who: Principal, results: list[Any]
) -> dict[uuid.UUID, list[Any]]:
    """Today's appointments the desk can check each found patient in for (the results show
    a Check in button through ``patients/_check_in.html``).
    """
    if not results or not allowed(who.role, "appointments:write"):
        return {}
    today = service.today_at_clinic(session, ctx)
    return due_today(session, [p.id for p in results], today)


def _results(request: Request, session: Session, ctx: RequestContext, q: str) -> list[Any]:
    today = service.today_at_clinic(session, ctx)
    cipher = services(request).cipher
    return queries.summaries(session, cipher, queries.search(session, cipher, q[:80]), today)


@router.get("/patients/deleted")
def deleted_patients(request: Request, session: DbSession, _: Deleter) -> Response:
    """Admins: patients deleted by mistake can be restored from here."""
    return _page(request, "patients/deleted.html", patients=queries.deleted(session))


# ------------------------------------------------------------------ registration and edits


def form_to_fields(form: dict[str, str], session: Session) -> dict[str, Any]:
    """The registration form's flat fields as the nested API document."""
    doc: dict[str, Any] = {
        "name": {"first": form.get("name.first", ""), "last": form.get("name.last", "")},
        "gender": form.get("gender") or None,
        "city": form.get("city") or None,
        "address": form.get("address", "").strip() or None,
        "pin_code": form.get("pin_code", "").strip() or None,
        "blood_group": form.get("blood_group") or None,
        "preferred_language": form.get("preferred_language") or "en",
        "abha_number": form.get("abha_number", "").strip() or None,
        "abha_address": form.get("abha_address", "").strip() or None,
        "phone": form.get("phone") or None,
        "email": form.get("email") or None,
        "dob": form.get("dob") or None,
        "age_years": form.get("age_years") or None,
        "chronic_conditions": [
            c.strip() for c in form.get("chronic_conditions", "").split(",") if c.strip()
        ],
        "allergies": _allergies(form.get("allergies", "")),
        "ongoing_medications": _medications(form.get("ongoing_medications", "")),
        "flags": {"vip": bool(form.get("flags.vip")), "blocked": bool(form.get("flags.blocked"))},
        "guardian_relation": form.get("guardian_relation") or None,
    }
    if form.get("emergency_contact.name") or form.get("emergency_contact.phone"):
        doc["emergency_contact"] = {
            "name": form.get("emergency_contact.name", ""),
            "phone": form.get("emergency_contact.phone", ""),
        }
    guardian = form.get("guardian", "").strip()
    if guardian:
        number = queries.patient_number(guardian)
        found = queries.by_number(session, number) if number is not None else []
        doc["guardian_id"] = str(found[0].id) if found else str(uuid.UUID(int=0))
    return doc


def _allergies(text: str) -> list[dict[str, str]]:
    """One per line: ``Penicillin: rash (severe)``."""
    items = []
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        match = _ALLERGY.match(line)
        if not match:
            items.append({"substance": line})
            continue
        item = {"substance": match["substance"].strip()}
        if match["reaction"]:
            item["reaction"] = match["reaction"].strip()
        severity = (match["severity"] or "").lower()
        item["severity"] = severity if severity in SEVERITIES else "unknown"
        items.append(item)
    return items


def _medications(text: str) -> list[dict[str, str]]:
    """One per line: ``Metformin, 500 mg, twice a day``."""
    items = []
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        name, dose, freq = ([*(p.strip() for p in line.split(",", 2)), "", ""])[:3]
        items.append(
            {"name": name, **({"dose": dose} if dose else {}), **({"freq": freq} if freq else {})}
        )
    return items


# The form's fields in their order on the page (the page itself names them: each error
# is shown under its field, and the summary prefixes the field's label).
FIELD_LABELS = {
    "name.first": "First name",
    "name.last": "Last name",
    "phone": "Mobile number",
    "email": "Email",
    "dob": "Date of birth",
    "age_years": "Age in years",
    "gender": "Gender",
    "city": "City / village",
    "address": "Address",
    "pin_code": "PIN code",
    "blood_group": "Blood group",
    "preferred_language": "Preferred language",
    "abha_number": "ABHA number",
    "abha_address": "ABHA address",
    "allergies": "Allergies",
    "chronic_conditions": "Chronic conditions",
    "ongoing_medications": "Ongoing medications",
    "emergency_contact.name": "Emergency contact",
    "emergency_contact.phone": "Emergency contact's phone",
    "emergency_contact": "Emergency contact",
    "guardian": "Shares the phone of",
    "guardian_relation": "Relation",
}
_FIELD_ORDER = {name: i for i, name in enumerate(FIELD_LABELS)}


def _field_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, reason in form_errors(exc).items():
        if name == "__all__":
            continue  # the form's own checks (below) say these, naming the field
        name = name.replace("guardian_id", "guardian")
        errors.setdefault(re.sub(r"\.\d+(\.\w+)?$", "", name), reason)
    return errors


def _form_checks(
    values: dict[str, str],
    session: Session,
    today: date,
    *,
    patient: Any | None,
) -> dict[str, str]:
    """What the service and the whole-form rules would refuse, found all at once, so the
    desk sees every problem in one go (a future birth date together with a missing name).
    """
    errors: dict[str, str] = {}
    dob_text, age_text = values.get("dob", "").strip(), values.get("age_years", "").strip()
    creating = patient is None
    if creating and not dob_text and not age_text:
        errors["dob"] = "enter the date of birth, or the age in years if it is not known"
    if dob_text and age_text:
        errors["age_years"] = "leave this empty when the date of birth is given"
    if dob_text:
        try:
            born = date.fromisoformat(dob_text)
        except ValueError:
            pass  # the schema says "is not a date"
        else:
            if born > today:
                errors["dob"] = "this date is in the future; check the year"
            elif born < today - timedelta(days=366 * service.OLDEST_AGE_YEARS):
                years = service.OLDEST_AGE_YEARS
                errors["dob"] = f"this date is more than {years} years ago; check the year"
    guardian_text = values.get("guardian", "").strip()
    if not values.get("phone", "").strip() and not guardian_text:
        errors["phone"] = (
            "enter a mobile number, or the patient number of the family member "
            "whose phone they share (below)"
        )
    if guardian_text:
        number = queries.patient_number(guardian_text)
        found = queries.by_number(session, number) if number is not None else []
        if not found:
            errors["guardian"] = f"no patient has the number {guardian_text}; check it"
        elif patient is not None and found[0].id == patient.id:
            errors["guardian"] = "a patient cannot share their own phone"
        elif found[0].phone_hash is None:
            errors["guardian"] = (
                f"{found[0].full_name} has no mobile number of their own; "
                "enter the number of the family member who has the phone"
            )
    return errors


def _all_errors(*found: dict[str, str]) -> dict[str, str]:
    """Every field's first problem, in the order of the form (the first takes the focus)."""
    merged: dict[str, str] = {}
    for errors in found:
        for name, reason in errors.items():
            merged.setdefault(name, reason)
    ordered = sorted(merged, key=lambda n: _FIELD_ORDER.get(n, len(_FIELD_ORDER)))
    return {name: merged[name] for name in ordered}


async def _form_fields(request: Request) -> dict[str, str]:
    """The posted form as a flat dict (its field names carry dots, e.g. ``name.first``)."""
    form = await request.form()
    return {k: str(v) for k, v in form.items() if k in TEXT_FIELDS or k.startswith("flags.")}


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


@router.get("/patients/new")
def new_patient_form(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, guardian: str = ""
) -> Response:
    """The registration form; ``?guardian=P-000123`` starts a family member of that patient
    (sharing their phone, with their last name and city filled in).
    """
    values: dict[str, str] = {}
    head = None
    number = queries.patient_number(guardian) if guardian else None
    found = queries.by_number(session, number) if number is not None else []
    if found and found[0].phone_hash is not None:
        head = found[0]
        values = {
            "guardian": head.display_number,
            "name.last": head.name_last,
            "city": head.city or "",
        }
    return _page(request, "patients/form.html", values=values, patient=None, family_of=head)


@router.post("/patients/new")
def register_from_form(
    request: Request, session: DbSession, ctx: Ctx, _: Writer, values: FormFields, ident: Ident
) -> Response:
    def again(status: int, errors: dict[str, str], **extra: Any) -> Response:
        return _page(
            request,
            "patients/form.html",
            status,
            values=values,
            errors=errors,
            patient=None,
            **extra,
        )

    def refused(problem: DomainError) -> Response:
        status, errors = _refusal(problem)
        return again(status, _all_errors(errors), existing=problem.extra.get("existingId"))

    today = service.today_at_clinic(session, ctx)
    checks = _form_checks(values, session, today, patient=None)
    try:
        data = PatientCreate.model_validate(form_to_fields(values, session))
    except ValidationError as exc:
        return again(422, _all_errors(_field_errors(exc), checks))
    if checks:
        return again(422, _all_errors(checks))
    return attempt(
        request,
        session,
        lambda: service.register(session, ctx, ident, data=data),
        done=lambda patient: flash(
            request,
            f"/patients/{patient.id}",
            f"Registered {patient.full_name} as {patient.display_number}.",
        ),
        failed=refused,
    )


def _refusal(problem: DomainError) -> tuple[int, dict[str, str]]:
    """A refused registration or edit as the form shows it: the status, each field's reason."""
    if isinstance(problem, InvalidInput):
        return 422, {e.field.replace("guardianId", "guardian"): e.reason for e in problem.errors}
    if isinstance(problem, Conflict) and problem.extra.get("field") == "abhaNumber":
        return 409, {"abha_number": problem.detail.removeprefix("ABHA number: ")}
    if isinstance(problem, Conflict) and problem.extra.get("field") == "abhaAddress":
        return 409, {"abha_address": problem.detail.removeprefix("ABHA address: ")}
    if isinstance(problem, Conflict):
        return 409, {"phone": problem.detail}
    raise problem


# What revoking each consent means for the patient, said before the desk confirms it.
REVOKE_CONSEQUENCES = {
    "treatment": "The clinic no longer has this patient's consent to treatment: they must "
    "sign again before their next consultation.",
    "data-processing": "The clinic may no longer use this patient's health data beyond what "
    "the law requires it to keep.",
    "whatsapp": "WhatsApp reminders and messages to this patient stop.",
    "sms": "SMS reminders and messages to this patient stop.",
    "teleconsultation": "This patient can no longer be offered phone or video consultations.",
}
# Appointments still ahead of the patient, and those the desk can check in today.
AHEAD = (
    AppointmentStatus.REQUESTED,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.CHECKED_IN,
    AppointmentStatus.IN_CONSULT,
)
CHECK_IN_FROM = (AppointmentStatus.CONFIRMED, AppointmentStatus.NO_SHOW)
CHANNELS = (("phone", "Phone"), ("walk-in", "At the desk"), ("whatsapp", "WhatsApp"))
PAST_SHOWN = 10


@dataclass(frozen=True)
class Visit:
    """One appointment as the profile lists it."""

    appointment: Appointment
    slot: Slot | None
    doctor: DoctorProfile

    @property
    def day(self) -> date | None:
        return self.slot.date if self.slot is not None else self.appointment.queue_date

    @property
    def starts_at(self) -> datetime | None:
        return self.slot.starts_at if self.slot is not None else None

    @property
    def sort_key(self) -> tuple[date, datetime | None, int]:
        starts = self.starts_at or self.appointment.timeline_requested_at
        return (self.day or date.min, starts, self.appointment.token_number or 0)


def _visits(session: Session, patient_id: uuid.UUID, today: date) -> dict[str, list[Visit]]:
    """The patient's appointments: ahead (soonest first), today's to check in, and past."""
    rows = scheduling_queries.patient_appointments(session, [patient_id])
    visits = [Visit(a, s, d) for a, s, d, _ in rows]
    ahead = [v for v in visits if v.appointment.status in AHEAD and (v.day or today) >= today]
    past = [v for v in visits if v not in ahead]
    return {
        "upcoming": sorted(ahead, key=lambda v: v.sort_key),
        "past": sorted(past, key=lambda v: v.sort_key, reverse=True)[:PAST_SHOWN],
        "check_in": sorted(
            (v for v in visits if v.day == today and v.appointment.status in CHECK_IN_FROM),
            key=lambda v: v.sort_key,
        ),
    }


def _consulted(session: Session, visits: dict[str, list[Visit]] | None) -> set[uuid.UUID]:
    """Which of the listed appointments have a consultation (a clinical visit) to open."""
    ids = [v.appointment.id for rows in (visits or {}).values() for v in rows]
    if not ids:
        return set()
    return set(
        session.execute(
            select(Consultation.appointment_id).where(Consultation.appointment_id.in_(ids))
        ).scalars()
    )


def due_today(
    session: Session, patient_ids: list[uuid.UUID], today: date
) -> dict[uuid.UUID, list[Visit]]:
    """Each patient's appointments of today the desk can check in (for search results)."""
    if not patient_ids:
        return {}
    doctors = {d.id: d for d in scheduling.doctors(session, include_inactive=True)}
    found: dict[uuid.UUID, list[Visit]] = {}
    for appointment, slot in scheduling_queries.appointments(
        session, day=today, patient_ids=patient_ids
    ):
        if appointment.status in CHECK_IN_FROM and appointment.doctor_id in doctors:
            visit = Visit(appointment, slot, doctors[appointment.doctor_id])
            found.setdefault(appointment.patient_id, []).append(visit)
    return found


def _profile(
    request: Request,
    session: Session,
    ctx: RequestContext,
    who: Principal,
    cipher: Any,
    patient_id: uuid.UUID,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    """The patient's page: contact, health background, appointments, family, consents and
    the documents of the categories the viewer may read.
    """
    patient = service.get(session, patient_id)
    today = service.today_at_clinic(session, ctx)
    view = service.read(cipher, patient, today)
    family = [queries.summary(p, today) for p in service.dependents(session, patient.id)]
    docs = documents.of_patient(
        session, patient.id, categories=documents.readable_categories(who.role)
    )
    sees_appointments = allowed(who.role, "appointments:read")
    visits = _visits(session, patient.id, today) if sees_appointments else None
    return _page(
        request,
        "patients/profile.html",
        status_code,
        patient=view,
        record=patient,
        family=family,
        guardian=queries.guardian_of(session, patient),
        visits=visits,
        consulted=_consulted(session, visits) if allowed(who.role, "visits:read") else set(),
        today=today,
        labels=STATUS_LABELS,
        documents=docs,
        links=documents.live_links(session, [d.id for d in docs], ctx.now()),
        categories=documents.readable_categories(who.role),
        consents=consents.latest(session, patient.id),
        consent_types=sorted({t.type for t in consents.templates(session)}),
        consequences=REVOKE_CONSEQUENCES,
        may_read_signed_copies=may_read_document(who.role, "consent"),
        may_edit=allowed(who.role, "patients:write"),
        may_delete=allowed(who.role, "patients:delete"),
        may_book=allowed(who.role, "appointments:write"),
        may_see_account=allowed(who.role, "invoices:read"),
        gender_labels=GENDER_LABELS,
        language_names=LANGUAGE_NAMES,
        born=short_date(view.dob),
        **extra,
    )


@router.get("/patients/{patient_id}")
def profile(
    request: Request,
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    who: Reader,
    cipher: Cipher,
) -> Response:
    return _profile(request, session, ctx, who, cipher, patient_id)


@router.post("/patients/{patient_id}/documents")
def upload_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Writer,
    patient: PatientInPath,
    file: Annotated[UploadFile, File()],
    cipher: Cipher,
    settings: AppSettings,
    storage: Store,
    category: Annotated[str, Form()] = "other",
    tags: Annotated[str, Form()] = "",
) -> Response:
    limit = settings.max_upload_mb * 1024 * 1024
    back = f"/patients/{patient.id}"
    try:
        documents.check_category(who.role, category)
        doc = documents.upload(
            session,
            ctx,
            cipher,
            storage,
            patient_id=patient.id,
            category=category,
            filename=file.filename,
            data=file.file.read(limit + 1),
            tags=tags.split(","),
            max_bytes=limit,
        )
    except documents.TooLarge as exc:
        return flash(request, back, str(exc).replace("file:", "File:", 1), "error")
    except StorageFailed as exc:
        return flash(request, back, exc.detail, "error")
    except InvalidInput as exc:
        reasons = " ".join(f"{e.field.capitalize()}: {e.reason}." for e in exc.errors)
        return flash(request, back, reasons, "error")
    return flash(request, back, f"Uploaded {doc.filename}.")


def _readable_document_of(
    session: Session, who: Principal, patient: Patient, document_id: uuid.UUID
) -> Any:
    """A document of this patient the viewer may read; anything else is 404."""
    doc = documents.get_readable(session, document_id, who.role)
    if doc.owner_id != patient.id:
        raise NotFound(f"no document with id {document_id} for this patient")
    return doc


@router.post("/patients/{patient_id}/documents/{document_id}/share")
def share_from_page(
    request: Request,
    document_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    who: Writer,
    patient: PatientInPath,
    settings: AppSettings,
    cipher: Cipher,
) -> Response:
    """Make a link and show it on the page itself, once: it opens the file without signing
    in, so it never travels in a cookie or a redirect.
    """
    doc = _readable_document_of(session, who, patient, document_id)
    made = documents.share(session, ctx, document_id=doc.id)
    base = settings.base_url.rstrip("/")
    shared = {
        "url": f"{base}/s/{made.token}",
        "until": local_time(made.link.expires_at),
        "filename": doc.filename,
    }
    return _profile(request, session, ctx, who, cipher, patient.id, shared=shared)


@router.post("/patients/{patient_id}/consents/{consent_id}/revoke")
def revoke_consent_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    patient: PatientInPath,
    consent_id: uuid.UUID,
) -> Response:
    consent = consents.get(session, consent_id)
    if consent.patient_id != patient.id:
        raise NotFound(f"no consent with id {consent_id} for this patient")
    consents.revoke(session, ctx, consent_id=consent_id)
    what = REVOKE_CONSEQUENCES.get(consent.type, "")
    return flash(request, f"/patients/{patient.id}", f"Consent revoked. {what}".strip())


@router.post("/patients/{patient_id}/share-links/{link_id}/revoke")
def revoke_link_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Writer,
    patient: PatientInPath,
    link_id: uuid.UUID,
) -> Response:
    link = documents.get_link(session, link_id)
    try:
        _readable_document_of(session, who, patient, link.document_id)
    except NotFound:
        raise NotFound(f"no share link with id {link_id} for this patient") from None
    documents.revoke(session, ctx, link_id=link_id)
    return flash(request, f"/patients/{patient.id}", "Link revoked.")


# ------------------------------------------------------------------ appointments from the profile


@router.post("/patients/{patient_id}/check-in")
def check_in_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Booker,
    patient: PatientInPath,
    offers: Offers,
    appointment_id: Annotated[uuid.UUID | None, Form()] = None,
    back: Annotated[str, Form()] = "profile",
) -> Response:
    """Check the patient in for today's appointment, without choosing the doctor: the one
    appointment of today, or the one named when they have several.
    """
    today = service.today_at_clinic(session, ctx)
    due = due_today(session, [patient.id], today).get(patient.id, [])
    url = "/patients" if back == "search" else f"/patients/{patient.id}"
    if appointment_id is not None:
        due = [v for v in due if v.appointment.id == appointment_id]
        if not due:
            raise NotFound(f"no appointment with id {appointment_id} to check in today")
    if not due:
        message = (
            f"{patient.full_name} has no appointment today to check in. "
            "Book one, or add them as a walk-in from the Queue page."
        )
        return flash(request, url, message, "error")
    if len(due) > 1:
        message = (
            f"{patient.full_name} has {len(due)} appointments today; "
            "check in the right one from the list on their page."
        )
        return flash(request, f"/patients/{patient.id}", message, "warning")
    visit = due[0]

    def done(moved: Appointment) -> Response:
        token = f": token {moved.token_number}" if moved.token_number else ""
        message = f"Checked in {patient.full_name} for {visit.doctor.display_name}{token}."
        return flash(request, url, message)

    return attempt(
        request,
        session,
        lambda: lifecycle.transition(
            session, ctx, offers, appointment_id=visit.appointment.id, to="checked-in"
        ),
        done=done,
        failed=url,
    )


def _book_page(
    request: Request,
    session: Session,
    ctx: RequestContext,
    patient: Patient,
    *,
    doctor: str,
    day_text: str,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    today = service.today_at_clinic(session, ctx)
    try:
        day = max(date.fromisoformat(day_text), today) if day_text else today
    except ValueError:
        day = today
    doctors = scheduling.doctors(session)
    chosen = next((d for d in doctors if str(d.id) == doctor), doctors[0] if doctors else None)
    free: list[Slot] = []
    if chosen is not None:
        window = scheduling_queries.SlotWindow(day, day)
        free = scheduling_queries.slots(session, ctx, chosen.id, window, None)
    return _page(
        request,
        "patients/book.html",
        status_code,
        patient=patient,
        doctors=doctors,
        doctor=chosen,
        day=day,
        today=today,
        previous=day - timedelta(days=1) if day > today else None,
        following=day + timedelta(days=1),
        free=free,
        channels=CHANNELS,
        errors=errors or {},
        values=values or {},
    )


@router.get("/patients/{patient_id}/book")
def book_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Booker,
    patient: PatientInPath,
    doctor: str = "",
    date: str = "",
) -> Response:
    """Booking for this patient: choose the doctor and day, then a free time."""
    return _book_page(request, session, ctx, patient, doctor=doctor, day_text=date)


@router.post("/patients/{patient_id}/book")
def book_for_patient(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Booker,
    patient: PatientInPath,
    slot_id: Annotated[uuid.UUID | None, Form()] = None,
    visit_type: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "phone",
    reason: Annotated[str, Form(max_length=500)] = "",
    doctor: Annotated[str, Form()] = "",
    day: Annotated[str, Form()] = "",
) -> Response:
    values = {"visit_type": visit_type, "channel": channel, "reason": reason}

    def again(status: int, errors: dict[str, str]) -> Response:
        return _book_page(
            request,
            session,
            ctx,
            patient,
            doctor=doctor,
            day_text=day,
            status_code=status,
            errors=errors,
            values=values,
        )

    if slot_id is None:
        return again(422, {"slot_id": "Time: choose one of the free times."})
    slot = records.by_id(session, Slot, slot_id)
    doctor_profile = records.by_id(session, DoctorProfile, slot.doctor_id)
    wanted = booking.BookingRequest(
        slot_id=slot.id,
        patient_id=patient.id,
        visit_type=visit_type,
        channel=channel if channel in dict(CHANNELS) else "phone",
        reason=reason.strip() or None,
    )

    def booked(_: Appointment) -> Response:
        assert ctx.tenant_id is not None
        when = local_time(slot.starts_at, tenants.get_tenant(session, ctx.tenant_id).timezone)
        message = f"Booked {patient.full_name} with {doctor_profile.display_name}, {when}."
        return flash(request, f"/patients/{patient.id}", message)

    def refused(problem: DomainError) -> Response:
        if isinstance(problem, NotFound):
            raise problem  # another clinic's or an unknown patient: 404, not a message
        if isinstance(problem, InvalidInput):
            reason_of = {e.field: e.reason for e in problem.errors}
            if "visitType" in reason_of:
                return again(422, {"visit_type": f"Visit type: {reason_of['visitType']}."})
        return again(problem.status, {"slot_id": str(problem)})

    return attempt(
        request, session, lambda: booking.book(session, ctx, wanted), done=booked, failed=refused
    )


@router.get("/patients/{patient_id}/edit")
def edit_form(
    request: Request, patient_id: uuid.UUID, session: DbSession, ctx: Ctx, _: Writer, cipher: Cipher
) -> Response:
    patient = service.get(session, patient_id)
    view = service.read(cipher, patient, service.today_at_clinic(session, ctx))
    guardian = queries.guardian_of(session, patient)
    return _page(request, "patients/form.html", values=_values_of(view, guardian), patient=view)


def _values_of(view: Any, guardian: Any) -> dict[str, str]:
    return {
        "name.first": view.name.first,
        "name.last": view.name.last,
        "phone": view.phone or "",
        "email": view.email or "",
        "dob": view.dob.isoformat() if view.dob else "",
        "age_years": "" if view.dob else str(view.age_years),
        "gender": view.gender,
        "city": view.city or "",
        "address": view.address or "",
        "pin_code": view.pin_code or "",
        "blood_group": view.blood_group or "",
        "preferred_language": view.preferred_language,
        "abha_number": view.abha_number or "",
        "abha_address": view.abha_address or "",
        "record_complete": "1" if view.registered_online else "",
        "allergies": "\n".join(
            a.substance
            + (f": {a.reaction}" if a.reaction else "")
            + (f" ({a.severity})" if a.severity != "unknown" else "")
            for a in view.allergies
        ),
        "chronic_conditions": ", ".join(view.chronic_conditions),
        "ongoing_medications": "\n".join(
            ", ".join(x for x in (m.name, m.dose or "", m.freq or "") if x)
            for m in view.ongoing_medications
        ),
        "emergency_contact.name": view.emergency_contact.name if view.emergency_contact else "",
        "emergency_contact.phone": view.emergency_contact.phone if view.emergency_contact else "",
        "flags.vip": "1" if view.flags.vip else "",
        "flags.blocked": "1" if view.flags.blocked else "",
        "guardian": guardian.display_number if guardian else "",
        "guardian_relation": view.guardian_relation or "",
    }


@router.post("/patients/{patient_id}/edit")
def edit_from_form(
    request: Request,
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    values: FormFields,
    cipher: Cipher,
    ident: Ident,
) -> Response:
    current = service.get(session, patient_id)
    today = service.today_at_clinic(session, ctx)
    view = service.read(cipher, current, today)

    def again(status: int, errors: dict[str, str]) -> Response:
        return _page(
            request,
            "patients/form.html",
            status,
            values=values,
            errors=_all_errors(errors),
            patient=view,
        )

    fields = form_to_fields(values, session)
    fields["guardian_id"] = fields.get("guardian_id")
    if current.registered_online and values.get("record_complete"):
        fields["registered_online"] = False
    for name in ("dob", "age_years"):
        if not values.get(name):
            fields.pop(name, None)
    checks = _form_checks(values, session, today, patient=current)
    try:
        changes = PatientUpdate.model_validate(fields)
    except ValidationError as exc:
        return again(422, {**checks, **_field_errors(exc)})
    if checks:
        return again(422, checks)
    return attempt(
        request,
        session,
        lambda: service.update(session, ctx, ident, patient_id=patient_id, changes=changes),
        done=f"/patients/{patient_id}",
        message="Saved.",
        failed=lambda problem: again(*_refusal(problem)),
    )


@router.post("/patients/{patient_id}/delete")
def delete_from_page(
    request: Request,
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Deleter,
    move_to: Annotated[str, Form()] = "",
) -> Response:
    """Delete (soft). A guardian's family is first moved to the guardian the form names;
    without one the delete is refused with the family's names (see ``service.delete``).
    """
    back = f"/patients/{patient_id}"
    new_guardian: Patient | None = None
    records.by_id(session, Patient, patient_id)  # 404 first: an unknown or foreign patient
    if move_to.strip():
        number = queries.patient_number(move_to)
        found = queries.by_number(session, number) if number is not None else []
        if not found:
            message = f"Move them to: no patient has the number {move_to.strip()}; check it."
            return flash(request, back, message, "error")
        new_guardian = found[0]
    family = service.dependents(session, patient_id)

    def done(_: object) -> Response:
        message = "Patient deleted. An admin can restore them."
        if family and new_guardian is not None:
            names = ", ".join(p.full_name for p in family)
            verb = "shares" if len(family) == 1 else "share"
            message += f" {names} now {verb} {new_guardian.full_name}'s phone."
        return flash(request, "/patients", message)

    def refused(problem: DomainError) -> Response:
        if isinstance(problem, NotFound):
            raise problem  # another clinic's or an unknown patient: 404, not a message
        if isinstance(problem, InvalidInput):
            message = " ".join(f"Move them to: {e.reason}." for e in problem.errors)
        else:
            message = str(problem)
        return flash(request, back, message, "error")

    return attempt(
        request,
        session,
        lambda: service.delete(
            session,
            ctx,
            patient_id=patient_id,
            move_dependents_to=new_guardian.id if new_guardian else None,
        ),
        done=done,
        failed=refused,
    )


@router.post("/patients/{patient_id}/restore")
def restore_from_page(
    request: Request, patient_id: uuid.UUID, session: DbSession, ctx: Ctx, _: Deleter
) -> Response:
    service.restore(session, ctx, patient_id=patient_id)
    return flash(request, f"/patients/{patient_id}", "Patient restored.")


__all__ = ["GENDERS", "NAV", "router"]
