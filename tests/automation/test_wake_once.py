"""The wake-up a due row sends (migration 0030): one per clinic backlog, not one per row.

A NOTIFY serialises the commits of every notifying transaction, so a row whose clinic
already has a free due row in the same queue sends none; the worker that row woke finds
the new one too. Notifications are read on a LISTEN connection of the test's own; other
tests' clinics share the database, so only this clinic's are counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text

from opdesk.automation.worker import WORK_CHANNEL
from opdesk.context import utc_now
from opdesk.db import Database, libpq_url
from opdesk.security.crypto import FieldCipher
from tests.factories import clinic_session, make_tenant, unaudited
from tests.factories.automation import make_event, make_message


class Listener:
    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn

    def wakes(self, tenant_id: uuid.UUID) -> int:
        """How many wake-ups for this clinic arrived since the last look."""
        seen = self.conn.notifies(timeout=0.3)
        return sum(1 for n in seen if n.channel == WORK_CHANNEL and n.payload == str(tenant_id))


@pytest.fixture
def listener(db: Database) -> Iterator[Listener]:
    with psycopg.connect(libpq_url(db.owner_url), autocommit=True) as conn:
        conn.execute(f"LISTEN {WORK_CHANNEL}")
        yield Listener(conn)


def _put_off(db: Database, tenant_id: uuid.UUID, table: str) -> None:
    """What a worker's failed try does to the clinic's due rows: due again in an hour."""
    with clinic_session(db, tenant_id) as session:
        unaudited(session)
        later = "update {} set scheduled_for = now() + interval '1 hour' where status = 'pending'"
        session.execute(text(later.format(table)))


def test_a_due_event_wakes_the_workers_unless_its_clinic_has_one_waiting(
    db: Database, listener: Listener
) -> None:
    tenant = make_tenant(db)
    make_event(db, tenant.id)
    assert listener.wakes(tenant.id) == 1
    make_event(db, tenant.id)  # the first is still waiting: a worker is on its way
    make_event(db, tenant.id)
    assert listener.wakes(tenant.id) == 0
    _put_off(db, tenant.id, "automation_events")
    make_event(db, tenant.id)  # nothing waits: this one wakes
    assert listener.wakes(tenant.id) == 1


def test_a_row_due_later_or_another_clinic_s_row_does_not_stand_for_a_wake_up(
    db: Database, listener: Listener
) -> None:
    tenant, other = make_tenant(db), make_tenant(db)
    make_event(db, tenant.id, when=utc_now() + timedelta(hours=1))
    assert listener.wakes(tenant.id) == 0  # not due: the worker's timer is for it
    make_event(db, other.id)
    assert listener.wakes(other.id) == 1
    make_event(db, tenant.id)  # the later row and the other clinic's wake nobody for it
    assert listener.wakes(tenant.id) == 1


def test_a_due_message_wakes_the_workers_once_per_backlog_too(
    db: Database, cipher: FieldCipher, listener: Listener
) -> None:
    tenant = make_tenant(db)
    make_message(db, cipher, tenant.id)
    assert listener.wakes(tenant.id) == 1
    make_message(db, cipher, tenant.id)
    assert listener.wakes(tenant.id) == 0
    _put_off(db, tenant.id, "notifications_outbox")
    make_message(db, cipher, tenant.id)
    assert listener.wakes(tenant.id) == 1
