"""REST: consent templates (admin), signing and revoking at the desk and from the portal."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from opdesk.consents import service
from opdesk.consents.deps import MyConsent, sign_here
from opdesk.consents.schemas import (
    ConsentOut,
    ConsentTextOut,
    PortalSignRequest,
    SignRequest,
    TemplateCreate,
    TemplateOut,
    TranslationCreate,
)
from opdesk.context import RequestContext
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import Family, MyFamily, patient_in_path
from opdesk.patients.models import Patient
from opdesk.patients.schemas import Language
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.web.deps import Ctx, DbSession, acting

router = APIRouter(tags=["consents"], responses=PROBLEM_RESPONSES)


@router.post("/consent-templates", response_model=TemplateOut, status_code=201)
def add_template(
    body: TemplateCreate,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("clinic:manage")],
) -> TemplateOut:
    """A new version of the clinic's text for one consent type, in one language (English
    unless given); the previous version, in every language, is no longer in force.
    """
    template = service.add_template(
        session, ctx, type_=body.type, title=body.title, body=body.body, language=body.language
    )
    return TemplateOut.model_validate(template)


@router.post("/consent-templates/translations", response_model=TemplateOut, status_code=201)
def add_translation(
    body: TranslationCreate,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("clinic:manage")],
) -> TemplateOut:
    """The version in force in one more language, same version number (409 if ``version``
    is no longer in force or already has that language).
    """
    template = service.add_translation(
        session,
        ctx,
        type_=body.type,
        version=body.version,
        language=body.language,
        title=body.title,
        body=body.body,
    )
    return TemplateOut.model_validate(template)


@router.get("/consent-templates", response_model=list[TemplateOut])
def list_templates(
    session: DbSession, _: Annotated[Principal, acting("patients:read")]
) -> list[TemplateOut]:
    return [TemplateOut.model_validate(t) for t in service.templates(session)]


def _sign(
    request: Request,
    session: Session,
    ctx: RequestContext,
    patient_id: uuid.UUID,
    body: SignRequest,
    method: str,
) -> ConsentOut:
    consent = sign_here(
        request,
        session,
        ctx,
        patient_id=patient_id,
        type_=body.type,
        method=method,
        version=body.version,
        text_hash=body.text_hash,
        language=body.language,
    )
    return ConsentOut.model_validate(consent)


@router.post("/patients/{patient_id}/consents", response_model=ConsentOut, status_code=201)
def sign_in_clinic(
    body: SignRequest,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:write")],
    patient: Annotated[Patient, Depends(patient_in_path)],
) -> ConsentOut:
    """The patient signs, at the desk, the version of the text they were shown (409 if it is
    no longer the one in force); the signed PDF joins their documents.
    """
    return _sign(request, session, ctx, patient.id, body, "in-clinic")


@router.get("/patients/{patient_id}/consents", response_model=list[ConsentOut])
def latest_consents(
    session: DbSession,
    _: Annotated[Principal, acting("patients:read")],
    patient: Annotated[Patient, Depends(patient_in_path)],
) -> list[ConsentOut]:
    """The newest consent of each type (revoked ones show ``revokedAt``)."""
    return [ConsentOut.model_validate(c) for c in service.latest(session, patient.id)]


@router.post("/consents/{consent_id}/revoke", response_model=ConsentOut)
def revoke(
    consent_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:write")],
) -> ConsentOut:
    return ConsentOut.model_validate(service.revoke(session, ctx, consent_id=consent_id))


@router.post("/me/consents", response_model=ConsentOut, status_code=201)
def sign_from_portal(
    body: PortalSignRequest,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("portal:self")],
    family: MyFamily,
) -> ConsentOut:
    """A signed-in patient (their phone proven by OTP) agrees, for themself or family, to
    the version they read (``GET /me/consent-texts``); an outdated version is 409.
    """
    patient = family.patient(session, body.patient_id)
    return _sign(request, session, ctx, patient.id, body, "otp")


@router.get("/me/consent-texts", response_model=list[ConsentTextOut])
def texts_for_patients(
    session: DbSession,
    _: Annotated[Principal, acting("portal:self")],
    family: MyFamily,
    patient_id: Annotated[uuid.UUID | None, Query(alias="patientId")] = None,
    language: Language | None = None,
) -> list[ConsentTextOut]:
    """The clinic's texts in force, one per consent type: what a patient reads (and names
    by version, hash and language) before agreeing. Each is in the preferred language of
    the patient (``patientId``, one of the family; else the account holder), else English
    with a ``note``; ``language`` asks for another language where the text has it.
    """
    if patient_id is not None:
        preferred = family.patient(session, patient_id).preferred_language
    else:
        preferred = _holder_language(session, family)
    return [
        ConsentTextOut.model_validate(
            {
                **TemplateOut.model_validate(r.text).model_dump(),
                "languages": list(r.languages),
                "preferred_language": r.preferred,
                "note": r.note,
            }
        )
        for r in service.readings(session, preferred=preferred, chosen=language)
    ]


def _holder_language(session: Session, family: Family) -> str:
    """The preferred language of the family's account holder (not a dependent)."""
    members = [family.patient(session, pid) for pid in family.ids]
    holders = [p for p in members if p.guardian_id is None] or members
    return holders[0].preferred_language if holders else service.ENGLISH


@router.post("/me/consents/{consent_id}/revoke", response_model=ConsentOut)
def revoke_from_portal(
    _: Annotated[Principal, acting("portal:self")],
    consent: MyConsent,
    session: DbSession,
    ctx: Ctx,
) -> ConsentOut:
    return ConsentOut.model_validate(service.revoke(session, ctx, consent_id=consent.id))
