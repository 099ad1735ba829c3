"""``automation_events`` (seed): something to do at a time, for one entity, once."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, EnumText, TenantScoped, one_of
from opdesk.states import Machine


class EventStatus(StrEnum):
    PENDING = "pending"  # waiting for its time, or leased by a worker (claimed_until)
    SUCCESS = "success"
    FAILED = "failed"  # after the last attempt; an admin may retry it
    CANCELLED = "cancelled"  # its reason went away (the appointment was cancelled)


class AutomationEvent(TenantScoped, Base):
    __tablename__ = "automation_events"

    rule: Mapped[str] = mapped_column(Text)
    entity_ref_type: Mapped[str] = mapped_column(Text)
    entity_ref_id: Mapped[uuid.UUID]
    # When it is due; a retry after a failure moves it on (backoff).
    scheduled_for: Mapped[datetime]
    executed_at: Mapped[datetime | None]
    status: Mapped[EventStatus] = mapped_column(
        EnumText(EventStatus), server_default=text(f"'{EventStatus.PENDING}'")
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Scheduling the same thing twice is a no-op: "reminder-24h:<appointment id>".
    dedupe_key: Mapped[str] = mapped_column(Text)
    # A worker's lease: until then no other worker takes the row; after it, the row is
    # due again (the worker that held it died).
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("status", EventStatus), name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(None, "tenant_id", "rule", "scheduled_for"),
        Index("uq_automation_events_tenant_id_dedupe_key", "tenant_id", "dedupe_key", unique=True),
        Index(None, "tenant_id", "entity_ref_type", "entity_ref_id"),
        Index(
            "ix_automation_events_due",
            "tenant_id",
            "scheduled_for",
            postgresql_where=text("status = 'pending'"),
        ),
    )


# A retry stays pending (``attempts`` counts them); an admin's retry puts a failed one back.
EVENT = Machine(
    AutomationEvent,
    EventStatus,
    {
        EventStatus.PENDING: {EventStatus.SUCCESS, EventStatus.FAILED, EventStatus.CANCELLED},
        EventStatus.SUCCESS: set(),
        EventStatus.FAILED: {EventStatus.PENDING},
        EventStatus.CANCELLED: set(),
    },
    noun="an automation event",
    timeline={EventStatus.SUCCESS: "executed_at"},
    touch="updated_at",
)
