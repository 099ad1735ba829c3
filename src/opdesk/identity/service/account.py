"""A signed-in user's own account: sign-out and password change."""

from __future__ import annotations

from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity import sessions
from opdesk.identity.models import AuthSession, Device, User
from opdesk.identity.service._common import (
    PASSWORD_FAILS_ACCOUNT,
    PASSWORD_FAILS_DEVICE,
    Identity,
    Refusal,
    auth_event,
    device_key,
    session_row,
    too_many,
    user_of,
)
from opdesk.identity.service.signin import account_key
from opdesk.identity.sessions import Principal
from opdesk.security import throttle
from opdesk.security.passwords import hash_password, password_problem, verify_password
from opdesk.tenancy import service as tenants

# --------------------------------------------------------------------------- sign-out, password


def sign_out(session: Session, ctx: RequestContext, principal: Principal) -> None:
    sessions.end(session, ctx, session_row(session, principal), "signed-out")


def change_password(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    principal: Principal,
    *,
    current: str,
    new: str,
) -> Refusal | None:
    """A new password for the signed-in user; the other sessions end.

    A wrong current password counts with the sign-in lockout (the account's counter and
    this browser's), so a stolen or unattended session is no password oracle: past the
    limit even the right password is refused until the lockout lifts.
    """
    now = ctx.now()
    user = user_of(session, principal, lock=True)
    tenant = tenants.get_tenant(session, user.tenant_id)
    keys = [(PASSWORD_FAILS_ACCOUNT, account_key(ident, tenant, tenant.slug, user.email or ""))]
    device = _device_of(session, principal)
    if device is not None:
        keys.append((PASSWORD_FAILS_DEVICE, device_key(ident, "password", device)))
    # A browser that signed in before is judged by its own counter (as at sign-in), so
    # strangers locking the account out do not stop its owner changing the password.
    judged_by = keys[-1]
    wait = throttle.retry_after(session, judged_by[0], judged_by[1], now)
    if wait is not None:
        _failed(ctx, user, "locked-out")
        return too_many(wait)
    if not verify_password(current, user.password_hash, fast=ident.fast):
        for limit, key in keys:
            throttle.count(session, limit, key, now)
        _failed(ctx, user, "wrong-current-password")
        return Refusal(
            422, "Invalid input", "current: that is not your current password", field="current"
        )
    problem = password_problem(new)
    if problem:
        raise InvalidInput([FieldError("new", problem)])
    user.password_hash = hash_password(new, fast=ident.fast)
    user.updated_at = now
    auth_event(ctx, "password-changed", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    sessions.end_all(
        session, ctx, user_id=user.id, reason="password-changed", keep=principal.session_id
    )
    return None


def _device_of(session: Session, principal: Principal) -> Device | None:
    row = session.get(AuthSession, (principal.tenant_id, principal.session_id))
    if row is None or row.device_id is None:
        return None
    return session.get(Device, (row.tenant_id, row.device_id))


def _failed(ctx: RequestContext, user: User, reason: str) -> None:
    auth_event(
        ctx,
        "password-change-failed",
        tenant_id=user.tenant_id,
        entity="users",
        entity_id=user.id,
        userId=str(user.id),
        reason=reason,
    )
