"""``audit_events`` (seed collection) and the per-tenant head of its hash chain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    Text,
    UniqueConstraint,
)
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
# A clinic's trail runs in up to this many lanes, each its own chain (migration 0029):
# concurrent writes append side by side instead of queueing on one head row.
LANES = 8


class AuditEvent(TenantScoped, Base):
    __tablename__ = "audit_events"

    # The chain the event is in, and its position there: 1, 2, 3, ... with no gaps.
    lane: Mapped[int] = mapped_column(SmallInteger, server_default="0")
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
        UniqueConstraint("tenant_id", "lane", "seq"),
        CheckConstraint(f"lane >= 0 AND lane < {LANES}", name="lane_range"),
        CheckConstraint(
            "action IN (" + ", ".join(f"'{a}'" for a in ACTIONS) + ")", name="action_known"
        ),
        Index(None, "tenant_id", "entity_collection", "entity_id"),
        Index(None, "tenant_id", "actor_id", "ts"),
        Index(None, "tenant_id", "ts"),
    )


class AuditChainHead(Base):
    """The last link of each lane of a tenant's trail; its row lock serialises the lane's
    appends."""

    __tablename__ = "audit_chain_heads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    lane: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="0")
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(Text)

    __table_args__ = (CheckConstraint(f"lane >= 0 AND lane < {LANES}", name="lane_range"),)
