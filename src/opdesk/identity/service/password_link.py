"""One-time links to set a password: how a new clinic's first admin gets in.

A link's token is stored only as its hash, in ``otp_tokens`` (a one-time secret with an
expiry and a used-at stamp is exactly what that table holds), marked as a password link
by its ``phone_hash``, which names the user rather than a phone. The sign-in code check
refuses such rows, and these functions refuse code rows.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput
from opdesk.identity.models import OtpToken, User
from opdesk.identity.service._common import Identity, auth_event, get_user
from opdesk.security.passwords import hash_password, password_problem
from opdesk.security.tokens import random_token, token_hash
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.uow import enter_tenant

# ``otp_tokens.phone_hash`` of a password link: this prefix, then the user's id.
PASSWORD_LINK_MARK = b"password-link:"
LINK_GONE = (
    "This link has expired or has been used already. Ask whoever set up the clinic "
    "for a new one (opdesk tenant admin-link)."
)


def is_password_link(token: OtpToken) -> bool:
    return token.phone_hash.startswith(PASSWORD_LINK_MARK)


def create_first_admin(
    session: Session, ctx: RequestContext, ident: Identity, *, name: str, email: str
) -> tuple[User, str]:
    """The clinic's first admin, with no password yet, and the one-time link token that
    lets them choose one (shown once: only its hash is kept).
    """
    assert ctx.tenant_id is not None
    now = ctx.now()
    user = User(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        role="admin",
        email=email,
        password_hash=None,
        name=name,
        device_approval_required=False,
        created_at=now,
        updated_at=now,
        mfa_enabled=False,
        active=True,
        mfa_recovery_hashes=[],
    )
    session.add(user)
    session.flush()
    audit.record(
        ctx,
        entity="users",
        entity_id=user.id,
        action="create",
        diff=audit.diff_of({}, user.snapshot(), redact={"phoneEncrypted"}),
    )
    return user, issue_password_link(session, ctx, ident, user=user)


def issue_password_link(
    session: Session, ctx: RequestContext, ident: Identity, *, user: User
) -> str:
    """A new link token for a staff member; earlier unused links of theirs stop working."""
    if user.role == "patient":
        raise Conflict("patients sign in with a code sent to their mobile, not a password")
    now = ctx.now()
    mark = PASSWORD_LINK_MARK + user.id.bytes
    for old in session.execute(
        select(OtpToken).where(OtpToken.phone_hash == mark, OtpToken.consumed_at.is_(None))
    ).scalars():
        old.consumed_at = now
    token = random_token()
    row = OtpToken(
        id=new_id(),
        phone_hash=mark,
        attempt_hash=token_hash(token),
        otp_hash=secrets.token_bytes(32),  # no code opens it
        expires_at=now + timedelta(hours=ident.settings.password_link_hours),
        created_at=now,
        clinic_id=user.tenant_id,
    )
    session.add(row)
    session.flush()
    auth_event(
        ctx,
        "password-link-issued",
        tenant_id=user.tenant_id,
        entity="users",
        entity_id=user.id,
        userId=str(user.id),
        expiresAt=row.expires_at.isoformat(),
    )
    return token


@dataclass(frozen=True)
class LinkHolder:
    user: User
    clinic: Tenant


def _live_link(
    session: Session, ctx: RequestContext, token: str, *, lock: bool
) -> tuple[OtpToken, LinkHolder] | None:
    if not token or len(token) > 200:
        return None
    stmt = select(OtpToken).where(OtpToken.attempt_hash == token_hash(token))
    row = session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
    if row is None or not is_password_link(row):
        return None
    if row.consumed_at is not None or ctx.now() >= row.expires_at:
        return None
    enter_tenant(session, ctx, row.clinic_id)
    user = get_user(session, _user_id(row), lock=lock)
    if not user.active:
        return None
    return row, LinkHolder(user, tenants.get_tenant(session, row.clinic_id))


def _user_id(row: OtpToken) -> uuid.UUID:
    return uuid.UUID(bytes=row.phone_hash[len(PASSWORD_LINK_MARK) :])


def password_link_holder(session: Session, ctx: RequestContext, token: str) -> LinkHolder | None:
    """Whose link this is, while it still works (nothing is spent by looking)."""
    found = _live_link(session, ctx, token, lock=False)
    return found[1] if found else None


def set_password_with_link(
    session: Session, ctx: RequestContext, ident: Identity, *, token: str, password: str
) -> LinkHolder | None:
    """Set the password and spend the link; None when the link no longer works."""
    found = _live_link(session, ctx, token, lock=True)
    if found is None:
        return None
    problem = password_problem(password)
    if problem:
        raise InvalidInput([FieldError("password", problem)])
    row, holder = found
    row.consumed_at = ctx.now()
    holder.user.password_hash = hash_password(password, fast=ident.fast)
    holder.user.updated_at = ctx.now()
    session.flush()
    auth_event(
        ctx,
        "password-set",
        tenant_id=holder.user.tenant_id,
        entity="users",
        entity_id=holder.user.id,
        userId=str(holder.user.id),
        method="one-time-link",
    )
    return holder
