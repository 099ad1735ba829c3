"""``documents`` (seed; one row per version) and their share links (``shareLinks``)."""

from __future__ import annotations

import uuid
from datetime import datetime

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

from opdesk.db import Base, TenantScoped

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
        CheckConstraint(
            "category IN (" + ", ".join(f"'{c}'" for c in CATEGORIES) + ")", name="category_known"
        ),
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
