"""The worker's batches: a claim leases at most one batch, a batch of messages is prepared
together and each message still recorded on its own, a slow batch keeps its leases, and a
stopping worker gives back what it has not sent.

Each test has a database of its own (``fresh_database``): a worker serves every clinic
with due work.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from opdesk import states
from opdesk.automation import service
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import DEMO_RULE
from opdesk.automation.worker import EVENTS, MESSAGES
from opdesk.db import Database, new_id
from opdesk.notifications import delivery
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OUTBOX, OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import ctx_for, events_of, make_tenant
from tests.factories.automation import make_message, make_worker, message_of
from tests.factories.messages import queue


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _many_due_at_once(db: Database, cipher: FieldCipher, tenant: Tenant, count: int) -> None:
    """``count`` messages and events made in one transaction: one creation time, one due
    time, so nothing but the batch size tells them apart in the claim's order.
    """
    ctx = ctx_for(tenant.id)
    when = datetime.now(UTC) - timedelta(minutes=1)
    with transaction(db, ctx) as session:
        for i in range(count):
            outbox.enqueue(
                session,
                ctx,
                cipher,
                channel="sms",
                template="otp",
                recipient=f"+9198{i:08d}",
                payload={"code": f"{i:06d}", "clinic": "Asha", "minutes": 10},
            )
            service.schedule(
                session,
                ctx,
                rule=DEMO_RULE,
                entity_type="stand-ins",
                entity_id=new_id(),
                when=when,
                dedupe_key=f"test:{i}",
            )


def _leased(db: Database, tenant: Tenant, model: type[object]) -> int:
    with transaction(db, ctx_for(tenant.id)) as session:
        return session.execute(
            select(func.count()).select_from(model).where(model.claimed_by.is_not(None))  # type: ignore[attr-defined]
        ).scalar_one()


def test_a_claim_leases_at_most_one_batch_of_the_due_rows(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    """Ten rows due at the same moment, a batch of three: three are leased, not all ten
    (a worker that leases everything starves the others and lets its leases lapse)."""
    tenant = make_tenant(fresh_database)
    _many_due_at_once(fresh_database, cipher, tenant, 10)
    worker = make_worker(fresh_database, cipher, batch=3)

    assert len(worker.claim(tenant.id, MESSAGES)) == 3
    assert _leased(fresh_database, tenant, OutboxMessage) == 3
    assert len(worker.claim(tenant.id, EVENTS)) == 3
    assert _leased(fresh_database, tenant, AutomationEvent) == 3
    # The next claims take the next three, and the last one takes the one left.
    taken = [len(worker.claim(tenant.id, MESSAGES)) for _ in range(4)]
    assert taken == [3, 3, 1, 0]


def test_one_batch_sends_fails_and_defers_each_message_on_its_own(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    """At 22:00 in the clinic: two sign-in codes go, a test SMS to nobody who consented
    fails at once, a booking confirmation waits for the morning; one batch, four outcomes,
    each recorded and audited."""
    tenant = make_tenant(fresh_database)
    codes = [make_message(fresh_database, cipher, tenant.id) for _ in range(2)]
    test_sms = queue(
        fresh_database, cipher, tenant, template="test-message", payload={"clinic": "Asha"}
    )
    confirmation = queue(fresh_database, cipher, tenant)
    clock = Clock(datetime(2031, 3, 3, 16, 30, tzinfo=UTC))  # 22:00 IST
    worker = make_worker(fresh_database, cipher, clock=clock, batch=10)

    assert worker.run_once() == 4
    assert worker.counts == {"sent": 2, "failed": 1, "deferred": 1}
    for code in codes:
        sent = message_of(fresh_database, tenant.id, code.id)
        assert (sent.status, sent.attempts, sent.claimed_by) == (OutboxStatus.SENT, 1, None)
        assert sent.provider == "log" and sent.body is not None
    failed = message_of(fresh_database, tenant.id, test_sms)
    assert (failed.status, failed.attempts) == (OutboxStatus.FAILED, 1)
    assert "consented" in (failed.last_error or "")
    waiting = message_of(fresh_database, tenant.id, confirmation)
    assert (waiting.status, waiting.attempts, waiting.claimed_by) == (OutboxStatus.PENDING, 0, None)
    assert waiting.scheduled_for == datetime(2031, 3, 4, 2, 30, tzinfo=UTC)  # 08:00 IST
    trail = events_of(fresh_database, tenant.id)
    moves = {(e.entity_id, e.from_state, e.to_state) for e in trail if e.to_state}
    assert {(c.id, "pending", "sent") for c in codes} <= moves
    assert (test_sms, "pending", "failed") in moves
    assert any(
        e.entity_id == confirmation and "scheduledFor" in e.diff.get("updated", {}) for e in trail
    )


def test_a_slow_batch_renews_its_leases_so_no_other_worker_takes_its_rows(
    fresh_database: Database, cipher: FieldCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each send takes 4 s of a 10 s lease: before a row could lapse, the rows still to
    send are leased anew, and another worker finds nothing to take meanwhile."""
    tenant = make_tenant(fresh_database)
    made = [make_message(fresh_database, cipher, tenant.id) for _ in range(5)]
    clock = Clock()
    first = make_worker(fresh_database, cipher, clock=clock, lease=10.0, send_timeout=1.0)
    second = make_worker(fresh_database, cipher, clock=clock, lease=10.0, send_timeout=1.0)
    taken_by_second: list[uuid.UUID] = []
    real_transmit = delivery.transmit

    def slow(outgoing: delivery.Outgoing, *, timeout: float) -> str:
        clock.now += timedelta(seconds=4)  # the provider takes its time
        taken_by_second.extend(second.claim(tenant.id, MESSAGES))
        return real_transmit(outgoing, timeout=timeout)

    # The provider is outside: this one is slow.
    monkeypatch.setattr(delivery, "transmit", slow)
    assert first.run_once() == 5
    assert taken_by_second == []
    assert first.counts == {"sent": 5}
    assert all(
        message_of(fresh_database, tenant.id, m.id).status == OutboxStatus.SENT for m in made
    )
    renewals = [
        e.diff["leased"]
        for e in events_of(fresh_database, tenant.id)
        if e.entity_id is None and "leased" in e.diff and e.diff["leased"]["worker"] == first.name
    ]
    assert len(renewals) >= 2  # the claim, and at least one renewal of the rest
    assert len(renewals[-1]["rows"]) < 5


