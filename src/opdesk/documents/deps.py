"""The document a signed-in patient names in the path."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from opdesk.documents import service
from opdesk.documents.models import Document
from opdesk.patients.deps import MyFamily
from opdesk.web.deps import DbSession


def my_document(document_id: uuid.UUID, session: DbSession, family: MyFamily) -> Document:
    """A document of the signed-in patient or their family, else 404."""
    doc = service.get(session, document_id)
    family.check(doc.owner_id)
    return doc


MyDocument = Annotated[Document, Depends(my_document)]
