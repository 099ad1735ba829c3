"""The document a signed-in patient names in the path."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import Response

from opdesk.documents import service
from opdesk.documents.models import Document
from opdesk.documents.storage import Storage
from opdesk.errors import NotFound
from opdesk.patients.deps import MyFamily
from opdesk.web.deps import DbSession, services


def my_document(document_id: uuid.UUID, session: DbSession, family: MyFamily) -> Document:
    """A document of the signed-in patient or their family, else 404."""
    doc = service.get(session, document_id)
    family.check(doc.owner_id)
    if service.is_order_result(session, doc.id, unreviewed=True):  # not before review
        raise NotFound(f"no document with id {document_id}")
    return doc


MyDocument = Annotated[Document, Depends(my_document)]


async def _storage(request: Request) -> Storage:
    return services(request).storage


# Where document bytes live, as this deployment configured it.
Store = Annotated[Storage, Depends(_storage)]


def file_response(request: Request, doc: Document, *, shared: bool = False) -> Response:
    """The document's bytes as a download that no cache keeps."""
    built = services(request)
    data = service.content(built.cipher, built.storage, doc)
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(doc.filename)}",
        "Cache-Control": "no-store",
    }
    if shared:
        headers["Referrer-Policy"] = "no-referrer"
    return Response(data, media_type=doc.mime, headers=headers)
