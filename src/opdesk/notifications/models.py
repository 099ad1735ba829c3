"""``notifications_outbox``: messages written with the transaction, sent after commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped, encrypted_column

CHANNELS = ("whatsapp", "sms", "email")
STATUSES = ("pending", "sent", "failed")


class OutboxMessage(TenantScoped, Base):
    __tablename__ = "notifications_outbox"

    channel: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(Text)
    # Recipient and payload carry personal data: encrypted like other health fields.
    recipient: Mapped[bytes] = encrypted_column()
    payload: Mapped[bytes] = encrypted_column()
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    scheduled_for: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "channel IN (" + ", ".join(f"'{c}'" for c in CHANNELS) + ")", name="channel_known"
        ),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status_known"
        ),
        Index(None, "tenant_id", "status", "scheduled_for"),
    )
