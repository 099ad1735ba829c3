"""Consent pages: the clinic's texts for the admin (read every published version in each
of its languages, write the next one from the latest, add a translation of the version in
force), and at the desk the text a patient signs, in their language, shown before their
agreement is recorded.
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
from opdesk.consents.schemas import TemplateCreate, TranslationCreate
from opdesk.errors import Conflict, DomainError
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import PatientInPath
from opdesk.patients.models import LANGUAGES, Patient
from opdesk.patients.schemas import LANGUAGE_NAMES
from opdesk.validation import ascii_digits
from opdesk.web.deps import Ctx, DbSession, acting
from opdesk.web.pages import attempt, flash, render
from opdesk.web.templating import NavEntry, form_errors, readable

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("Consent texts", "/admin/consents", "clinic:manage", "admin"),)
Manager = Annotated[Principal, acting("clinic:manage")]
Writer = Annotated[Principal, acting("patients:write")]
UNKNOWN_LANGUAGE = "Language: choose one of the languages the text is written in, shown above."
NOT_SHOWN = (
    "The consent text was not shown with this form. Show the patient the text below, "
    "then record their agreement."
)


FIELD_LABELS = {"type": "Type", "language": "Language", "title": "Title", "body": "Text"}


def _render(request: Request, session: Session, status: int = 200, **context: object) -> Response:
    options = [(t, LABELS[t]) for t in CONSENT_TYPES]
    # by type, then version (newest first), each version's rows in language order
    by_type: dict[str, list[list[ConsentTemplate]]] = {}
    for t in service.templates(session):
        versions = by_type.setdefault(t.type, [])
        if versions and versions[-1][0].version == t.version:
            versions[-1].append(t)
        else:
            versions.append([t])
    return render(
        request,
        "consents/admin.html",
        status,
        by_type=by_type,
        types=options,
        type_labels=LABELS,
        language_options=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        language_names=LANGUAGE_NAMES,
        **context,
    )


@router.get("/admin/consents")
def consent_texts(
    request: Request,
    session: DbSession,
    _: Manager,
    type: str = "",
    language: str = "",
    translate: str = "",
) -> Response:
    """Every published version in each of its languages, readable. ``?type=`` starts the
    next version of that type from the text in force (in ``?language=``, English unless
    given; a type without a text yet starts empty); with ``&translate=1`` it adds a
    translation of the version in force instead.
    """
    values: dict[str, str] = {}
    if type in CONSENT_TYPES and translate:
        return _render(request, session, values={"type": type}, translating=True)
    if type in CONSENT_TYPES:
        chosen = language if language in LANGUAGES else service.ENGLISH
        values = {"type": type, "language": chosen}
        rows = service.in_force_of(session, type)
        if rows:
            latest = service.in_language(rows, chosen)
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
    language: Annotated[str, Form()] = "en",
) -> Response:
    """Publish a new version, in one language; patients sign the newest version from now
    on, and the previous version's translations are no longer in force.
    """
    values = {"type": type, "title": title, "body": body, "language": language}
    try:
        data = TemplateCreate.model_validate(values)
    except ValidationError as exc:
        return _render(request, session, 422, values=values, errors=form_errors(exc))
    template = service.add_template(
        session, ctx, type_=data.type, title=data.title, body=data.body, language=data.language
    )
    message = (
        f"Published version {template.version} of {LABELS[template.type]}"
        f" in {service.language_name(template.language)}."
        if template.language != service.ENGLISH
        else f"Published version {template.version} of {LABELS[template.type]}."
    )
    return flash(request, "/admin/consents", message)


@router.post("/admin/consents/translations")
def add_consent_translation(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Manager,
    type: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    """Add the version in force in one more language; its number stays the same."""
    values = {"type": type, "version": version, "language": language, "title": title}
    values["body"] = body
    if type not in CONSENT_TYPES:
        return _render(
            request, session, 422, values={}, problem="Choose which consent to translate."
        )
    try:
        data = TranslationCreate.model_validate(values)
    except ValidationError as exc:
        return _render(
            request, session, 422, values=values, errors=form_errors(exc), translating=True
        )

    def refused(error: DomainError) -> Response:
        return _render(
            request,
            session,
            error.status,
            values=values,
            translating=True,
            problem=readable(error, FIELD_LABELS),
        )

    return attempt(
        request,
        session,
        lambda: service.add_translation(
            session,
            ctx,
            type_=data.type,
            version=data.version,
            language=data.language,
            title=data.title,
            body=data.body,
        ),
        done=lambda t: flash(
            request,
            "/admin/consents",
            f"Added {service.language_name(t.language)} to version {t.version} "
            f"of {LABELS[t.type]}.",
        ),
        failed=refused,
    )


# ------------------------------------------------------------------ at the desk


def _reading_page(
    request: Request,
    session: Session,
    patient: Patient,
    type_: str,
    *,
    language: str = "",
    status: int = 200,
    problem: str | None = None,
) -> Response:
    in_force = service.in_force(session)
    reading = (
        service.reading(
            session, type_, preferred=patient.preferred_language, chosen=language or None
        )
        if type_ in in_force
        else None
    )
    return render(
        request,
        "consents/desk_read.html",
        status,
        patient=patient,
        reading=reading,
        text=reading.text if reading else None,
        choices=[(t, LABELS[t]) for t in CONSENT_TYPES if t in in_force],
        language_names=LANGUAGE_NAMES,
        problem=problem,
    )


@router.get("/patients/{patient_id}/consents/new")
def read_consent_at_desk(
    request: Request,
    session: DbSession,
    _: Writer,
    patient: PatientInPath,
    type: str = "",
    language: str = "",
) -> Response:
    """The text in force of one consent type, to show the patient before they sign: in
    their preferred language when written in it (else English, saying so), with a switch
    to the other languages of the text.
    """
    return _reading_page(request, session, patient, type, language=language)


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
    language: Annotated[str, Form()] = "",
) -> Response:
    """Record that the patient signed the version shown on the reading page (in the clinic),
    in the language shown; without that version, or with one no longer in force, the text
    is shown again.
    """
    if type not in CONSENT_TYPES:
        return _reading_page(
            request, session, patient, "", status=422, problem="Choose which consent to record."
        )
    if not ascii_digits(version):
        return _reading_page(
            request, session, patient, type, language=language, status=422, problem=NOT_SHOWN
        )
    if language and language not in LANGUAGES:
        return _reading_page(request, session, patient, type, status=422, problem=UNKNOWN_LANGUAGE)

    def refused(error: DomainError) -> Response:
        status = error.status if isinstance(error, Conflict) else 422
        return _reading_page(
            request,
            session,
            patient,
            type,
            language=language,
            status=status,
            problem=readable(error, FIELD_LABELS),
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
            language=language or None,
        ),
        done=lambda consent: flash(
            request,
            f"/patients/{patient.id}",
            f"Recorded {LABELS[type]} consent (version {consent.version}); "
            "the signed copy is under Documents.",
        ),
        failed=refused,
    )
