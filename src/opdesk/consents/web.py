"""Consent pages: the clinic's texts for the admin (read every published version, write
the next one from the latest), and at the desk the text a patient signs, shown before
their agreement is recorded.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from opdesk.consents import service
from opdesk.consents.deps import sign_here
from opdesk.consents.models import CONSENT_TYPES, LABELS, ConsentTemplate
from opdesk.consents.schemas import TemplateCreate
from opdesk.errors import Conflict, DomainError
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import PatientInPath
from opdesk.patients.models import Patient
from opdesk.web.deps import Ctx, DbSession, acting
from opdesk.web.pages import attempt, flash, render
from opdesk.web.templating import NavEntry, form_errors, readable

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Consent texts", "/admin/consents", "clinic:manage", "admin"),)
Manager = Annotated[Principal, acting("clinic:manage")]
Writer = Annotated[Principal, acting("patients:write")]
NOT_SHOWN = (
    "The consent text was not shown with this form. Show the patient the text below, "
    "then record their agreement."
)


def _render(request: Request, session: Session, status: int = 200, **context: object) -> Response:
    options = [(t, LABELS[t]) for t in CONSENT_TYPES]
    versions = service.templates(session)  # by type, newest version first
    by_type: dict[str, list[ConsentTemplate]] = {}
    for t in versions:
        by_type.setdefault(t.type, []).append(t)
    return render(
        request,
        "consents/admin.html",
        status,
        by_type=by_type,
        types=options,
        type_labels=LABELS,
        **context,
    )


@router.get("/admin/consents")
def consent_texts(request: Request, session: DbSession, _: Manager, type: str = "") -> Response:
    """Every published version, readable; ``?type=`` starts the next version of that type
    from the latest text (a type without a text yet starts empty).
    """
    values: dict[str, str] = {}
    if type in CONSENT_TYPES:
        latest = service.published(session).get(type)
        values = {"type": type}
        if latest is not None:
            values |= {"title": latest.title, "body": latest.body}
    return _render(request, session, values=values)


@router.post("/admin/consents")
def add_consent_text(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    type: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    """Publish a new version; patients sign the newest version from now on."""
    values = {"type": type, "title": title, "body": body}
    try:
        data = TemplateCreate.model_validate(values)
    except ValidationError as exc:
        return _render(request, session, 422, values=values, errors=form_errors(exc))
    template = service.add_template(session, ctx, type_=data.type, title=data.title, body=data.body)
    message = f"Published version {template.version} of {LABELS[template.type]}."
    return flash(request, "/admin/consents", message)


# ------------------------------------------------------------------ at the desk


def _reading_page(
    request: Request,
    session: Session,
    patient: Patient,
    type_: str,
    *,
    status: int = 200,
    problem: str | None = None,
) -> Response:
    published = service.published(session)
    return render(
        request,
        "consents/desk_read.html",
        status,
        patient=patient,
        text=published.get(type_),
        choices=[(t, LABELS[t]) for t in CONSENT_TYPES if t in published],
        problem=problem,
    )


@router.get("/patients/{patient_id}/consents/new")
def read_consent_at_desk(
    request: Request, session: DbSession, _: Writer, patient: PatientInPath, type: str = ""
) -> Response:
    """The text in force of one consent type, to show the patient before they sign."""
    return _reading_page(request, session, patient, type)


@router.post("/patients/{patient_id}/consents/new")
def record_consent_at_desk(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Writer,
    patient: PatientInPath,
    type: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    text_hash: Annotated[str, Form()] = "",
) -> Response:
    """Record that the patient signed the version shown on the reading page (in the clinic);
    without that version, or with one no longer in force, the text is shown again.
    """
    if type not in CONSENT_TYPES:
        return _reading_page(
            request, session, patient, "", status=422, problem="Choose which consent to record."
        )
    if not version.isdigit():
        return _reading_page(request, session, patient, type, status=422, problem=NOT_SHOWN)

    def refused(error: DomainError) -> Response:
        status = error.status if isinstance(error, Conflict) else 422
        return _reading_page(
            request, session, patient, type, status=status, problem=readable(error)
        )

    return attempt(
        request,
        session,
        lambda: sign_here(
            request,
            session,
            ctx,
            patient_id=patient.id,
            type_=type,
            method="in-clinic",
            version=int(version),
            text_hash=text_hash or None,
        ),
        done=lambda consent: flash(
            request,
            f"/patients/{patient.id}",
            f"Recorded {LABELS[type]} consent (version {consent.version}); "
            "the signed copy is under Documents.",
        ),
        failed=refused,
    )
