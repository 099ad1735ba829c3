"""Every connection busy, a statement past its time, a backend killed mid-transaction:
each answered 503 with ``Retry-After`` in bounded time, nothing half-written, and the
connections usable afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.patients.models import Patient
from opdesk.security.crypto import StaticKeyring
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    clinic_session,
    ctx_for,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    unaudited,
)


@contextmanager
def app_on(
    db: Database, settings: Settings, keyring: StaticKeyring, **pool: Any
) -> Iterator[tuple[TestClient, Database]]:
    """An app on the test database through a pool of its own (``pool``: its settings)."""
    own = Database(db.owner_url, db.app_url, **pool)
    try:
        with TestClient(create_app(settings, database=own, keyring=keyring)) as client:
            yield client, own
    finally:
        own.dispose()


def desk(db: Database, ident: Any) -> tuple[Any, dict[str, str]]:
    tenant = make_tenant(db, "Fault Clinic")
    return tenant, bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def test_every_connection_busy_answers_503_after_the_bounded_wait(
    db: Database, ident: Any, settings: Settings, keyring: StaticKeyring
) -> None:
    _tenant, headers = desk(db, ident)
    with app_on(db, settings, keyring, pool_size=1, pool_wait_seconds=0.5) as (client, own):
        assert client.get("/api/v1/patients?q=a", headers=headers).status_code == 200
        held = own.app_engine.connect()  # the pool's only connection, taken
        try:
            started = time.monotonic()
            busy = client.get("/api/v1/patients?q=a", headers=headers)
            waited = time.monotonic() - started
        finally:
            held.close()
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "2"
        assert busy.json()["fault"] == "busy"
        assert "busy" in busy.json()["detail"]
        assert 0.5 <= waited < 3
        # The connection given back, the next request is served.
        assert client.get("/api/v1/patients?q=a", headers=headers).status_code == 200


@contextmanager
def row_locked(db: Database, tenant_id: Any, patient_id: Any) -> Iterator[None]:
    """Another transaction holds the patient's row lock until the block ends."""
    with clinic_session(db, tenant_id) as session:
        unaudited(session)
        session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update()).one()
        yield


def test_a_statement_past_the_timeout_is_503_and_its_connection_serves_the_next(
    db: Database,
    ident: Any,
    settings: Settings,
    keyring: StaticKeyring,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant, headers = desk(db, ident)
    patient = make_patient(db, ident, tenant)
    change = {"city": "Nashik"}
    pool = {"pool_size": 1, "statement_timeout_seconds": 0.5}
    caplog.set_level(logging.WARNING)
    with app_on(db, settings, keyring, **pool) as (client, _own):
        with row_locked(db, tenant.id, patient.id):
            started = time.monotonic()
            slow = client.patch(f"/api/v1/patients/{patient.id}", json=change, headers=headers)
            waited = time.monotonic() - started
        assert slow.status_code == 503, slow.text
        assert slow.headers["retry-after"] == "2"
        assert slow.json()["fault"] == "slow"
        assert "Nothing was saved" in slow.json()["detail"]
        assert 0.5 <= waited < 5
        logged = [r for r in caplog.records if "statement timeout" in r.getMessage()]
        assert len(logged) == 1
        assert getattr(logged[0], "route", None) == "/api/v1/patients/{patient_id}"
        # The same (only) connection serves the next request, and the change goes in.
        again = client.patch(f"/api/v1/patients/{patient.id}", json=change, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["city"] == "Nashik"


def test_a_backend_killed_mid_transaction_leaves_no_partial_write(db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Killed Clinic")
    ctx = ctx_for(tenant.id)
    with pytest.raises(OperationalError), transaction(db, ctx) as session:
        unaudited(session)
        session.execute(text("update tenants set name = 'Renamed' where id = :t"), {"t": tenant.id})
        backend = session.execute(text("select pg_backend_pid()")).scalar_one()
        with db.owner_engine.connect() as owner:
            owner.execute(text("select pg_terminate_backend(:p)"), {"p": backend})
    with clinic_session(db, tenant.id) as session:
        name = session.execute(text("select name from tenants where id = :t"), {"t": tenant.id})
        assert name.scalar_one() == "Killed Clinic"


def test_a_request_whose_backend_is_killed_is_503_and_writes_nothing(
    db: Database, ident: Any, settings: Settings, keyring: StaticKeyring
) -> None:
    """The desk saves a patient's city; the database ends that connection while the
    update waits for a row lock: the answer is 503, and the row is as it was.
    """
    tenant, headers = desk(db, ident)
    patient = make_patient(db, ident, tenant)
    answers: list[Any] = []
    with app_on(db, settings, keyring, pool_size=2) as (client, _own):
        with row_locked(db, tenant.id, patient.id):
            saving = threading.Thread(
                target=lambda: answers.append(
                    client.patch(
                        f"/api/v1/patients/{patient.id}", json={"city": "Nashik"}, headers=headers
                    )
                )
            )
            saving.start()
            with db.owner_engine.connect() as owner:
                waiting = None
                for _ in range(100):
                    waiting = owner.execute(
                        text(
                            "select pid from pg_stat_activity where wait_event_type = 'Lock' "
                            "and datname = current_database()"
                        )
                    ).scalar()
                    if waiting:
                        break
                    # pg_stat_activity is read once per transaction: end it to look again.
                    owner.rollback()
                    time.sleep(0.05)
                assert waiting, "the save never came to wait on the locked row"
                owner.execute(text("select pg_terminate_backend(:p)"), {"p": waiting})
            saving.join(timeout=30)
        (answer,) = answers
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        # Lost before its COMMIT: PostgreSQL rolled it back, and the answer says so.
        assert "Nothing was saved" in answer.json()["detail"]
        with clinic_session(db, tenant.id) as session:
            city = session.execute(select(Patient.city).where(Patient.id == patient.id))
            assert city.scalar_one() != "Nashik"
        # The pool replaced the dead connection: the desk carries on.
        saved = client.patch(
            f"/api/v1/patients/{patient.id}", json={"city": "Nashik"}, headers=headers
        )
        assert saved.status_code == 200, saved.text
