"""REST: a patient's data export (DPDP right to access) as one ZIP.

``GET /patients/{id}/export``: the clinic, on the patient's behalf (``patients:export``,
admins only: the archive holds visit notes and bills together). ``GET
/me/patients/{id}/export``: the patient in the portal, for themselves or a dependent of
theirs (``portal:self``, through the family scope; anyone else's id answers 404).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from opdesk.documents.deps import Store
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import MyFamily, PatientInPath
from opdesk.privacy.deps import download
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.web.deps import Cipher, Ctx, DbSession, acting

router = APIRouter(tags=["privacy"], responses=PROBLEM_RESPONSES)
ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The archive"}
}
ABOUT = (
    "One ZIP: `patient.json` (the profile, consents, documents, appointments, visits with "
    "their signed notes, diagnoses and vitals, prescriptions, diet plans, orders and "
    "results, bills, payments, refunds and messages), `summary.pdf` (the same to read) "
    "and `documents/` (the files). Each export is recorded in the audit trail."
)


@router.get(
    "/patients/{patient_id}/export",
    response_class=Response,
    responses=ZIP,
    description=ABOUT,
)
def export_patient(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:export")],
    patient: PatientInPath,
    cipher: Cipher,
    storage: Store,
) -> Response:
    """Everything the clinic holds about the patient, for them (admins)."""
    return download(request, session, ctx, cipher, storage, patient)


@router.get(
    "/me/patients/{patient_id}/export",
    response_class=Response,
    responses=ZIP,
    description=ABOUT,
)
def export_mine(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("portal:self")],
    family: MyFamily,
    patient_id: uuid.UUID,
    cipher: Cipher,
    storage: Store,
) -> Response:
    """Everything the clinic holds about you (or a dependent of yours)."""
    patient = family.patient(session, patient_id)
    return download(request, session, ctx, cipher, storage, patient)
