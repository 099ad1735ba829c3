"""REST: patient documents (upload, versions, download) and share links; the public
``/s/{token}`` address a share link opens.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from opdesk.documents import service
from opdesk.documents.deps import Store, file_response
from opdesk.documents.schemas import DocumentOut, ShareLinkOut, ShareRequest
from opdesk.errors import FieldError
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import patient_in_path
from opdesk.patients.models import Patient
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.security.permissions import PUBLIC
from opdesk.web.deps import Allow, AppSettings, Cipher, Ctx, DbSession, acting
from opdesk.web.problems import problem

RESPONSES = {**PROBLEM_RESPONSES, 413: {**PROBLEM_RESPONSES[422], "description": "File too large"}}
router = APIRouter(tags=["documents"], responses=RESPONSES)
share_router = APIRouter(include_in_schema=False)


@router.post("/patients/{patient_id}/documents", response_model=DocumentOut, status_code=201)
def upload_document(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("patients:write")],
    patient: Annotated[Patient, Depends(patient_in_path)],
    file: Annotated[UploadFile, File(description="PDF, JPEG, PNG or WebP")],
    category: Annotated[str, Form()],
    settings: AppSettings,
    cipher: Cipher,
    storage: Store,
    tags: Annotated[str, Form(description="comma-separated")] = "",
    replaces: Annotated[
        uuid.UUID | None, Form(description="id of the version this replaces")
    ] = None,
) -> DocumentOut | Response:
    """Upload a document (checked by its content, not its name); ``replaces`` adds a version."""
    limit = settings.max_upload_mb * 1024 * 1024
    data = file.file.read(limit + 1)
    service.check_category(who.role, category)
    if replaces is not None:
        service.get_readable(session, replaces, who.role)
    try:
        doc = service.upload(
            session,
            ctx,
            cipher,
            storage,
            patient_id=patient.id,
            category=category,
            filename=file.filename,
            data=data,
            tags=tags.split(","),
            replaces=replaces,
            max_bytes=limit,
        )
    except service.TooLarge as exc:
        reason = str(exc).removeprefix("file: ")
        return problem(request, 413, "File too large", str(exc), [FieldError("file", reason)])
    return DocumentOut.model_validate(doc)


@router.get("/patients/{patient_id}/documents", response_model=list[DocumentOut])
def list_documents(
    session: DbSession,
    who: Annotated[Principal, acting("documents:read")],
    patient: Annotated[Patient, Depends(patient_in_path)],
) -> list[DocumentOut]:
    """The documents of the categories the caller's role may read (see docs/permissions.md)."""
    readable = service.readable_categories(who.role)
    found = service.of_patient(session, patient.id, categories=readable)
    return [DocumentOut.model_validate(d) for d in found]


@router.get("/documents/{document_id}", response_model=DocumentOut)
def get_document(
    document_id: uuid.UUID, session: DbSession, who: Annotated[Principal, acting("documents:read")]
) -> DocumentOut:
    return DocumentOut.model_validate(service.get_readable(session, document_id, who.role))


@router.get(
    "/documents/{document_id}/content",
    responses={200: {"content": {m: {} for m in service.MIME_NAMES}}},
    response_class=Response,
)
def download_document(
    document_id: uuid.UUID,
    request: Request,
    session: DbSession,
    who: Annotated[Principal, acting("documents:read")],
) -> Response:
    return file_response(request, service.get_readable(session, document_id, who.role))


@router.post("/documents/{document_id}/share-links", response_model=ShareLinkOut, status_code=201)
def share_document(
    document_id: uuid.UUID,
    body: ShareRequest,
    request: Request,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("patients:write")],
    settings: AppSettings,
) -> ShareLinkOut:
    """A link to this version that works without signing in, for 1-30 days (default 7)."""
    service.get_readable(session, document_id, who.role)
    made = service.share(session, ctx, document_id=document_id, days=body.days)
    base = settings.base_url.rstrip("/")
    return ShareLinkOut(
        id=made.link.id, url=f"{base}/s/{made.token}", expires_at=made.link.expires_at
    )


@router.post("/share-links/{link_id}/revoke", status_code=204)
def revoke_share_link(
    link_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
    who: Annotated[Principal, acting("patients:write")],
) -> Response:
    service.get_readable(session, service.get_link(session, link_id).document_id, who.role)
    service.revoke(session, ctx, link_id=link_id)
    return Response(status_code=204)


@share_router.get("/s/{token}", dependencies=[Depends(Allow(PUBLIC))])
def open_share_link(token: str, request: Request, session: DbSession, ctx: Ctx) -> Response:
    """The shared file itself; expired or revoked links answer 404 at once."""
    return file_response(request, service.open_link(session, ctx, token), shared=True)
