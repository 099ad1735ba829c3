"""Staff sign-in: password, lockout, the device the browser is, the first session step."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.identity import sessions
from opdesk.identity.models import Device, User
from opdesk.identity.service._common import (
    GENERIC_SIGN_IN_FAILURE,
    PASSWORD_FAILS_ACCOUNT,
    PASSWORD_FAILS_DEVICE,
    PASSWORD_FAILS_IP,
    Identity,
    Refusal,
    SignedIn,
    auth_event,
    counted_sign_in,
    device_key,
    device_stage,
    known_device,
    too_many,
)
from opdesk.security import throttle
from opdesk.security.passwords import verify_password
from opdesk.security.tokens import keyed_hash, random_token
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.uow import enter_tenant

# --------------------------------------------------------------------------- staff sign-in


@counted_sign_in("password")
def staff_sign_in(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    clinic: str,
    email: str,
    password: str,
    device_token: str | None,
    device_label: str | None,
) -> SignedIn | Refusal:
    """Email + password at one clinic, then (if needed) MFA and device approval.

    Every failure answers the same words, whether the clinic, the email or the password
    was wrong. Failures count per IP address and per account; a browser that has signed
    this user in before counts against a counter of its own instead of the account's,
    so a stranger's guesses lock out strangers, never the staff member's own browser.
    """
    now = ctx.now()
    ip_key = keyed_hash(ident.keys.throttle, "ip", ctx.ip or "")
    tenant = tenants.find_by_slug(session, clinic)
    user = _staff_user(session, ctx, tenant, email) if tenant else None
    device = known_device(session, ident, user, device_token)
    if device is not None:
        lock_limit, lock_key = PASSWORD_FAILS_DEVICE, device_key(ident, "password", device)
    else:
        lock_limit, lock_key = PASSWORD_FAILS_ACCOUNT, account_key(ident, tenant, clinic, email)
    for limit, key in ((PASSWORD_FAILS_IP, ip_key), (lock_limit, lock_key)):
        wait = throttle.retry_after(session, limit, key, now)
        if wait is not None:
            if tenant is not None:
                _note_failure(session, ctx, tenant, email, None, "locked-out")
            return too_many(wait)
    good = verify_password(password, user.password_hash if user else None, fast=ident.fast)
    if tenant is None or user is None or not user.active or not good:
        throttle.count(session, PASSWORD_FAILS_IP, ip_key, now)
        throttle.count(session, lock_limit, lock_key, now)
        if tenant is not None:
            reason = "inactive" if user is not None and good else "bad-credentials"
            _note_failure(session, ctx, tenant, email, user, reason)
        return Refusal(401, "Sign-in failed", GENERIC_SIGN_IN_FAILURE)
    throttle.forget(session, lock_limit, lock_key)
    return open_session(session, ctx, ident, tenant, user, "password", device_token, device_label)


def account_key(ident: Identity, tenant: Tenant | None, clinic: str, email: str) -> bytes:
    """The key of an account's lockout (also of an email no clinic knows)."""
    return keyed_hash(ident.keys.throttle, "account", str(tenant.id if tenant else clinic), email)


def _staff_user(session: Session, ctx: RequestContext, tenant: Tenant, email: str) -> User | None:
    enter_tenant(session, ctx, tenant.id)
    return session.execute(
        select(User).where(User.email == email, User.role != "patient")
    ).scalar_one_or_none()


def _note_failure(
    session: Session,
    ctx: RequestContext,
    tenant: Tenant,
    email: str,
    user: User | None,
    reason: str,
) -> None:
    enter_tenant(session, ctx, tenant.id)
    auth_event(
        ctx,
        "sign-in-failed",
        tenant_id=tenant.id,
        entity="users",
        entity_id=user.id if user else None,
        email=email[:120],
        reason=reason,
    )


def open_session(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    tenant: Tenant,
    user: User,
    method: str,
    device_token: str | None,
    device_label: str | None,
) -> SignedIn:
    device, new_device_token = _device_for(session, ctx, ident, user, device_token, device_label)
    stage = _first_stage(tenant, user, device)
    row, token = sessions.start(
        session,
        ctx,
        user=user,
        stage=stage,
        method=method,
        device_id=device.id if device else None,
        idle=ident.idle(user.role),
        lifetime=ident.lifetime,
    )
    ctx.actor_id, ctx.role = user.id, user.role
    auth_event(
        ctx,
        "sign-in-succeeded",
        tenant_id=tenant.id,
        entity="sessions",
        entity_id=row.id,
        userId=str(user.id),
        method=method,
        stage=stage,
    )
    return SignedIn(token, stage, user, row.id, new_device_token)


def _first_stage(tenant: Tenant, user: User, device: Device | None) -> str:
    if user.mfa_enabled:
        return "mfa"
    if user.role in (tenant.mfa_required_roles or []):
        return "mfa-enrol"
    return device_stage(user, device)


def _device_for(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    user: User,
    device_token: str | None,
    label: str | None,
) -> tuple[Device | None, str | None]:
    """The browser's device row (created on first sight); a new token if it had none."""
    # Patients' browsers are remembered too (never awaiting approval): a recognised
    # browser keeps asking for codes while strangers are locked out of that number.
    fresh = None
    if not device_token or len(device_token) > 200:
        device_token = fresh = random_token()
    fingerprint = keyed_hash(ident.keys.device, device_token)
    device = session.execute(
        select(Device).where(Device.user_id == user.id, Device.fingerprint_hash == fingerprint)
    ).scalar_one_or_none()
    now = ctx.now()
    if device is not None and device.revoked_at is not None:
        # A revoked device starts over as a new, unapproved one.
        device_token = fresh = random_token()
        fingerprint = keyed_hash(ident.keys.device, device_token)
        device = None
    if device is None:
        device = Device(
            tenant_id=user.tenant_id,
            id=new_id(),
            user_id=user.id,
            fingerprint_hash=fingerprint,
            label=browser_label(label),
            approved=not user.device_approval_required,
            first_seen_at=now,
            last_seen_at=now,
        )
        session.add(device)
    else:
        device.last_seen_at = now
    session.flush()
    return device, fresh


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS", "Mac"),
    ("Linux", "Linux"),
)


def browser_label(user_agent: str | None) -> str | None:
    """``Chrome on Android`` from a user-agent string: what an admin needs to recognise it."""
    if not user_agent:
        return None
    browser = next((name for key, name in _BROWSERS if key in user_agent), "Browser")
    system = next((name for key, name in _SYSTEMS if key in user_agent), None)
    return f"{browser} on {system}" if system else browser
