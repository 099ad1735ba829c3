"""The consultation: the API ``/api/v1/visits``, ``/api/v1/icd10``, ``/api/v1/clinic-services``
and the doctor's consultation screen ``/consult/{appointment_id}``.

Every change goes through :mod:`opdesk.clinical.visits` (and its vitals and catalogue
neighbours), so the page and the API refuse the same things with the same words.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.clinical import catalogue, icd, orders, prescriptions, visits, vitals
from opdesk.clinical.models import ClinicService, Icd10Code, Prescription, Visit
from opdesk.clinical.schemas import (
    AddendumIn,
    AddendumOut,
    BookedFollowUp,
    DiagnosisIn,
    DiagnosisOut,
    FollowUpIn,
    FollowUpOut,
    Icd10Out,
    SavedOut,
    ServiceIn,
    ServiceOut,
    SoapIn,
    SoapVersionOut,
    VisitOut,
    VisitServiceIn,
    VisitServiceOut,
    VitalOut,
    VitalsIn,
)
from opdesk.clinical.web import consult_regions
from opdesk.context import RequestContext
from opdesk.errors import DomainError, FieldError, InvalidInput, NotFound
from opdesk.identity.sessions import Principal
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.scheduling import queries as scheduling_queries
from opdesk.scheduling.models import Appointment, AppointmentStatus
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.security.crypto import FieldCipher
from opdesk.validation import ascii_digits
from opdesk.web.deps import Cipher, Ctx, DbSession, acting
from opdesk.web.pages import PostedForm, attempt, flash, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["visits"], responses=PROBLEM_RESPONSES)
NAV: tuple[NavEntry, ...] = (
    NavEntry("Services and prices", "/admin/services", "services:manage", "admin"),
)

Reader = Annotated[Principal, acting("visits:read")]
Writer = Annotated[Principal, acting("visits:write")]
Signer = Annotated[Principal, acting("visits:sign")]
VitalsReader = Annotated[Principal, acting("vitals:read")]
VitalsWriter = Annotated[Principal, acting("vitals:write")]
Manager = Annotated[Principal, acting("services:manage")]
Prescriber = Annotated[Principal, acting("prescriptions:write")]


def visit_in_path(visit_id: uuid.UUID, session: DbSession) -> Visit:
    """The visit named in the path; a foreign or unknown id is 404 before the body."""
    return records.by_id(session, Visit, visit_id)


InPath = Annotated[Visit, Depends(visit_in_path)]


# --------------------------------------------------------------------------- shaping


def visit_out(session: Session, cipher: FieldCipher, visit: Visit) -> VisitOut:
    note = visits.current_note(session, cipher, visit)
    return VisitOut(
        id=visit.id,
        appointment_id=visit.appointment_id,
        patient_id=visit.patient_id,
        doctor_id=visit.doctor_id,
        status=visit.status.value,
        soap=SoapIn(**note.as_dict()),
        soap_draft_saved_at=visit.soap_draft_saved_at,
        signed_version=visit.soap_signed_version,
        locked_at=visit.soap_locked_at,
        signed_by=visit.signed_by,
        versions=[
            SoapVersionOut(
                v=row.v, created_at=row.created_at, created_by=row.created_by, **soap.as_dict()
            )
            for row, soap in visits.versions(session, cipher, visit)
        ],
        addenda=[
            AddendumOut(id=row.id, text=text, created_at=row.created_at, created_by=row.created_by)
            for row, text in visits.addenda(session, cipher, visit)
        ],
        diagnoses=diagnoses_out(session, cipher, visit),
        vitals=[VitalOut(**r.__dict__) for r in vitals.of_visit(session, cipher, visit)],
        services=[
            VisitServiceOut.model_validate(s) for s in catalogue.services_of(session, visit.id)
        ],
        follow_up=follow_up_out(visit),
        created_at=visit.created_at,
    )


def diagnoses_out(session: Session, cipher: FieldCipher, visit: Visit) -> list[DiagnosisOut]:
    rows = visits.diagnoses(session, visit.id)
    codes = {r.code for r in rows if r.code}
    names: dict[str, str] = {}
    if codes:
        found = session.execute(
            select(Icd10Code.code, Icd10Code.description).where(Icd10Code.code.in_(codes))
        ).all()
        names = dict(found)
    return [
        DiagnosisOut(
            id=r.id,
            code=r.code,
            description=names.get(r.code) if r.code else None,
            text=visits.diagnosis_text(cipher, r),
            primary=r.is_primary,
            position=r.position,
        )
        for r in rows
    ]


def follow_up_out(visit: Visit) -> FollowUpOut:
    return FollowUpOut(
        recommended_at=visit.follow_up_recommended_at,
        interval_days=visit.follow_up_interval_days,
        due_on=visits.follow_up_day(visit),
    )


# --------------------------------------------------------------------------- API: visits


@api.post("/appointments/{appointment_id}/visit", response_model=VisitOut)
def open_visit(
    _: Writer, appointment_id: uuid.UUID, session: DbSession, ctx: Ctx, cipher: Cipher
) -> VisitOut:
    """The appointment's visit, opened on first call (one per appointment)."""
    visit = visits.open_visit(session, ctx, appointment_id=appointment_id)
    return visit_out(session, cipher, visit)


