"""``audit_events`` (seed collection) and the per-tenant head of its hash chain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped

ACTIONS = (
    "create",
    "update",
    "delete",
    "soft-delete",
    "restore",
    "sign-off",
    "state-transition",
)
GENESIS_HASH = "0" * 64


class AuditEvent(TenantScoped, Base):
    __tablename__ = "audit_events"

    # Position in the tenant's chain: 1, 2, 3, ... with no gaps.
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    actor_id: Mapped[uuid.UUID | None]
    actor_role: Mapped[str] = mapped_column(Text)
    entity_collection: Mapped[str] = mapped_column(Text)
    entity_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(Text)
    # ``from`` and ``to`` are SQL reserved words (see docs/seed-deviations.toml).
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str | None] = mapped_column(Text)
    diff: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("tenant_id", "seq"),
        CheckConstraint(
            "action IN (" + ", ".join(f"'{a}'" for a in ACTIONS) + ")", name="action_known"
        ),
        Index(None, "tenant_id", "entity_collection", "entity_id"),
        Index(None, "tenant_id", "actor_id", "ts"),
    )


class AuditChainHead(Base):
    """The last link of each tenant's chain; its row lock serialises appends."""

    __tablename__ = "audit_chain_heads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(Text)
