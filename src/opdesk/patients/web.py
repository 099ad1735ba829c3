"""Pages: patient search (the front desk's home), registration, profile, edit, delete."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from opdesk.consents import service as consents
from opdesk.consents.deps import sign_here
from opdesk.consents.models import CONSENT_TYPES
from opdesk.context import RequestContext
from opdesk.documents import service as documents
from opdesk.documents.deps import Store
from opdesk.documents.models import CATEGORIES as DOCUMENT_CATEGORIES
from opdesk.errors import Conflict, DomainError, InvalidInput, NotFound
from opdesk.formatting import local_time
from opdesk.identity.deps import Ident
from opdesk.identity.sessions import Principal
from opdesk.patients import queries, service
from opdesk.patients.deps import PatientInPath
from opdesk.patients.models import GENDERS
from opdesk.patients.schemas import PatientCreate, PatientUpdate
from opdesk.security.permissions import allowed
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting, services
from opdesk.web.pages import attempt, flash, render
from opdesk.web.templating import NavEntry, form_errors

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Patients", "/patients", "patients:read", "desk"),)
Reader = Annotated[Principal, acting("patients:read")]
Writer = Annotated[Principal, acting("patients:write")]
Deleter = Annotated[Principal, acting("patients:delete")]

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
    "allergies",
    "chronic_conditions",
    "ongoing_medications",
    "emergency_contact.name",
    "emergency_contact.phone",
    "guardian",
    "guardian_relation",
)


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("genders", list(GENDER_LABELS.items()))
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
    )


@router.get("/patients/results")
def search_results(
    request: Request, session: DbSession, ctx: Ctx, _: Reader, q: str = ""
) -> Response:
    """The live results under the search box (htmx swaps this in as you type)."""
    return _page(request, "patients/_results.html", q=q, results=_results(request, session, ctx, q))


def _results(request: Request, session: Session, ctx: RequestContext, q: str) -> list[Any]:
    today = service.today_at_clinic(session, ctx)
    return [
        queries.summary(p, today) for p in queries.search(session, services(request).cipher, q[:80])
    ]


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


def _field_errors(exc: ValidationError) -> dict[str, str]:
    errors = {}
    for name, reason in form_errors(exc).items():
        if name == "__all__":
            name = "dob" if "date of birth" in reason or "age" in reason else "phone"
        name = name.replace("guardian_id", "guardian")
        errors[re.sub(r"\.\d+(\.\w+)?$", "", name)] = reason
    return errors


async def _form_fields(request: Request) -> dict[str, str]:
    """The posted form as a flat dict (its field names carry dots, e.g. ``name.first``)."""
    form = await request.form()
    return {k: str(v) for k, v in form.items() if k in TEXT_FIELDS or k.startswith("flags.")}


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


@router.get("/patients/new")
def new_patient_form(request: Request, _: Writer) -> Response:
    return _page(request, "patients/form.html", values={}, patient=None)


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
        return again(*_refusal(problem), existing=problem.extra.get("existingId"))

    try:
        data = PatientCreate.model_validate(form_to_fields(values, session))
    except ValidationError as exc:
        return again(422, _field_errors(exc))
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
    if isinstance(problem, Conflict):
        return 409, {"phone": problem.detail}
    raise problem


@router.get("/patients/{patient_id}")
def profile(
    request: Request,
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    who: Reader,
    cipher: Cipher,
) -> Response:
    patient = service.get(session, patient_id)
    today = service.today_at_clinic(session, ctx)
    view = service.read(cipher, patient, today)
    family = [queries.summary(p, today) for p in service.dependents(session, patient.id)]
    guardian = service.get(session, patient.guardian_id) if patient.guardian_id else None
    docs = documents.of_patient(session, patient.id)
    return _page(
        request,
        "patients/profile.html",
        patient=view,
        family=family,
        guardian=guardian,
        documents=docs,
        links=documents.live_links(session, [d.id for d in docs], ctx.now()),
        categories=DOCUMENT_CATEGORIES,
        consents=consents.latest(session, patient.id),
        consent_types=sorted({t.type for t in consents.templates(session)}),
        may_edit=allowed(who.role, "patients:write"),
        may_delete=allowed(who.role, "patients:delete"),
        gender_labels=GENDER_LABELS,
    )


@router.post("/patients/{patient_id}/documents")
def upload_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
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
        return flash(request, back, str(exc), "error")
    except InvalidInput as exc:
        reasons = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
        return flash(request, back, reasons, "error")
    return flash(request, back, f"Uploaded {doc.filename}.")


@router.post("/patients/{patient_id}/documents/{document_id}/share")
def share_from_page(
    request: Request,
    patient_id: uuid.UUID,
    document_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    settings: AppSettings,
) -> Response:
    made = documents.share(session, ctx, document_id=document_id)
    base = settings.base_url.rstrip("/")
    until = local_time(made.link.expires_at)
    message = f"Share link (works until {until}): {base}/s/{made.token}"
    return flash(request, f"/patients/{patient_id}", message)


@router.post("/patients/{patient_id}/consents")
def consent_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    patient: PatientInPath,
    type: Annotated[str, Form()] = "",
) -> Response:
    """Record that the patient signed the current text of a consent, here at the desk."""
    back = f"/patients/{patient.id}"
    if type not in CONSENT_TYPES:
        return flash(request, back, "Choose a consent type.", "error")
    consent = sign_here(
        request, session, ctx, patient_id=patient.id, type_=type, method="in-clinic"
    )
    message = (
        f"Recorded {type} consent (version {consent.version}); the signed copy is under Documents."
    )
    return flash(request, back, message)


@router.post("/patients/{patient_id}/consents/{consent_id}/revoke")
def revoke_consent_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    patient: PatientInPath,
    consent_id: uuid.UUID,
) -> Response:
    if consents.get(session, consent_id).patient_id != patient.id:
        raise NotFound(f"no consent with id {consent_id} for this patient")
    consents.revoke(session, ctx, consent_id=consent_id)
    return flash(request, f"/patients/{patient.id}", "Consent revoked.")


@router.post("/patients/{patient_id}/share-links/{link_id}/revoke")
def revoke_link_from_page(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    patient: PatientInPath,
    link_id: uuid.UUID,
) -> Response:
    link = documents.get_link(session, link_id)
    if documents.get(session, link.document_id).owner_id != patient.id:
        raise NotFound(f"no share link with id {link_id} for this patient")
    documents.revoke(session, ctx, link_id=link_id)
    return flash(request, f"/patients/{patient.id}", "Link revoked.")


@router.get("/patients/{patient_id}/edit")
def edit_form(
    request: Request, patient_id: uuid.UUID, session: DbSession, ctx: Ctx, _: Writer, cipher: Cipher
) -> Response:
    patient = service.get(session, patient_id)
    view = service.read(cipher, patient, service.today_at_clinic(session, ctx))
    guardian = service.get(session, patient.guardian_id) if patient.guardian_id else None
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
    view = service.read(cipher, current, service.today_at_clinic(session, ctx))

    def again(status: int, errors: dict[str, str]) -> Response:
        return _page(
            request, "patients/form.html", status, values=values, errors=errors, patient=view
        )

    fields = form_to_fields(values, session)
    fields["guardian_id"] = fields.get("guardian_id")
    for name in ("dob", "age_years"):
        if not values.get(name):
            fields.pop(name, None)
    try:
        changes = PatientUpdate.model_validate(fields)
    except ValidationError as exc:
        return again(422, _field_errors(exc))
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
    request: Request, patient_id: uuid.UUID, session: DbSession, ctx: Ctx, _: Deleter
) -> Response:
    service.delete(session, ctx, patient_id=patient_id)
    return flash(request, "/patients", "Patient deleted. An admin can restore them.")


@router.post("/patients/{patient_id}/restore")
def restore_from_page(
    request: Request, patient_id: uuid.UUID, session: DbSession, ctx: Ctx, _: Deleter
) -> Response:
    service.restore(session, ctx, patient_id=patient_id)
    return flash(request, f"/patients/{patient_id}", "Patient restored.")


__all__ = ["GENDERS", "NAV", "router"]
