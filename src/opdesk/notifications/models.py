"""``notifications_outbox``: messages written with the transaction, sent after commit, and
the message's machine (pending -> sent or failed).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, EnumText, TenantScoped, encrypted_column, one_of
from opdesk.states import Machine

CHANNELS = ("whatsapp", "sms", "email")


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its time, or leased by a worker (claimed_until)
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the provider says it reached the phone
    READ = "read"  # WhatsApp's blue ticks
    FAILED = "failed"  # after the last attempt; admins see it and may retry
    CANCELLED = "cancelled"  # its reason went away before it was sent


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
    # Sending the same message twice is a no-op ("waitlist-offer:<offer id>:sms").
    dedupe_key: Mapped[str | None] = mapped_column(Text)
    # Whom it is about, for the admin outbox's filter (no foreign key: messages outlive
    # their patients' soft deletion and are swept on their own schedule).
    patient_id: Mapped[uuid.UUID | None]
    language: Mapped[str] = mapped_column(Text, server_default="en")
    # The text as rendered for the patient (personal data, so encrypted like the payload).
    body: Mapped[bytes | None] = encrypted_column()
    provider: Mapped[str | None] = mapped_column(Text)
    # The provider's id for the message, to match its delivery/read status callbacks.
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    # The message this one replaces (a WhatsApp message that failed, resent by SMS).
    fallback_of: Mapped[uuid.UUID | None]
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), name="channel_known"),
        CheckConstraint(one_of("status", OutboxStatus), name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(None, "tenant_id", "status", "scheduled_for"),
        Index(
            "uq_notifications_outbox_tenant_id_dedupe_key", "tenant_id", "dedupe_key", unique=True
        ),
        Index(None, "tenant_id", "patient_id"),
        Index(None, "tenant_id", "provider_message_id"),
    )


def settings_row_id(tenant_id: uuid.UUID, channel: str) -> uuid.UUID:
    """A stable id for the (clinic, channel) row, binding its ciphertext to that row."""
    return uuid.uuid5(tenant_id, f"message_providers:{channel}")


def _bound_to_channel(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    return column, settings_row_id(row["tenant_id"], row["channel"])


class MessageProvider(Base):
    """How one clinic sends on one channel: the provider and its settings.

    ``settings`` holds API keys and secrets, so it is encrypted like other secrets. With
    no row for a channel, the clinic uses the ``log`` provider (the dev inbox).
    """

    __tablename__ = "message_providers"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    provider: Mapped[str] = mapped_column(Text)
    settings: Mapped[bytes] = encrypted_column(bound_to=_bound_to_channel)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    updated_at: Mapped[datetime]

    __table_args__ = (CheckConstraint(one_of("channel", CHANNELS), name="channel_known"),)


# A retry stays pending (``attempts`` counts them); the worker moves a message once.
OUTBOX = Machine(
    OutboxMessage,
    OutboxStatus,
    {
        OutboxStatus.PENDING: {OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED},
        # A delivery report may arrive before the "sent" one is handled, or not at all.
        OutboxStatus.SENT: {OutboxStatus.DELIVERED, OutboxStatus.READ, OutboxStatus.FAILED},
        OutboxStatus.DELIVERED: {OutboxStatus.READ},
        OutboxStatus.READ: set(),
        # An admin's retry puts a failed message back in the queue.
        OutboxStatus.FAILED: {OutboxStatus.PENDING},
        OutboxStatus.CANCELLED: set(),
    },
    noun="a message",
    timeline={
        OutboxStatus.SENT: "sent_at",
        OutboxStatus.DELIVERED: "delivered_at",
        OutboxStatus.READ: "read_at",
    },
)
