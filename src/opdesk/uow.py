"""The unit of work: one transaction per request or job (DESIGN rule 1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from opdesk.audit.service import CTX_KEY
from opdesk.context import RequestContext
from opdesk.db import TENANT_KEY, Database, bind_tenant


@contextmanager
def transaction(db: Database, ctx: RequestContext) -> Iterator[Session]:
    """Open a session scoped to ``ctx``'s tenant; commit (with its audit events) on success.

    Services only ``flush``. Any exception rolls everything back, audit events included.
    """
    with db.sessions() as session:
        session.info[CTX_KEY] = ctx
        session.info[TENANT_KEY] = ctx.tenant_id
        with session.begin():
            yield session


def enter_tenant(session: Session, ctx: RequestContext, tenant_id: uuid.UUID) -> None:
    """Act for this clinic from here on: the caller's context and the database scope
    change together (e.g. once a sign-in or a public page has named the clinic).

    Nothing else assigns ``ctx.tenant_id``.
    """
    ctx.tenant_id = tenant_id
    bind_tenant(session, tenant_id)
