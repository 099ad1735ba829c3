"""``audit verify`` names the right problem at the right event for each kind of tampering.

``tests/audit/test_chain.py`` shows that tampering is noticed at the right sequence
number. Here each case also pins *which* check noticed it, and the event it names, on a
short chain where every link is known. The case that matters most is the one only chain
continuity catches: an event edited and re-hashed so that it is consistent with itself
(its hash is right for its content and its stored ``prev_hash``). Only the next event,
whose ``prev_hash`` still holds the old hash, gives it away; a verifier that hashed each
event with its own ``prev_hash`` would pass it.

Tampering is done as the database owner (the app role may not edit the trail), in a
transaction rolled back after verification, except for the whole-database check, which
commits into a database of its own (``fresh_database``) and runs ``opdesk audit verify``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from opdesk import audit
from opdesk.audit.service import link_hash
from opdesk.audit.verify import ChainReport, verify_tenant
from opdesk.db import Database, set_tenant_setting
from opdesk.uow import transaction
from tests.factories import ctx_for, events_of, make_tenant
from tests.factories.cli import opdesk

LENGTH = 7  # the clinic's creation event and six more

# The check that failed, told by the words of its report.
KINDS = {
    "sequence": "expected seq",  # a number is missing, repeated or out of place
    "link": "prev_hash does not match the previous event",  # continuity
    "content": "content does not match its hash",  # the event itself was edited
    "head": "its head records",  # the end of the chain differs from the stored head
}

COLUMNS = (
    "tenant_id",
    "id",
    "seq",
    "ts",
    "actor_id",
    "actor_role",
    "entity_collection",
    "entity_id",
    "action",
    "from_state",
    "to_state",
    "diff",
    "request_id",
    "ip",
    "user_agent",
    "prev_hash",
    "hash",
)
FORGED_DIFF = {"added": {}, "updated": {"fee": {"from": 500, "to": 0}}, "removed": {}}


def kind_of(report: ChainReport) -> str:
    kinds = [kind for kind, words in KINDS.items() if words in (report.problem or "")]
    assert len(kinds) == 1, f"cannot tell which check failed: {report.describe()}"
    return kinds[0]


@dataclass(frozen=True)
class Chain:
    tenant_id: uuid.UUID
    ids: dict[int, uuid.UUID]  # seq -> event id, as written


def make_chain(database: Database) -> Chain:
    """A clinic whose trail is its creation event and six updates, through the service."""
    tenant = make_tenant(database, "Tamper Clinic")
    ctx = ctx_for(tenant.id)
    with transaction(database, ctx):
        for n in range(LENGTH - 1):
            audit.record(
                ctx,
                entity="patients",
                entity_id=uuid.uuid4(),
                action="update",
                diff=audit.diff_of({"visits": n}, {"visits": n + 1}),
            )
    events = events_of(database, tenant.id)
    assert [e.seq for e in events] == list(range(1, LENGTH + 1))
    return Chain(tenant.id, {e.seq: e.id for e in events})


@pytest.fixture(scope="module")
def chain(db: Database) -> Chain:
    return make_chain(db)


# --------------------------------------------------------------------------- tampering
# Each returns the id of the event it forged, if it forged one.

Tamper = Callable[[Connection, uuid.UUID], uuid.UUID | None]


def row_at(conn: Connection, tenant_id: uuid.UUID, seq: int) -> dict[str, Any]:
    query = text(f"select {', '.join(COLUMNS)} from audit_events where tenant_id = :t and seq = :s")
    return dict(conn.execute(query, {"t": tenant_id, "s": seq}).mappings().one())


def write_diff(conn: Connection, row: dict[str, Any]) -> None:
    done = conn.execute(
        text("update audit_events set diff = cast(:diff as jsonb), hash = :hash where id = :id"),
        {"diff": json.dumps(row["diff"]), "hash": row["hash"], "id": row["id"]},
    )
    assert done.rowcount == 1


def insert(conn: Connection, row: dict[str, Any]) -> None:
    values = ", ".join("cast(:diff as jsonb)" if c == "diff" else f":{c}" for c in COLUMNS)
    conn.execute(
        text(f"insert into audit_events ({', '.join(COLUMNS)}) values ({values})"),
        {**row, "diff": json.dumps(row["diff"])},
    )


def shift_up(conn: Connection, tenant_id: uuid.UUID, from_seq: int) -> None:
    """Renumber events ``from_seq`` onwards one place later (seq is unique: via negatives)."""
    for statement in (
        "update audit_events set seq = -seq - 1 where tenant_id = :t and seq >= :s",
        "update audit_events set seq = -seq where tenant_id = :t and seq < 0",
    ):
        conn.execute(text(statement), {"t": tenant_id, "s": from_seq})


def sql(statement: str, **params: object) -> Tamper:
    def run(conn: Connection, tenant_id: uuid.UUID) -> None:
        done = conn.execute(text(statement), {"t": tenant_id, **params})
        assert done.rowcount == 1, "the tampering touched no row"

    return run


def edit_payload(seq: int, *, rehash: bool) -> Tamper:
    """Change the event's diff; with ``rehash``, also give it the hash its new content has
    under its own stored ``prev_hash``, so the event checks out on its own.
    """

    def run(conn: Connection, tenant_id: uuid.UUID) -> None:
        row = row_at(conn, tenant_id, seq)
        row["diff"] = FORGED_DIFF
        if rehash:
            row["hash"] = link_hash(row["prev_hash"], row)
        write_diff(conn, row)

    return run


def swap(seq_a: int, seq_b: int) -> Tamper:
    def run(conn: Connection, tenant_id: uuid.UUID) -> None:
        for source, target in ((seq_a, -1), (seq_b, seq_a), (-1, seq_b)):
            sql(
                "update audit_events set seq = :to where tenant_id = :t and seq = :fr",
                fr=source,
                to=target,
            )(conn, tenant_id)

    return run


def copy_to_end(conn: Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    """A copy of the last event, hash and all, under a new id after it."""
    row = {**row_at(conn, tenant_id, LENGTH), "id": uuid.uuid4(), "seq": LENGTH + 1}
    insert(conn, row)
    return uuid.UUID(str(row["id"]))


def forge_at(seq: int, *, renumber: bool) -> Tamper:
    """A new event at ``seq``, chained properly to the event before it (prev_hash and
    hash both right); with ``renumber``, the events from ``seq`` on move one place later.
    """

    def run(conn: Connection, tenant_id: uuid.UUID) -> uuid.UUID:
        before = row_at(conn, tenant_id, seq - 1)
        if renumber:
            shift_up(conn, tenant_id, seq)
        row = {
            **before,
            "id": uuid.uuid4(),
            "seq": seq,
            "action": "delete",
            "diff": FORGED_DIFF,
            "prev_hash": before["hash"],
        }
        row["hash"] = link_hash(row["prev_hash"], row)
        insert(conn, row)
        return uuid.UUID(str(row["id"]))

    return run


@dataclass(frozen=True)
class Expect:
    kind: str
    seq: int | None = None  # the seq the report names
    event: int | str | None = None  # the original seq of the event it names, or "forged"
    ends: int | None = None  # for the head: where the chain ends
    head: int | None = None  # and what the head records


CASES: dict[str, tuple[Tamper, Expect]] = {
    "edited-payload": (edit_payload(3, rehash=False), Expect("content", seq=3, event=3)),
    "edited-first-payload": (edit_payload(1, rehash=False), Expect("content", seq=1, event=1)),
    "edited-payload-rehashed": (edit_payload(3, rehash=True), Expect("link", seq=4, event=4)),
    "edited-last-payload-rehashed": (
        edit_payload(LENGTH, rehash=True),
        Expect("head", ends=LENGTH, head=LENGTH),
    ),
    "edited-actor-role": (
        sql("update audit_events set actor_role = 'admin' where tenant_id = :t and seq = 5"),
        Expect("content", seq=5, event=5),
    ),
    "deleted-first": (
        sql("delete from audit_events where tenant_id = :t and seq = 1"),
        Expect("sequence", seq=2, event=2),
    ),
    "deleted-middle": (
        sql("delete from audit_events where tenant_id = :t and seq = 4"),
        Expect("sequence", seq=5, event=5),
    ),
    "deleted-last": (
        sql("delete from audit_events where tenant_id = :t and seq = :s", s=LENGTH),
        Expect("head", ends=LENGTH - 1, head=LENGTH),
    ),
    "inserted-copy-at-end": (copy_to_end, Expect("link", seq=LENGTH + 1, event="forged")),
    "inserted-forged-in-middle": (forge_at(4, renumber=True), Expect("link", seq=5, event=4)),
    "appended-forged": (
        forge_at(LENGTH + 1, renumber=False),
        Expect("head", ends=LENGTH + 1, head=LENGTH),
    ),
    "swapped-neighbours": (swap(3, 4), Expect("link", seq=3, event=4)),
    "swapped-far": (swap(2, 6), Expect("link", seq=2, event=6)),
    "edited-head-hash": (
        sql("update audit_chain_heads set last_hash = repeat('ab', 32) where tenant_id = :t"),
        Expect("head", ends=LENGTH, head=LENGTH),
    ),
    "edited-head-seq": (
        sql("update audit_chain_heads set last_seq = last_seq - 1 where tenant_id = :t"),
        Expect("head", ends=LENGTH, head=LENGTH - 1),
    ),
}


def tampered(db: Database, chain: Chain, tamper: Tamper) -> tuple[ChainReport, uuid.UUID | None]:
    """Tamper, verify, and roll back (so the next case sees the intact chain)."""
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            set_tenant_setting(conn, chain.tenant_id)
            forged = tamper(conn, chain.tenant_id)
            return verify_tenant(conn, chain.tenant_id), forged
        finally:
            trans.rollback()


def test_the_untouched_chain_verifies(db: Database, chain: Chain) -> None:
    with db.owner_engine.connect() as conn:
        report = verify_tenant(conn, chain.tenant_id)
    assert report.ok, report.describe()
    assert report.checked == LENGTH


def test_a_self_consistent_edit_is_caught_at_the_next_event_by_its_prev_hash(
    db: Database, chain: Chain
) -> None:
    with db.owner_engine.connect() as conn:
        trans = conn.begin()
        try:
            set_tenant_setting(conn, chain.tenant_id)
            edit_payload(3, rehash=True)(conn, chain.tenant_id)
            edited = row_at(conn, chain.tenant_id, 3)
            following = row_at(conn, chain.tenant_id, 4)
            report = verify_tenant(conn, chain.tenant_id)
        finally:
            trans.rollback()
    # The edited event is consistent with itself: no check of it alone can object.
    assert edited["diff"] == FORGED_DIFF
    assert link_hash(edited["prev_hash"], edited) == edited["hash"]
    assert following["prev_hash"] != edited["hash"]
    assert not report.ok, "a re-hashed edit went unnoticed"
    assert (kind_of(report), report.bad_seq, report.bad_event_id) == ("link", 4, chain.ids[4])
    assert report.checked == 3, "events 1 to 3 check out; event 4 is the first that does not"


@pytest.mark.parametrize("case", list(CASES))
def test_verify_names_the_problem_and_the_event(db: Database, chain: Chain, case: str) -> None:
    tamper, expect = CASES[case]
    report, forged = tampered(db, chain, tamper)
    assert not report.ok, f"{case} went unnoticed"
    assert kind_of(report) == expect.kind, report.describe()
    if expect.kind == "head":
        # The head's report names no event: it says where the chain ends and what the
        # head records instead.
        assert report.bad_event_id is None, report.describe()
        assert f"chain ends at seq {expect.ends} but its head records seq {expect.head}" in (
            report.problem or ""
        )
        # It points at the first seq the chain and its head disagree about: the last
        # event when only the hash differs, else the one just past the shorter of them.
        assert expect.ends is not None and expect.head is not None
        first_bad = expect.ends if expect.ends == expect.head else min(expect.ends, expect.head) + 1
        assert report.bad_seq == first_bad, report.describe()
        return
    event = forged if expect.event == "forged" else chain.ids[int(str(expect.event))]
    assert (report.bad_seq, report.bad_event_id) == (expect.seq, event), report.describe()
    assert f"at seq {expect.seq} (event {event})" in report.describe()


def test_the_command_reports_a_self_consistent_edit_at_the_next_event_of_that_clinic_only(
    fresh_database: Database, tmp_path: Path
) -> None:
    tampered_chain = make_chain(fresh_database)
    other = make_chain(fresh_database)
    with fresh_database.owner_engine.begin() as conn:
        set_tenant_setting(conn, tampered_chain.tenant_id)
        edit_payload(3, rehash=True)(conn, tampered_chain.tenant_id)
    done = opdesk("audit", "verify", database=fresh_database, data_dir=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = (
        f"tenant {tampered_chain.tenant_id}: BROKEN at seq 4 (event {tampered_chain.ids[4]}): "
        + KINDS["link"]
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert any(line.startswith(broken) for line in lines), done.stdout
    assert f"tenant {other.tenant_id}: ok, {LENGTH} events" in lines, done.stdout
