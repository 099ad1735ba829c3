"""``notifications_outbox``: messages written with the transaction, sent after commit, and
the message's machine (pending -> sent or failed).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, EnumText, TenantScoped, encrypted_column, one_of
from opdesk.states import Machine

CHANNELS = ("whatsapp", "sms", "email")


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # after the last attempt; admins see it


class OutboxMessage(TenantScoped, Base):
    __tablename__ = "notifications_outbox"

    channel: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(Text)
    # Recipient and payload carry personal data: encrypted like other health fields.
    recipient: Mapped[bytes] = encrypted_column()
    payload: Mapped[bytes] = encrypted_column()
    status: Mapped[OutboxStatus] = mapped_column(
        EnumText(OutboxStatus), server_default=text(f"'{OutboxStatus.PENDING}'")
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    scheduled_for: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), name="channel_known"),
        CheckConstraint(one_of("status", OutboxStatus), name="status_known"),
        Index(None, "tenant_id", "status", "scheduled_for"),
    )


# A retry stays pending (``attempts`` counts them); the worker moves a message once.
OUTBOX = Machine(
    OutboxMessage,
    OutboxStatus,
    {
        OutboxStatus.PENDING: {OutboxStatus.SENT, OutboxStatus.FAILED},
        OutboxStatus.SENT: set(),
        OutboxStatus.FAILED: set(),
    },
    noun="a message",
    timeline={OutboxStatus.SENT: "sent_at"},
)
