"""Admin work: users, devices, and which roles must use two-step sign-in."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput
from opdesk.identity import sessions
from opdesk.identity.models import STAFF_ROLES, Device, User
from opdesk.identity.service._common import (
    Identity,
    auth_event,
    get_user,
)
from opdesk.security.passwords import hash_password, password_problem
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant

# --------------------------------------------------------------------------- users (admin)


def create_user(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    name: str,
    role: str,
    email: str | None = None,
    password: str | None = None,
    phone: str | None = None,
    device_approval_required: bool = False,
) -> User:
    """A staff member (email + password) or a patient login (phone)."""
    assert ctx.tenant_id is not None
    errors = []
    if role in STAFF_ROLES:
        if not email:
            errors.append(FieldError("email", "staff need an email address to sign in"))
        if not password:
            errors.append(FieldError("password", "staff need a first password"))
        elif problem := password_problem(password):
            errors.append(FieldError("password", problem))
    elif not phone:
        errors.append(FieldError("phone", "patients sign in with their mobile number"))
    if errors:
        raise InvalidInput(errors)
    now = ctx.now()
    user = User(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        role=role,
        email=email,
        password_hash=hash_password(password, fast=ident.fast) if password else None,
        name=name,
        device_approval_required=device_approval_required,
        created_at=now,
        updated_at=now,
        mfa_enabled=False,
        active=True,
        mfa_recovery_hashes=[],
    )
    if phone:
        user.phone_hash = ident.cipher.blind_index(phone, purpose="phone")
        user.phone_encrypted = ident.cipher.encrypt(
            phone, tenant_id=ctx.tenant_id, table="users", column="phone_encrypted", row_id=user.id
        )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise Conflict(_duplicate_message(email, phone)) from exc
    audit.record(
        ctx,
        entity="users",
        entity_id=user.id,
        action="create",
        diff=audit.diff_of({}, user.snapshot(), redact={"phoneEncrypted"}),
    )
    return user


def _duplicate_message(email: str | None, phone: str | None) -> str:
    if email:
        return f"a user with the email {email} already exists in this clinic"
    return "a patient login with this phone number already exists in this clinic"


def update_user(
    session: Session,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    name: str | None = None,
    role: str | None = None,
    active: bool | None = None,
    device_approval_required: bool | None = None,
) -> User:
    """Admin changes; deactivating ends the user's sessions at once."""
    user = get_user(session, user_id, lock=True)
    if user_id == ctx.actor_id and (active is False or (role and role != user.role)):
        raise Conflict("admins cannot deactivate themselves or change their own role")
    if role is not None and (role == "patient") != (user.role == "patient"):
        raise Conflict("a staff login cannot become a patient login or the other way round")
    before = user.snapshot()
    for field, value in (
        ("name", name),
        ("role", role),
        ("active", active),
        ("device_approval_required", device_approval_required),
    ):
        if value is not None:
            setattr(user, field, value)
    after = user.snapshot()
    if after == before:
        return user
    user.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="users",
        entity_id=user.id,
        action="update",
        diff=audit.diff_of(before, after, redact={"phoneEncrypted"}),
    )
    if active is False:
        sessions.end_all(session, ctx, user_id=user.id, reason="user-deactivated")
    return user


# --------------------------------------------------------------------------- devices (admin)


def get_device(session: Session, device_id: uuid.UUID, *, lock: bool = False) -> Device:
    return records.by_id(session, Device, device_id, lock=lock)


def approve_device(session: Session, ctx: RequestContext, *, device_id: uuid.UUID) -> Device:
    device = get_device(session, device_id, lock=True)
    if device.revoked_at is not None:
        raise Conflict("a revoked device cannot be approved; the user signs in again instead")
    if device.approved:
        return device
    device.approved = True
    device.approved_at = ctx.now()
    device.approved_by = ctx.actor_id
    session.flush()
    auth_event(
        ctx, "device-approved", tenant_id=device.tenant_id, entity="devices", entity_id=device.id
    )
    return device


def revoke_device(session: Session, ctx: RequestContext, *, device_id: uuid.UUID) -> Device:
    device = get_device(session, device_id, lock=True)
    if device.revoked_at is not None:
        raise Conflict("this device is already revoked")
    device.revoked_at = ctx.now()
    device.approved = False
    session.flush()
    auth_event(
        ctx, "device-revoked", tenant_id=device.tenant_id, entity="devices", entity_id=device.id
    )
    sessions.end_all(session, ctx, device_id=device.id, reason="device-revoked")
    return device


# --------------------------------------------------------------------------- clinic security


def set_mfa_required_roles(session: Session, ctx: RequestContext, *, roles: list[str]) -> Tenant:
    assert ctx.tenant_id is not None
    unknown = sorted(set(roles) - set(STAFF_ROLES))
    if unknown:
        raise InvalidInput([FieldError("roles", f"not staff roles: {', '.join(unknown)}")])
    tenant = tenants.get_tenant(session, ctx.tenant_id)
    before = tenant.snapshot()
    tenant.mfa_required_roles = sorted(set(roles))
    tenant.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="tenants",
        entity_id=tenant.id,
        action="update",
        diff=audit.diff_of(before, tenant.snapshot()),
    )
    return tenant
