"""Where a booking's PostgreSQL time goes: the hot booking statement, then each of its
parts alone, run one after another on one connection (no contention, no HTTP), timed by
the backend's own CPU (from /proc) and by the clock. Everything is rolled back. Then all again
with each call its own committed transaction, as the server runs the whole: the
difference is what a commit costs.

The parts add up to a little less than the whole: the whole also parses its arguments,
builds the API's JSON and crosses between the functions.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import text

from bench.booking import Calendar, _patient_ids, prepare
from opdesk.config import Settings
from opdesk.db import APP_ROLE, Database, libpq_url
from opdesk.identity import sessions
from opdesk.scheduling import hot
from opdesk.security.permissions import ROLES, allowed
from opdesk.security.tokens import token_hash

TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    """Seconds of CPU the backend ``pid`` has used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _free_slots(db: Database, calendar: Calendar, count: int) -> list[uuid.UUID]:
    with db.owner_engine.connect() as conn:
        rows = conn.execute(
            text(
                "select id from slots where tenant_id = :t and status = 'free'"
                " order by random() limit :n"
            ),
            {"t": calendar.tenant_id, "n": count},
        )
        return [r[0] for r in rows]


def _booking_event(entity_id: uuid.UUID, slot: uuid.UUID, patient: str) -> Jsonb:
    """An audit body like a booking's (opdesk_book's 'audit')."""
    return Jsonb(
        {
            "entity": "appointments",
            "entityId": str(entity_id),
            "action": "create",
            "from": None,
            "to": "confirmed",
            "diff": {
                "added": {"slotId": str(slot), "patientId": patient, "channel": "phone"},
                "updated": {},
                "removed": {},
            },
        }
    )


def run(db: Database, data_dir: Path, *, calls: int = 400, **_: Any) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, fast_password_hashing=True)
    print(f"\nbooking parts ({calls} calls each, one connection, rolled back)")
    calendar = prepare(db, settings)
    patients = _patient_ids(db, calendar)
    slots = _free_slots(db, calendar, calls * 4)
    roles = [role for role in ROLES if allowed(role, hot.ACTION)]
    caller = (token_hash(calendar.token), calendar.tenant_id, True, roles, sessions.TOUCH_EVERY)
    tenant = calendar.tenant_id
    with psycopg.connect(libpq_url(db.owner_url)) as conn:
        conn.execute(f"SET ROLE {APP_ROLE}")
        now = datetime.now(UTC)
        who = conn.execute("select opdesk_caller(%s, %s, %s, %s, %s, %s)", (*caller, now))
        found = who.fetchone()
        assert found is not None, "no answer from opdesk_caller"
        assert "userId" in found[0], found
        actor = uuid.UUID(found[0]["userId"])

        def whole(i: int) -> tuple[Any, ...]:
            return (
                *caller, None, None, slots[i], patients[i % len(patients)], "consultation",
                "phone", None, None, None, None, True, [uuid.uuid4() for _ in range(4)],
                "bench", "127.0.0.1", "bench", now,
            )  # fmt: skip

        def book(i: int) -> tuple[Any, ...]:
            return (
                slots[calls + i], patients[i % len(patients)], "consultation", "phone", None,
                None, None, None, False, False, None, None, None, True, uuid.uuid4(), actor, now,
            )  # fmt: skip

        def follow_up(i: int) -> tuple[Any, ...]:
            made = uuid.uuid4()
            return (tenant, uuid.uuid4(), "booked", "appointments", made, now, f"b:{made}",
                    Jsonb({}), now)  # fmt: skip

        def audit(i: int) -> tuple[Any, ...]:
            body = _booking_event(uuid.uuid4(), slots[2 * calls + i], patients[0])
            one = (tenant, uuid.uuid4(), now, actor, "frontdesk", body, "bench", "127.0.0.1",
                   "bench")  # fmt: skip
            two = (tenant, uuid.uuid4(), now, actor, "frontdesk", body, "bench", "127.0.0.1",
                   "bench")  # fmt: skip
            return (tenant, *one, *two)

        event_of = "audit_event_of(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        parts: list[tuple[str, str, Callable[[int], tuple[Any, ...]]]] = [
            ("the whole hot statement", hot._BOOK, whole),
            (
                "session, clinic, permission",
                "select opdesk_caller(%s, %s, %s, %s, %s, %s)",
                lambda i: (*caller, now),
            ),
            (
                "slot UPDATE + appointment INSERT",
                "select opdesk_book(" + ", ".join(["%s"] * 17) + ")",
                book,
            ),
            (
                "follow-up event (+ NOTIFY)",
                "select opdesk_follow_up(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                follow_up,
            ),
            (
                "audit append of 2 events",
                f"select audit_append(%s, jsonb_build_array({event_of}, {event_of}))",
                audit,
            ),
            ("a bare SELECT (the floor)", "select 1", lambda i: ()),
        ]
        for label, statement, arguments in parts:
            _timed(conn, label, statement, arguments, calls)
        conn.rollback()
    print("  again, each call its own committed transaction:")
    with psycopg.connect(libpq_url(db.owner_url), autocommit=True) as conn:
        conn.execute(f"SET ROLE {APP_ROLE}")
        # The parts find the clinic set, as the whole's caller check sets it; each call is
        # a transaction of its own here, so the setting is the session's.
        conn.execute("select set_config('app.tenant_id', %s, false)", (str(tenant),))

        def committed(i: int) -> tuple[Any, ...]:
            return (
                *caller, None, None, slots[3 * calls + i], patients[(calls + i) % len(patients)],
                "consultation", "phone", None, None, None, None, True,
                [uuid.uuid4() for _ in range(4)], "bench", "127.0.0.1", "bench", now,
            )  # fmt: skip

        parts[0] = (parts[0][0], hot._BOOK, committed)  # the rolled-back run's slots are free
        for label, statement, arguments in parts:
            _timed(conn, label, statement, arguments, calls)


def _timed(
    conn: psycopg.Connection[Any],
    label: str,
    statement: str,
    arguments: Callable[[int], tuple[Any, ...]],
    calls: int,
) -> None:
    pid = conn.info.backend_pid
    cpu, wall = backend_cpu(pid), time.perf_counter()
    for i in range(calls):
        conn.execute(statement, arguments(i))
    cpu, wall = backend_cpu(pid) - cpu, time.perf_counter() - wall
    print(
        f"  {label:<34} PostgreSQL CPU {cpu / calls * 1000:6.3f} ms   "
        f"wall {wall / calls * 1000:6.3f} ms per call"
    )
