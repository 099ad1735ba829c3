"""Test data for messages: consents to a channel, a clinic's provider, outbox messages in
each state. Everything goes through the services (the worker's moves through the machine).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from sqlalchemy import select

from opdesk import states
from opdesk.consents import service as consents
from opdesk.consents.models import ConsentTemplate
from opdesk.db import Database
from opdesk.documents.storage import LocalStorage
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OUTBOX, OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import clinic_session, ctx_for


def consent_to(
    db: Database, cipher: FieldCipher, tenant: Tenant, patient_id: uuid.UUID, channel: str
) -> uuid.UUID:
    """The patient agrees, at the desk, to messages on ``channel`` ("sms", "whatsapp")."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        text = (
            session.execute(
                select(ConsentTemplate)
                .where(ConsentTemplate.type == channel)
                .order_by(ConsentTemplate.version.desc())
            )
            .scalars()
            .first()
        )
        if text is None:
            text = consents.add_template(
                session, ctx, type_=channel, title=channel, body=f"You may send me {channel}."
            )
        return consents.sign(
            session,
            ctx,
            cipher,
            LocalStorage(Path(mkdtemp())),
            patient_id=patient_id,
            type_=channel,
            method="in-clinic",
            fonts=Path(mkdtemp()),
            version=text.version,
        ).id


def withdraw(db: Database, tenant: Tenant, consent_id: uuid.UUID) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        consents.revoke(session, ctx, consent_id=consent_id)


def set_provider(
    db: Database,
    cipher: FieldCipher,
    tenant: Tenant,
    channel: str,
    templates: str = "",
    enabled: bool = True,
    **values: str,
) -> None:
    """The clinic's provider for ``channel``, saved as the admin's page saves it."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        outbox.save_provider(
            session,
            ctx,
            cipher,
            channel=channel,
            values=values,
            templates=templates,
            enabled=enabled,
        )


def queue(
    db: Database,
    cipher: FieldCipher,
    tenant: Tenant,
    *,
    channel: str = "sms",
    template: str = "booking-confirmation",
    recipient: str = "+919812345678",
    payload: dict[str, Any] | None = None,
    **extra: Any,
) -> uuid.UUID:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return outbox.enqueue(
            session,
            ctx,
            cipher,
            channel=channel,
            template=template,
            recipient=recipient,
            payload=payload
            or {
                "patient": "Asha",
                "doctor": "Dr Rao",
                "startsAt": "Mon 07 Dec, 10:00 AM",
                "clinic": tenant.name,
            },
            **extra,
        ).id


def fail(db: Database, tenant: Tenant, message_id: uuid.UUID, error: str = "HTTP 400") -> None:
    """Move a message as the worker does after its last attempt."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        message = session.get_one(OutboxMessage, (tenant.id, message_id))
        message.attempts = 5
        message.last_error = error
        states.transition(session, ctx, message, OutboxStatus.FAILED, OUTBOX)


def mark_sent(db: Database, tenant: Tenant, message_id: uuid.UUID, provider_id: str) -> None:
    """Move a message as the worker does once its provider accepted it."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        message = session.get_one(OutboxMessage, (tenant.id, message_id))
        message.provider_message_id = provider_id
        states.transition(session, ctx, message, OutboxStatus.SENT, OUTBOX)


def failed_message(db: Database, cipher: FieldCipher, tenant: Tenant) -> uuid.UUID:
    message_id = queue(db, cipher, tenant)
    fail(db, tenant, message_id)
    return message_id


def message_row(db: Database, tenant: Tenant, message_id: uuid.UUID) -> OutboxMessage:
    with clinic_session(db, tenant.id) as session:
        row = session.get_one(OutboxMessage, (tenant.id, message_id))
        session.expunge(row)
        return row


def failed_event(db: Database, tenant: Tenant, error: str = "boom") -> uuid.UUID:
    """An automation event that failed after its last attempt (as the worker leaves it)."""
    from datetime import UTC, datetime

    from opdesk.automation import service as automation
    from opdesk.automation.models import EVENT, EventStatus

    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        event = automation.schedule(
            session,
            ctx,
            rule="demo",
            entity_type="appointment",
            entity_id=uuid.uuid4(),
            when=datetime.now(UTC),
            dedupe_key=f"demo:{uuid.uuid4()}",
        )
        event.attempts = 5
        event.last_error = error
        states.transition(session, ctx, event, EventStatus.FAILED, EVENT)
        return event.id
