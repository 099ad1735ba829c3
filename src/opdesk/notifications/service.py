"""Writing messages to the outbox (in the caller's transaction) and reading them back."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.db import bind_tenant, new_id
from opdesk.notifications.models import OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher


def _where(message: OutboxMessage, column: str) -> dict[str, Any]:
    return {
        "tenant_id": message.tenant_id,
        "table": "notifications_outbox",
        "column": column,
        "row_id": message.id,
    }


def enqueue(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    channel: str,
    template: str,
    recipient: str,
    payload: dict[str, Any],
    scheduled_for: datetime | None = None,
) -> OutboxMessage:
    """A message to send after this transaction commits (DESIGN rule 2)."""
    assert ctx.tenant_id is not None
    message = OutboxMessage(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        channel=channel,
        template=template,
        status=OutboxStatus.PENDING,
        attempts=0,
        scheduled_for=scheduled_for,
        created_at=ctx.now(),
    )
    message.recipient = cipher.encrypt(recipient, **_where(message, "recipient"))
    message.payload = cipher.encrypt(json.dumps(payload), **_where(message, "payload"))
    session.add(message)
    session.flush()
    return message


@dataclass(frozen=True)
class InboxItem:
    clinic: str
    channel: str
    template: str
    recipient: str
    payload: dict[str, Any]
    status: OutboxStatus
    created_at: datetime


def read(cipher: FieldCipher, message: OutboxMessage, clinic: str) -> InboxItem:
    return InboxItem(
        clinic=clinic,
        channel=message.channel,
        template=message.template,
        recipient=cipher.decrypt_str(message.recipient, **_where(message, "recipient")),
        payload=json.loads(cipher.decrypt_str(message.payload, **_where(message, "payload"))),
        status=message.status,
        created_at=message.created_at,
    )


def dev_inbox(session: Session, cipher: FieldCipher, *, per_clinic: int = 20) -> list[InboxItem]:
    """Newest messages of every clinic, for the dev inbox page (development only)."""
    items: list[InboxItem] = []
    clinics = session.execute(text("select id, name from tenants order by name")).all()
    for tenant_id, name in clinics:
        bind_tenant(session, uuid.UUID(str(tenant_id)))
        messages = session.execute(
            select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(per_clinic)
        ).scalars()
        items.extend(read(cipher, m, name) for m in messages)
    bind_tenant(session, None)
    return sorted(items, key=lambda i: i.created_at, reverse=True)
