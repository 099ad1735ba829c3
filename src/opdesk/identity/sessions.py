"""Server-side sessions: opaque tokens, stored hashed, with idle and absolute expiry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.db import bind_tenant, scoped_by_sql
from opdesk.identity.models import AuthSession, User
from opdesk.security.tokens import session_token, tenant_of, token_hash

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

    One statement (``opdesk_session``, migration 0020) finds the session, checks its limits,
    activates it once its device is approved and touches ``last_seen_at`` at most once per
    :data:`TOUCH_EVERY`. A session past its limits comes back as :class:`Expired` so the
    caller can end it in a transaction of its own (this request's will roll back when it
    answers 401).
    """
    tenant_id = tenant_of(token)
    if tenant_id is None:
        return None
    row = session.execute(
        _RESOLVE,
        {"h": token_hash(token), "t": tenant_id, "at": ctx.now(), "every": TOUCH_EVERY},
    ).one_or_none()
    if row is None:
        scoped_by_sql(session, None)
        return None
    if row.over is not None:
        scoped_by_sql(session, None)
        return Expired(tenant_id, row.session_id, row.over)
    scoped_by_sql(session, tenant_id)
    return Principal(
        row.session_id,
        tenant_id,
        row.user_id,
        row.role,
        row.stage,
        row.name,
        token,
        via_cookie,
        row.timezone,
    )


_RESOLVE = text("select * from opdesk_session(:h, :t, :at, :every)")


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
