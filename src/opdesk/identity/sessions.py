"""Server-side sessions: opaque tokens, stored hashed, with idle and absolute expiry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.db import bind_tenant
from opdesk.identity.models import AuthSession, Device, User
from opdesk.security.tokens import session_token, tenant_of, token_hash
from opdesk.tenancy.models import Tenant

# Writing last_seen on every request would make each read a write; a minute is enough
# precision for a 30-minute idle timeout.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who the request is from, as the session and its user say right now."""

    session_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    stage: str
    name: str
    token: str
    via_cookie: bool
    timezone: str = "Asia/Kolkata"

    @property
    def active(self) -> bool:
        return self.stage == "active"


def start(
    session: Session,
    ctx: RequestContext,
    *,
    user: User,
    stage: str,
    method: str,
    device_id: uuid.UUID | None,
    idle: timedelta,
    lifetime: timedelta,
) -> tuple[AuthSession, str]:
    """A new session with a fresh token (never one the client brought: no fixation)."""
    now = ctx.now()
    token = session_token(user.tenant_id)
    row = AuthSession(
        tenant_id=user.tenant_id,
        user_id=user.id,
        token_hash=token_hash(token),
        device_id=device_id,
        stage=stage,
        method=method,
        created_at=now,
        last_seen_at=now,
        idle_timeout_seconds=int(idle.total_seconds()),
        expires_at=now + lifetime,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )
    session.add(row)
    session.flush()
    return row, token


def rotate(session: Session, row: AuthSession) -> str:
    """Replace the token (after a step up such as MFA) and return the new one."""
    token = session_token(row.tenant_id)
    row.token_hash = token_hash(token)
    session.flush()
    return token


@dataclass(frozen=True)
class Expired:
    """A session found past its idle or absolute limit (or of a deactivated user)."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    reason: str


def resolve(
    session: Session, ctx: RequestContext, token: str, *, via_cookie: bool
) -> Principal | Expired | None:
    """The live session for ``token``, scoping the transaction to its clinic.

    A session past its limits comes back as :class:`Expired` so the caller can end it in
    a transaction of its own (this request's will roll back when it answers 401).
    """
    tenant_id = tenant_of(token)
    if tenant_id is None:
        return None
    bind_tenant(session, tenant_id)
    # Plain columns, not ORM objects: this runs on every request.
    row = session.execute(
        select(
            AuthSession.id,
            AuthSession.tenant_id,
            AuthSession.device_id,
            AuthSession.stage,
            AuthSession.last_seen_at,
            AuthSession.idle_timeout_seconds,
            AuthSession.expires_at,
            User.id.label("user_id"),
            User.active,
            User.role,
            User.name,
            Tenant.timezone,
        )
        .join(User, (User.tenant_id == AuthSession.tenant_id) & (User.id == AuthSession.user_id))
        .join(Tenant, Tenant.id == AuthSession.tenant_id)
        .where(AuthSession.token_hash == token_hash(token), AuthSession.ended_at.is_(None))
    ).one_or_none()
    if row is None:
        bind_tenant(session, None)
        return None
    now = ctx.now()
    reason = _why_over(row, now)
    if reason is not None:
        bind_tenant(session, None)
        return Expired(row.tenant_id, row.id, reason)
    changes: dict[str, object] = {}
    stage = row.stage
    if stage == "device" and _device_approved(session, row.tenant_id, row.device_id):
        changes["stage"] = stage = "active"
    if now - row.last_seen_at >= TOUCH_EVERY:
        changes["last_seen_at"] = now
    if changes:
        session.execute(
            update(AuthSession)
            .where(AuthSession.tenant_id == row.tenant_id, AuthSession.id == row.id)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )
    return Principal(
        row.id,
        row.tenant_id,
        row.user_id,
        row.role,
        stage,
        row.name,
        token,
        via_cookie,
        row.timezone,
    )


def _why_over(row: Any, now: datetime) -> str | None:
    if not row.active:
        return "user-deactivated"
    if now >= row.expires_at:
        return "expired"
    if now - row.last_seen_at >= timedelta(seconds=row.idle_timeout_seconds):
        return "idle"
    return None


def _device_approved(session: Session, tenant_id: uuid.UUID, device_id: uuid.UUID | None) -> bool:
    if device_id is None:
        return False
    device = session.get(Device, (tenant_id, device_id))
    return device is not None and device.approved and device.revoked_at is None


def end(session: Session, ctx: RequestContext, row: AuthSession, reason: str) -> None:
    row.ended_at = ctx.now()
    row.end_reason = reason
    session.flush()
    audit.record(
        ctx,
        entity="sessions",
        entity_id=row.id,
        action="state-transition",
        from_state=row.stage,
        to_state="session-ended",
        diff={
            "added": {"reason": reason, "userId": str(row.user_id)},
            "updated": {},
            "removed": {},
        },
        tenant_id=row.tenant_id,
    )


def end_all(
    session: Session,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID | None = None,
    device_id: uuid.UUID | None = None,
    reason: str,
    keep: uuid.UUID | None = None,
) -> int:
    """End every live session of a user or a device (except ``keep``); returns how many."""
    conditions: list[ColumnElement[bool]] = [AuthSession.ended_at.is_(None)]
    if user_id is not None:
        conditions.append(AuthSession.user_id == user_id)
    if device_id is not None:
        conditions.append(AuthSession.device_id == device_id)
    if keep is not None:
        conditions.append(AuthSession.id != keep)
    query = select(AuthSession).where(*conditions).with_for_update()
    rows = list(session.execute(query).scalars())
    for row in rows:
        end(session, ctx, row, reason)
    return len(rows)


def end_expired(session: Session, ctx: RequestContext, expired: Expired) -> None:
    bind_tenant(session, expired.tenant_id)
    row = session.execute(
        select(AuthSession)
        .where(AuthSession.id == expired.session_id, AuthSession.ended_at.is_(None))
        .with_for_update()
    ).scalar_one_or_none()
    if row is not None:
        end(session, ctx, row, expired.reason)
