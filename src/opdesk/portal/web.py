"""The patient's portal home (their family's records), giving and withdrawing consent,
opening documents. Booking is in booking.py, signing in in sign_in.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from opdesk.consents import service as consents
from opdesk.consents.deps import MyConsent, sign_here
from opdesk.consents.models import CONSENT_TYPES
from opdesk.documents import service as documents
from opdesk.documents.deps import MyDocument, file_response
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity.sessions import Principal
from opdesk.patients import queries as patient_queries
from opdesk.patients import service as patients
from opdesk.patients.deps import MyFamily
from opdesk.tenancy import service as tenants
from opdesk.web.deps import Cipher, Ctx, DbSession, acting
from opdesk.web.pages import flash, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV = (NavEntry("My clinic", "/me", "portal:self", "patient"),)
Patient = Annotated[Principal, acting("portal:self")]


@router.post("/me/consents")
def give_consent(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Patient,
    family: MyFamily,
    patient_id: Annotated[uuid.UUID, Form()],
    type: Annotated[str, Form()],
) -> Response:
    """Signing online: the session itself was opened with a one-time code to the phone."""
    if type not in CONSENT_TYPES:
        raise InvalidInput([FieldError("type", "not a consent type")])
    patient = family.patient(session, patient_id)
    sign_here(request, session, ctx, patient_id=patient.id, type_=type, method="otp")
    return flash(request, "/me", "Thank you. Your consent is recorded; a copy is under Documents.")


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
    types = sorted({t.type for t in consents.templates(session)})
    return render(request, "portal/home.html", clinic=tenant, records=records, consent_types=types)
