"""``consents`` (seed), the clinic's consent templates they are signed against, and the
consent's machine (signed -> revoked).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKeyConstraint, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped, one_of
from opdesk.patients.models import LANGUAGES
from opdesk.states import Machine

# DPDP Act: data processing; the two channels: WhatsApp and SMS messages.
CONSENT_TYPES = ("treatment", "data-processing", "whatsapp", "sms", "teleconsultation")
METHODS = ("in-clinic", "otp")
LABELS = {
    "treatment": "Treatment",
    "data-processing": "Use of health data (DPDP)",
    "whatsapp": "WhatsApp messages",
    "sms": "SMS messages",
    "teleconsultation": "Teleconsultation",
}


def consent_label(type_: str) -> str:
    """The words for a consent type (templates: ``|consent_label``)."""
    return LABELS.get(type_, type_)


class ConsentTemplate(TenantScoped, Base):
    __tablename__ = "consent_templates"

    type: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    # One row per language a version is written in; each has its own text and hash.
    language: Mapped[str] = mapped_column(Text, server_default="en")
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None]

    __table_args__ = (
        CheckConstraint(one_of("type", CONSENT_TYPES), name="type_known"),
        CheckConstraint(one_of("language", LANGUAGES), name="language_known"),
        Index(
            "uq_consent_templates_tenant_id_type_version_language",
            "tenant_id",
            "type",
            "version",
            "language",
            unique=True,
        ),
    )


class ConsentStatus(StrEnum):
    SIGNED = "signed"
    REVOKED = "revoked"


class Consent(TenantScoped, Base):
    __tablename__ = "consents"

    patient_id: Mapped[uuid.UUID]
    type: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    template_id: Mapped[uuid.UUID]
    text_hash: Mapped[str] = mapped_column(Text)
    # The signed copy, kept as a document of the patient.
    file_id: Mapped[uuid.UUID]
    method: Mapped[str] = mapped_column(Text)
    signed_by: Mapped[uuid.UUID | None]
    signed_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(one_of("type", CONSENT_TYPES), name="type_known"),
        CheckConstraint(one_of("method", METHODS), name="method_known"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "template_id"], ["consent_templates.tenant_id", "consent_templates.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "file_id"], ["documents.tenant_id", "documents.id"]),
        # "latest consent of each type": one index range per patient and type, newest first.
        Index(None, "tenant_id", "patient_id", "type", "signed_at"),
    )

    @property
    def status(self) -> ConsentStatus:
        """Kept as ``revoked_at`` (seed): revoked once it is set."""
        return ConsentStatus.SIGNED if self.revoked_at is None else ConsentStatus.REVOKED


CONSENT = Machine(
    Consent,
    ConsentStatus,
    {ConsentStatus.SIGNED: {ConsentStatus.REVOKED}, ConsentStatus.REVOKED: set()},
    noun="a consent",
    timeline={ConsentStatus.REVOKED: "revoked_at"},
    refusal="this consent is already {from_}",
    stored=False,
)
