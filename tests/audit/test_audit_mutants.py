"""Behaviour of ``opdesk.audit`` that the mutants surviving ``make mutate`` showed untested.

Each test names, in a comment, the mutmut ids (from ``mutants/survivors.txt``) it kills.
Survivors left alone are changes nothing can observe (SQL keyword case, a CTE's name, a
fetch batch size, sorting UUIDs by their text or by themselves: the same order).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, event, select, text

from opdesk import audit
from opdesk.audit import guard
from opdesk.audit.models import AuditEvent
from opdesk.audit.service import (
    PendingEvent,
    append_chain,
    flush_pending,
    jsonable,
    link_hash,
)
from opdesk.audit.verify import ChainReport, verify_tenant
from opdesk.db import Database, set_tenant_setting
from opdesk.uow import transaction
from tests.factories import clinic_session, ctx_for, events_of, make_tenant

EMPTY_DIFF: dict[str, dict[str, Any]] = {"added": {}, "updated": {}, "removed": {}}
LINK_PROBLEM = "prev_hash does not match the previous event: chain re-ordered or cut"
CONTENT_PROBLEM = "content does not match its hash: the event was edited"


# --------------------------------------------------------------------------- diff_of


def test_a_redacted_field_is_shown_as_encrypted_where_it_is_added_removed_or_updated() -> None:
    # x_diff_of__mutmut_4, _11, _19, _29, _35: plain text (not bytes, which jsonable hides
    # anyway) under a redacted key must never reach the trail, in any of the four places.
    diff = audit.diff_of(
        {"notes": "had a fever", "history": "asthma", "city": "Pune"},
        {"notes": "no fever", "allergy": "penicillin", "city": "Nashik"},
        redact={"notes", "history", "allergy"},
    )
    assert diff == {
        "added": {"allergy": "[encrypted]"},
        "updated": {
            "notes": {"from": "[encrypted]", "to": "[encrypted]"},
            "city": {"from": "Pune", "to": "Nashik"},
        },
        "removed": {"history": "[encrypted]"},
    }


def test_a_redacted_field_that_is_empty_on_one_side_shows_the_empty_side_as_null() -> None:
    # x_diff_of__mutmut_8: "no value" is not a secret; only a value is hidden.
    diff = audit.diff_of(
        {"notes": None, "allergy": "penicillin"},
        {"notes": "had a fever", "allergy": None},
        redact={"notes", "allergy"},
    )
    assert diff["updated"] == {
        "notes": {"from": None, "to": "[encrypted]"},
        "allergy": {"from": "[encrypted]", "to": None},
    }


# --------------------------------------------------------------------------- jsonable


def test_jsonable_converts_every_item_of_a_list_tuple_or_set() -> None:
    # x_jsonable__mutmut_3: the items of a list were replaced by null.
    some = uuid.uuid4()
    assert jsonable([some, Decimal("12.50"), date(2026, 11, 25), 3.0, "x"]) == [
        str(some),
        "12.50",
        "2026-11-25",
        3,
        "x",
    ]
    assert jsonable(("a", 1)) == ["a", 1]
    assert jsonable({"ids": frozenset({some})}) == {"ids": [str(some)]}


@contextmanager
def machine_zone(name: str) -> Iterator[None]:
    """Run with the process's local time zone set to ``name``, restored afterwards."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_datetimes_are_written_in_utc_whatever_the_machines_time_zone() -> None:
    # x_jsonable__mutmut_5: the machine's zone leaked into the canonical form, so a chain
    # written on a server in UTC would not verify on one set to India, and vice versa.
    moment = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    row = _row(ts=moment)
    with machine_zone("UTC"):
        hash_in_utc = link_hash("0" * 64, row)
    with machine_zone("Asia/Kolkata"):
        assert time.localtime(0).tm_gmtoff == 19800, "the zone change took effect"
        assert jsonable(moment) == "2026-11-25T04:00:00.000000+00:00"
        assert jsonable(moment.astimezone(ZoneInfo("Asia/Kolkata"))) == (
            "2026-11-25T04:00:00.000000+00:00"
        )
        assert link_hash("0" * 64, row) == hash_in_utc


def _row(**fields: Any) -> dict[str, Any]:
    return {
        "tenant_id": uuid.UUID(int=1),
        "id": uuid.UUID(int=2),
        "seq": 1,
        "ts": datetime(2026, 1, 1, tzinfo=UTC),
        "actor_id": None,
        "actor_role": "system",
        "entity_collection": "patients",
        "entity_id": None,
        "action": "create",
        "from_state": None,
        "to_state": None,
        "diff": EMPTY_DIFF,
        "request_id": None,
        "ip": None,
        "user_agent": None,
        "prev_hash": "0" * 64,
        **fields,
    }


# --------------------------------------------------------------------------- record


def test_an_event_recorded_without_a_diff_stores_an_empty_added_updated_removed(
    db: Database,
) -> None:
    # x_record__mutmut_40 to _45: the default diff's keys were never read.
    tenant = make_tenant(db, "Plain Clinic")
    ctx = ctx_for(tenant.id)
    entity_id = uuid.uuid4()
    with transaction(db, ctx):
        pending = audit.record(ctx, entity="patients", entity_id=entity_id, action="delete")
        assert pending.diff == EMPTY_DIFF
    stored = events_of(db, tenant.id)[-1]
    assert (stored.entity_id, stored.action, stored.diff) == (entity_id, "delete", EMPTY_DIFF)


