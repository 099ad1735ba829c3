"""The patient's portal home (their family's records), giving and withdrawing consent,
opening documents. Booking is in booking.py, signing in in sign_in.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk.consents import service as consents
from opdesk.consents.deps import MyConsent, sign_here
from opdesk.consents.models import CONSENT_TYPES, consent_label
from opdesk.documents import service as documents
from opdesk.documents.deps import MyDocument, file_response
from opdesk.errors import DomainError, NotFound
from opdesk.identity.sessions import Principal
from opdesk.patients import queries as patient_queries
from opdesk.patients import service as patients
from opdesk.patients.deps import MyFamily
from opdesk.patients.models import LANGUAGES
from opdesk.patients.models import Patient as PatientRecord
from opdesk.patients.schemas import LANGUAGE_NAMES
from opdesk.tenancy import service as tenants
from opdesk.validation import ascii_digits
from opdesk.web.deps import Cipher, Ctx, DbSession, acting
from opdesk.web.pages import attempt, flash, render
from opdesk.web.templating import NavEntry, readable

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("My clinic", "/me", "portal:self", "patient"),)
Patient = Annotated[Principal, acting("portal:self")]
NOT_READ = (
    "Please read the text first: your consent is recorded only with the version you read. "
    "Read it below and tap “I agree” if you agree."
)


def _consent_page(
    request: Request,
    session: Session,
    patient: PatientRecord,
    type_: str,
    *,
    language: str = "",
    status: int = 200,
    problem: str | None = None,
) -> Response:
    """The text of one consent, in force now, with the "I agree" form under it: in the
    patient's preferred language when it is written in it (else English, with a note),
    or in the language chosen with the switch.
    """
    reading = (
        consents.reading(
            session, type_, preferred=patient.preferred_language, chosen=language or None
        )
        if type_ in CONSENT_TYPES
        else None
    )
    if reading is None:
        raise NotFound("the clinic has no consent text of this kind")
    return render(
        request,
        "portal/consent.html",
        status,
        patient=patient,
        reading=reading,
        text=reading.text,
        language_names=LANGUAGE_NAMES,
        problem=problem,
    )


@router.get("/me/patients/{patient_id}/consents/new")
def read_consent(
    request: Request,
    session: DbSession,
    _: Patient,
    family: MyFamily,
    patient_id: uuid.UUID,
    type: str = "",
    language: str = "",
) -> Response:
    """Read the clinic's text before agreeing (for yourself or a family member), in your
    language where the clinic wrote it in it; ``?language=`` switches.
    """
    patient = family.patient(session, patient_id)
    return _consent_page(request, session, patient, type, language=language)


@router.post("/me/patients/{patient_id}/consents/new")
def give_consent(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Patient,
    family: MyFamily,
    patient_id: uuid.UUID,
    type: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    text_hash: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
) -> Response:
    """ "I agree" under the text: the version, language and text hash shown are what is
    recorded, and only while that version is in force (the session itself was opened
    with a one-time code to the phone). Without them, or after the clinic changed the
    text, the current text is shown again to read.
    """
    patient = family.patient(session, patient_id)
    if type not in CONSENT_TYPES:
        raise NotFound("the clinic has no consent text of this kind")
    if not ascii_digits(version) or not text_hash or (language and language not in LANGUAGES):
        return _consent_page(
            request, session, patient, type, language=language, status=422, problem=NOT_READ
        )

    def refused(error: DomainError) -> Response:
        return _consent_page(
            request,
            session,
            patient,
            type,
            language=language,
            status=error.status,
            problem=readable(error, {"language": "Language"}),
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
            method="otp",
            version=int(version),
            text_hash=text_hash,
            language=language or None,
        ),
        done=lambda consent: flash(
            request,
            "/me",
            f"Thank you. Your consent to {consent_label(type)} (version {consent.version}) "
            "is recorded; a copy is under Documents.",
        ),
        failed=refused,
    )


@router.post("/me/consents/{consent_id}/revoke")
def withdraw_consent(
    request: Request, _: Patient, consent: MyConsent, session: DbSession, ctx: Ctx
) -> Response:
    consents.revoke(session, ctx, consent_id=consent.id)
    return flash(request, "/me", "Your consent is withdrawn.")


@router.get("/me/documents/{document_id}")
def open_document(request: Request, _: Patient, doc: MyDocument) -> Response:
    """A document of the patient or their family; anyone else's answers 404."""
    return file_response(request, doc)


@router.get("/me")
def patient_home(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("portal:self")],
    cipher: Cipher,
) -> Response:
    tenant = tenants.get_tenant(session, who.tenant_id)
    today = patients.today_at_clinic(session, ctx)
    records = [
        {
            "patient": patients.read(cipher, p, today),
            "consents": consents.latest(session, p.id),
            "documents": documents.of_patient(session, p.id),
        }
        for p in patient_queries.of_portal_user(session, who.user_id)
    ]
    types = sorted(consents.published(session))
    return render(request, "portal/home.html", clinic=tenant, records=records, consent_types=types)
