"""The worker running for real: woken by NOTIFY, stopped by SIGTERM, killed by SIGKILL.

Each test has a database of its own: a worker serves every clinic with due work.
"""

from __future__ import annotations

import json
import operator
import os
import random
import signal
import threading
import time
from functools import partial
from pathlib import Path

from sqlalchemy import func, select

from opdesk.automation.models import EventStatus
from opdesk.automation.worker import Tuning
from opdesk.db import Database
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import new_keyring
from opdesk.uow import transaction
from tests.factories import ctx_for, events_of, make_tenant
from tests.factories.automation import (
    ForkedWorker,
    WorkerProcess,
    event_of,
    make_event,
    make_message,
    make_worker,
    wait_until,
    worker_env,
)
from tests.fakes.sms_server import SmsServer


def test_a_notification_wakes_an_idle_worker_within_a_second(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    """Its timer alone would wait 30 s; the commit of a due row wakes it at once."""
    tenant = make_tenant(fresh_database)
    worker = make_worker(fresh_database, cipher, poll=30.0)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        for make in (
            lambda: make_event(fresh_database, tenant.id),
            lambda: make_message(fresh_database, cipher, tenant.id),
            lambda: make_event(fresh_database, tenant.id, payload={"seconds": 0}),
        ):
            wait_until(worker.idle.is_set, timeout=60)
            time.sleep(0.2)  # well asleep in select()
            assert worker.idle.is_set()
            before = dict(worker.counts)
            make()  # committed here
            woke = wait_until(lambda: not worker.idle.is_set(), timeout=5, every=0.005)
            assert woke < 1.0
            wait_until(partial(operator.ne, before, worker.counts), timeout=30)  # did the work
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert worker.counts == {"event-success": 2, "sent": 1}


def test_sigterm_finishes_the_row_in_hand_and_releases_the_rest(
    fresh_database: Database, tmp_path: Path
) -> None:
    keys = new_keyring()
    tenant = make_tenant(fresh_database)
    events = [make_event(fresh_database, tenant.id, payload={"seconds": 1.0}) for _ in range(6)]
    worker = WorkerProcess(
        fresh_database, tmp_path, worker_env(keys, batch_size=10, poll_seconds=0.5)
    ).start()
    try:
        worker.wait_ready()

        def leased() -> bool:
            return any(event_of(fresh_database, tenant.id, e.id).claimed_by for e in events)

        wait_until(leased, timeout=30)
        time.sleep(0.4)  # the first event's rule is running
        stopping = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert time.monotonic() - stopping < 20  # not the 5 s more the batch would take
    finally:
        worker.kill()
    rows = [event_of(fresh_database, tenant.id, e.id) for e in events]
    done = [r for r in rows if r.status == EventStatus.SUCCESS]
    released = [r for r in rows if r.status == EventStatus.PENDING]
    assert 1 <= len(done) <= 2  # the one in hand was finished
    assert len(done) + len(released) == len(rows)
    assert all((r.claimed_by, r.claimed_until, r.attempts) == (None, None, 0) for r in released)
    trail = events_of(fresh_database, tenant.id)
    releases = [e.diff["released"] for e in trail if e.entity_id is None and "released" in e.diff]
    released_ids = [row for r in releases for row in r["rows"]]
    assert sorted(str(r.id) for r in released) == sorted(released_ids)


def test_two_workers_and_twenty_kills_deliver_every_message_and_only_in_flight_ones_twice(
    fresh_database: Database,
) -> None:
    """The crash test of issue 11: 1,000 messages through two worker processes while one
    of them is killed with SIGKILL at random moments (at least 20 times) and restarted.

    The workers are forked from a fork server (a restart takes milliseconds, not the
    seconds of a new interpreter); ``opdesk worker`` itself is the SIGTERM test's.
    """
    keys = new_keyring()
    cipher = FieldCipher(StaticKeyring(keys))
    tenant = make_tenant(fresh_database)
    ctx = ctx_for(tenant.id)
    total, kills_wanted = (
        int(os.environ.get("CRASH_TOTAL", 1000)),
        int(os.environ.get("CRASH_KILLS", 20)),
    )
    rng = random.Random(11)
    with SmsServer(auth_key="crash-key") as sms:
        sms.delay = 0.01
        with transaction(fresh_database, ctx) as session:
            outbox.save_provider(
                session,
                ctx,
                cipher,
                channel="sms",
                values={"authKey": "crash-key", "senderId": "OPDESK", "baseUrl": sms.url},
                templates=json.dumps({"otp": {"en": {"templateId": "tpl-otp"}}}),
                enabled=True,
            )
        tuning = Tuning(lease=5.0, send_timeout=2.0, batch=5, poll=0.5, backoff_base=0.1)
        steady = ForkedWorker(fresh_database, keys, tuning).start()
        victim = ForkedWorker(fresh_database, keys, tuning).start()
        kills: list[float] = []
        queued = 0
        try:
            while len(kills) < kills_wanted or queued < total:
                batch = min(total - queued, 50)
                if batch:
                    _enqueue(fresh_database, cipher, tenant.id, range(queued, queued + batch))
                    queued += batch
                time.sleep(rng.uniform(0.05, 0.6))  # a random moment of the flow
                if len(kills) < kills_wanted:
                    kills.append(time.monotonic())
                    victim.kill()
                    victim = ForkedWorker(fresh_database, keys, tuning).start()

            def all_sent() -> bool:
                return _count_sent(fresh_database, tenant.id) == total

            try:
                wait_until(all_sent, timeout=240, every=0.5)
            except AssertionError:
                raise AssertionError(_statuses(fresh_database, tenant.id)) from None
        finally:
            steady.kill()
            victim.kill()
        arrivals: dict[str, list[float]] = {}
        for received in sms.received:
            assert received.reference is not None, "a message arrived without its dedupe key"
            arrivals.setdefault(received.reference, []).append(received.at)
        overlaps = list(sms.overlaps)

    assert len(kills) >= kills_wanted
    assert set(arrivals) == {f"crash:{i}" for i in range(total)}  # none lost
    twice = {key: times for key, times in arrivals.items() if len(times) > 1}
    # A request written just before its worker's kill can still be read by the busy fake
    # after the kill was noted, so the first arrival may trail the kill by up to the
    # send timeout (the longest a killed worker's request could have been on its way).
    slack = tuning.send_timeout
    for key, times in twice.items():
        # Sent, then its worker was killed before recording it, then sent again by another.
        assert any(min(times) - slack <= kill <= max(times) for kill in kills), key
    assert len(twice) <= len(kills)  # one message in flight per killed worker at most
    assert overlaps == []  # never two senders of one message at the same moment


def _enqueue(db: Database, cipher: FieldCipher, tenant_id: object, numbers: range) -> None:
    ctx = ctx_for(tenant_id)  # type: ignore[arg-type]
    with transaction(db, ctx) as session:
        for i in numbers:
            outbox.enqueue(
                session,
                ctx,
                cipher,
                channel="sms",
                template="otp",
                recipient=f"+9198{i:08d}",
                payload={"code": f"{i:06d}", "clinic": "Crash", "minutes": 10},
                dedupe_key=f"crash:{i}",
            )


def _statuses(db: Database, tenant_id: object) -> str:
    with transaction(db, ctx_for(tenant_id)) as session:  # type: ignore[arg-type]
        rows = session.execute(
            select(
                OutboxMessage.status,
                OutboxMessage.last_error,
                OutboxMessage.claimed_by.is_not(None),
                func.count(),
            ).group_by(
                OutboxMessage.status,
                OutboxMessage.last_error,
                OutboxMessage.claimed_by.is_not(None),
            )
        ).all()
    return "not all sent: " + "; ".join(f"{s} {e!r} leased={c}: {n}" for s, e, c, n in rows)


def _count_sent(db: Database, tenant_id: object) -> int:
    with transaction(db, ctx_for(tenant_id)) as session:  # type: ignore[arg-type]
        return session.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.SENT)
        ).scalar_one()
