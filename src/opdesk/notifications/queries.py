"""The admin's lists: the outbox (filtered, with the rendered text) and automation events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.notifications import messages
from opdesk.notifications.delivery import payload_of, preview, recipient_of
from opdesk.notifications.models import CHANNELS, OutboxMessage, OutboxStatus
from opdesk.patients.models import Patient
from opdesk.records import by_id
from opdesk.security.crypto import FieldCipher

PAGE_SIZE = 50
# How many automation events a list shows (the page and the API cut it alike).
EVENTS_SHOWN = 100


@dataclass(frozen=True)
class OutboxFilter:
    status: str = ""
    channel: str = ""
    template: str = ""
    patient_id: uuid.UUID | None = None
    page: int = 1

    def as_query(self, **change: Any) -> dict[str, str]:
        values = {
            "status": self.status,
            "channel": self.channel,
            "template": self.template,
            "patient": str(self.patient_id or ""),
            "page": str(self.page),
        }
        values.update({k: str(v) for k, v in change.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    created_at: datetime
    channel: str
    template: str
    status: OutboxStatus
    to: str
    patient_id: uuid.UUID | None
    patient: str | None
    language: str
    text: str  # rendered (or, before it is sent, rendered now for the page)
    attempts: int
    last_error: str | None
    scheduled_for: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    provider: str | None
    fallback_of: uuid.UUID | None

    @property
    def retryable(self) -> bool:
        return self.status == OutboxStatus.FAILED


@dataclass(frozen=True)
class OutboxPage:
    rows: list[OutboxRow]
    total: int
    page: int
    pages: int


def outbox(session: Session, cipher: FieldCipher, wanted: OutboxFilter) -> OutboxPage:
    """The clinic's messages, newest first, filtered as the admin asked."""
    stmt = select(OutboxMessage)
    if wanted.status in set(OutboxStatus):
        stmt = stmt.where(OutboxMessage.status == wanted.status)
    if wanted.channel in CHANNELS:
        stmt = stmt.where(OutboxMessage.channel == wanted.channel)
    if wanted.template:
        stmt = stmt.where(OutboxMessage.template == wanted.template)
    if wanted.patient_id is not None:
        stmt = stmt.where(OutboxMessage.patient_id == wanted.patient_id)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, wanted.page), pages)
    found = list(
        session.execute(
            stmt.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        ).scalars()
    )
    names = _patient_names(session, {m.patient_id for m in found if m.patient_id})
    rows = [_row(cipher, m, names) for m in found]
    return OutboxPage(rows, total, page, pages)


def outbox_message(session: Session, cipher: FieldCipher, message_id: uuid.UUID) -> OutboxRow:
    """One message as the outbox shows it (404 for an unknown id or another clinic's)."""
    message = by_id(session, OutboxMessage, message_id)
    names = _patient_names(session, {message.patient_id} if message.patient_id else set())
    return _row(cipher, message, names)


def _patient_names(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    found = session.execute(
        select(Patient).where(Patient.id.in_(ids)).execution_options(include_deleted=True)
    ).scalars()
    return {p.id: f"{p.full_name} ({p.display_number})" for p in found}


def _row(cipher: FieldCipher, m: OutboxMessage, names: dict[uuid.UUID, str]) -> OutboxRow:
    text = preview(cipher, m)
    return OutboxRow(
        id=m.id,
        created_at=m.created_at,
        channel=m.channel,
        template=m.template,
        status=m.status,
        to=recipient_of(cipher, m),
        patient_id=m.patient_id,
        patient=names.get(m.patient_id) if m.patient_id else None,
        language=m.language,
        text=text,
        attempts=m.attempts,
        last_error=m.last_error,
        scheduled_for=m.scheduled_for,
        sent_at=m.sent_at,
        delivered_at=m.delivered_at,
        read_at=m.read_at,
        provider=m.provider,
        fallback_of=m.fallback_of,
    )


def templates_used(session: Session) -> list[str]:
    """The templates of the clinic's messages, for the filter (and every known one)."""
    used = set(session.execute(select(OutboxMessage.template).distinct()).scalars())
    return sorted(used | set(messages.TEMPLATES))


# --------------------------------------------------------------------------- automation


@dataclass(frozen=True)
class EventRow:
    id: uuid.UUID
    rule: str
    entity: str  # "appointment 1a2b3c4d", as the page shows it
    entity_type: str
    entity_id: uuid.UUID
    status: EventStatus
    scheduled_for: datetime
    executed_at: datetime | None
    attempts: int
    last_error: str | None
    leased: bool

    @property
    def retryable(self) -> bool:
        return self.status == EventStatus.FAILED


def automation_events(
    session: Session, *, status: str = "", rule: str = "", now: datetime, limit: int = 100
) -> list[EventRow]:
    """The clinic's automation events, ``limit`` of them: failed first (they need someone),
    then what is still to run, soonest first, then what has run, latest first.
    """
    stmt = select(AutomationEvent)
    if status in set(EventStatus):
        stmt = stmt.where(AutomationEvent.status == status)
    if rule:
        stmt = stmt.where(AutomationEvent.rule == rule)
    pending = AutomationEvent.status == EventStatus.PENDING
    order = (
        case((AutomationEvent.status == EventStatus.FAILED, 0), (pending, 1), else_=2),
        case((pending, AutomationEvent.scheduled_for)).asc(),
        func.coalesce(AutomationEvent.executed_at, AutomationEvent.scheduled_for).desc(),
    )
    found = session.execute(stmt.order_by(*order).limit(limit)).scalars()
    return [_event_row(e, now) for e in found]


def automation_event(session: Session, event_id: uuid.UUID, *, now: datetime) -> EventRow:
    """One event as the automation list shows it (404 for an unknown or another clinic's)."""
    return _event_row(by_id(session, AutomationEvent, event_id), now)


def _event_row(e: AutomationEvent, now: datetime) -> EventRow:
    return EventRow(
        id=e.id,
        rule=e.rule,
        entity=f"{e.entity_ref_type} {str(e.entity_ref_id)[:8]}",
        entity_type=e.entity_ref_type,
        entity_id=e.entity_ref_id,
        status=e.status,
        scheduled_for=e.scheduled_for,
        executed_at=e.executed_at,
        attempts=e.attempts,
        last_error=e.last_error,
        leased=e.claimed_until is not None and e.claimed_until > now,
    )


def rules_used(session: Session) -> list[str]:
    return sorted(set(session.execute(select(AutomationEvent.rule).distinct()).scalars()))


def payload_json(cipher: FieldCipher, message: OutboxMessage) -> str:
    return json.dumps(payload_of(cipher, message), ensure_ascii=False, indent=2)
