"""Liveness and readiness probes for load balancers and operators."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlalchemy import text

from opdesk import metrics
from opdesk.automation.service import due_summary
from opdesk.automation.worker import workers_connected
from opdesk.config import Settings
from opdesk.context import utc_now
from opdesk.db import Database
from opdesk.errors import NotFound
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


@router.get("/back", include_in_schema=False)
def back(request: Request) -> Response:
    """Asked every few seconds by the page and the line OPDesk shows while its database is
    away (``web/unavailable.py``): 503 until the database answers; then the page reloads
    itself (``?then=reload``: ``HX-Refresh``) or the line clears (an empty answer).
    """
    try:
        with request.app.state.db.app_engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception:
        # Whatever the failure, the answer is "not yet". (HX-Reswap: the pages' htmx swaps
        # a 503; this one leaves the asker in place.)
        return Response(status_code=503, headers={"Retry-After": "3", "HX-Reswap": "none"})
    then = request.query_params.get("then")
    if then == "reload":
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    if then == "say":
        return Response(BACK_TO_THE_FORM, status_code=200, media_type="text/html")
    # The line clears; "opdesk-back" lets a part of the page that was refused ask again
    # (the patient search listens for it), so what it shows matches what was typed.
    return Response("", status_code=200, headers={"HX-Trigger": "opdesk-back"})


BACK_TO_THE_FORM = (
    "<h1>OPDesk is back</h1>"
    "<p>What you typed is still in the form: use your browser's <strong>Back</strong> "
    "button to return to it, then send it again.</p>"
)


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


# --------------------------------------------------------------------------- /metrics

# Each queue's due rows (pending, their time come, all clinics) and its oldest due time.
_QUEUES = {
    "outbox": (
        "select count(*), min(coalesce(scheduled_for, created_at)) from notifications_outbox "
        "where status = 'pending' and (scheduled_for is null or scheduled_for <= now())"
    ),
    "automation": (
        "select count(*), min(scheduled_for) from automation_events "
        "where status = 'pending' and scheduled_for <= now()"
    ),
}


@router.get("/metrics", include_in_schema=False)
def metrics_page(request: Request, settings: AppSettings) -> Response:
    """Prometheus' text format, for a scraper holding ``OPDESK_METRICS_TOKEN``; without
    that setting the page does not exist (404)."""
    token = settings.metrics_token
    if token is None:
        raise NotFound("not found")
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return Response("a bearer token is needed\n", status_code=401, media_type="text/plain")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # all workers' counts
    else:
        for collector in (metrics.REQUEST_SECONDS, metrics.BOOKINGS, metrics.SIGN_INS):
            registry.register(collector)
        registry.register(metrics.POOL_IN_USE)
        registry.register(metrics.POOL_WAITING)
    registry.register(_StateCollector(request.app.state.db, settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _StateCollector(Collector):
    """What the database and the backup folder say at the moment of the scrape."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "opdesk_queue_due", "Rows due and not yet handled, by queue", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "opdesk_queue_oldest_due_seconds",
            "How long the oldest due row of each queue has waited (0: none due)",
            labels=["queue"],
        )
        now = utc_now()
        with self.db.owner_engine.connect() as conn:
            for queue, sql in _QUEUES.items():
                count, oldest = conn.execute(text(sql)).one()
                depth.add_metric([queue], count)
                age.add_metric([queue], (now - oldest).total_seconds() if oldest else 0.0)
            workers = workers_connected(conn)
        yield depth
        yield age
        yield GaugeMetricFamily(
            "opdesk_workers_connected", "Workers holding their connection open now", workers
        )
        backup = newest_age(self.settings.backups, now)
        yield GaugeMetricFamily(
            "opdesk_backup_age_seconds",
            "Age of the newest backup in the backup folder (-1: none)",
            -1.0 if backup is None else backup,
        )
