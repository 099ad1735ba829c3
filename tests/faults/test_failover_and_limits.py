"""Issue 17, item 1, the database's other ways of being unavailable: read-only after a
failover to a replica, and every connection slot taken. Both are made for real on a
database of the test's own (``ALTER DATABASE``), and both are 503 "unavailable", never
500, with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select, text

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.patients.models import Patient
from opdesk.security.crypto import StaticKeyring
from tests.factories import clinic_session, make_patient
from tests.faults.test_pool_and_statements import app_on, desk

pytestmark = pytest.mark.xdist_group("faults")


@contextmanager
def database_set(db: Database, setting: str, undo: str) -> Iterator[None]:
    """``ALTER DATABASE <this> <setting>`` for the block (new connections see it)."""
    name = db.owner_url.database
    with db.owner_engine.connect() as owner:
        owner.execute(text(f'alter database "{name}" {setting}'))
        owner.commit()
    try:
        yield
    finally:
        with db.owner_engine.connect() as owner:
            owner.execute(text(f'alter database "{name}" {undo}'))
            owner.commit()


def test_a_read_only_database_serves_reads_and_refuses_writes_with_503(
    fresh_database: Database, ident: Any, settings: Settings, keyring: StaticKeyring
) -> None:
    """As after a failover that left OPDesk on a replica: reads go on, writes are
    refused in words that say nothing was saved.
    """
    db = fresh_database
    tenant, headers = desk(db, ident)
    patient = make_patient(db, ident, tenant)
    readonly = ("set default_transaction_read_only = on", "reset default_transaction_read_only")
    with database_set(db, *readonly), app_on(db, settings, keyring) as (client, _own):
        read = client.get(f"/api/v1/patients/{patient.id}", headers=headers)
        assert read.status_code == 200, read.text
        write = client.patch(
            f"/api/v1/patients/{patient.id}", json={"city": "Nashik"}, headers=headers
        )
        assert write.status_code == 503, write.text
        assert write.headers["retry-after"] == "5"
        assert write.json()["fault"] == "unavailable"
        assert "Nothing was saved" in write.json()["detail"]
    with clinic_session(db, tenant.id) as session:
        city = session.execute(select(Patient.city).where(Patient.id == patient.id))
        assert city.scalar_one() != "Nashik"


def test_no_connection_slot_left_is_503_not_500(
    fresh_database: Database, ident: Any, settings: Settings, keyring: StaticKeyring
) -> None:
    """PostgreSQL's "too many connections" (53300), made by allowing none at all."""
    db = fresh_database
    _tenant, headers = desk(db, ident)
    with (
        database_set(db, "connection limit 0", "connection limit -1"),
        app_on(db, settings, keyring) as (client, own),
    ):
        own.app_engine.dispose()  # no connection opened before the limit
        answer = client.get("/api/v1/patients?q=a", headers=headers)
        assert answer.status_code == 503, answer.text
        assert answer.json()["fault"] == "unavailable"
        assert answer.headers["retry-after"] == "5"