@api.get("/appointments/{appointment_id}/visit", response_model=VisitOut)
def visit_by_appointment(
    _: Reader, appointment_id: uuid.UUID, session: DbSession, cipher: Cipher
) -> VisitOut:
    records.by_id(session, Appointment, appointment_id)
    visit = visits.visit_of_appointment(session, appointment_id)
    if visit is None:
        raise NotFound("this appointment has no visit yet")
    return visit_out(session, cipher, visit)


@api.get("/visits/{visit_id}", response_model=VisitOut)
def get_visit(_: Reader, visit: InPath, session: DbSession, cipher: Cipher) -> VisitOut:
    """The visit with its note (the draft being typed, else the last version), versions,
    addenda, diagnoses, vitals, services and follow-up.
    """
    return visit_out(session, cipher, visit)


@api.put("/visits/{visit_id}/soap", response_model=SavedOut)
def autosave(
    _: Writer, body: SoapIn, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher
) -> SavedOut:
    """Autosave the note being typed (a version at most every few minutes); 409 once signed."""
    saved = visits.save_note(
        session,
        ctx,
        cipher,
        visit_id=visit.id,
        soap=visits.Soap(**body.model_dump()),
        explicit=False,
    )
    assert saved.visit.soap_draft_saved_at is not None
    return SavedOut(saved_at=saved.visit.soap_draft_saved_at, version=saved.version)


@api.post("/visits/{visit_id}/versions", response_model=SavedOut, status_code=201)
def save_version(
    _: Writer, body: SoapIn, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher
) -> SavedOut:
    """Save the note as a version (when it changed); 409 once signed."""
    saved = visits.save_note(
        session,
        ctx,
        cipher,
        visit_id=visit.id,
        soap=visits.Soap(**body.model_dump()),
        explicit=True,
    )
    assert saved.visit.soap_draft_saved_at is not None
    return SavedOut(saved_at=saved.visit.soap_draft_saved_at, version=saved.version)


@api.post("/visits/{visit_id}/sign", response_model=VisitOut)
def sign_visit(_: Signer, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher) -> VisitOut:
    """Sign the note; the visit and all on it are then frozen (409 for any change)."""
    signed = visits.sign(session, ctx, cipher, visit_id=visit.id)
    return visit_out(session, cipher, signed)


@api.post("/visits/{visit_id}/addenda", response_model=AddendumOut, status_code=201)
def add_addendum(
    _: Signer, body: AddendumIn, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher
) -> AddendumOut:
    """A signed correction to a signed visit."""
    row = visits.add_addendum(session, ctx, cipher, visit_id=visit.id, text=body.text)
    return AddendumOut(
        id=row.id, text=body.text.strip(), created_at=row.created_at, created_by=row.created_by
    )


