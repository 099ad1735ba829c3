"""A signed-in user's own account: sign-out and password change."""

from __future__ import annotations

from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity import sessions
from opdesk.identity.service._common import (
    Identity,
    Refusal,
    auth_event,
    session_row,
    user_of,
)
from opdesk.identity.sessions import Principal
from opdesk.security.passwords import hash_password, password_problem, verify_password

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
    user = user_of(session, principal, lock=True)
    if not verify_password(current, user.password_hash, fast=ident.fast):
        return Refusal(
            422, "Invalid input", "current: that is not your current password", field="current"
        )
    problem = password_problem(new)
    if problem:
        raise InvalidInput([FieldError("new", problem)])
    user.password_hash = hash_password(new, fast=ident.fast)
    user.updated_at = ctx.now()
    auth_event(ctx, "password-changed", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    sessions.end_all(
        session, ctx, user_id=user.id, reason="password-changed", keep=principal.session_id
    )
    return None
