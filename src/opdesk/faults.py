"""When the database cannot answer: what kind of fault it is, and one log line per outage.

A database restarting for an upgrade, a failover, every connection busy, a query past
its time: none of these is a bug in OPDesk, and none should look like one. Each request
they touch is answered 503 with ``Retry-After`` (``web/problems.py`` words it), and the
log says once that the database went away and once that it came back, with how many
requests were turned away in between, instead of a traceback per request.

This module imports nothing of the web framework: the worker and the CLI classify the
same faults.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc

log = logging.getLogger("opdesk.database")


class Fault(StrEnum):
    # The database cannot be reached or is shutting down, starting up, full of
    # connections, or read-only after a failover.
    UNAVAILABLE = "unavailable"
    # Every connection of this process's pool is in use for longer than the wait allows.
    BUSY = "busy"
    # A statement ran past the statement timeout and was cancelled.
    SLOW = "slow"


# SQLSTATEs of a server that is going, gone, not yet there, or may not write now.
_UNAVAILABLE_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: stopped (a restart, an upgrade)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or shutting down
        "53300",  # too_many_connections
        "25006",  # read_only_sql_transaction: a replica after failover
        "08000",
        "08001",
        "08003",
        "08004",
        "08006",  # the connection classes
    }
)
_QUERY_CANCELED = "57014"


class Unavailable(Exception):
    """Raised instead of waiting for a connection while the database is known to be down."""


@dataclass(frozen=True)
class Classified:
    fault: Fault


def classify(error: BaseException) -> Classified | None:
    """The fault behind ``error``, or None when it is not one of the database's faults."""
    if isinstance(error, Unavailable):
        return Classified(Fault.UNAVAILABLE)
    if isinstance(error, sa_exc.TimeoutError | PoolTimeout):
        return Classified(Fault.BUSY)
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if not isinstance(cause, psycopg.Error):
        return None
    state = getattr(cause, "sqlstate", None)
    if state == _QUERY_CANCELED:
        return Classified(Fault.SLOW)
    if state in _UNAVAILABLE_STATES:
        return Classified(Fault.UNAVAILABLE)
    if isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError) and state is None:
        # No SQLSTATE: the client library's own report of a connection that could not be
        # opened ("connection refused") or broke ("server closed the connection").
        return Classified(Fault.UNAVAILABLE)
    return None


# ------------------------------------------------------------------ saved or not?


@dataclass
class Attempt:
    """One request's dealings with the database, as far as "was it saved?" goes.

    PostgreSQL either commits a transaction whole or not at all, and a transaction whose
    connection breaks before its COMMIT is sent is rolled back. So only a connection lost
    while a COMMIT (or a hot path's one statement, its own transaction) was on its way
    leaves the outcome unknown.
    """

    committing: bool = False


_ATTEMPT: ContextVar[Attempt | None] = ContextVar("opdesk_attempt", default=None)


def attempt_started() -> None:
    """A request begins (the request middleware calls this)."""
    _ATTEMPT.set(Attempt())


def transaction_began() -> None:
    attempt = _ATTEMPT.get()
    if attempt is not None:
        attempt.committing = False


def commit_sent() -> None:
    """A COMMIT, or a statement that is a transaction of its own, is on its way."""
    attempt = _ATTEMPT.get()
    if attempt is not None:
        attempt.committing = True


def outcome_unknown() -> bool:
    """Whether this request's connection broke while a commit was on its way."""
    attempt = _ATTEMPT.get()
    return attempt is not None and attempt.committing


class Outage:
    """The database's state as this process sees it: down from the first fault of kind
    ``UNAVAILABLE`` until a connection is opened again. Logs the two transitions, with
    how long it lasted and how many requests were answered 503 meanwhile.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._since: float | None = None
        self._refused = 0
        # How many outages have ended (a pool opened before the last end is replaced),
        # and when the last one did.
        self.ended = 0
        self._ended_at: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def refused(self, classified: Classified, route: str) -> None:
        """A request was answered 503 because of ``classified``."""
        with self._lock:
            if self._since is not None:
                self._refused += 1
                return
            if classified.fault != Fault.UNAVAILABLE:
                return
            if self._ended_at is not None and self._clock() - self._ended_at < _SETTLING:
                # A connection opened before the database came back, failing as it is
                # taken: the tail of the outage that just ended, not a new one.
                return
            self._since, self._refused = self._clock(), 1
        log.warning(
            "database unavailable: requests are answered 503 until it is back",
            extra={"route": route},
        )

    def connected(self) -> None:
        """A connection to the database was opened: if it was down, it is back."""
        with self._lock:
            if self._since is None:
                return
            lasted, refused = self._clock() - self._since, self._refused
            self._since, self._refused = None, 0
            self.ended += 1
            self._ended_at = self._clock()
        log.warning(
            "database back after %.1f s; %d requests were answered 503 meanwhile",
            lasted,
            refused,
            extra={"outageSeconds": round(lasted, 1), "refused": refused},
        )


# The exceptions a database fault arrives as (``classify`` sorts them out; any other
# error of these types is a bug, answered as one).
RAISED: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    psycopg.Error,
    PoolTimeout,
    Unavailable,
)

# Seconds after an outage ends in which a failing connection is taken for one left over
# from before it (each pool finds its dead connections as it hands them out).
_SETTLING = 2.0

# One per process: every pool of the process reports to it.
OUTAGE = Outage()