@api.post("/visits/{visit_id}/diagnoses", response_model=list[DiagnosisOut], status_code=201)
def add_diagnosis(
    _: Writer, body: DiagnosisIn, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher
) -> list[DiagnosisOut]:
    visits.add_diagnosis(
        session,
        ctx,
        cipher,
        visit_id=visit.id,
        code=body.code,
        text=body.text,
        primary=body.primary,
    )
    return diagnoses_out(session, cipher, visit)


@api.post("/visits/{visit_id}/diagnoses/{diagnosis_id}/primary", response_model=list[DiagnosisOut])
def make_primary(
    _: Writer, diagnosis_id: uuid.UUID, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher
) -> list[DiagnosisOut]:
    visits.make_primary(session, ctx, visit_id=visit.id, diagnosis_id=diagnosis_id)
    return diagnoses_out(session, cipher, visit)


@api.delete("/visits/{visit_id}/diagnoses/{diagnosis_id}", status_code=204)
def remove_diagnosis(
    _: Writer, diagnosis_id: uuid.UUID, visit: InPath, session: DbSession, ctx: Ctx
) -> Response:
    visits.remove_diagnosis(session, ctx, visit_id=visit.id, diagnosis_id=diagnosis_id)
    return Response(status_code=204)


@api.get("/visits/{visit_id}/vitals", response_model=list[VitalOut])
def get_vitals(
    _: VitalsReader, visit: InPath, session: DbSession, cipher: Cipher
) -> list[VitalOut]:
    return [VitalOut(**r.__dict__) for r in vitals.of_visit(session, cipher, visit)]


@api.post("/visits/{visit_id}/vitals", response_model=list[VitalOut], status_code=201)
def record_vitals(
    _: VitalsWriter, body: VitalsIn, visit: InPath, session: DbSession, ctx: Ctx, cipher: Cipher
) -> list[VitalOut]:
    """Readings by type; each checked against its plausible range (422 with the range)."""
    vitals.record(
        session,
        ctx,
        cipher,
        visit_id=visit.id,
        readings=dict(body.readings),
        collected_at=body.collected_at,
    )
    return [VitalOut(**r.__dict__) for r in vitals.of_visit(session, cipher, visit)]


@api.delete("/visits/{visit_id}/vitals/{vital_id}", status_code=204)
def remove_vital(
    _: VitalsWriter, vital_id: uuid.UUID, visit: InPath, session: DbSession, ctx: Ctx
) -> Response:
    vitals.remove(session, ctx, visit_id=visit.id, vital_id=vital_id)
    return Response(status_code=204)


@api.post("/visits/{visit_id}/services", response_model=VisitServiceOut, status_code=201)
def add_service(
    _: Writer, body: VisitServiceIn, visit: InPath, session: DbSession, ctx: Ctx
) -> VisitServiceOut:
    line = catalogue.add_to_visit(
        session, ctx, visit_id=visit.id, service_id=body.service_id, quantity=body.quantity
    )
    return VisitServiceOut.model_validate(line)


@api.delete("/visits/{visit_id}/services/{line_id}", status_code=204)
def remove_service(
    _: Writer, line_id: uuid.UUID, visit: InPath, session: DbSession, ctx: Ctx
) -> Response:
    catalogue.remove_from_visit(session, ctx, visit_id=visit.id, line_id=line_id)
    return Response(status_code=204)


@api.put("/visits/{visit_id}/follow-up", response_model=FollowUpOut)
def set_follow_up(
    _: Writer, body: FollowUpIn, visit: InPath, session: DbSession, ctx: Ctx
) -> FollowUpOut:
    """A date (``recommendedAt``) or a number of days (``intervalDays``); neither clears it."""
    changed = visits.set_follow_up(
        session,
        ctx,
        visit_id=visit.id,
        recommended_at=body.recommended_at,
        interval_days=body.interval_days,
    )
    return follow_up_out(changed)


