"""The unit of work: one transaction per request or job (DESIGN rule 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from opdesk.audit.service import CTX_KEY
from opdesk.context import RequestContext
from opdesk.db import TENANT_KEY, Database


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
