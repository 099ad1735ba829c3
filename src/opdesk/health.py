"""Liveness and readiness probes for load balancers and operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from opdesk.automation.service import due_summary
from opdesk.config import Settings
from opdesk.context import utc_now
from opdesk.migrate import current_revision, head_revision
from opdesk.ops.backup import newest_age
from opdesk.web.deps import AppSettings, Open

BACKUP_LATE_SECONDS = 26 * 3600

router = APIRouter(tags=["health"], dependencies=[Depends(Open())])


class Health(BaseModel):
    status: str
    database: str | None = None
    migrations: str | None = None
    # "ok", or how long the oldest due message or automation event has waited.
    worker: str | None = None
    # With daily backups on: how long ago the newest was made, or that none was.
    backup: str | None = None


@router.get("/healthz", response_model=Health, response_model_exclude_none=True)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request, settings: AppSettings) -> JSONResponse:
    """Ready for traffic: the database answers and the schema is at the latest migration.

    The ``worker`` line warns when the oldest due message or automation event has waited
    longer than ``OPDESK_WORKER_LAG_WARNING_SECONDS`` (no worker running, or too few). That
    is a warning with 200, not a 503: this web server still serves, and every web server
    reads the same queue, so a 503 would take all of them out of the load balancer for a
    problem of the workers. ``status`` says ``degraded`` for monitoring to alert on.
    """
    try:
        with request.app.state.db.app_engine.connect() as conn:
            conn.execute(text("select 1"))
            current = current_revision(conn)
            due, oldest = due_summary(conn) if current == head_revision() else (0, None)
    except Exception:
        body = Health(status="unavailable", database="unreachable")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    head = head_revision()
    if current != head:
        body = Health(status="unavailable", database="ok", migrations=f"{current} != {head}")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    status, worker = "ok", "ok"
    if oldest is not None:
        waited = (utc_now() - oldest).total_seconds()
        if waited > settings.worker_lag_warning_seconds:
            status = "degraded"
            worker = f"{due} due, the oldest waiting {int(waited)} s (is a worker running?)"
    backup, late = backup_line(settings)
    body = Health(
        status="degraded" if late else status,
        database="ok",
        migrations=str(current),
        worker=worker,
        backup=backup,
    )
    return JSONResponse(body.model_dump(exclude_none=True))


def backup_line(settings: Settings) -> tuple[str | None, bool]:
    """What the health page says of the daily backup, and whether it is overdue (a day and
    two hours: the backup's own hour, with room for a long one)."""
    if not settings.daily_backup_on:
        return None, False
    age = newest_age(settings.backups, utc_now())
    if age is None:
        return "none made yet", True
    late = age > BACKUP_LATE_SECONDS
    return f"the newest is {age / 3600:.1f} h old" + (" (overdue)" if late else ""), late
