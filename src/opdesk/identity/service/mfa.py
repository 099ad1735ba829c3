"""Two-step sign-in with TOTP: enrolment, verification without replay, recovery codes."""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.errors import Conflict
from opdesk.identity import sessions
from opdesk.identity.models import AuthSession, Device, User
from opdesk.identity.service._common import (
    MFA_FAILS_SESSION,
    RECOVERY_CODES,
    TOTP_ISSUER,
    Identity,
    Refusal,
    auth_event,
    device_stage,
    get_user,
    session_row,
    too_many,
    user_of,
)
from opdesk.identity.sessions import Principal
from opdesk.security import throttle
from opdesk.security.tokens import keyed_hash, same
from opdesk.validation import ascii_digits

# --------------------------------------------------------------------------- MFA


def _totp(ident: Identity, user: User) -> pyotp.TOTP:
    assert user.mfa_secret is not None
    secret = ident.cipher.decrypt_str(
        user.mfa_secret,
        tenant_id=user.tenant_id,
        table="users",
        column="mfa_secret",
        row_id=user.id,
    )
    return pyotp.TOTP(secret)


def _accept_totp(ident: Identity, user: User, code: str, now: datetime) -> bool:
    """A code for the current 30-second step (±1 for clock drift), never one used before."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and ascii_digits(code)) or user.mfa_secret is None:
        return False
    totp = _totp(ident, user)
    step_now = int(now.timestamp()) // totp.interval
    for step in (step_now - 1, step_now, step_now + 1):
        if same(totp.at(step * totp.interval).encode(), code.encode()):
            if user.mfa_last_step is not None and step <= user.mfa_last_step:
                return False
            user.mfa_last_step = step
            return True
    return False


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def begin_mfa_enrolment(
    session: Session, ctx: RequestContext, ident: Identity, principal: Principal
) -> Enrolment:
    """A new TOTP secret for the user (not yet active until a code confirms it)."""
    user = user_of(session, principal, lock=True)
    if user.mfa_enabled:
        raise Conflict("two-step sign-in is already on; an admin can reset it")
    secret = pyotp.random_base32()
    user.mfa_secret = ident.cipher.encrypt(
        secret, tenant_id=user.tenant_id, table="users", column="mfa_secret", row_id=user.id
    )
    user.mfa_last_step = None
    session.flush()
    auth_event(ctx, "mfa-enrol-start", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    label = user.email or user.name
    uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=TOTP_ISSUER)
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#1b2b34")
    return Enrolment(secret, uri, svg)


def confirm_mfa_enrolment(
    session: Session, ctx: RequestContext, ident: Identity, principal: Principal, code: str
) -> tuple[list[str], str | None] | Refusal:
    """Turn MFA on with a first good code; returns the recovery codes (shown once)."""
    user = user_of(session, principal, lock=True)
    if user.mfa_enabled:
        raise Conflict("two-step sign-in is already on")
    if user.mfa_secret is None:
        raise Conflict("start the set-up first")
    if not _accept_totp(ident, user, code, ctx.now()):
        return Refusal(
            422, "Invalid input", "That code is not right; try the newest one.", field="code"
        )
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    user.mfa_enabled = True
    user.mfa_recovery_hashes = [_recovery_hash(ident, user, c) for c in codes]
    user.updated_at = ctx.now()
    auth_event(ctx, "mfa-enrolled", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    sessions.end_all(session, ctx, user_id=user.id, reason="mfa-changed", keep=principal.session_id)
    new_token = _advance(session, ctx, principal, user)
    return codes, new_token


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:16]}"


def _recovery_hash(ident: Identity, user: User, code: str) -> str:
    normalized = code.strip().lower().replace(" ", "")
    return keyed_hash(ident.keys.otp, "recovery", str(user.id), normalized).hex()


def verify_mfa(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    principal: Principal,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
) -> str | Refusal:
    """Second step of sign-in: a TOTP code or one recovery code. Returns the new token."""
    now = ctx.now()
    if principal.stage != "mfa":
        raise Conflict(f"this session is at step {principal.stage!r}, not two-step sign-in")
    key = principal.session_id.bytes
    wait = throttle.retry_after(session, MFA_FAILS_SESSION, key, now)
    if wait is not None:
        sessions.end(session, ctx, session_row(session, principal), "mfa-locked")
        return too_many(wait)
    user = user_of(session, principal, lock=True)
    if recovery_code:
        good = _use_recovery_code(ident, user, recovery_code)
    else:
        good = _accept_totp(ident, user, code or "", now)
    if not good:
        throttle.count(session, MFA_FAILS_SESSION, key, now)
        auth_event(ctx, "mfa-failed", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
        return Refusal(401, "Sign-in failed", "That code is not right.", field="code")
    auth_event(
        ctx,
        "mfa-verified",
        tenant_id=user.tenant_id,
        entity="users",
        entity_id=user.id,
        method="recovery-code" if recovery_code else "totp",
    )
    token = _advance(session, ctx, principal, user)
    assert token is not None
    return token


def _use_recovery_code(ident: Identity, user: User, code: str) -> bool:
    wanted = _recovery_hash(ident, user, code)
    remaining = list(user.mfa_recovery_hashes or [])
    for stored in remaining:
        if same(bytes.fromhex(stored), bytes.fromhex(wanted)):
            remaining.remove(stored)
            user.mfa_recovery_hashes = remaining
            return True
    return False


def _advance(session: Session, ctx: RequestContext, principal: Principal, user: User) -> str | None:
    """Move a half-signed-in session to its next step; a new token when it changes."""
    if principal.stage not in ("mfa", "mfa-enrol"):
        return None
    row = session_row(session, principal)
    device = session.get(Device, (row.tenant_id, row.device_id)) if row.device_id else None
    row.stage = device_stage(user, device)
    session.flush()
    return sessions.rotate(session, row)


def stage_of(session: Session, principal: Principal) -> str:
    return str(
        session.execute(
            select(AuthSession.stage).where(AuthSession.id == principal.session_id)
        ).scalar_one()
    )


def may_enrol(principal: Principal) -> Principal:
    """MFA set-up is for signed-in users and for those whose clinic now requires it."""
    if principal.stage not in ("active", "mfa-enrol"):
        raise Conflict(f"finish signing in first (at step {principal.stage!r})")
    return principal


def reset_mfa(session: Session, ctx: RequestContext, *, user_id: uuid.UUID) -> User:
    """Admin: turn MFA off for a user who lost their phone; ends their sessions."""
    user = get_user(session, user_id, lock=True)
    user.mfa_enabled = False
    user.mfa_secret = None
    user.mfa_last_step = None
    user.mfa_recovery_hashes = []
    user.updated_at = ctx.now()
    session.flush()
    auth_event(ctx, "mfa-reset", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    sessions.end_all(session, ctx, user_id=user.id, reason="mfa-reset")
    return user
