"""The audit trail: recorded with the transaction, chained per tenant, tamper-evident."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, select, text

from opdesk import audit
from opdesk.audit.models import AuditEvent
from opdesk.audit.service import PendingEvent, append_chain, flush_pending
from opdesk.audit.verify import verify_all, verify_tenant
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import clinic_session, ctx_for, events_of, make_tenant

CHAIN_LENGTH = 10_000


def test_an_event_is_written_with_the_commit_with_every_field(db: Database, tenant: Tenant) -> None:
    actor = uuid.uuid4()
    moment = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    ctx = ctx_for(
        tenant.id,
        actor_id=actor,
        role="frontdesk",
        request_id="req-12345678",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0",
        clock=lambda: moment,
    )
    entity_id = uuid.uuid4()
    with transaction(db, ctx):
        audit.record(
            ctx,
            entity="appointments",
            entity_id=entity_id,
            action="state-transition",
            from_state="confirmed",
            to_state="checked-in",
            diff=audit.diff_of({"status": "confirmed"}, {"status": "checked-in"}),
        )
        assert ctx.pending_audit, "events wait for the commit"
    assert ctx.pending_audit == []
    event = events_of(db, tenant.id)[-1]
    assert (event.actor_id, event.actor_role) == (actor, "frontdesk")
    assert (event.entity_collection, event.entity_id) == ("appointments", entity_id)
    assert (event.action, event.from_state, event.to_state) == (
        "state-transition",
        "confirmed",
        "checked-in",
    )
    assert event.diff == {
        "added": {},
        "updated": {"status": {"from": "confirmed", "to": "checked-in"}},
        "removed": {},
    }
    assert (event.request_id, event.ip, event.user_agent) == (
        "req-12345678",
        "203.0.113.9",
        "Mozilla/5.0",
    )
    assert event.ts == moment
    assert len(event.hash) == 64


def test_a_rolled_back_transaction_leaves_no_event(db: Database, tenant: Tenant) -> None:
    before = len(events_of(db, tenant.id))
    ctx = ctx_for(tenant.id)
    with pytest.raises(RuntimeError), transaction(db, ctx):
        audit.record(ctx, entity="patients", entity_id=uuid.uuid4(), action="create")
        raise RuntimeError("the use case failed half way")
    assert ctx.pending_audit == []
    assert len(events_of(db, tenant.id)) == before


def test_unknown_action_or_missing_tenant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(ctx_for(uuid.uuid4()), entity="x", entity_id=None, action="edit")
    with pytest.raises(ValueError, match="needs a tenant"):
        audit.record(ctx_for(None), entity="x", entity_id=None, action="create")


def test_diff_reports_added_updated_removed_and_hides_encrypted_values() -> None:
    diff = audit.diff_of(
        {"name": "Ravi", "city": "Pune", "phone": b"\x01old", "gone": 1},
        {"name": "Ravi K", "city": "Pune", "phone": b"\x01new", "dob": "1990-01-02"},
        redact={"phone"},
    )
    assert diff == {
        "added": {"dob": "1990-01-02"},
        "updated": {
            "name": {"from": "Ravi", "to": "Ravi K"},
            "phone": {"from": "[encrypted]", "to": "[encrypted]"},
        },
        "removed": {"gone": 1},
    }


def test_chain_links_each_event_to_the_previous_one(db: Database) -> None:
    tenant = make_tenant(db)
    for i in range(3):
        ctx = ctx_for(tenant.id)
        with transaction(db, ctx):
            audit.record(ctx, entity="patients", entity_id=uuid.uuid4(), action="create")
            audit.record(
                ctx,
                entity="patients",
                entity_id=uuid.uuid4(),
                action="update",
                diff={"added": {"i": i}},
            )
    events = events_of(db, tenant.id)
    assert [e.seq for e in events] == list(range(1, 8))
    for prev, event in itertools.pairwise(events):
        assert event.prev_hash == prev.hash
    with db.owner_engine.connect() as conn:
        report = verify_tenant(conn, tenant.id)
    assert report.ok, report.describe()
    assert report.checked == 7


def test_concurrent_writers_never_fork_a_lane(db: Database) -> None:
    tenant = make_tenant(db)
    writers, per_writer = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write() -> None:
        try:
            start.wait()
            for _ in range(per_writer):
                ctx = ctx_for(tenant.id)
                with transaction(db, ctx):
                    audit.record(ctx, entity="slots", entity_id=uuid.uuid4(), action="update")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = events_of(db, tenant.id)
    assert len(events) == writers * per_writer + 1
    for lane, in_lane in itertools.groupby(events, key=lambda e: e.lane):
        chain = list(in_lane)
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1)), f"lane {lane}"
        for prev, event in itertools.pairwise(chain):
            assert event.prev_hash == prev.hash, f"lane {lane} forks at seq {event.seq}"
    with db.owner_engine.connect() as conn:
        assert verify_tenant(conn, tenant.id).ok


def test_events_of_several_tenants_in_one_transaction_go_to_their_own_chains(
    db: Database,
) -> None:
    a, b = make_tenant(db), make_tenant(db)
    ctx = ctx_for(a.id)
    with transaction(db, ctx):
        audit.record(ctx, entity="tenants", entity_id=a.id, action="update")
        audit.record(ctx, entity="tenants", entity_id=b.id, action="update", tenant_id=b.id)
    with db.owner_engine.connect() as conn:
        reports = [verify_tenant(conn, t.id) for t in (a, b)]
    assert [(r.ok, r.checked) for r in reports] == [(True, 2), (True, 2)]


# --------------------------------------------------------------------------- tampering


@pytest.fixture(scope="module")
def long_chain(db: Database) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """One tenant with a chain of 10,000 events (plus its creation event)."""
    tenant = make_tenant(db, "Chain Clinic")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    pending = [
        PendingEvent(
            tenant_id=tenant.id,
            id=uuid.uuid4(),
            ts=base + timedelta(seconds=i),
            actor_id=uuid.uuid4(),
            actor_role="doctor",
            entity_collection="visits",
            entity_id=uuid.uuid4(),
            action="update",
            from_state=None,
            to_state=None,
            diff={"added": {}, "updated": {"n": {"from": i, "to": i + 1}}, "removed": {}},
            request_id=f"req-{i:08d}",
            ip="10.0.0.1",
            user_agent="bench",
        )
        for i in range(CHAIN_LENGTH)
    ]
    with clinic_session(db, tenant.id) as session:
        append_chain(session, pending)
    with clinic_session(db, tenant.id) as session:
        ids = list(session.execute(select(AuditEvent.id).order_by(AuditEvent.seq)).scalars())
    assert len(ids) == CHAIN_LENGTH + 1
    return tenant.id, ids


Tamper = Callable[[Connection, uuid.UUID], None]


def _sql(statement: str, **params: object) -> Tamper:
    def run(conn: Connection, tenant_id: uuid.UUID) -> None:
        done = conn.execute(text(statement), {"t": tenant_id, **params})
        assert done.rowcount >= 1, "the tampering touched no row"

    return run


def _swap(seq_a: int, seq_b: int) -> Tamper:
    """Exchange the positions of two events (through a spare number: seq is unique)."""

    def run(conn: Connection, tenant_id: uuid.UUID) -> None:
        for source, target in ((seq_a, -1), (seq_b, seq_a), (-1, seq_b)):
            _sql(
                "update audit_events set seq = :to where tenant_id = :t and seq = :fr",
                fr=source,
                to=target,
            )(conn, tenant_id)

    return run


def _insert_copy(of_seq: int, new_seq: int, shift_from: int | None = None) -> Tamper:
    """Insert a forged event (a copy of another with a new id) at ``new_seq``."""

    def run(conn: Connection, tenant_id: uuid.UUID) -> None:
        if shift_from is not None:
            conn.execute(
                text("update audit_events set seq = -seq - 1 where tenant_id = :t and seq >= :s"),
                {"t": tenant_id, "s": shift_from},
            )
            conn.execute(
                text("update audit_events set seq = -seq where tenant_id = :t and seq < 0"),
                {"t": tenant_id},
            )
        _sql(
            "insert into audit_events select seq_new.v, ts, actor_id, actor_role, "
            "entity_collection, entity_id, 'delete', from_state, to_state, diff, request_id, "
            "ip, user_agent, prev_hash, hash, tenant_id, gen_random_uuid() "
            "from audit_events, (select :n as v) seq_new where tenant_id = :t and seq = :o",
            n=new_seq,
            o=of_seq,
        )(conn, tenant_id)

    return run


TAMPERING: dict[str, tuple[Tamper, int]] = {
    # name: (what is done, the seq verification must name)
    "edit-diff-first": (
        _sql("update audit_events set diff = '{}' where tenant_id = :t and seq = 1"),
        1,
    ),
    "edit-actor-middle": (
        _sql("update audit_events set actor_role = 'admin' where tenant_id = :t and seq = 5000"),
        5000,
    ),
    "edit-ts-last": (
        _sql(
            "update audit_events set ts = ts + interval '1 second' "
            "where tenant_id = :t and seq = 10001"
        ),
        10001,
    ),
    "edit-ip": (
        _sql("update audit_events set ip = '6.6.6.6' where tenant_id = :t and seq = 77"),
        77,
    ),
    "edit-action": (
        _sql("update audit_events set action = 'delete' where tenant_id = :t and seq = 4321"),
        4321,
    ),
    "edit-and-rehash": (
        _sql(
            "update audit_events set request_id = 'forged', "
            "hash = encode(sha256(convert_to(hash, 'UTF8')), 'hex') "
            "where tenant_id = :t and seq = 300"
        ),
        300,
    ),
    "delete-first": (_sql("delete from audit_events where tenant_id = :t and seq = 1"), 2),
    "delete-middle": (_sql("delete from audit_events where tenant_id = :t and seq = 6000"), 6001),
    "delete-range": (
        _sql("delete from audit_events where tenant_id = :t and seq between 100 and 199"),
        200,
    ),
    "delete-last": (_sql("delete from audit_events where tenant_id = :t and seq = 10001"), 10001),
    "insert-at-end": (_insert_copy(of_seq=10001, new_seq=10002), 10002),
    "insert-middle-renumbered": (_insert_copy(of_seq=2501, new_seq=2500, shift_from=2500), 2500),
    "reorder-neighbours": (_swap(2000, 2001), 2000),
    "reorder-far": (_swap(10, 9000), 10),
}


def test_the_untouched_long_chain_verifies(
    db: Database, long_chain: tuple[uuid.UUID, list[uuid.UUID]]
) -> None:
    with db.owner_engine.connect() as conn:
        report = verify_tenant(conn, long_chain[0])
    assert report.ok, report.describe()
    assert report.checked == CHAIN_LENGTH + 1


@pytest.mark.parametrize("case", list(TAMPERING))
def test_every_kind_of_tampering_among_10000_events_is_detected(
    db: Database, long_chain: tuple[uuid.UUID, list[uuid.UUID]], case: str
) -> None:
    tenant_id, _ = long_chain
    tamper, bad_seq = TAMPERING[case]
    # The owner may edit the table (the app role may not); roll back afterwards so the
    # other cases see the intact chain.
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            tamper(conn, tenant_id)
            report = verify_tenant(conn, tenant_id)
        finally:
            trans.rollback()
    assert not report.ok, f"{case} went unnoticed"
    assert report.bad_seq == bad_seq, report.describe()
    assert str(bad_seq) in report.describe()


def test_verify_all_reports_every_tenant(fresh_database: Database) -> None:
    a, b = make_tenant(fresh_database), make_tenant(fresh_database)
    with fresh_database.owner_engine.connect() as conn:
        reports = verify_all(conn)
    assert {r.tenant_id for r in reports} == {a.id, b.id}
    assert all(r.ok for r in reports)


def test_flush_is_a_no_op_without_events(db: Database, tenant: Tenant) -> None:
    ctx = ctx_for(tenant.id)
    with clinic_session(db, tenant.id) as session:
        flush_pending(session, ctx)
        heads = session.execute(text("select last_seq from audit_chain_heads")).scalars().all()
    assert heads == [1]
