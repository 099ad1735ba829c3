"""One audit hash, two implementations: SQL (``audit_link_hash``, migration 0019) writes
the chain, Python (``opdesk.audit.service.link_hash``) verifies it. They must agree byte
for byte on every event, or ``opdesk audit verify`` would call an honest chain broken.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DataError

from opdesk.audit.service import PendingEvent, append_chain, jsonable, link_hash
from opdesk.audit.verify import verify_tenant
from opdesk.db import Database
from tests.factories import clinic_session, make_tenant

SAFE_INT = 2**53 - 1
# Names and values from the clinic's own world, and the corners of RFC 8785's rules:
# Devanagari, emoji (beyond U+FFFF: a surrogate pair in UTF-16), the private-use and
# specials block U+E000..U+FFFF that sorts differently in UTF-16 than in UTF-8, control
# characters that must be escaped, quotes and backslashes.
CORNERS = 'रमेश शर्मा बुखार 😀👩‍⚕️🩺 \ue000\uffff\U0001f600 \x01\x1f\t\n"\\/ é'
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(CORNERS),
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    ),
    max_size=12,
)
FLOATS = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not (f.is_integer() and abs(f) > SAFE_INT)
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-SAFE_INT, SAFE_INT),
    FLOATS,
    # Every double past 2^53 is a whole number, out of the domain above: only small
    # numbers take the exponent form (1e-7).
    st.sampled_from([1e-7, 1.5e-7, 123456789.125, 5e-324, 2.2250738585072014e-308, 0.1]),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=20,
)
EVENTS = st.fixed_dictionaries(
    {
        "ts": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
        "actor_id": st.one_of(st.none(), st.uuids()),
        "actor_role": st.sampled_from(["frontdesk", "doctor", "system", "डॉक्टर"]),
        "entity_id": st.one_of(st.none(), st.uuids()),
        "from_state": st.one_of(st.none(), TEXT),
        "to_state": st.one_of(st.none(), TEXT),
        "diff": st.dictionaries(TEXT, JSON, max_size=4),
        "request_id": st.one_of(st.none(), TEXT),
        "ip": st.one_of(st.none(), st.sampled_from(["10.0.0.7", "2001:db8::1"])),
        "user_agent": st.one_of(st.none(), TEXT),
        "prev_hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
    }
)

# What the database would hold for the event, hashed in SQL: the same row goes through
# jsonb (as audit_append receives it) into the audit_events row type.
SQL_HASH = text(
    "select e.diff, audit_link_hash(e) "
    "from jsonb_populate_record(null::audit_events, cast(:row as jsonb)) as e"
)


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant_id": uuid.UUID(int=7),
        "id": uuid.UUID(int=11),
        "seq": 42,
        "entity_collection": "appointments",
        "action": "state-transition",
        **fields,
        "diff": jsonable(fields["diff"]),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=EVENTS)
@example(
    fields={
        "ts": datetime(2026, 12, 2, 18, 29, 59, 999999, tzinfo=UTC),
        "actor_id": None,
        "actor_role": "frontdesk",
        "entity_id": None,
        "from_state": "confirmed",
        "to_state": "checked-in",
        "diff": {
            "रोगी": {
                "नाम": "सीता",
                "😀": [1, 2.5, -0.0, 4503599627370495.5, 1e-7, {}, [], {"": None}],
            },
            "\uffff": True,
            "\U0001f600": False,
            "a": {"b": {"c": {"d": {}}}},
        },
        "request_id": None,
        "ip": None,
        "user_agent": "Mozilla/5.0 (Linux; Android 14) हिंदी",
        "prev_hash": "0" * 64,
    }
)
def test_sql_and_python_hash_every_event_alike(db: Database, fields: dict[str, Any]) -> None:
    row = _row(fields)
    with db.owner_engine.connect() as conn:
        stored_diff, sql_hash = conn.execute(SQL_HASH, {"row": json.dumps(jsonable(row))}).one()
    # verify reads the event back from the database; the writer hashed it in memory.
    assert link_hash(row["prev_hash"], {**row, "diff": stored_diff}) == sql_hash
    assert link_hash(row["prev_hash"], row) == sql_hash


def test_the_canonical_text_is_rfc_8785s(db: Database) -> None:
    value: dict[str, Any] = {
        "numbers": [333333333.33333329, 4.50, 2e-3, 0.000001, 1e-7, -0.0, 10, 9007199254740991],
        "literals": [None, True, False],
        "string": '€$\u000f\nA\'B"\\\\"/',
        "\ue000": 1,
        "\U0001f600": 2,
        "\u0080": 3,
        "1": 4,
        "\u00f6": 5,
    }
    with db.owner_engine.connect() as conn:
        sql = conn.execute(
            text("select jcs(cast(:v as jsonb))"), {"v": json.dumps(value)}
        ).scalar_one()
    assert sql.encode() == rfc8785.dumps(value)
    # The ordering rule in the flesh: U+1F600 (a surrogate pair, D83D DE00) comes before
    # U+E000 in UTF-16, though after it by code point.
    assert sql.index('"\U0001f600"') < sql.index('"\ue000"')


@pytest.mark.parametrize("number", [2**53, -(2**53), 10**30])
def test_an_integer_beyond_what_a_double_holds_is_refused_by_both(
    db: Database, number: int
) -> None:
    with pytest.raises(rfc8785.IntegerDomainError):
        rfc8785.dumps({"n": number})
    with db.owner_engine.connect() as conn, pytest.raises(DataError, match="beyond"):
        conn.execute(text("select jcs(cast(:v as jsonb))"), {"v": json.dumps({"n": number})})


def test_verify_passes_on_a_chain_linked_by_python_and_by_sql_in_turns(db: Database) -> None:
    """Links written before migration 0019 were hashed in Python; later ones in SQL."""
    tenant = make_tenant(db, "Mixed Chain Clinic")
    start = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    for n in range(6):
        event = _pending(tenant.id, start + timedelta(minutes=n), n)
        if n % 2:
            with clinic_session(db, tenant.id) as session:
                append_chain(session, [event])
        else:
            _link_in_python(db, event)
    with db.owner_engine.connect() as conn:
        report = verify_tenant(conn, tenant.id)
    assert report.ok, report.describe()
    assert report.checked == 7  # the clinic's creation and the six


def _pending(tenant_id: uuid.UUID, ts: datetime, n: int) -> PendingEvent:
    return PendingEvent(
        tenant_id=tenant_id,
        id=uuid.uuid4(),
        ts=ts,
        actor_id=uuid.uuid4(),
        actor_role="frontdesk",
        entity_collection="appointments",
        entity_id=uuid.uuid4(),
        action="state-transition",
        from_state="confirmed",
        to_state="checked-in",
        diff={"added": {"टोकन": n, "fee": 500.5, "नोट": "बुखार 🤒"}, "updated": {}, "removed": {}},
        request_id=f"req-{n}",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0",
    )


def _link_in_python(db: Database, event: PendingEvent) -> None:
    """Append ``event`` to lane 0 as the Python path did before 0019: hash here, insert
    the row."""
    with db.owner_engine.begin() as conn:
        seq, prev = conn.execute(
            text(
                "select last_seq, last_hash from audit_chain_heads"
                " where tenant_id = :t and lane = 0 for update"
            ),
            {"t": event.tenant_id},
        ).one()
        row = {**vars(event), "lane": 0, "seq": seq + 1, "prev_hash": prev}
        row["hash"] = link_hash(prev, row)
        conn.execute(
            text(
                "insert into audit_events select * from "
                "jsonb_populate_record(null::audit_events, cast(:row as jsonb))"
            ),
            {"row": json.dumps(jsonable(row))},
        )
        conn.execute(
            text(
                "update audit_chain_heads set last_seq = :s, last_hash = :h"
                " where tenant_id = :t and lane = 0"
            ),
            {"s": seq + 1, "h": row["hash"], "t": event.tenant_id},
        )
