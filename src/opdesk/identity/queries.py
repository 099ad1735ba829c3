"""Read side: users, devices and the sign-in log of the current clinic."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.audit.models import AuditEvent
from opdesk.identity.models import Device, User
from opdesk.identity.schemas import SignInLogEntry
from opdesk.identity.service import AUTH_EVENTS


def users(session: Session, *, include_patients: bool = False) -> list[User]:
    stmt = select(User).order_by(User.active.desc(), User.role, User.name)
    if not include_patients:
        stmt = stmt.where(User.role != "patient")
    return list(session.execute(stmt).scalars())


def devices(session: Session, *, status: str | None = None) -> list[tuple[Device, User]]:
    stmt = (
        select(Device, User)
        .join(User, (User.tenant_id == Device.tenant_id) & (User.id == Device.user_id))
        .order_by(Device.last_seen_at.desc())
    )
    if status == "pending":
        stmt = stmt.where(Device.approved.is_(False), Device.revoked_at.is_(None))
    elif status == "approved":
        stmt = stmt.where(Device.approved.is_(True))
    elif status == "revoked":
        stmt = stmt.where(Device.revoked_at.is_not(None))
    return [(d, u) for d, u in session.execute(stmt).all()]


def sign_in_log(session: Session, *, limit: int = 200) -> list[SignInLogEntry]:
    """Newest auth events first, each naming the person it concerns."""
    events = list(
        session.execute(
            select(AuditEvent)
            .where(AuditEvent.to_state.in_(AUTH_EVENTS))
            .order_by(AuditEvent.seq.desc())
            .limit(limit)
        ).scalars()
    )
    names = dict(session.execute(select(User.id, User.name)).all())
    return [
        SignInLogEntry(
            ts=e.ts,
            event=e.to_state or "",
            entity=e.entity_collection,
            entity_id=e.entity_id,
            actor_id=e.actor_id,
            ip=e.ip,
            user_agent=e.user_agent,
            details=_readable(e, names),
        )
        for e in events
    ]


def _readable(event: AuditEvent, names: dict[uuid.UUID, str]) -> dict[str, object]:
    details = dict(event.diff.get("added", {}))
    user_id = details.pop("userId", None) or (
        str(event.entity_id) if event.entity_collection == "users" else None
    )
    if user_id:
        details = {"user": names.get(uuid.UUID(user_id), "unknown"), **details}
    return details