@api.post("/visits/{visit_id}/follow-up/booking", response_model=BookedFollowUp, status_code=201)
def book_follow_up(_: Writer, visit: InPath, session: DbSession, ctx: Ctx) -> BookedFollowUp:
    """Book the doctor's first free slot on or after the follow-up day."""
    booked = visits.book_follow_up(session, ctx, visit_id=visit.id)
    slot = scheduling_queries.slot_of(session, booked)
    return BookedFollowUp(appointment_id=booked.id, starts_at=slot.starts_at if slot else None)


@api.get("/icd10", response_model=list[Icd10Out])
def search_icd10(
    session: DbSession, _: Reader, q: Annotated[str, Query(min_length=1, max_length=100)]
) -> list[Icd10Out]:
    """WHO ICD-10 codes by code prefix or words; the most specific codes first."""
    return [Icd10Out.model_validate(c) for c in icd.search(session, q)]


# --------------------------------------------------------------------------- API: catalogue


def _fields(body: ServiceIn) -> catalogue.ServiceFields:
    return catalogue.ServiceFields(**body.model_dump())


@api.get("/clinic-services", response_model=list[ServiceOut])
def list_services(_: Manager, session: DbSession) -> list[ServiceOut]:
    return [ServiceOut.model_validate(s) for s in catalogue.catalogue(session)]


@api.post("/clinic-services", response_model=ServiceOut, status_code=201)
def create_service(_: Manager, body: ServiceIn, session: DbSession, ctx: Ctx) -> ServiceOut:
    return ServiceOut.model_validate(catalogue.create_service(session, ctx, _fields(body)))


@api.put("/clinic-services/{service_id}", response_model=ServiceOut)
def update_service(
    _: Manager, service_id: uuid.UUID, body: ServiceIn, session: DbSession, ctx: Ctx
) -> ServiceOut:
    return ServiceOut.model_validate(
        catalogue.update_service(session, ctx, service_id=service_id, fields=_fields(body))
    )


# --------------------------------------------------------------------------- pages


def _here(appointment_id: uuid.UUID) -> str:
    return f"/consult/{appointment_id}"


def _visit_of(session: Session, appointment_id: uuid.UUID) -> Visit:
    """The visit of the appointment in the path (404 for a foreign or unknown one, or one
    not opened yet: the consultation page opens it).
    """
    records.by_id(session, Appointment, appointment_id)
    visit = visits.visit_of_appointment(session, appointment_id)
    if visit is None:
        raise NotFound("open the consultation first")
    return visit


def _soap_of(form: dict[str, str]) -> visits.Soap:
    return visits.Soap(**{part: form.get(f"soap.{part}", "") for part in visits.SOAP_PARTS})


def _next_patient(session: Session, visit: Visit, today: date) -> Appointment | None:
    """The doctor's next checked-in patient today (token order), not this one."""
    return session.execute(
        select(Appointment)
        .where(
            Appointment.doctor_id == visit.doctor_id,
            Appointment.queue_date == today,
            Appointment.status == AppointmentStatus.CHECKED_IN,
            Appointment.token_number.is_not(None),
            Appointment.id != visit.appointment_id,
        )
        .order_by(Appointment.token_number)
        .limit(1)
    ).scalar_one_or_none()


