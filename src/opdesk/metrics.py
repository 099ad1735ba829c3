"""What OPDesk counts for ``/metrics`` (Prometheus' text format).

The counters here are updated where things happen (a request answered, a booking made or
refused, a sign-in, a pool connection taken); the figures read from the database (outbox
depth, automation lag, workers connected, backup age) are read when ``/metrics`` is asked.

Under ``opdesk serve --workers N`` every uvicorn process counts for itself in files under
``PROMETHEUS_MULTIPROC_DIR`` (``serve`` sets it), and a scrape adds them up, as
prometheus-client's multiprocess mode does. This module imports nothing of OPDesk, so any
layer may count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "opdesk_request_seconds",
    "Time to answer a request, by method, route template and status class",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BOOKINGS = Counter(
    "opdesk_bookings_total",
    "Bookings tried, by outcome (confirmed, requested: waits for payment, conflict, refused)",
    ["outcome"],
)
SIGN_INS = Counter(
    "opdesk_sign_ins_total",
    "Sign-ins tried, by kind (password: staff; otp: a patient's code) and outcome "
    "(signed-in: the password or code was right, refused, throttled)",
    ["kind", "outcome"],
)
POOL_IN_USE = Gauge(
    "opdesk_db_pool_in_use",
    "Database connections checked out of the app's pool",
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "opdesk_db_pool_waiting",
    "Requests waiting for a connection from the app's pool",
    multiprocess_mode="livesum",
)

POOL_SIZE = Gauge(
    "opdesk_db_pool_size",
    "Connections of each web worker's pool for the services (the hot paths have as many)",
    multiprocess_mode="max",
)
POOL_WAIT_SECONDS = Gauge(
    "opdesk_db_pool_wait_seconds",
    "How long a request waits for a free connection before it is answered 503",
    multiprocess_mode="max",
)
UNAVAILABLE = Counter(
    "opdesk_db_unavailable_total",
    "Requests answered 503 because of the database, by fault (unavailable: unreachable or "
    "restarting; busy: every connection in use past the wait; slow: past the statement "
    "timeout)",
    ["fault"],
)


def count_sign_in(kind: str, refused_status: int | None) -> None:
    """``refused_status``: None when signed in (or on to the next step), else the answer."""
    if refused_status is None:
        outcome = "signed-in"
    else:
        outcome = "throttled" if refused_status == 429 else "refused"
    SIGN_INS.labels(kind, outcome).inc()


def watch_pool(pool: Any) -> None:
    """Count the connections of a SQLAlchemy pool in use, and the callers waiting for one."""
    from sqlalchemy import event

    if getattr(pool, "_opdesk_watched", False):
        return
    event.listen(pool, "checkout", lambda *_: POOL_IN_USE.inc())
    event.listen(pool, "checkin", lambda *_: POOL_IN_USE.dec())
    take: Callable[[], Any] = pool._do_get

    def waiting_get() -> Any:
        # A caller is "waiting" while it is inside the pool's get; usually for microseconds,
        # for up to the pool timeout when every connection is out.
        POOL_WAITING.inc()
        try:
            return take()
        finally:
            POOL_WAITING.dec()

    pool._do_get = waiting_get
    pool._opdesk_watched = True


def timed(method: str, route: str, status: int, started: float) -> None:
    REQUEST_SECONDS.labels(method, route, f"{status // 100}xx").observe(
        time.perf_counter() - started
    )
