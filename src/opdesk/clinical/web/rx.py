"""Prescriptions: the doctor's builder, the pharmacy's lookup, the public verification
page a scanned QR code opens, the patient's own prescriptions, and their API.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.clinical import formulary, prescriptions, rx_pdf
from opdesk.clinical.models import FormularyDrug, Prescription
from opdesk.clinical.prescriptions import ItemIn, ItemView
from opdesk.context import RequestContext
from opdesk.errors import Conflict, DomainError, FieldError, InvalidInput, NotFound
from opdesk.identity.sessions import Principal
from opdesk.patients import queries as patient_queries
from opdesk.patients.deps import MyFamily
from opdesk.patients.models import Patient
from opdesk.patients.service import age_of
from opdesk.scheduling.models import DoctorProfile
from opdesk.schemas import PROBLEM_RESPONSES, ApiModel
from opdesk.security.crypto import FieldCipher
from opdesk.security.permissions import allowed
from opdesk.tenancy.models import Tenant
from opdesk.validation import ascii_digits
from opdesk.web.deps import (
    Anyone,
    AppSettings,
    Cipher,
    Ctx,
    DbSession,
    acting,
    services,
)
from opdesk.web.pages import PostedForm, attempt, flash, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["rx"], responses=PROBLEM_RESPONSES)
NAV: tuple[NavEntry, ...] = (
    NavEntry("Prescriptions", "/pharmacy/prescriptions", "prescriptions:read", "clinical"),
    NavEntry("My prescriptions", "/me/prescriptions", "portal:self", "patient"),
)
Reader = Annotated[Principal, acting("prescriptions:read")]
Writer = Annotated[Principal, acting("prescriptions:write")]
Me = Annotated[Principal, acting("portal:self")]
BLANK_ROWS = 3


def prescription_in_path(prescription_id: uuid.UUID, session: DbSession) -> Prescription:
    """The prescription named in the path (this clinic's), else 404 before the body."""
    return prescriptions.get(session, prescription_id)


InPath = Annotated[Prescription, Depends(prescription_in_path)]


def my_prescription(
    prescription_id: uuid.UUID, session: DbSession, family: MyFamily
) -> Prescription:
    """An issued prescription of the signed-in patient's family, else 404."""
    found = prescriptions.get(session, prescription_id)
    if found.patient_id not in family.patient_ids or found.issued_at is None:
        raise NotFound(f"no prescription with id {prescription_id}")
    return found


Mine = Annotated[Prescription, Depends(my_prescription)]


# --------------------------------------------------------------------------- schemas


class FlagOut(ApiModel):
    item_name: str
    type: str
    detail: str
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None


class ItemOut(ApiModel):
    position: int
    drug_id: uuid.UUID | None
    name: str
    strength: str | None
    form: str | None
    route: str | None
    dose: str | None
    frequency: str | None
    frequency_words: str | None
    duration_days: int | None
    timing: str | None
    instructions: str | None
    generic_allowed: bool
    refill_allowed: bool
    refill_remaining: int
    refill_interval_days: int | None


class PrescriptionOut(ApiModel):
    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    version: int
    supersedes: uuid.UUID | None
    status: str
    items: list[ItemOut]
    allergy_flags: list[FlagOut]
    issued_at: Any | None
    signed_hash: str | None
    qr_data: str | None


class StartIn(ApiModel):
    visit_id: uuid.UUID


class ItemsIn(ApiModel):
    items: list[ItemIn] = Field(max_length=prescriptions.MAX_ITEMS)


class AcknowledgeIn(ApiModel):
    index: int


class TemplateIn(ApiModel):
    name: str = Field(min_length=1, max_length=80)


class ApplyIn(ApiModel):
    template_id: uuid.UUID


class TemplateOut(ApiModel):
    id: uuid.UUID
    name: str
    items: list[dict[str, Any]]


class DrugOut(ApiModel):
    id: uuid.UUID
    generic_name: str
    strength: str
    form: str
    drug_class: str | None
    brand_name: str | None


def _out(
    session: Session, cipher: FieldCipher, prescription: Prescription, *, fresh: bool = True
) -> PrescriptionOut:
    items = prescriptions.items_of(session, cipher, prescription)
    flags = (
        prescriptions.allergy_check(session, cipher, prescription)
        if fresh and prescription.issued_at is None
        else prescription.allergy_flags
    )
    return PrescriptionOut(
        id=prescription.id,
        visit_id=prescription.visit_id,
        patient_id=prescription.patient_id,
        doctor_id=prescription.doctor_id,
        version=prescription.version,
        supersedes=prescription.supersedes,
        status="issued" if prescription.issued_at else "draft",
        items=[ItemOut.model_validate(i, from_attributes=True) for i in items],
        allergy_flags=[FlagOut.model_validate(f) for f in flags],
        issued_at=prescription.issued_at,
        signed_hash=prescription.signed_hash,
        qr_data=prescription.qr_data,
    )


def _fonts(request: Request) -> Any:
    return services(request).settings.data_dir / "fonts"


# --------------------------------------------------------------------------- API


@api.get("/formulary", response_model=list[DrugOut])
def search_formulary(
    session: DbSession, ctx: Ctx, _: Writer, q: Annotated[str, Query(max_length=80)] = ""
) -> list[DrugOut]:
    """The clinic's formulary (NLEM 2022 and its own drugs) by generic or brand name."""
    return [DrugOut.model_validate(d) for d in formulary.search(session, ctx, q)]


@api.post("/prescriptions", response_model=PrescriptionOut, status_code=201)
def start_prescription(
    body: StartIn, session: DbSession, ctx: Ctx, cipher: Cipher, _: Writer
) -> PrescriptionOut:
    """The visit's draft prescription (a new one if it has none open)."""
    return _out(session, cipher, prescriptions.start(session, ctx, visit_id=body.visit_id))


@api.get("/prescriptions/{prescription_id}", response_model=PrescriptionOut)
def read_prescription(
    _: Reader,
    prescription: InPath,
    session: DbSession,
    cipher: Cipher,
) -> PrescriptionOut:
    """A prescription with its medicines and warnings (a draft's warnings as of now)."""
    return _out(session, cipher, prescription)


@api.put("/prescriptions/{prescription_id}/items", response_model=PrescriptionOut)
def put_items(
    _: Writer,
    prescription: InPath,
    body: ItemsIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> PrescriptionOut:
    """Replace the draft's medicines; 409 once issued."""
    done = prescriptions.set_items(
        session, ctx, cipher, prescription_id=prescription.id, items=body.items
    )
    return _out(session, cipher, done)


@api.post("/prescriptions/{prescription_id}/acknowledge", response_model=PrescriptionOut)
def acknowledge_flag(
    _: Writer,
    prescription: InPath,
    body: AcknowledgeIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> PrescriptionOut:
    """Acknowledge warning ``index`` (as the prescription lists them now)."""
    done = prescriptions.acknowledge(
        session, ctx, cipher, prescription_id=prescription.id, index=body.index
    )
    return _out(session, cipher, done)


@api.post("/prescriptions/{prescription_id}/issue", response_model=PrescriptionOut)
def issue_prescription(
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
) -> PrescriptionOut:
    """Sign and freeze; 409 while a warning is not acknowledged or once issued."""
    done = prescriptions.issue(
        session, ctx, cipher, prescription_id=prescription.id, base_url=settings.base_url
    )
    return _out(session, cipher, done, fresh=False)


@api.post(
    "/prescriptions/{prescription_id}/change", response_model=PrescriptionOut, status_code=201
)
def change_prescription(
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> PrescriptionOut:
    """A new draft replacing an issued prescription; 409 if it was already replaced."""
    return _out(
        session, cipher, prescriptions.change(session, ctx, cipher, prescription_id=prescription.id)
    )


@api.post("/prescriptions/{prescription_id}/repeat-last", response_model=PrescriptionOut)
def repeat_last(
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> PrescriptionOut:
    """Add the medicines of the patient's latest issued prescription."""
    done = prescriptions.repeat_last(session, ctx, cipher, prescription_id=prescription.id)
    return _out(session, cipher, done)


@api.post("/prescriptions/{prescription_id}/apply-template", response_model=PrescriptionOut)
def apply_template(
    _: Writer,
    prescription: InPath,
    body: ApplyIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> PrescriptionOut:
    """Add the medicines of one of the doctor's templates."""
    done = prescriptions.apply_template(
        session, ctx, cipher, prescription_id=prescription.id, template_id=body.template_id
    )
    return _out(session, cipher, done)


@api.post(
    "/prescriptions/{prescription_id}/save-template", response_model=TemplateOut, status_code=201
)
def save_template(
    _: Writer,
    prescription: InPath,
    body: TemplateIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> TemplateOut:
    """Keep this prescription's medicines as a template of the doctor's; 409 for a name taken."""
    made = prescriptions.save_template(
        session, ctx, cipher, prescription_id=prescription.id, name=body.name
    )
    return TemplateOut.model_validate(made)


@api.get("/prescription-templates", response_model=list[TemplateOut])
def list_templates(session: DbSession, ctx: Ctx, _: Writer) -> list[TemplateOut]:
    """The signed-in doctor's templates."""
    return [TemplateOut.model_validate(t) for t in prescriptions.templates(session, ctx)]


@api.delete("/prescriptions/{prescription_id}", status_code=204)
def discard_prescription(
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """Delete a draft; 409 for an issued prescription."""
    prescriptions.discard(session, ctx, prescription_id=prescription.id)
    return Response(status_code=204)


@api.get("/prescriptions/{prescription_id}/pdf")
def prescription_pdf_api(
    request: Request,
    _: Reader,
    prescription: InPath,
    session: DbSession,
    cipher: Cipher,
) -> Response:
    """The issued prescription as a PDF; 409 for a draft."""
    return _pdf_response(request, session, cipher, prescription)


# --------------------------------------------------------------------------- PDF


def document_of(
    session: Session, cipher: FieldCipher, prescription: Prescription
) -> rx_pdf.RxDocument:
    if prescription.issued_at is None or prescription.qr_data is None:
        raise Conflict("only an issued prescription has a PDF")
    clinic = session.get_one(Tenant, prescription.tenant_id)
    doctor = records.by_id(session, DoctorProfile, prescription.doctor_id)
    patient = records.by_id(session, Patient, prescription.patient_id)
    age, _estimate = age_of(
        patient, prescription.issued_at.astimezone(ZoneInfo(clinic.timezone)).date()
    )
    address = ", ".join(
        p
        for p in (
            clinic.address_line1,
            clinic.address_line2,
            clinic.address_city,
            clinic.address_state,
            clinic.address_pincode,
        )
        if p
    )
    return rx_pdf.RxDocument(
        clinic_name=clinic.name,
        clinic_address=address,
        clinic_phone=f"Phone {clinic.phone}" if clinic.phone else "",
        doctor_name=doctor.display_name,
        doctor_specialty=doctor.specialty,
        registration_number=doctor.registration_number,
        patient_name=patient.full_name,
        patient_number=patient.display_number,
        patient_age_sex=f"{age} years · {patient.gender}",
        issued_on=prescription.issued_at.strftime("%d %b %Y"),
        prescription_id=str(prescription.id),
        version=prescription.version,
        items=prescriptions.items_of(session, cipher, prescription),
        verify_url=prescription.qr_data,
        signed_hash=prescription.signed_hash or "",
        fee_line=f"Consultation fee: ₹{doctor.consultation_fee:,.2f}",
        language=patient.preferred_language,
    )


def _pdf_response(
    request: Request, session: Session, cipher: FieldCipher, prescription: Prescription
) -> Response:
    data = rx_pdf.render(_fonts(request), document_of(session, cipher, prescription))
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="prescription-{prescription.id}.pdf"',
            "Cache-Control": "no-store",
        },
    )


# --------------------------------------------------------------------------- pages


def _page_url(prescription_id: uuid.UUID) -> str:
    return f"/prescriptions/{prescription_id}"


def _drug_labels(session: Session, ctx: RequestContext) -> dict[str, uuid.UUID]:
    """ "Amoxicillin 500 mg capsule" -> the drug, for the builder's list of suggestions."""
    formulary.ensure_seeded(session, ctx)
    drugs = session.execute(
        select(FormularyDrug).where(FormularyDrug.active).order_by(FormularyDrug.generic_name)
    ).scalars()
    return {_label(d): d.id for d in drugs}


def _label(drug: FormularyDrug) -> str:
    brand = f"({drug.brand_name})" if drug.brand_name else ""
    return " ".join(p for p in (drug.generic_name, brand, drug.strength, drug.form) if p)


def _number(text: str) -> int | None:
    """A typed whole number; -1 for anything else (the check then names the field)."""
    text = text.strip()
    if not text:
        return None
    return int(text) if ascii_digits(text) and len(text) < 6 else -1


def items_from_form(form: dict[str, str], labels: dict[str, uuid.UUID]) -> list[ItemIn]:
    """The builder's rows (``name-1``, ``dose-1``...) as medicines; empty rows are skipped."""
    items: list[ItemIn] = []
    n = 1
    while f"name-{n}" in form:
        name = form.get(f"name-{n}", "").strip()
        if name:
            drug_id = labels.get(name)

            days = _number(form.get(f"days-{n}", ""))
            refills = _number(form.get(f"refills-{n}", ""))
            items.append(
                ItemIn.model_validate(
                    {
                        "drugId": drug_id,
                        "name": None if drug_id else name[:200],
                        "dose": form.get(f"dose-{n}", "")[:80] or None,
                        "frequency": form.get(f"frequency-{n}", "")[:60] or None,
                        "durationDays": days,
                        "timing": form.get(f"timing-{n}") or None,
                        "route": form.get(f"route-{n}") or None,
                        "instructions": form.get(f"instructions-{n}", "")[:500] or None,
                        "genericAllowed": form.get(f"generic-{n}") == "on",
                        "refills": refills if refills is not None else 0,
                    }
                )
            )
        n += 1
    return items


def _builder(
    request: Request,
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    who: Principal,
    prescription: Prescription,
) -> Response:
    items = prescriptions.items_of(session, cipher, prescription)
    draft = prescription.issued_at is None
    can_write = allowed(who.role, "prescriptions:write")
    flags = (
        prescriptions.allergy_check(session, cipher, prescription)
        if draft
        else prescription.allergy_flags
    )
    patient = records.by_id(session, Patient, prescription.patient_id)
    doctor = records.by_id(session, DoctorProfile, prescription.doctor_id)
    editing = draft and can_write
    # A formulary medicine is shown by its label (name, strength, form), so saving the
    # form again keeps it the formulary's drug instead of free text of its name only.
    labels = _drug_labels(session, ctx) if editing else {}
    return render(
        request,
        "clinical/rx_builder.html",
        prescription=prescription,
        items=items,
        rows=[*items, *([None] * BLANK_ROWS)] if editing else items,
        flags=flags,
        patient=patient,
        allergies=prescriptions.patient_allergies(cipher, patient),
        doctor=doctor,
        editing=editing,
        can_write=can_write,
        labels=sorted(labels),
        drug_labels={drug_id: label for label, drug_id in labels.items()},
        templates=prescriptions.templates(session, ctx) if editing else [],
        timings=prescriptions.TIMINGS,
        routes=prescriptions.ROUTES,
        check=prescriptions.check(session, cipher, prescription, prescription.signed_hash or "")
        if not draft
        else None,
        token=prescriptions.token_of(prescription) if not draft else None,
    )


@router.post("/prescriptions/new")
def start_page(
    request: Request, session: DbSession, ctx: Ctx, form: PostedForm, _: Writer
) -> Response:
    """Open the visit's draft prescription (from the consultation screen)."""
    try:
        visit_id = uuid.UUID(form.get("visit_id", ""))
    except ValueError:
        return flash(request, "/", "Choose a visit to prescribe for.", "error")
    return attempt(
        request,
        session,
        lambda: prescriptions.start(session, ctx, visit_id=visit_id),
        done=lambda p: flash(request, _page_url(p.id), "Prescription opened."),
        failed="/",
    )


@router.get("/prescriptions/{prescription_id}")
def builder_page(
    request: Request,
    who: Reader,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Response:
    """The builder (a doctor's draft) or the issued prescription with its check."""
    return _builder(request, session, ctx, cipher, who, prescription)


def _action(
    request: Request, session: Session, prescription: Prescription, action: Any, message: str
) -> Response:
    url = _page_url(prescription.id)
    return attempt(request, session, action, done=url, message=message, failed=url)


@router.post("/prescriptions/{prescription_id}/items")
def save_items_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """Save the medicines typed in the builder."""
    labels = _drug_labels(session, ctx)

    def save() -> object:
        try:
            items = items_from_form(form, labels)
        except ValueError as error:
            raise InvalidInput([FieldError("Medicines", str(error).splitlines()[0])]) from None
        return prescriptions.set_items(
            session, ctx, cipher, prescription_id=prescription.id, items=items
        )

    return _action(request, session, prescription, save, "Medicines saved.")


@router.post("/prescriptions/{prescription_id}/acknowledge")
def acknowledge_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """Acknowledge one warning."""
    index = form.get("index", "")
    return _action(
        request,
        session,
        prescription,
        lambda: prescriptions.acknowledge(
            session,
            ctx,
            cipher,
            prescription_id=prescription.id,
            index=int(index) if ascii_digits(index) else -1,
        ),
        "Warning acknowledged.",
    )


@router.post("/prescriptions/{prescription_id}/issue")
def issue_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    settings: AppSettings,
) -> Response:
    """Sign and issue: the prescription cannot change after this."""
    return _action(
        request,
        session,
        prescription,
        lambda: prescriptions.issue(
            session, ctx, cipher, prescription_id=prescription.id, base_url=settings.base_url
        ),
        "Prescription signed and issued.",
    )


@router.post("/prescriptions/{prescription_id}/change")
def change_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Response:
    """Start a new prescription that replaces this issued one."""
    return attempt(
        request,
        session,
        lambda: prescriptions.change(session, ctx, cipher, prescription_id=prescription.id),
        done=lambda p: flash(
            request, _page_url(p.id), "A new version to replace the issued prescription."
        ),
        failed=_page_url(prescription.id),
    )


@router.post("/prescriptions/{prescription_id}/repeat-last")
def repeat_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Response:
    """Add the medicines of the patient's last prescription."""
    return _action(
        request,
        session,
        prescription,
        lambda: prescriptions.repeat_last(session, ctx, cipher, prescription_id=prescription.id),
        "Last prescription repeated.",
    )


@router.post("/prescriptions/{prescription_id}/apply-template")
def apply_template_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """Add a template's medicines."""

    def apply() -> object:
        try:
            template_id = uuid.UUID(form.get("template_id", ""))
        except ValueError:
            raise InvalidInput([FieldError("Template", "choose one of your templates")]) from None
        return prescriptions.apply_template(
            session, ctx, cipher, prescription_id=prescription.id, template_id=template_id
        )

    return _action(request, session, prescription, apply, "Template added.")


@router.post("/prescriptions/{prescription_id}/save-template")
def save_template_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """Keep these medicines as a template."""
    return _action(
        request,
        session,
        prescription,
        lambda: prescriptions.save_template(
            session,
            ctx,
            cipher,
            prescription_id=prescription.id,
            name=form.get("template_name", ""),
        ),
        "Template saved.",
    )


@router.post("/prescriptions/{prescription_id}/discard")
def discard_page(
    request: Request,
    _: Writer,
    prescription: InPath,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """Delete this draft and its medicines."""
    return attempt(
        request,
        session,
        lambda: prescriptions.discard(session, ctx, prescription_id=prescription.id),
        done="/",
        message="Draft prescription deleted.",
        failed=_page_url(prescription.id),
    )


@router.get("/prescriptions/{prescription_id}/pdf")
def prescription_pdf_page(
    request: Request,
    _: Reader,
    prescription: InPath,
    session: DbSession,
    cipher: Cipher,
) -> Response:
    """The issued prescription as a PDF."""
    return _pdf_response(request, session, cipher, prescription)


@router.get("/pharmacy/prescriptions")
def pharmacy_page(
    request: Request,
    session: DbSession,
    cipher: Cipher,
    _: Reader,
    q: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """Find a prescription by its QR link or code, its id, or the patient's number."""
    found: list[Prescription] = []
    checked: prescriptions.Check | None = None
    message = ""
    query = q.strip()
    if query:
        parsed = prescriptions.parse_token(query)
        if parsed is not None:
            _clinic, prescription_id, given = parsed
            row = _issued(session, prescription_id)
            if row is not None:
                checked = prescriptions.check(session, cipher, row, given)
        else:
            try:
                row = _issued(session, uuid.UUID(query))
            except ValueError:
                row = None
            if row is not None:
                checked = prescriptions.check(session, cipher, row, row.signed_hash or "")
            else:
                number = patient_queries.patient_number(query)
                if number is not None:
                    ids = [p.id for p in patient_queries.by_number(session, number)]
                    found = prescriptions.issued_for(session, ids) if ids else []
        if checked is None and not found:
            message = "No issued prescription of this clinic matches."
    patients = {
        p.id: p
        for p in (records.by_id(session, Patient, pid) for pid in {f.patient_id for f in found})
    }
    return render(
        request,
        "clinical/rx_pharmacy.html",
        q=query,
        found=found,
        patients=patients,
        checked=checked,
        message=message,
    )


def _issued(session: Session, prescription_id: uuid.UUID) -> Prescription | None:
    """This clinic's issued prescription with that id (row-level security hides others)."""
    row = session.execute(
        select(Prescription).where(Prescription.id == prescription_id)
    ).scalar_one_or_none()
    return row if row is not None and row.issued_at is not None else None


@router.get("/rx/verify/{token}")
def verify_page(
    request: Request, token: str, session: DbSession, ctx: Ctx, cipher: Cipher, _: Anyone
) -> Response:
    """What a pharmacy sees after scanning: valid, superseded or tampered (public)."""
    try:
        checked = prescriptions.verify_token(session, ctx, cipher, token)
    except DomainError:
        return render(request, "clinical/rx_verify.html", 404, checked=None)
    return render(request, "clinical/rx_verify.html", checked=checked, age=_age(checked.patient))


def _age(patient: Patient) -> int:
    return age_of(patient, date.today())[0]


MINE_IN_FULL = 3


@router.get("/me/prescriptions")
def my_prescriptions_page(
    request: Request, session: DbSession, cipher: Cipher, _: Me, family: MyFamily
) -> Response:
    """The signed-in patient's (and their family's) issued prescriptions."""
    issued = prescriptions.issued_for(session, family.ids)
    replaced = {p.supersedes for p in issued if p.supersedes}
    people = {i: records.by_id(session, Patient, i) for i in {p.patient_id for p in issued}}
    doctors = {i: records.by_id(session, DoctorProfile, i) for i in {p.doctor_id for p in issued}}
    # The newest few in full; a patient of years has dozens, and the rest fold away.
    shown = [p for p in issued if p.id not in replaced][:MINE_IN_FULL]
    rows = [
        (p, people[p.patient_id], doctors[p.doctor_id], prescriptions.items_of(session, cipher, p))
        for p in shown
    ]
    older = [(p, people[p.patient_id], doctors[p.doctor_id]) for p in issued if p not in shown]
    return render(request, "clinical/rx_mine.html", rows=rows, older=older, replaced=replaced)


@router.get("/me/prescriptions/{prescription_id}/pdf")
def my_prescription_pdf(
    request: Request, _: Me, prescription: Mine, session: DbSession, cipher: Cipher
) -> Response:
    """One of the family's issued prescriptions as a PDF."""
    return _pdf_response(request, session, cipher, prescription)


def item_summary(item: ItemView) -> str:
    return " ".join(p for p in (item.name, item.strength or "", item.form or "") if p)
