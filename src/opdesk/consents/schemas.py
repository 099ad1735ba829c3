"""Request and response bodies for consents."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from opdesk.patients.schemas import Language
from opdesk.schemas import ApiModel, ShortText

ConsentType = Literal["treatment", "data-processing", "whatsapp", "sms", "teleconsultation"]


ConsentBody = Annotated[str, Field(min_length=20, max_length=20_000)]


class TemplateCreate(ApiModel):
    """A new version of one consent type, written first in ``language`` (English unless
    given); the previous version, in all its languages, is no longer in force.
    """

    type: ConsentType
    title: ShortText
    body: ConsentBody
    language: Language = "en"


class TranslationCreate(ApiModel):
    """The version in force (``version``, as the admin read it) in one more language."""

    type: ConsentType
    version: Annotated[int, Field(ge=1)]
    language: Language
    title: ShortText
    body: ConsentBody


class TemplateOut(ApiModel):
    id: uuid.UUID
    type: str
    version: int
    language: str
    title: str
    body: str
    text_hash: str
    created_at: datetime


class ConsentTextOut(TemplateOut):
    """A text in force as a patient reads it: in their preferred language when its
    version is written in it, else English (``note`` then says so); ``languages`` are
    those the version is written in, to switch to (``?language=``).
    """

    languages: list[str]
    preferred_language: str
    note: str | None


class SignRequest(ApiModel):
    """Agreement to one version of the clinic's text: the version (and, if the client has
    it, the text's SHA-256) that was shown, and the language it was read in; an older
    version than the one in force is 409, a language the version is not written in 422.
    """

    type: ConsentType
    version: Annotated[int, Field(ge=1)]
    text_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    # The language of the text read; unnamed: the one whose hash was given, else the
    # patient's preferred language, else English.
    language: Language | None = None


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
