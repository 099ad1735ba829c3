"""A savepoint that rolls back drops only its own audit events; the rest still commit."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.audit.verify import verify_tenant
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.identity.models import User
from opdesk.identity.service import Identity, create_user
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import STAFF_PASSWORD, ctx_for, events_of


def _staff(session: Session, ctx: RequestContext, ident: Identity, name: str) -> User:
    return create_user(
        session,
        ctx,
        ident,
        role="frontdesk",
        name=name,
        email=f"{name.lower()}@example.in",
        password=STAFF_PASSWORD,
    )


def test_a_failed_savepoint_keeps_the_events_of_earlier_writes(
    db: Database, tenant: Tenant, ident: Identity
) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        kept = _staff(session, ctx, ident, "Kept")
        with pytest.raises(Conflict), session.begin_nested():
            _staff(session, ctx, ident, "Dropped")
            raise Conflict("the page refuses the second step")
        after = _staff(session, ctx, ident, "After")

    users = {u.name for u in _users(db, tenant)}
    assert users == {"Kept", "After"}, "the savepoint's user is rolled back, the others stay"
    audited = [(e.entity_collection, e.entity_id) for e in events_of(db, tenant.id)]
    assert ("users", kept.id) in audited
    assert ("users", after.id) in audited
    assert len([c for c, _ in audited if c == "users"]) == 2, "nothing of the dropped user"
    with db.owner_engine.connect() as conn:
        assert verify_tenant(conn, tenant.id).ok


def test_nested_savepoints_trim_back_to_their_own_start(
    db: Database, tenant: Tenant, ident: Identity
) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        outer = _staff(session, ctx, ident, "Outer")
        with session.begin_nested():
            middle = _staff(session, ctx, ident, "Middle")
            with pytest.raises(Conflict), session.begin_nested():
                _staff(session, ctx, ident, "Inner")
                raise Conflict("inner step refused")
        assert len(ctx.pending_audit) == 2, "outer and middle wait; inner is gone"

    audited = {e.entity_id for e in events_of(db, tenant.id) if e.entity_collection == "users"}
    assert audited == {outer.id, middle.id}


def test_a_whole_rollback_still_drops_every_pending_event(
    db: Database, tenant: Tenant, ident: Identity
) -> None:
    ctx = ctx_for(tenant.id)
    before = len(events_of(db, tenant.id))
    with pytest.raises(RuntimeError), transaction(db, ctx) as session:
        _staff(session, ctx, ident, "Gone")
        with session.begin_nested():
            _staff(session, ctx, ident, "AlsoGone")
        raise RuntimeError("the request fails")
    assert ctx.pending_audit == []
    assert len(events_of(db, tenant.id)) == before


def _users(db: Database, tenant: Tenant) -> list[User]:
    with transaction(db, ctx_for(tenant.id)) as session:
        return list(session.execute(select(User)).scalars())
