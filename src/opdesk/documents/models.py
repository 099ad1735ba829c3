"""``documents`` (seed; one row per version), their share links (``shareLinks``) and the
share link's machine (active -> revoked).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped, one_of
from opdesk.states import Machine

CATEGORIES = ("lab-report", "imaging", "referral", "consent", "id-proof", "other")
OWNER_TYPES = ("patient",)


class Document(TenantScoped, Base):
    __tablename__ = "documents"

    # All versions of one document share a series id; each upload is a new row.
    series_id: Mapped[uuid.UUID]
    owner_type: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID]
    category: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(Text)
    mime: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    tags: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))

    __table_args__ = (
        CheckConstraint(one_of("category", CATEGORIES), name="category_known"),
        CheckConstraint("owner_type IN ('patient')", name="owner_type_known"),
        Index(None, "tenant_id", "owner_type", "owner_id"),
        Index(
            "uq_documents_tenant_id_series_id_version",
            "tenant_id",
            "series_id",
            "version",
            unique=True,
        ),
    )


class ShareLinkStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class ShareLink(TenantScoped, Base):
    """A time-limited link to one document version; only the token's hash is kept."""

    __tablename__ = "documents_share_links"

    document_id: Mapped[uuid.UUID]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None]
    last_access_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "document_id"], ["documents.tenant_id", "documents.id"]),
        Index(
            "uq_documents_share_links_tenant_id_token_hash", "tenant_id", "token_hash", unique=True
        ),
        Index(None, "tenant_id", "expires_at"),
        Index(None, "tenant_id", "document_id"),
    )

    @property
    def status(self) -> ShareLinkStatus:
        """Kept as ``revoked_at`` (seed); a live link may still have expired (``expires_at``)."""
        return ShareLinkStatus.ACTIVE if self.revoked_at is None else ShareLinkStatus.REVOKED


SHARE_LINK = Machine(
    ShareLink,
    ShareLinkStatus,
    {ShareLinkStatus.ACTIVE: {ShareLinkStatus.REVOKED}, ShareLinkStatus.REVOKED: set()},
    noun="a link",
    timeline={ShareLinkStatus.REVOKED: "revoked_at"},
    refusal="this link is already {from_}",
    stored=False,
)
