"""A throw-away clinic with a signed-in front desk, for the benchmarks that call the API."""

from __future__ import annotations

import uuid
from datetime import timedelta

from opdesk.context import system_context
from opdesk.db import Database
from opdesk.identity import sessions
from opdesk.identity.service import Identity, create_user
from opdesk.tenancy.schemas import TenantCreate
from opdesk.tenancy.service import create_tenant
from opdesk.uow import transaction

# Long enough for the slowest run; the database is deleted afterwards.
SESSION_FOR = timedelta(hours=6)


def bench_clinic(db: Database, ident: Identity) -> tuple[uuid.UUID, str]:
    """The new clinic's id and a bearer token of its front desk."""
    ctx = system_context(None)
    with transaction(db, ctx) as session:
        tenant = create_tenant(
            session, ctx, data=TenantCreate(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
        )
        desk = create_user(
            session,
            ctx,
            ident,
            name="Desk",
            role="frontdesk",
            email="desk@bench.in",
            password="bench password",  # noqa: S106 - a throw-away bench database
        )
        _, token = sessions.start(
            session,
            ctx,
            user=desk,
            stage="active",
            method="bench",
            device_id=None,
            idle=SESSION_FOR,
            lifetime=SESSION_FOR,
        )
    return tenant.id, token