def test_a_stopping_worker_sends_the_message_in_hand_and_releases_the_rest_of_its_batch(
    fresh_database: Database, cipher: FieldCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant(fresh_database)
    made = [make_message(fresh_database, cipher, tenant.id) for _ in range(4)]
    worker = make_worker(fresh_database, cipher, batch=10)
    real_transmit = delivery.transmit

    def stop_while_sending(outgoing: delivery.Outgoing, *, timeout: float) -> str:
        worker.stop()  # SIGTERM arrives while the first message is on its way
        return real_transmit(outgoing, timeout=timeout)

    monkeypatch.setattr(delivery, "transmit", stop_while_sending)
    worker.run_once()
    rows = [message_of(fresh_database, tenant.id, m.id) for m in made]
    assert [r.status for r in rows].count(OutboxStatus.SENT) == 1
    rest = [r for r in rows if r.status == OutboxStatus.PENDING]
    assert len(rest) == 3
    assert all((r.claimed_by, r.claimed_until, r.attempts) == (None, None, 0) for r in rest)
    released = [
        e.diff["released"]["rows"]
        for e in events_of(fresh_database, tenant.id)
        if e.entity_id is None and "released" in e.diff
    ]
    assert sorted(row for rows_ in released for row in rows_) == sorted(str(r.id) for r in rest)


def test_a_message_cancelled_after_its_claim_is_not_sent(
    fresh_database: Database, cipher: FieldCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that is no longer pending when its turn comes keeps its status; the
    one sent before it is recorded as usual."""
    tenant = make_tenant(fresh_database)
    first, second = (make_message(fresh_database, cipher, tenant.id) for _ in range(2))
    worker = make_worker(fresh_database, cipher, batch=10)
    sent_to: list[uuid.UUID] = []
    real_transmit = delivery.transmit

    def record(outgoing: delivery.Outgoing, *, timeout: float) -> str:
        sent_to.append(outgoing.message_id)
        return real_transmit(outgoing, timeout=timeout)

    monkeypatch.setattr(delivery, "transmit", record)
    worker.claim(tenant.id, MESSAGES)  # the batch: both rows
    ctx = ctx_for(tenant.id)
    with transaction(fresh_database, ctx) as session:
        row = session.get_one(OutboxMessage, (tenant.id, second.id))
        states.transition(session, ctx, row, OutboxStatus.CANCELLED, OUTBOX)
    assert worker._send_messages(tenant.id, [first.id, second.id]) == 1
    assert sent_to == [first.id]
    assert message_of(fresh_database, tenant.id, first.id).status == OutboxStatus.SENT
    assert message_of(fresh_database, tenant.id, second.id).status == OutboxStatus.CANCELLED