def test_an_event_without_a_clinic_is_refused_with_exactly_that_reason() -> None:
    # x_record__mutmut_7: only part of the message was matched.
    ctx = ctx_for(None)
    with pytest.raises(ValueError, match=r"^an audit event needs a tenant$"):
        audit.record(ctx, entity="tenants", entity_id=None, action="create")
    assert ctx.pending_audit == []


# --------------------------------------------------------------------------- append_chain


def test_a_requests_events_go_in_with_the_heads_move_in_one_statement(db: Database) -> None:
    # The clinic's chain lock is held from the append until commit: whatever the number
    # of events, they go in with one statement, and always the same text (so PostgreSQL
    # and the driver can keep it prepared).
    tenant = make_tenant(db, "Busy Clinic")
    sent: dict[int, list[str]] = {}
    for count in (1, 3, 120):
        executed: list[str] = []
        with clinic_session(db, tenant.id) as session:
            conn = session.connection()

            def note(*args: Any, executed: list[str] = executed) -> None:
                executed.append(args[2])

            event.listen(conn, "before_cursor_execute", note)
            try:
                append_chain(session, [_pending(tenant.id, n) for n in range(count)])
            finally:
                event.remove(conn, "before_cursor_execute", note)
        sent[count] = executed
    assert [len(s) for s in sent.values()] == [1, 1, 1]
    assert len({s[0] for s in sent.values()}) == 1
    seqs = [e.seq for e in events_of(db, tenant.id)]
    assert seqs == list(range(1, 2 + 1 + 3 + 120))  # the clinic's own creation first
    with db.owner_engine.connect() as conn:
        assert verify_tenant(conn, tenant.id).ok


def _pending(tenant_id: uuid.UUID, n: int) -> PendingEvent:
    return PendingEvent(
        tenant_id=tenant_id,
        id=uuid.uuid4(),
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        actor_id=None,
        actor_role="system",
        entity_collection="slots",
        entity_id=uuid.uuid4(),
        action="update",
        from_state=None,
        to_state=None,
        diff={"added": {"n": n}, "updated": {}, "removed": {}},
        request_id=None,
        ip=None,
        user_agent=None,
    )


# --------------------------------------------------------------------------- flush_pending


def test_flushing_events_of_other_clinics_leaves_the_transaction_scoped_to_its_own(
    db: Database,
) -> None:
    # x_flush_pending__mutmut_8, _9, _23, _25: after writing another clinic's chain the
    # scope was not put back (or put back to no clinic), so the rest of the transaction
    # read and wrote as the wrong clinic. Three clinics, the scoped one in the middle of
    # the lock order, so that one other clinic comes before it and one after.
    low, middle, high = sorted((make_tenant(db) for _ in range(3)), key=lambda t: str(t.id))
    ctx = ctx_for(middle.id)
    with transaction(db, ctx) as session:
        for clinic in (high, middle, low):
            audit.record(
                ctx, entity="tenants", entity_id=clinic.id, action="update", tenant_id=clinic.id
            )
        flush_pending(session, ctx)
        assert ctx.pending_audit == []
        scope = session.execute(text("select current_setting('app.tenant_id', true)")).scalar()
        visible = set(session.execute(select(AuditEvent.tenant_id)).scalars())
    assert scope == str(middle.id)
    assert visible == {middle.id}, "row-level security shows the scoped clinic's rows only"
    with db.owner_engine.connect() as conn:
        reports = [verify_tenant(conn, t.id) for t in (low, middle, high)]
    assert [(r.ok, r.checked) for r in reports] == [(True, 2)] * 3


# --------------------------------------------------------------------------- verify


def _chain_with_actors(database: Database) -> tuple[uuid.UUID, list[AuditEvent]]:
    """A clinic's creation event and three events by a doctor."""
    tenant = make_tenant(database, "Actor Clinic")
    ctx = ctx_for(tenant.id, actor_id=uuid.uuid4(), role="doctor")
    with transaction(database, ctx):
        for n in range(3):
            audit.record(
                ctx,
                entity="patients",
                entity_id=uuid.uuid4(),
                action="update",
                diff=audit.diff_of({"visits": n}, {"visits": n + 1}),
            )
    events = events_of(database, tenant.id)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    return tenant.id, events


def _tampered(db: Database, tenant_id: uuid.UUID, *statements: str) -> ChainReport:
    """Tamper as the owner, verify, roll back."""
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            set_tenant_setting(conn, tenant_id)
            for statement in statements:
                done = conn.execute(text(statement), {"t": tenant_id})
                assert done.rowcount == 1, statement
            return verify_tenant(conn, tenant_id)
        finally:
            trans.rollback()


