"""FastAPI dependencies: the request context and the per-request transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.uow import transaction


def request_context(request: Request) -> RequestContext:
    client = request.client
    return RequestContext(
        tenant_id=None,
        request_id=getattr(request.state, "request_id", None) or "",
        ip=client.host if client else None,
        user_agent=(request.headers.get("user-agent") or "")[:400] or None,
        clock=request.app.state.clock,
    )


Ctx = Annotated[RequestContext, Depends(request_context)]


def db_session(request: Request, ctx: Ctx) -> Iterator[Session]:
    """The request's one transaction; it commits before the response is sent."""
    with transaction(request.app.state.db, ctx) as session:
        yield session


# scope="function": the transaction ends (commit or rollback) when the endpoint returns,
# before the response goes out, so a failed commit can still become an error response.
DbSession = Annotated[Session, Depends(db_session, scope="function")]
