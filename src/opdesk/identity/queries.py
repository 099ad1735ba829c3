"""Read side: users, devices and the sign-in log of the current clinic."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.audit.models import AuditEvent
from opdesk.identity.models import Device, User
from opdesk.identity.schemas import SignInLogEntry
from opdesk.identity.service import AUTH_EVENTS, Identity, sms_budget_used
from opdesk.identity.service._common import SMS_BUDGET_NEAR


def users(session: Session, *, include_patients: bool = False) -> list[User]:
    stmt = select(User).order_by(User.active.desc(), User.role, User.name)
    if not include_patients:
        stmt = stmt.where(User.role != "patient")
    return list(session.execute(stmt).scalars())


def devices(
    session: Session, *, status: str | None = None, user_id: uuid.UUID | None = None
) -> list[tuple[Device, User]]:
    """Staff devices (patients' browsers are remembered only to keep strangers from
    locking them out, and are listed on the patient's own user page).
    """
    stmt = (
        select(Device, User)
        .join(User, (User.tenant_id == Device.tenant_id) & (User.id == Device.user_id))
        .order_by(Device.last_seen_at.desc())
    )
    if user_id is not None:
        stmt = stmt.where(User.id == user_id)
    else:
        stmt = stmt.where(User.role != "patient")
    if status == "pending":
        stmt = stmt.where(Device.approved.is_(False), Device.revoked_at.is_(None))
    elif status == "approved":
        stmt = stmt.where(Device.approved.is_(True))
    elif status == "revoked":
        stmt = stmt.where(Device.revoked_at.is_not(None))
    return [(d, u) for d, u in session.execute(stmt).all()]


def sms_budget(
    session: Session, ident: Identity, tenant_id: uuid.UUID, now: datetime
) -> SmsBudget | None:
    """The clinic's sign-in code budget when it is running low (None while it is not)."""
    used, budget = sms_budget_used(session, ident, tenant_id, now)
    if used < budget * SMS_BUDGET_NEAR:
        return None
    return SmsBudget(used, budget)


@dataclass(frozen=True)
class SmsBudget:
    used: int
    budget: int

    @property
    def spent(self) -> bool:
        return self.used >= self.budget


def sign_in_log(session: Session, *, limit: int = 200) -> list[SignInLogEntry]:
    """Newest auth events first, each naming the person it concerns."""
    events = list(
        session.execute(
            select(AuditEvent)
            .where(AuditEvent.to_state.in_(AUTH_EVENTS))
            .order_by(AuditEvent.ts.desc(), AuditEvent.lane, AuditEvent.seq.desc())
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
    """The event's details with the person named; an email no account has (a failed
    sign-in for an unknown address) reads as an unknown account.
    """
    details = dict(event.diff.get("added", {}))
    user_id = details.pop("userId", None)
    if user_id is None and event.entity_collection == "users":
        user_id = event.entity_id
    key = _as_uuid(user_id) if user_id else None
    name = names.get(key) if key else None
    if name is not None:
        return {"user": name, **details}
    if user_id or event.entity_collection == "users":
        return {"user": UNKNOWN_ACCOUNT, **details}
    return details


UNKNOWN_ACCOUNT = "unknown account"


def _as_uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
