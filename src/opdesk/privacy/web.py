"""Pages: "Download my data" in the portal and "Download the patient's data" on the
staff patient page. Both are forms (POST with the page's CSRF token): an export is
recorded in the audit trail, so no other site can start one with a link or an image.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from opdesk.documents.deps import Store
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import MyFamily, PatientInPath
from opdesk.privacy.deps import download
from opdesk.web.deps import Cipher, Ctx, DbSession, acting
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV: tuple[NavEntry, ...] = ()


@router.post("/patients/{patient_id}/export")
def export_patient(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    _: Annotated[Principal, acting("patients:export")],
    patient: PatientInPath,
    cipher: Cipher,
    storage: Store,
) -> Response:
    return download(request, session, ctx, cipher, storage, patient)


@router.post("/me/patients/{patient_id}/export")
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
    return download(request, session, ctx, cipher, storage, family.patient(session, patient_id))
