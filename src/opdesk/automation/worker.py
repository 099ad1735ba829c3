"""The worker: runs due automation events and sends due outbox messages, in any number of
processes side by side.

How a worker finds and takes work
---------------------------------
* **Which clinics.** ``opdesk_due_work`` (a SECURITY DEFINER function of migration 0012)
  names the clinics with due rows in one call; the worker opens transactions only for them.
* **Claiming.** Per clinic, under that clinic's row-level security, one short transaction
  takes up to ``batch`` due rows with ``FOR UPDATE SKIP LOCKED`` and writes a lease
  (``claimed_until``, ``claimed_by``): another worker skips rows being claimed and rows
  leased. A worker that dies leaves its leases to lapse; the rows are then due again.
* **One transaction per job.** Each event runs its rule in a transaction of its own and
  of its clinic, so one row's (or one clinic's) failure rolls back only itself. A clinic's
  claimed messages are prepared together in one transaction (a database error there sends
  them one by one instead); each is then sent with no transaction open and recorded in a
  transaction of its own before the next is sent, so a kill between a call and its record
  sends that one message again once the lease lapses (the one allowed duplicate, carrying
  its dedupe key). A batch's transactions share one connection.
* **Retries.** A failed attempt is counted and the row is due again after a backoff with
  full jitter (:func:`backoff`); after the last attempt it is ``failed`` with
  ``last_error``, and an admin may retry it.
* **Waking.** ``LISTEN opdesk_work``: a trigger notifies (at commit) when a row becomes due
  now and its clinic has no other free due row in that queue (migration 0030: one wake-up
  per backlog, since notifying commits run one at a time); otherwise the worker looks
  again when the next row falls due, or after ``poll`` seconds at most. A worker that
  found work looks again at once. Idle, it sleeps in ``select()`` and costs nothing.
* **Stopping.** :meth:`Worker.stop` (SIGTERM, SIGINT): the row in hand is finished (a
  message being sent is sent and recorded), the rest of the batch is released at once.
* **Sweeps.** The periodic jobs (``opdesk sweep``'s) run every ``sweep_every`` seconds in
  one worker at a time (a PostgreSQL advisory lock held by the worker's listening session).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select as io_select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.audit.service import CTX_KEY
from opdesk.automation import clinic_rules, rules
from opdesk.automation.models import EVENT, AutomationEvent, EventStatus
from opdesk.automation.service import due_clinics
from opdesk.config import Settings, get_settings
from opdesk.context import Clock, RequestContext, system_context, utc_now
from opdesk.db import TENANT_KEY, Database, libpq_url
from opdesk.errors import NotFound
from opdesk.jobs.runner import Job, run_all
from opdesk.jobs.sweeps import sweep_jobs
from opdesk.notifications import delivery
from opdesk.notifications.models import OUTBOX, OutboxMessage, OutboxStatus
from opdesk.ops.daily import DailyBackup
from opdesk.scheduling import waitlist
from opdesk.security.crypto import FieldCipher
from opdesk.uow import transaction

log = logging.getLogger(__name__)

WORK_CHANNEL = "opdesk_work"
# The application_name of a worker's listening connection.
WORKER_APPLICATION = "opdesk-worker"
# pg_try_advisory_lock key: the worker running the sweeps.
SWEEP_LOCK = 727_275
# last_error is for people: long tracebacks are cut.
ERROR_CHARS = 500


def workers_connected(conn: Connection) -> int:
    """Workers holding their listening connection open now (seen by its application_name)."""
    found = conn.execute(
        text("select count(*) from pg_stat_activity where application_name like :a"),
        {"a": f"{WORKER_APPLICATION} %"},
    ).scalar_one()
    return int(found)


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, …): "full jitter", a uniform
    draw from ``[0, min(cap, base * 2**(attempt - 1))]``.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class Tuning:
    max_attempts: int = 5
    backoff_base: float = 30.0
    backoff_cap: float = 3600.0
    lease: float = 120.0
    send_timeout: float = 15.0
    poll: float = 5.0
    batch: int = 20
    sweep_every: float = 60.0

    @classmethod
    def of(cls, settings: Settings) -> Tuning:
        return cls(
            max_attempts=settings.worker_max_attempts,
            backoff_base=settings.worker_backoff_base_seconds,
            backoff_cap=settings.worker_backoff_cap_seconds,
            lease=settings.worker_lease_seconds,
            send_timeout=settings.worker_send_timeout_seconds,
            poll=settings.worker_poll_seconds,
            batch=settings.worker_batch_size,
            sweep_every=settings.worker_sweep_seconds,
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _error(exc: BaseException) -> str:
    text_ = str(exc) or type(exc).__name__
    return text_[:ERROR_CHARS]


@dataclass(frozen=True)
class _Table:
    """What differs between the two queues the worker serves."""

    model: type[Any]
    name: str
    due: str  # SQL: the row is due at :now
    order: str
    machine: Any  # its states.Machine
    failed: Any  # its "failed" status


EVENTS = _Table(
    AutomationEvent,
    "automation_events",
    "scheduled_for <= :now",
    "scheduled_for",
    EVENT,
    EventStatus.FAILED,
)
MESSAGES = _Table(
    OutboxMessage,
    "notifications_outbox",
    "(scheduled_for is null or scheduled_for <= :now)",
    "coalesce(scheduled_for, created_at)",
    OUTBOX,
    OutboxStatus.FAILED,
)


class Worker:
    def __init__(
        self,
        db: Database,
        cipher: FieldCipher,
        *,
        tuning: Tuning | None = None,
        jobs: Sequence[Job] = (),
        clock: Clock = utc_now,
        name: str | None = None,
        rng: random.Random | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.db = db
        self.cipher = cipher
        # What a rule's outside call needs (the gateway's address and timeout).
        self.settings = settings or get_settings()
        self.tuning = tuning or Tuning()
        self.jobs = tuple(jobs)
        self.clock = clock
        self.name = name or worker_name()
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._listener: psycopg.Connection[Any] | None = None
        self._next_sweep = 0.0
        self.backups = DailyBackup(db, self.settings, cipher)
        # Rows handled, by outcome (for tests, the benchmark and the log).
        self.counts: dict[str, int] = {}
        # Set while the worker sleeps with nothing to do (tests and the benchmark).
        self.idle = threading.Event()

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Finish the row in hand, release the rest, and leave :meth:`run` (thread-safe,
        signal-safe).
        """
        self._stop.set()
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, ready: Callable[[], None] | None = None) -> None:
        """Work until :meth:`stop`."""
        log.info("worker %s started", self.name)
        try:
            self._connect_listener()
            if ready is not None:
                ready()
            while not self.stopping:
                handled, next_at = self._pass_safely()
                if self.stopping:
                    break
                if handled:
                    continue  # more may be due: look again at once
                self._wait(self._timeout(next_at))
        finally:
            self._close_listener()
            log.info("worker %s stopped", self.name)

    def run_once(self) -> int:
        """One pass over every clinic with due work (tests and `--once`); the sweeps too."""
        handled, _ = self._pass()
        return handled

    def _pass_safely(self) -> tuple[int, datetime | None]:
        try:
            return self._pass()
        except Exception:
            # The database went away, say: try again after a poll interval.
            log.exception("worker %s: a pass failed", self.name)
            self._close_listener()
            return 0, None

    def _pass(self) -> tuple[int, datetime | None]:
        self._maybe_sweep()
        now = self.clock()
        with transaction(self.db, system_context(None, clock=self.clock)) as session:
            clinics, next_at = due_clinics(
                session, now=now, horizon=timedelta(seconds=self.tuning.poll)
            )
        handled = 0
        for tenant_id in clinics:
            if self.stopping:
                break
            handled += self._serve_clinic(tenant_id)
        return handled, next_at

    def _timeout(self, next_at: datetime | None) -> float:
        timeout = self.tuning.poll
        if next_at is not None:
            timeout = min(timeout, max((next_at - self.clock()).total_seconds(), 0.0) + 0.01)
        return timeout

    def _wait(self, timeout: float) -> None:
        """Sleep until a notification, :meth:`stop`, or ``timeout`` seconds."""
        watched = [self._wake_r]
        if self._listener is None:
            self._connect_listener()
        if self._listener is not None:
            watched.append(self._listener.fileno())
        self.idle.set()
        try:
            readable, _, _ = io_select.select(watched, [], [], timeout)
        except InterruptedError:  # a signal: the loop looks at the stop flag
            return
        finally:
            self.idle.clear()
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 1024)
        if self._listener is not None and self._listener.fileno() in readable:
            try:
                for _ in self._listener.notifies(timeout=0):
                    pass
            except psycopg.Error:
                self._close_listener()

    def _connect_listener(self) -> None:
        try:
            conn = psycopg.connect(
                libpq_url(self.db.app_url or self.db.owner_url),
                autocommit=True,
                # How `opdesk check` sees a live worker (pg_stat_activity).
                application_name=f"{WORKER_APPLICATION} {self.name}"[:63],
            )
            conn.execute(f"LISTEN {WORK_CHANNEL}")
        except psycopg.Error:
            log.warning("worker %s: cannot LISTEN; polling only for now", self.name)
            self._listener = None
            return
        self._listener = conn

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    # ------------------------------------------------------------------ sweeps

    def _maybe_sweep(self) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.tuning.sweep_every
        if self.settings.daily_backup_on and self.backups.start_if_due(self.clock()):
            log.info("worker %s: the daily backup is due; making it", self.name)
        listener = self._listener
        if not self.jobs or listener is None:
            return
        # One worker sweeps at a time; the lock dies with the session of a killed worker.
        if not listener.execute("select pg_try_advisory_lock(%s)", (SWEEP_LOCK,)).fetchone()[0]:  # type: ignore[index]
            return
        try:
            for outcome in run_all(self.db, self.jobs, clock=self.clock):
                if outcome.done:
                    log.info("swept %d %s", outcome.done, outcome.name)
        finally:
            listener.execute("select pg_advisory_unlock(%s)", (SWEEP_LOCK,))

    # ------------------------------------------------------------------ one clinic

    def _ctx(self, tenant_id: uuid.UUID) -> RequestContext:
        return system_context(tenant_id, clock=self.clock)

    def _serve_clinic(self, tenant_id: uuid.UUID) -> int:
        """A batch of each queue of one clinic. Whatever goes wrong stays in this clinic."""
        handled = 0
        for table in (EVENTS, MESSAGES):
            try:
                claimed = self.claim(tenant_id, table)
            except Exception:
                log.exception(
                    "worker %s: claiming %s of %s failed", self.name, table.name, tenant_id
                )
                continue
            if table is MESSAGES:
                handled += self._send_messages(tenant_id, claimed)
                continue
            for index, row_id in enumerate(claimed):
                if self.stopping:
                    self._release(tenant_id, table, claimed[index:])
                    break
                try:
                    self._run_event(tenant_id, row_id)
                except Exception:
                    # Not even the failure could be recorded: the lease lapses, and the
                    # row is due again then.
                    log.exception("worker %s: %s %s failed", self.name, table.name, row_id)
                    self._count("lost")
                handled += 1
        return handled

    def claim(self, tenant_id: uuid.UUID, table: _Table) -> list[uuid.UUID]:
        """Lease up to ``batch`` due rows of one clinic's queue to this worker."""
        ctx = self._ctx(tenant_id)
        now = ctx.now()
        until = now + timedelta(seconds=self.tuning.lease)
        with transaction(self.db, ctx) as session:
            ids = list(
                session.execute(
                    # The rows are picked once, in a materialized CTE: as ``id in (select
                    # … limit n for update skip locked)`` the planner may run the subquery
                    # once per candidate row and lease far more than ``n``. UPDATE …
                    # RETURNING keeps no order, so the leased rows are sorted again: a
                    # clinic's work runs in the order it fell due (a consent before the
                    # request that relies on it).
                    text(
                        f"with picked as materialized (select id from {table.name} "  # noqa: S608
                        f"where tenant_id = :t and status = 'pending' and {table.due} "
                        "and (claimed_until is null or claimed_until <= :now) "
                        f"order by {table.order}, id limit :n for update skip locked), "
                        f"leased as (update {table.name} as q set claimed_until = :until, "
                        "claimed_by = :me from picked where q.tenant_id = :t and q.id = picked.id "
                        f"returning q.*) select id from leased order by {table.order}, id"
                    ),
                    {
                        "until": until,
                        "me": self.name,
                        "t": tenant_id,
                        "now": now,
                        "n": self.tuning.batch,
                    },
                ).scalars()
            )
            if ids:
                # One event for the batch: which worker leased which rows, until when.
                audit.record(
                    ctx,
                    entity=table.name,
                    entity_id=None,
                    action="update",
                    diff={"leased": {"rows": ids, "worker": self.name, "until": until}},
                )
        return ids

    def _release(self, tenant_id: uuid.UUID, table: _Table, ids: Sequence[uuid.UUID]) -> None:
        """Give leased rows back at once (stopping): another worker may take them now."""
        if not ids:
            return
        ctx = self._ctx(tenant_id)
        try:
            with transaction(self.db, ctx) as session:
                released = list(
                    session.execute(
                        text(
                            f"update {table.name} set claimed_until = null, claimed_by = null "  # noqa: S608
                            "where tenant_id = :t and id = any(:ids) and claimed_by = :me "
                            "and status = 'pending' returning id"
                        ),
                        {"t": tenant_id, "ids": list(ids), "me": self.name},
                    ).scalars()
                )
                if released:
                    audit.record(
                        ctx,
                        entity=table.name,
                        entity_id=None,
                        action="update",
                        diff={"released": {"rows": released, "worker": self.name}},
                    )
        except Exception:
            log.exception("worker %s: releasing leases failed (they lapse)", self.name)

    def _mine(self, session: Session, model: type[Any], row_id: uuid.UUID) -> Any | None:
        """The row, locked, if it is still pending and leased to this worker."""
        try:
            row = records.by_id(session, model, row_id, lock=True)
        except NotFound:
            return None
        if row.status != "pending" or row.claimed_by != self.name:
            return None
        return row

    def _retry_at(self, attempts: int, retry_after: float | None = None) -> datetime:
        delay = backoff(
            attempts, base=self.tuning.backoff_base, cap=self.tuning.backoff_cap, rng=self.rng
        )
        if retry_after is not None:
            delay = max(delay, retry_after)
        return self.clock() + timedelta(seconds=delay)

    # ------------------------------------------------------------------ events

    def _run_event(self, tenant_id: uuid.UUID, event_id: uuid.UUID) -> None:
        ctx = self._ctx(tenant_id)
        try:
            with transaction(self.db, ctx) as session:
                event = self._mine(session, AutomationEvent, event_id)
                if event is None:
                    return  # cancelled, or no longer ours
                if event.scheduled_for > ctx.now():  # moved later since it was claimed
                    event.claimed_until = None
                    event.claimed_by = None
                    audit.record(
                        ctx,
                        entity=EVENTS.name,
                        entity_id=event.id,
                        action="update",
                        diff={"released": {"worker": self.name, "reason": "moved later"}},
                    )
                    return
                session.info[clinic_rules.CIPHER_INFO] = self.cipher
                session.info[clinic_rules.SETTINGS_INFO] = self.settings
                after = rules.handler_for(event.rule)(session, ctx, event)
                if after is None:
                    self._succeeded(session, ctx, event)
            if after is not None:
                # The rule's writes are committed and the event is still ours (leased):
                # now its outside call, with no transaction open, then the event is done.
                # A crash in between leaves the event to run again when its lease lapses.
                after(self.db, self.cipher, self.settings)
                with transaction(self.db, ctx) as session:
                    event = self._mine(session, AutomationEvent, event_id)
                    if event is not None:
                        self._succeeded(session, ctx, event)
            self._count("event-success")
        except rules.Permanent as exc:
            self._event_failed(tenant_id, event_id, _error(exc), permanent=True)
        except Exception as exc:
            log.warning("rule of event %s failed: %s", event_id, _error(exc))
            self._event_failed(
                tenant_id,
                event_id,
                _error(exc),
                permanent=False,
                retry_after=rules.retry_after_of(exc),
            )

    def _succeeded(self, session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
        event.attempts += 1
        event.last_error = None
        event.claimed_until = None
        event.claimed_by = None
        states.transition(session, ctx, event, EventStatus.SUCCESS, EVENT)

    def _event_failed(
        self,
        tenant_id: uuid.UUID,
        event_id: uuid.UUID,
        error: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
    ) -> None:
        ctx = self._ctx(tenant_id)
        with transaction(self.db, ctx) as session:
            event = self._mine(session, AutomationEvent, event_id)
            if event is None:
                return
            failed_for_good = self._count_attempt(
                session, ctx, EVENTS, event, error, permanent=permanent, retry_after=retry_after
            )
            if failed_for_good:
                self._count("event-failed")
                return
            self._count("event-retry")

    def _count_attempt(
        self,
        session: Session,
        ctx: RequestContext,
        table: _Table,
        row: Any,
        error: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
    ) -> bool:
        """One more failed attempt on a leased row (audited): failed for good after the
        last attempt or a permanent error (True), else due again after the backoff.
        """
        row.attempts += 1
        row.last_error = error
        row.claimed_until = None
        row.claimed_by = None
        if permanent or row.attempts >= self.tuning.max_attempts:
            states.transition(
                session,
                ctx,
                row,
                table.failed,
                table.machine,
                diff={"updated": {"attempts": row.attempts, "lastError": error}},
            )
            return True
        row.scheduled_for = self._retry_at(row.attempts, retry_after)
        if hasattr(row, "updated_at"):
            row.updated_at = ctx.now()
        session.flush()
        audit.record(
            ctx,
            entity=table.name,
            entity_id=row.id,
            action="update",
            diff={
                "updated": {
                    "attempts": row.attempts,
                    "lastError": error,
                    "scheduledFor": row.scheduled_for,
                }
            },
        )
        return False

    # ------------------------------------------------------------------ messages
    #
    # A claimed batch of one clinic's messages goes in 2 + n transactions, all on one
    # connection: the claim (one statement, one audit event), the preparation of the
    # whole batch (one transaction: render, encrypt, the clinic's provider read once),
    # then per message the provider call with no transaction open and its record (sent,
    # or the attempt counted) in a transaction of its own, committed before the next
    # message's call: a worker killed at any moment leaves at most the one message that
    # was on its way unrecorded (sent again, with its dedupe key, once the lease lapses).

    @contextlib.contextmanager
    def _clinic_session(self, ctx: RequestContext) -> Iterator[Session]:
        """One session on one connection for a batch's transactions (each begun with
        ``session.begin()``): scoped and audited as :func:`opdesk.uow.transaction`'s,
        without checking a connection out of the pool (and pinging it) for each.
        """
        with (
            self.db.app_engine.connect() as connection,
            self.db.sessions(bind=connection) as session,
        ):
            session.info[CTX_KEY] = ctx
            session.info[TENANT_KEY] = ctx.tenant_id
            yield session

    def _send_messages(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> int:
        """Send a claimed batch; returns how many rows were handled (not released)."""
        if not ids:
            return 0
        ctx = self._ctx(tenant_id)
        with self._clinic_session(ctx) as session:
            try:
                ready, outcomes = self._prepare_batch(session, ctx, ids)
            except Exception:
                # A database error in one row spoils the batch's transaction: the rows go
                # one by one instead, each with its own preparation and failure.
                log.exception("worker %s: preparing a batch failed; one by one", self.name)
            else:
                for outcome in outcomes:
                    self._count(outcome)
                return len(outcomes) + self._send_prepared(session, ctx, ready)
        return self._send_one_by_one(tenant_id, ids)

    def _send_prepared(
        self, session: Session, ctx: RequestContext, ready: Sequence[delivery.Outgoing]
    ) -> int:
        """Each prepared message in turn: the provider call, then its record."""
        assert ctx.tenant_id is not None
        handled = 0
        lease_until = ctx.now() + timedelta(seconds=self.tuning.lease)
        margin = timedelta(seconds=2 * self.tuning.send_timeout)
        for index, outgoing in enumerate(ready):
            if self.stopping:
                self._release(ctx.tenant_id, MESSAGES, [o.message_id for o in ready[index:]])
                break
            if self.clock() + margin >= lease_until:
                # A slow batch: lease the rest anew before one of them could lapse to
                # another worker while it is still to be sent here.
                try:
                    lease_until, kept = self._extend_leases(
                        session, ctx, [o.message_id for o in ready[index:]]
                    )
                except Exception:
                    log.exception("worker %s: extending leases failed (they lapse)", self.name)
                    break
                if outgoing.message_id not in kept:
                    continue
            result = self._transmit(outgoing)
            counted: str | None
            try:
                with session.begin():
                    counted = self._record(session, ctx, outgoing.message_id, result)
            except Exception:
                # Not even the result could be recorded: the lease lapses, and the
                # message is due again then (sent again if it went out).
                log.exception(
                    "worker %s: recording message %s failed", self.name, outgoing.message_id
                )
                counted = "lost"
            if counted is not None:
                self._count(counted)
            handled += 1
        return handled

    def _send_one_by_one(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> int:
        handled = 0
        for index, message_id in enumerate(ids):
            if self.stopping:
                self._release(tenant_id, MESSAGES, ids[index:])
                break
            try:
                self._send_message(tenant_id, message_id)
            except Exception:
                log.exception("worker %s: message %s failed", self.name, message_id)
                self._count("lost")
            handled += 1
        return handled

    def _prepare_batch(
        self, session: Session, ctx: RequestContext, ids: Sequence[uuid.UUID]
    ) -> tuple[list[delivery.Outgoing], list[str]]:
        """Prepare the batch's rows still pending and ours, in one transaction: the ones
        to send, and the outcomes (deferred, failed, retry) of those that are not.
        """
        ready: list[delivery.Outgoing] = []
        outcomes: list[str] = []
        providers = delivery.Providers(self.cipher)
        with session.begin():
            rows = session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.id.in_(list(ids)),
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.claimed_by == self.name,
                )
                .order_by(
                    func.coalesce(OutboxMessage.scheduled_for, OutboxMessage.created_at),
                    OutboxMessage.id,
                )
                .with_for_update()
                .execution_options(populate_existing=True)
            ).scalars()
            for message in list(rows):
                try:
                    ready.append(
                        delivery.prepare(session, ctx, self.cipher, message, providers=providers)
                    )
                except delivery.Deferred as deferred:
                    outcomes.append(self._defer_row(session, ctx, message, deferred))
                except delivery.Undeliverable as exc:
                    outcomes.append(
                        self._failed_row(session, ctx, message, _error(exc), permanent=True)
                    )
                except SQLAlchemyError:
                    raise  # the transaction is spoilt: the batch goes one by one
                except Exception as exc:  # a template that cannot render, say
                    log.warning("preparing message %s failed: %s", message.id, _error(exc))
                    outcomes.append(
                        self._failed_row(session, ctx, message, _error(exc), permanent=False)
                    )
        return ready, outcomes

    def _extend_leases(
        self, session: Session, ctx: RequestContext, ids: Sequence[uuid.UUID]
    ) -> tuple[datetime, set[uuid.UUID]]:
        """Lease the rows still pending and ours for another ``lease`` seconds (audited);
        returns the new end and the rows kept.
        """
        until = ctx.now() + timedelta(seconds=self.tuning.lease)
        with session.begin():
            kept = set(
                session.execute(
                    text(
                        "update notifications_outbox set claimed_until = :until "
                        "where tenant_id = :t and id = any(:ids) and claimed_by = :me "
                        "and status = 'pending' returning id"
                    ),
                    {"until": until, "t": ctx.tenant_id, "ids": list(ids), "me": self.name},
                ).scalars()
            )
            if kept:
                audit.record(
                    ctx,
                    entity=MESSAGES.name,
                    entity_id=None,
                    action="update",
                    diff={"leased": {"rows": sorted(kept), "worker": self.name, "until": until}},
                )
        return until, kept

    def _transmit(self, outgoing: delivery.Outgoing) -> str | BaseException:
        """The provider call, with no transaction open and no row locked: the provider's
        message id, or the failure.
        """
        try:
            return delivery.transmit(outgoing, timeout=self.tuning.send_timeout)
        except Exception as exc:  # RetryLater, Undeliverable, an adapter's bug…
            return exc

    def _record(
        self,
        session: Session,
        ctx: RequestContext,
        message_id: uuid.UUID,
        outcome: str | BaseException,
    ) -> str | None:
        """Record one provider call's outcome (in the caller's transaction)."""
        if isinstance(outcome, str):
            return self._sent_row(session, ctx, message_id, outcome)
        message = self._mine(session, OutboxMessage, message_id)
        if message is None:
            return None
        if isinstance(outcome, delivery.Undeliverable):
            return self._failed_row(session, ctx, message, _error(outcome), permanent=True)
        retry_after = outcome.retry_after if isinstance(outcome, delivery.RetryLater) else None
        return self._failed_row(
            session, ctx, message, _error(outcome), permanent=False, retry_after=retry_after
        )

    def _send_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> None:
        """One message on its own: prepared, sent and recorded in transactions of its own
        (a batch whose preparation failed goes this way).
        """
        ctx = self._ctx(tenant_id)
        outcome: str | None = None
        with self._clinic_session(ctx) as session:
            try:
                with session.begin():
                    message = self._mine(session, OutboxMessage, message_id)
                    if message is None:
                        return
                    message.claimed_until = ctx.now() + timedelta(seconds=self.tuning.lease)
                    outgoing = delivery.prepare(session, ctx, self.cipher, message)
            except Exception as exc:
                if not isinstance(exc, (delivery.Deferred, delivery.Undeliverable)):
                    log.warning("preparing message %s failed: %s", message_id, _error(exc))
                with session.begin():
                    message = self._mine(session, OutboxMessage, message_id)
                    if message is None:
                        return
                    if isinstance(exc, delivery.Deferred):
                        outcome = self._defer_row(session, ctx, message, exc)
                    else:
                        permanent = isinstance(exc, delivery.Undeliverable)
                        outcome = self._failed_row(
                            session, ctx, message, _error(exc), permanent=permanent
                        )
            else:
                result = self._transmit(outgoing)
                with session.begin():
                    outcome = self._record(session, ctx, message_id, result)
        if outcome is not None:
            self._count(outcome)

    def _sent_row(
        self, session: Session, ctx: RequestContext, message_id: uuid.UUID, provider_id: str
    ) -> str | None:
        try:
            message = records.by_id(session, OutboxMessage, message_id, lock=True)
        except NotFound:
            return None
        if message.status != OutboxStatus.PENDING:
            # Cancelled while it was on its way, or sent by another worker after this
            # one's lease lapsed: it went out all the same; the row keeps what it says.
            log.warning(
                "message %s was %s when its sending was recorded", message_id, message.status
            )
            return "sent-late"
        message.attempts += 1
        message.provider_message_id = provider_id
        message.last_error = None
        message.claimed_until = None
        message.claimed_by = None
        delivery.after_sent(session, ctx, self.cipher, message)
        states.transition(session, ctx, message, OutboxStatus.SENT, OUTBOX)
        return "sent"

    def _defer_row(
        self, session: Session, ctx: RequestContext, message: OutboxMessage, deferred: Any
    ) -> str:
        message.scheduled_for = deferred.until
        message.claimed_until = None
        message.claimed_by = None
        session.flush()
        audit.record(
            ctx,
            entity=MESSAGES.name,
            entity_id=message.id,
            action="update",
            diff={"updated": {"scheduledFor": deferred.until, "reason": str(deferred)}},
        )
        return "deferred"

    def _failed_row(
        self,
        session: Session,
        ctx: RequestContext,
        message: OutboxMessage,
        error: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
    ) -> str:
        failed = self._count_attempt(
            session, ctx, MESSAGES, message, error, permanent=permanent, retry_after=retry_after
        )
        if failed:
            delivery.after_failed(session, ctx, self.cipher, message)
            return "failed"
        return "retry"


def for_settings(db: Database, settings: Settings, cipher: FieldCipher) -> Worker:
    """The worker ``opdesk worker`` and ``opdesk serve`` run: tuned by the settings, with
    the sweeps of ``opdesk sweep`` as its periodic jobs.
    """
    offers = waitlist.Offers(cipher, settings.offer_for)
    return Worker(
        db, cipher, tuning=Tuning.of(settings), jobs=sweep_jobs(offers), settings=settings
    )