@pytest.mark.parametrize(
    "new_actor",
    ["gen_random_uuid()", "null"],
    ids=["another-actor", "actor-erased"],
)
def test_verify_notices_an_events_actor_was_changed(db: Database, new_actor: str) -> None:
    # x_canonical_event__mutmut_26: the actor's id was not part of the hashed content, so
    # who did something could be rewritten unnoticed. Also pins the report in full
    # (x__check_link__mutmut_1, _3, _36 and x_verify_tenant__mutmut_20).
    tenant_id, events = _chain_with_actors(db)
    assert events[2].actor_id is not None
    report = _tampered(
        db,
        tenant_id,
        f"update audit_events set actor_id = {new_actor} where tenant_id = :t and seq = 3",
    )
    assert report.ok is False
    assert (report.tenant_id, report.checked, report.bad_seq, report.bad_event_id) == (
        tenant_id,
        2,
        3,
        events[2].id,
    )
    assert report.problem == CONTENT_PROBLEM
    assert report.describe() == (
        f"tenant {tenant_id}: BROKEN at seq 3 (event {events[2].id}): {CONTENT_PROBLEM}"
    )


def test_verify_reports_a_broken_link_with_its_clinic_and_exact_words(db: Database) -> None:
    # x__check_link__mutmut_26, _1, _3 and x_verify_tenant__mutmut_20: swapped events.
    tenant_id, events = _chain_with_actors(db)
    report = _tampered(
        db,
        tenant_id,
        "update audit_events set seq = -1 where tenant_id = :t and seq = 2",
        "update audit_events set seq = 2 where tenant_id = :t and seq = 3",
        "update audit_events set seq = 3 where tenant_id = :t and seq = -1",
    )
    assert report.ok is False
    assert (report.tenant_id, report.checked, report.bad_seq, report.bad_event_id) == (
        tenant_id,
        1,
        2,
        events[2].id,
    )
    assert report.problem == LINK_PROBLEM
    assert report.describe() == (
        f"tenant {tenant_id}: BROKEN at seq 2 (event {events[2].id}): {LINK_PROBLEM}"
    )


def test_verify_reads_the_clinics_chain_through_row_level_security(db: Database) -> None:
    # x_verify_tenant__mutmut_3: verification did not scope itself to the clinic, so as any
    # login that row-level security applies to (the owner, unless a superuser) it saw no
    # events and no head, and reported a clinic with a long trail as "ok, 0 events".
    tenant_id, events = _chain_with_actors(db)
    with db.app_engine.connect() as conn:
        report = verify_tenant(conn, tenant_id)
        conn.rollback()
    assert (report.ok, report.checked) == (True, len(events))
    assert report.describe() == f"tenant {tenant_id}: ok, {len(events)} events"
    assert " at seq" not in report.describe()


def test_a_report_without_a_place_says_only_what_is_wrong() -> None:
    # xǁChainReportǁdescribe__mutmut_7, _8.
    tenant_id = uuid.uuid4()
    report = ChainReport(tenant_id, 0, False, "the chain could not be read")
    assert report.describe() == f"tenant {tenant_id}: BROKEN: the chain could not be read"


def test_a_forged_event_numbered_zero_is_named_in_the_report(db: Database) -> None:
    tenant_id, _ = _chain_with_actors(db)
    forged = uuid.uuid4()
    report = _tampered(
        db,
        tenant_id,
        "insert into audit_events (tenant_id, id, seq, ts, actor_id, actor_role, "
        "entity_collection, entity_id, action, from_state, to_state, diff, request_id, ip, "
        "user_agent, prev_hash, hash) select tenant_id, "
        f"'{forged}', 0, ts, actor_id, actor_role, entity_collection, entity_id, action, "
        "from_state, to_state, diff, request_id, ip, user_agent, prev_hash, hash "
        "from audit_events where tenant_id = :t and seq = 1",
    )
    assert (report.ok, report.bad_seq, report.bad_event_id) == (False, 0, forged)
    assert f"at seq 0 (event {forged})" in report.describe()


# --------------------------------------------------------------------------- guard


@pytest.mark.parametrize("collection", ["users", "patients"])
def test_the_guard_counts_an_event_naming_the_rows_id_as_covering_it(
    db: Database, collection: str
) -> None:
    # x__names__mutmut_1, _2: the default field (the row's own id) was misspelt, so no event
    # could cover a row. (mutmut cannot see this through the installed guard: COVERED_BY
    # is built when the module is imported, before a mutant is switched on.)
    row_id, other_id = uuid.uuid4(), uuid.uuid4()
    covers = guard._names(collection)
    query = text(
        f"select {covers} from (select cast(:row as jsonb) as row) r, "
        "(select cast(:collection as text) as collection, cast(:entity as uuid) as entity_id) e"
    )
    row = f'{{"id": "{row_id}", "tenant_id": "{uuid.uuid4()}"}}'
    with db.owner_engine.connect() as conn:
        assert _eval(conn, query, row=row, collection=collection, entity=row_id) is True
        assert _eval(conn, query, row=row, collection=collection, entity=other_id) is False
        assert _eval(conn, query, row=row, collection="slots", entity=row_id) is False


def _eval(conn: Connection, query: Any, **params: object) -> object:
    return conn.execute(query, params).scalar_one()