def _consult_page(
    request: Request,
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    principal: Principal,
    visit: Visit,
) -> Response:
    patient = records.by_id(session, Patient, visit.patient_id)
    zone = ZoneInfo(principal.timezone)  # the clinic's: no lookup of the clinic needed
    today = ctx.now().astimezone(zone).date()
    person = patients.read(cipher, patient, today)
    past = visits.past_visits_summary(session, cipher, visit.patient_id, before=visit, limit=20)
    trend = vitals.trend(session, cipher, visit.patient_id)
    appointment_reason = records.by_id(session, Appointment, visit.appointment_id).reason
    # The latest reading may be months old: the page dates any not taken today.
    reading_days = {
        r.id: r.collected_at.astimezone(zone).date() for rs in trend.values() for r in rs
    }
    return render(
        request,
        "clinical/consult.html",
        visit=visit,
        patient=person,
        note=visits.current_note(session, cipher, visit),
        signed=visit.status == "signed",
        versions=visits.versions(session, cipher, visit),
        addenda=visits.addenda(session, cipher, visit),
        diagnoses=diagnoses_out(session, cipher, visit),
        recent=visits.recent_diagnoses(session, cipher, visit.doctor_id),
        past=past.visits,
        past_diagnoses=past.diagnoses,
        past_more=past.more,
        trend=trend,
        reading_days=reading_days,
        today=today,
        reason=appointment_reason,
        kinds=vitals.KINDS,
        bmi=vitals.bmi(trend),
        services=catalogue.services_of(session, visit.id),
        catalogue=catalogue.catalogue(session, active_only=True),
        follow_up=follow_up_out(visit),
        next_patient=_next_patient(session, visit, today),
        r=consult_regions.regions(session, cipher, principal.role, visit),
        order_labels=orders.STATUS_LABELS,
        order_types=orders.TYPE_LABELS,
        labels=visits.SOAP_LABELS,
        parts=visits.SOAP_PARTS,
    )


