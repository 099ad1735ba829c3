"""The worker in-process: leases, concurrent claims, backoff, failure, retry, clinics apart.

Each test has a database of its own (``fresh_database``): a worker serves every clinic
with due work, so it must not meet the rows of other tests.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from opdesk.automation import rules, service
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.automation.worker import EVENTS, MESSAGES, backoff
from opdesk.context import RequestContext
from opdesk.db import Database
from opdesk.jobs.runner import Job
from opdesk.notifications import delivery
from opdesk.notifications.models import OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.uow import transaction
from tests.factories import ctx_for, events_of, make_tenant
from tests.factories.automation import (
    event_of,
    make_event,
    make_message,
    make_worker,
    message_of,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --------------------------------------------------------------------------- leases


def test_a_claimed_row_is_leased_and_comes_back_when_the_lease_lapses(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    clock = Clock()
    event = make_event(fresh_database, tenant.id, clock=clock)
    first = make_worker(fresh_database, cipher, clock=clock, lease=30.0)
    second = make_worker(fresh_database, cipher, clock=clock, lease=30.0)

    assert first.claim(tenant.id, EVENTS) == [event.id]
    leased = event_of(fresh_database, tenant.id, event.id)
    assert leased.claimed_by == first.name
    assert leased.claimed_until == clock.now + timedelta(seconds=30)
    assert second.claim(tenant.id, EVENTS) == []  # leased: not due for anyone else

    clock.advance(29)
    assert second.claim(tenant.id, EVENTS) == []
    clock.advance(2)  # the first worker died: its lease lapsed
    assert second.claim(tenant.id, EVENTS) == [event.id]
    assert event_of(fresh_database, tenant.id, event.id).claimed_by == second.name
    # The lapsed holder may no longer finish it.
    first._run_event(tenant.id, event.id)
    assert event_of(fresh_database, tenant.id, event.id).status == EventStatus.PENDING
    second._run_event(tenant.id, event.id)
    done = event_of(fresh_database, tenant.id, event.id)
    assert (done.status, done.claimed_by, done.claimed_until) == (EventStatus.SUCCESS, None, None)
    leases = [e for e in events_of(fresh_database, tenant.id) if e.entity_id is None]
    assert [sorted(e.diff["leased"]["rows"]) for e in leases if "leased" in e.diff] == [
        [str(event.id)],
        [str(event.id)],
    ]


def test_two_workers_never_claim_the_same_row(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    made = {make_event(fresh_database, tenant.id).id for _ in range(60)}
    made |= {make_message(fresh_database, cipher, tenant.id).id for _ in range(60)}
    workers = [make_worker(fresh_database, cipher, batch=7, lease=600) for _ in range(6)]
    start = threading.Barrier(len(workers), timeout=60)
    claims: dict[str, list[uuid.UUID]] = {w.name: [] for w in workers}

    def take(worker: object) -> None:
        start.wait()
        for _ in range(30):
            for table in (EVENTS, MESSAGES):
                claims[worker.name] += worker.claim(tenant.id, table)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=take, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [row for rows in claims.values() for row in rows]
    assert len(every) == len(set(every)) == len(made)
    assert set(every) == made
    assert sum(1 for rows in claims.values() if rows) > 1  # they really did share the work


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_backoff_is_a_full_jitter_draw_below_the_exponential_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(600.0, 10.0 * 2 ** (attempt - 1))
    draws = [backoff(attempt, base=10.0, cap=600.0, rng=rng) for _ in range(2000)]
    assert all(0.0 <= d <= ceiling for d in draws)
    # Spread over the whole range, not bunched (workers that failed together part ways).
    assert min(draws) < ceiling * 0.05
    assert max(draws) > ceiling * 0.95
    assert abs(sum(draws) / len(draws) - ceiling / 2) < ceiling * 0.05


def test_a_failing_rule_is_retried_later_then_failed_with_its_last_error(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    clock = Clock()
    event = make_event(
        fresh_database, tenant.id, payload={"fail": "the lab is closed"}, clock=clock
    )
    worker = make_worker(
        fresh_database, cipher, clock=clock, max_attempts=3, backoff_base=10, backoff_cap=40
    )

    assert worker.run_once() == 1
    once = event_of(fresh_database, tenant.id, event.id)
    assert (once.status, once.attempts, once.last_error) == ("pending", 1, "the lab is closed")
    assert clock.now <= once.scheduled_for <= clock.now + timedelta(seconds=10)
    assert once.claimed_by is None

    for attempt in (2, 3):
        clock.now = event_of(fresh_database, tenant.id, event.id).scheduled_for
        assert worker.run_once() == 1, f"attempt {attempt} was not due"
        assert event_of(fresh_database, tenant.id, event.id).attempts == attempt
    failed = event_of(fresh_database, tenant.id, event.id)
    assert (failed.status, failed.attempts, failed.last_error) == (
        EventStatus.FAILED,
        3,
        "the lab is closed",
    )
    clock.advance(3600)
    assert worker.run_once() == 0  # failed stays failed

    # An admin's retry: pending again, due now, a full set of attempts.
    ctx = ctx_for(tenant.id, clock=clock)
    with transaction(fresh_database, ctx) as session:
        service.retry(session, ctx, event.id)
    again = event_of(fresh_database, tenant.id, event.id)
    assert (again.status, again.attempts, again.scheduled_for) == ("pending", 0, clock.now)
    moves = [
        (e.from_state, e.to_state)
        for e in events_of(fresh_database, tenant.id)
        if e.entity_id == event.id and e.action == "state-transition"
    ]
    assert moves == [("pending", "failed"), ("failed", "pending")]


def test_a_clinic_s_due_events_run_in_the_order_they_fell_due(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    clock = Clock()
    # Made newest first, so the table holds them in the opposite order to their times.
    made = [
        make_event(fresh_database, tenant.id, when=clock.now - timedelta(minutes=m), clock=clock)
        for m in (1, 2, 3, 4, 5, 6)
    ]
    assert make_worker(fresh_database, cipher, clock=clock).run_once() == len(made)
    finished = [
        e.entity_id
        for e in events_of(fresh_database, tenant.id)
        if e.action == "state-transition" and e.to_state == EventStatus.SUCCESS
    ]
    assert finished == [e.id for e in reversed(made)]


def test_a_rule_told_when_to_try_again_waits_at_least_that_long(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    clock = Clock()
    event = make_event(
        fresh_database,
        tenant.id,
        payload={"fail": "rate limited", "retryAfter": 900},
        clock=clock,
    )
    worker = make_worker(fresh_database, cipher, clock=clock, backoff_base=10, backoff_cap=40)
    assert worker.run_once() == 1
    once = event_of(fresh_database, tenant.id, event.id)
    assert (once.status, once.attempts, once.last_error) == ("pending", 1, "rate limited")
    # The provider's wait, not the backoff's 10 seconds at most.
    assert once.scheduled_for >= clock.now + timedelta(seconds=900)
    clock.advance(600)
    assert worker.run_once() == 0


def test_a_permanent_failure_fails_at_once(fresh_database: Database, cipher: FieldCipher) -> None:
    tenant = make_tenant(fresh_database)
    event = make_event(fresh_database, tenant.id, payload={"permanent": "no such patient"})
    unknown = make_event(fresh_database, tenant.id, rule="not-a-rule")
    make_worker(fresh_database, cipher).run_once()
    assert event_of(fresh_database, tenant.id, event.id).status == EventStatus.FAILED
    gone = event_of(fresh_database, tenant.id, unknown.id)
    assert (gone.status, gone.attempts) == (EventStatus.FAILED, 1)
    assert gone.last_error == "no rule named 'not-a-rule' is registered"


CLINICS_THAT_FAIL: set[uuid.UUID] = set()


@rules.rule("test.fails-in-some-clinics")
def _fails_in_some_clinics(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    if ctx.tenant_id in CLINICS_THAT_FAIL:
        raise RuntimeError("this clinic's data is broken")


def test_one_clinics_failing_jobs_do_not_stall_another(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    broken, fine = make_tenant(fresh_database, "Broken"), make_tenant(fresh_database, "Fine")
    CLINICS_THAT_FAIL.add(broken.id)
    clock = Clock()
    rule = "test.fails-in-some-clinics"
    bad = [make_event(fresh_database, broken.id, rule=rule, clock=clock) for _ in range(3)]
    clock.advance(1)  # the broken clinic's rows are the oldest: served first
    good = [make_event(fresh_database, fine.id, rule=rule, clock=clock) for _ in range(3)]
    message = make_message(fresh_database, cipher, fine.id)

    make_worker(fresh_database, cipher, clock=clock).run_once()

    assert {event_of(fresh_database, fine.id, e.id).status for e in good} == {"success"}
    assert message_of(fresh_database, fine.id, message.id).status == OutboxStatus.SENT
    stalled = [event_of(fresh_database, broken.id, e.id) for e in bad]
    assert {(e.status, e.attempts) for e in stalled} == {("pending", 1)}


# --------------------------------------------------------------------------- messages


def test_a_due_message_is_sent_once_and_recorded(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    tenant = make_tenant(fresh_database)
    message = make_message(fresh_database, cipher, tenant.id)
    worker = make_worker(fresh_database, cipher)
    assert worker.run_once() == 1
    sent = message_of(fresh_database, tenant.id, message.id)
    assert (sent.status, sent.attempts, sent.provider_message_id) == (
        OutboxStatus.SENT,
        1,
        f"log-{message.id}",
    )
    assert sent.sent_at is not None and sent.claimed_by is None
    assert worker.run_once() == 0
    moves = [
        (e.from_state, e.to_state)
        for e in events_of(fresh_database, tenant.id)
        if e.entity_id == message.id
    ]
    assert ("pending", "sent") in moves


def test_a_provider_that_keeps_failing_fails_the_message_after_the_last_attempt(
    fresh_database: Database, cipher: FieldCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant(fresh_database)
    message = make_message(fresh_database, cipher, tenant.id)
    waits: list[float | None] = []

    def busy(outgoing: delivery.Outgoing, *, timeout: float) -> str:
        waits.append(timeout)
        raise delivery.RetryLater("HTTP 429", retry_after=7.0)

    # The provider is outside: it stands in for an SMS gateway that is always busy.
    monkeypatch.setattr(delivery, "transmit", busy)
    clock = Clock()
    worker = make_worker(fresh_database, cipher, clock=clock, max_attempts=2)
    worker.run_once()
    once = message_of(fresh_database, tenant.id, message.id)
    assert (once.status, once.attempts, once.last_error) == ("pending", 1, "HTTP 429")
    assert once.scheduled_for is not None
    assert once.scheduled_for >= clock.now + timedelta(seconds=7)  # Retry-After is honoured
    clock.now = once.scheduled_for
    worker.run_once()
    failed = message_of(fresh_database, tenant.id, message.id)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 2, "HTTP 429")
    assert waits == [worker.tuning.send_timeout] * 2


# --------------------------------------------------------------------------- sweeps


def test_the_sweeps_run_as_periodic_jobs_of_the_worker(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    make_tenant(fresh_database)
    runs: list[uuid.UUID | None] = []

    def sweep(session: Session, ctx: RequestContext) -> int:
        runs.append(ctx.tenant_id)
        return 0

    worker = make_worker(fresh_database, cipher, sweep_every=3600)
    worker.jobs = (Job("test sweep", sweep, per_clinic=False),)
    worker._connect_listener()
    try:
        worker.run_once()
        worker.run_once()  # not again within the period
    finally:
        worker._close_listener()
    assert runs == [None]
