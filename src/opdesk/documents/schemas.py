"""Response bodies for documents and share links."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from opdesk.schemas import ApiModel


class DocumentOut(ApiModel):
    id: uuid.UUID
    series_id: uuid.UUID
    owner_type: str
    owner_id: uuid.UUID
    category: str
    version: int
    mime: str
    size: int
    checksum: str
    filename: str
    tags: list[str]
    created_by: uuid.UUID | None
    created_at: datetime


class ShareRequest(ApiModel):
    days: Annotated[int, Field(ge=1, le=30)] = 7


class ShareLinkOut(ApiModel):
    id: uuid.UUID
    url: str
    expires_at: datetime
