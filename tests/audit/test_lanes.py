"""A clinic's trail in lanes (migration 0029): a write that finds the clinic's lanes busy
appends beside them instead of waiting, and ``audit verify`` checks each lane as a chain.

The busy lanes here are held by open transactions that lock their head rows, as a
concurrent write does between its append and its commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from psycopg import errors as pg
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from opdesk import audit
from opdesk.audit.models import GENESIS_HASH, LANES, AuditEvent
from opdesk.audit.verify import verify_tenant
from opdesk.db import Database, set_tenant_setting
from opdesk.uow import transaction
from tests.factories import ctx_for, events_of, make_tenant


def _write(db: Database, tenant_id: uuid.UUID, what: str = "a write") -> None:
    ctx = ctx_for(tenant_id)
    with transaction(db, ctx):
        audit.record(
            ctx, entity="slots", entity_id=uuid.uuid4(), action="update", diff={"added": {what: 1}}
        )


@contextmanager
def _lanes_held(db: Database, tenant_id: uuid.UUID, lanes: list[int]) -> Iterator[Connection]:
    """An open transaction holding these lanes' heads, as a write about to commit does."""
    with db.owner_engine.connect() as conn, conn.begin():
        set_tenant_setting(conn, tenant_id)
        held = conn.execute(
            text(
                "select lane from audit_chain_heads where tenant_id = :t and lane = any(:lanes)"
                " for update"
            ),
            {"t": tenant_id, "lanes": lanes},
        ).scalars()
        assert sorted(held) == sorted(lanes)
        yield conn


def _last(db: Database, tenant_id: uuid.UUID) -> AuditEvent:
    return max(events_of(db, tenant_id), key=lambda e: e.ts)


def test_a_write_while_lane_0_is_busy_opens_lane_1_and_returns_to_lane_0_after(
    db: Database,
) -> None:
    tenant = make_tenant(db)
    with _lanes_held(db, tenant.id, [0]):
        _write(db, tenant.id, "beside")  # would wait for the holder's commit with one chain
        beside = _last(db, tenant.id)
    _write(db, tenant.id, "after")
    after = _last(db, tenant.id)
    assert (beside.lane, beside.seq, beside.prev_hash) == (1, 1, GENESIS_HASH)
    assert (after.lane, after.seq) == (0, 2)
    with db.owner_engine.connect() as conn:
        report = verify_tenant(conn, tenant.id)
    assert report.ok, report.describe()
    assert report.checked == 3


def test_a_clinic_has_at_most_eight_lanes_and_a_write_then_waits_for_one(db: Database) -> None:
    tenant = make_tenant(db)
    with ExitStack() as stack:
        for lane in range(LANES - 1):
            stack.enter_context(_lanes_held(db, tenant.id, [lane]))
            _write(db, tenant.id, f"opens lane {lane + 1}")
            assert _last(db, tenant.id).lane == lane + 1
        stack.enter_context(_lanes_held(db, tenant.id, [LANES - 1]))
        # Every lane is held: the next write waits (here, until its lock timeout).
        with db.owner_engine.connect() as conn, conn.begin():
            set_tenant_setting(conn, tenant.id)
            conn.execute(text("set local lock_timeout = '300ms'"))
            event = {
                "tenant_id": str(tenant.id),
                "id": str(uuid.uuid4()),
                "ts": "2026-12-03T10:00:00Z",
                "actor_role": "system",
                "entity_collection": "slots",
                "action": "update",
                "diff": {},
            }
            with pytest.raises(DBAPIError) as refused:
                conn.execute(
                    text("select audit_append(:t, cast(:e as jsonb))"),
                    {"t": tenant.id, "e": json.dumps([event])},
                )
            assert isinstance(refused.value.orig, pg.LockNotAvailable)
    with db.owner_engine.connect() as conn:
        set_tenant_setting(conn, tenant.id)
        lanes = conn.execute(
            text("select lane, last_seq from audit_chain_heads where tenant_id = :t order by lane"),
            {"t": tenant.id},
        ).all()
        report = verify_tenant(conn, tenant.id)
    assert [tuple(row) for row in lanes] == [(0, 1)] + [(lane, 1) for lane in range(1, LANES)]
    assert report.ok, report.describe()


def _two_lanes(db: Database) -> uuid.UUID:
    """A clinic whose trail is in lanes 0 (two events) and 1 (two events)."""
    tenant = make_tenant(db)
    with _lanes_held(db, tenant.id, [0]):
        _write(db, tenant.id, "lane 1, first")
        _write(db, tenant.id, "lane 1, second")
    _write(db, tenant.id, "lane 0, second")
    assert [(e.lane, e.seq) for e in events_of(db, tenant.id)] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    return tenant.id


@contextmanager
def _tampered(db: Database, tenant_id: uuid.UUID, statement: str) -> Iterator[Connection]:
    """The trail after ``statement`` (with ``:t``), rolled back when the check is done."""
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            set_tenant_setting(conn, tenant_id)
            assert conn.execute(text(statement), {"t": tenant_id}).rowcount >= 1
            yield conn
        finally:
            trans.rollback()


EDITED = "content does not match its hash: the event was edited"
CUT_SHORT = (
    "lane 1 ends at seq 1 but its head records seq 2: events were removed from or added to the end"
)


@pytest.mark.parametrize(
    ("tampering", "lane", "seq", "problem"),
    [
        pytest.param(
            "update audit_events set ip = '10.9.9.9' where tenant_id = :t and lane = 1 and seq = 2",
            1, 2, EDITED, id="edited-in-lane-1",
        ),
        pytest.param(
            "update audit_events set lane = 0, seq = 3"
            " where tenant_id = :t and lane = 1 and seq = 2",
            0, 3, "prev_hash does not match", id="moved-to-lane-0",
        ),
        pytest.param(
            "delete from audit_events where tenant_id = :t and lane = 1 and seq = 2",
            1, 2, CUT_SHORT, id="lane-1-cut-short",
        ),
        pytest.param(
            "delete from audit_events where tenant_id = :t and lane = 1",
            1, 1, "lane 1 ends at seq 0", id="lane-1-emptied",
        ),
        pytest.param(
            "delete from audit_events where tenant_id = :t and lane = 0",
            0, 1, "chain ends at seq 0", id="lane-0-emptied",
        ),
    ],
)  # fmt: skip
def test_tampering_in_any_lane_is_named_with_its_lane_and_seq(
    db: Database, tampering: str, lane: int, seq: int, problem: str
) -> None:
    tenant_id = _two_lanes(db)
    with _tampered(db, tenant_id, tampering) as conn:
        report = verify_tenant(conn, tenant_id)
    assert (report.ok, report.bad_lane, report.bad_seq) == (False, lane, seq), report.describe()
    assert report.problem is not None and problem in report.problem
    where = f"at seq {seq} of lane {lane}" if lane else f"at seq {seq}"
    assert where in report.describe()
