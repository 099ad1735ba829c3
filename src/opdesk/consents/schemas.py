"""Request and response bodies for consents."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from opdesk.schemas import ApiModel, ShortText

ConsentType = Literal["treatment", "data-processing", "whatsapp", "sms", "teleconsultation"]


class TemplateCreate(ApiModel):
    type: ConsentType
    title: ShortText
    body: Annotated[str, Field(min_length=20, max_length=20_000)]


class TemplateOut(ApiModel):
    id: uuid.UUID
    type: str
    version: int
    title: str
    body: str
    text_hash: str
    created_at: datetime


class SignRequest(ApiModel):
    """Agreement to one version of the clinic's text: the version (and, if the client has
    it, the text's SHA-256) that was shown; an older version than the one in force is 409.
    """

    type: ConsentType
    version: Annotated[int, Field(ge=1)]
    text_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class PortalSignRequest(SignRequest):
    patient_id: uuid.UUID


class ConsentOut(ApiModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    type: str
    version: int
    text_hash: str
    file_id: uuid.UUID
    method: str
    signed_at: datetime
    revoked_at: datetime | None