@router.get("/consult/{appointment_id}")
def consult(
    who: Writer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Response:
    """The consultation screen; the visit is opened the first time it is shown."""
    visit = visits.open_visit(session, ctx, appointment_id=appointment_id)
    return _consult_page(request, session, ctx, cipher, who, visit)


@router.post("/consult/{appointment_id}/prescription/repeat-last")
def consult_repeat_prescription(
    _: Prescriber,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Response:
    """One click from the consultation screen: a draft with the last prescription's
    medicines, opened in the builder to adjust and issue.
    """
    visit = _visit_of(session, appointment_id)

    def repeat() -> Prescription:
        draft = prescriptions.start(session, ctx, visit_id=visit.id)
        return prescriptions.repeat_last(session, ctx, cipher, prescription_id=draft.id)

    return attempt(
        request,
        session,
        repeat,
        done=lambda draft: flash(
            request,
            f"/prescriptions/{draft.id}",
            "The last prescription's medicines are in this draft: check them and issue.",
        ),
        failed=_here(appointment_id),
    )


@router.put("/consult/{appointment_id}/soap")
def consult_autosave(
    _: Writer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """The editor's autosave (htmx): a line saying when the note was kept."""
    visit = _visit_of(session, appointment_id)
    try:
        with session.begin_nested():
            saved = visits.save_note(
                session, ctx, cipher, visit_id=visit.id, soap=_soap_of(form), explicit=False
            )
    except DomainError as refused:
        return render(
            request, "clinical/consult_saved.html", refused.status, refused=refused.detail
        )
    return render(request, "clinical/consult_saved.html", saved=saved)


@router.post("/consult/{appointment_id}/save")
def consult_save(
    _: Writer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    visit = _visit_of(session, appointment_id)
    here = _here(appointment_id)

    def done(saved: visits.SavedNote) -> Response:
        said = (
            f"Note saved as version {saved.version}."
            if saved.version
            else "Note saved (no changes since the last version)."
        )
        return flash(request, here, said)

    return attempt(
        request,
        session,
        lambda: visits.save_note(
            session, ctx, cipher, visit_id=visit.id, soap=_soap_of(form), explicit=True
        ),
        done=done,
        failed=here,
    )


@router.post("/consult/{appointment_id}/sign")
def consult_sign(
    _: Signer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """Keep what the editor shows, then sign it."""
    visit = _visit_of(session, appointment_id)

    def sign() -> Visit:
        if form.get("confirm") != "yes":
            raise InvalidInput(
                [FieldError("confirm", "tick the box to confirm; a signed note cannot change")]
            )
        if any(f"soap.{p}" in form for p in visits.SOAP_PARTS):
            visits.save_note(
                session, ctx, cipher, visit_id=visit.id, soap=_soap_of(form), explicit=False
            )
        return visits.sign(session, ctx, cipher, visit_id=visit.id)

    return attempt(
        request,
        session,
        sign,
        done=_here(appointment_id),
        message="Visit signed. Corrections now go in an addendum.",
    )


@router.post("/consult/{appointment_id}/addenda")
def consult_addendum(
    _: Signer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    visit = _visit_of(session, appointment_id)
    return attempt(
        request,
        session,
        lambda: visits.add_addendum(
            session, ctx, cipher, visit_id=visit.id, text=form.get("text", "")
        ),
        done=_here(appointment_id),
        message="Addendum signed and added.",
    )


@router.get("/consult/{appointment_id}/icd")
def consult_icd(
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    _: Reader,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """Search results for the diagnosis box (htmx)."""
    visit = _visit_of(session, appointment_id)
    return render(
        request, "clinical/consult_icd.html", visit=visit, found=icd.search(session, q), q=q
    )


@router.post("/consult/{appointment_id}/diagnoses")
def consult_diagnosis(
    _: Writer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    visit = _visit_of(session, appointment_id)
    return attempt(
        request,
        session,
        lambda: visits.add_diagnosis(
            session,
            ctx,
            cipher,
            visit_id=visit.id,
            code=form.get("code"),
            text=form.get("text"),
            primary=form.get("primary") == "true",
        ),
        done=_here(appointment_id) + "#diagnoses",
        message="Diagnosis added.",
    )


@router.post("/consult/{appointment_id}/diagnoses/{diagnosis_id}/primary")
def consult_primary(
    _: Writer,
    appointment_id: uuid.UUID,
    diagnosis_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    visit = _visit_of(session, appointment_id)
    return attempt(
        request,
        session,
        lambda: visits.make_primary(session, ctx, visit_id=visit.id, diagnosis_id=diagnosis_id),
        done=_here(appointment_id) + "#diagnoses",
        message="Primary diagnosis changed.",
    )


@router.post("/consult/{appointment_id}/diagnoses/{diagnosis_id}/remove")
def consult_remove_diagnosis(
    _: Writer,
    appointment_id: uuid.UUID,
    diagnosis_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    visit = _visit_of(session, appointment_id)
    return attempt(
        request,
        session,
        lambda: visits.remove_diagnosis(session, ctx, visit_id=visit.id, diagnosis_id=diagnosis_id),
        done=_here(appointment_id) + "#diagnoses",
        message="Diagnosis removed.",
    )


@router.post("/consult/{appointment_id}/vitals")
def consult_vitals(
    _: VitalsWriter,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    visit = _visit_of(session, appointment_id)
    readings: dict[str, str | float | Decimal] = {
        kind: form[kind].strip() for kind in vitals.KINDS if form.get(kind, "").strip()
    }
    return attempt(
        request,
        session,
        lambda: vitals.record(session, ctx, cipher, visit_id=visit.id, readings=readings),
        done=_here(appointment_id) + "#vitals",
        message="Vitals recorded.",
    )


@router.post("/consult/{appointment_id}/services")
def consult_service(
    _: Writer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    visit = _visit_of(session, appointment_id)

    def add() -> object:
        try:
            service_id = uuid.UUID(form.get("serviceId", ""))
        except ValueError:
            raise InvalidInput([FieldError("serviceId", "choose a service")]) from None
        quantity = form.get("quantity", "1").strip()
        if not ascii_digits(quantity):
            raise InvalidInput([FieldError("quantity", "must be a whole number")])
        return catalogue.add_to_visit(
            session, ctx, visit_id=visit.id, service_id=service_id, quantity=int(quantity)
        )

    return attempt(
        request, session, add, done=_here(appointment_id) + "#services", message="Service added."
    )


@router.post("/consult/{appointment_id}/services/{line_id}/remove")
def consult_remove_service(
    _: Writer,
    appointment_id: uuid.UUID,
    line_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    visit = _visit_of(session, appointment_id)
    return attempt(
        request,
        session,
        lambda: catalogue.remove_from_visit(session, ctx, visit_id=visit.id, line_id=line_id),
        done=_here(appointment_id) + "#services",
        message="Service removed.",
    )


@router.post("/consult/{appointment_id}/follow-up")
def consult_follow_up(
    _: Writer,
    appointment_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    visit = _visit_of(session, appointment_id)

    def save() -> object:
        on, days = form.get("recommendedAt", "").strip(), form.get("intervalDays", "").strip()
        errors = []
        when = None
        if on:
            try:
                when = date.fromisoformat(on)
            except ValueError:
                errors.append(FieldError("recommendedAt", "is not a date"))
        if days and not ascii_digits(days):
            errors.append(FieldError("intervalDays", "must be a whole number of days"))
        if errors:
            raise InvalidInput(errors)
        return visits.set_follow_up(
            session,
            ctx,
            visit_id=visit.id,
            recommended_at=when,
            interval_days=int(days) if days else None,
        )

    return attempt(
        request,
        session,
        save,
        done=_here(appointment_id) + "#follow-up",
        message="Follow-up saved.",
    )


@router.post("/consult/{appointment_id}/follow-up/book")
def consult_book_follow_up(
    _: Writer, appointment_id: uuid.UUID, request: Request, session: DbSession, ctx: Ctx
) -> Response:
    visit = _visit_of(session, appointment_id)
    here = _here(appointment_id) + "#follow-up"

    def done(booked: Appointment) -> Response:
        slot = scheduling_queries.slot_of(session, booked)
        when = f" for {slot.starts_at:%d %b %Y}" if slot is not None else ""
        return flash(request, here, f"Follow-up booked{when}.")

    return attempt(
        request,
        session,
        lambda: visits.book_follow_up(session, ctx, visit_id=visit.id),
        done=done,
        failed=here,
    )


# --------------------------------------------------------------------------- admin: catalogue


def _service_form(form: dict[str, str]) -> catalogue.ServiceFields:
    errors = []
    numbers: dict[str, Decimal] = {}
    for name, label in (("price", "Price"), ("taxRate", "GST rate")):
        try:
            numbers[name] = Decimal(
                form.get(name, "").strip() or ("0" if name == "taxRate" else "x")
            )
        except InvalidOperation:
            errors.append(FieldError(name, f"{label} must be a number"))
    if errors:
        raise InvalidInput(errors)
    return catalogue.ServiceFields(
        code=form.get("code", ""),
        name=form.get("name", ""),
        price=numbers["price"],
        tax_rate=numbers["taxRate"],
        sac_hsn=form.get("sacHsn") or None,
        active=form.get("active", "true") == "true",
    )


@router.get("/admin/services")
def services_page(_: Manager, request: Request, session: DbSession) -> Response:
    return render(request, "clinical/visit_services_admin.html", rows=catalogue.catalogue(session))


@router.post("/admin/services")
def services_create(
    _: Manager, request: Request, session: DbSession, ctx: Ctx, form: PostedForm
) -> Response:
    return attempt(
        request,
        session,
        lambda: catalogue.create_service(session, ctx, _service_form(form)),
        done="/admin/services",
        message="Service added to the catalogue.",
    )


@router.post("/admin/services/{service_id}")
def services_update(
    _: Manager,
    service_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    records.by_id(session, ClinicService, service_id)  # unknown or another clinic's: 404
    return attempt(
        request,
        session,
        lambda: catalogue.update_service(
            session, ctx, service_id=service_id, fields=_service_form(form)
        ),
        done="/admin/services",
        message="Service saved.",
    )
