"""Liveness and readiness probes for load balancers and operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from opdesk.migrate import current_revision, head_revision
from opdesk.web.deps import Open

router = APIRouter(tags=["health"], dependencies=[Depends(Open())])


class Health(BaseModel):
    status: str
    database: str | None = None
    migrations: str | None = None


@router.get("/healthz", response_model=Health, response_model_exclude_none=True)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database answers and the schema is at the latest migration."""
    try:
        with request.app.state.db.app_engine.connect() as conn:
            conn.execute(text("select 1"))
            current = current_revision(conn)
    except Exception:
        body = Health(status="unavailable", database="unreachable")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    head = head_revision()
    if current != head:
        body = Health(status="unavailable", database="ok", migrations=f"{current} != {head}")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    return JSONResponse(Health(status="ok", database="ok", migrations=str(current)).model_dump())
