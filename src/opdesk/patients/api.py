"""REST: patients (front desk, clinicians) and a patient's own family records (portal)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.identity.deps import Ident
from opdesk.identity.sessions import Principal
from opdesk.patients import queries, service
from opdesk.patients.models import Patient
from opdesk.patients.schemas import PatientCreate, PatientOut, PatientSummary, PatientUpdate
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.web.deps import Cipher, Ctx, DbSession, acting, services

router = APIRouter(tags=["patients"], responses=PROBLEM_RESPONSES)


def _out(request: Request, session: Session, ctx: RequestContext, patient: Patient) -> PatientOut:
    today = service.today_at_clinic(session, ctx)
    return service.read(services(request).cipher, patient, today)


@router.post("/patients", response_model=PatientOut, status_code=201)
def register_patient(
    body: PatientCreate,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:write")],
    ident: Ident,
) -> PatientOut:
    """Register a patient. A phone already registered answers 409 naming that patient."""
    patient = service.register(session, ctx, ident, data=body)
    return _out(request, session, ctx, patient)


@router.get("/patients", response_model=list[PatientSummary])
def search_patients(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:read")],
    cipher: Cipher,
    q: Annotated[str, Query(max_length=80, description="phone, patient number or name")] = "",
) -> list[PatientSummary]:
    today = service.today_at_clinic(session, ctx)
    found = queries.search(session, cipher, q)
    return queries.summaries(session, cipher, found, today)


@router.get("/patients/{patient_id}", response_model=PatientOut)
def get_patient(
    patient_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:read")],
) -> PatientOut:
    return _out(request, session, ctx, service.get(session, patient_id))


@router.patch("/patients/{patient_id}", response_model=PatientOut)
def update_patient(
    patient_id: uuid.UUID,
    body: PatientUpdate,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:write")],
    ident: Ident,
) -> PatientOut:
    patient = service.update(session, ctx, ident, patient_id=patient_id, changes=body)
    return _out(request, session, ctx, patient)


@router.delete("/patients/{patient_id}", status_code=204)
def delete_patient(
    patient_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:delete")],
    move_dependents_to: Annotated[
        uuid.UUID | None,
        Query(
            alias="moveDependentsTo",
            description="the guardian whose phone this patient's dependents share from now on",
        ),
    ] = None,
) -> Response:
    """Soft delete: the patient vanishes from search and lists until restored.

    A guardian with dependents is refused (409, naming them) unless ``moveDependentsTo``
    names another patient with a phone, who becomes their guardian.
    """
    service.delete(session, ctx, patient_id=patient_id, move_dependents_to=move_dependents_to)
    return Response(status_code=204)


@router.post("/patients/{patient_id}/restore", response_model=PatientOut)
def restore_patient(
    patient_id: uuid.UUID,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:delete")],
) -> PatientOut:
    patient = service.restore(session, ctx, patient_id=patient_id)
    return _out(request, session, ctx, patient)


@router.get("/me/patients", response_model=list[PatientOut])
def my_patients(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("portal:self")],
) -> list[PatientOut]:
    """A signed-in patient's own record and those of family members sharing the phone."""
    return [_out(request, session, ctx, p) for p in queries.of_portal_user(session, who.user_id)]
