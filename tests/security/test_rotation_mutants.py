"""Behaviour of ``opdesk.security.rotation`` that the mutants surviving ``make mutate`` showed
untested.

Each test names, in a comment, the mutmut ids (from ``mutants/survivors.txt``) it kills.
Survivors left alone change nothing anyone can observe: the SQL of ``_tenant_ids`` in
capitals, and ``_stale`` without ``IS NOT NULL`` (``substring(NULL) <> prefix`` is NULL,
which a WHERE drops just the same).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

from opdesk.db import APP_ROLE, Database
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import FileKeyring, new_keyring
from opdesk.security.rotation import count_stale, reencrypt, registered_columns
from tests.factories import clinic_session, make_tenant, unaudited
from tests.security.test_rotation import PROBE, ROWS_PER_TENANT, seed_rows, where
from tests.security.test_rotation import probe_db as probe_db  # a fixture: used by name


@pytest.fixture
def store(tmp_path: Path) -> FileKeyring:
    keyring = FileKeyring(tmp_path / "keyring.json")
    keyring.save(new_keyring())
    return keyring


def test_registered_columns_looks_only_at_the_tables_it_is_given() -> None:
    # x_registered_columns__mutmut_2 (the tables given ignored: every model's columns).
    # test_rotation.py's COLUMNS is worked out at import, before a mutant is switched on.
    assert [c.label for c in registered_columns([PROBE])] == [
        "rotation_probe.secret",
        "rotation_probe.note",
    ]
    assert registered_columns([]) == []


def _as_app_role(dbapi_conn: Any, _record: Any) -> None:
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET ROLE {APP_ROLE}")
    dbapi_conn.commit()


def test_stale_values_are_counted_clinic_by_clinic_where_row_level_security_applies(
    probe_db: Database, store: FileKeyring
) -> None:
    # x_count_stale__mutmut_7 (each clinic's count made without the clinic's setting). The
    # tests' owner is a superuser, which row-level security never applies to; a production
    # owner is not (docs/deploy.md), and FORCE ROW LEVEL SECURITY applies to it. A login
    # dropped to the app role stands for it here: RLS applies, and it may read the tables.
    cipher = FieldCipher(store)
    expected = seed_rows(probe_db, cipher)
    notes = sum(1 for i in range(ROWS_PER_TENANT) if i % 5) * 2
    store.add_active_key()
    under_rls = Database(probe_db.owner_url)
    event.listen(under_rls.owner_engine, "connect", _as_app_role)
    try:
        assert count_stale(under_rls, cipher, registered_columns([PROBE])) == (
            len(expected) + notes
        )
    finally:
        under_rls.dispose()


def test_a_rotation_given_no_batch_size_seals_500_rows_per_transaction(
    probe_db: Database, store: FileKeyring
) -> None:
    # x_reencrypt__mutmut_1 (the default batch 501 rows): 501 stale values of one column
    # take two batches, 500 and then 1.
    cipher = FieldCipher(store)
    tenant_id = make_tenant(probe_db, "Batch Clinic").id
    rows = []
    for _ in range(501):
        row_id = uuid.uuid4()
        sealed = cipher.encrypt("x", **where(tenant_id, "secret", row_id))
        rows.append({"tenant_id": tenant_id, "id": row_id, "secret": sealed, "note": None})
    with clinic_session(probe_db, tenant_id) as session:
        unaudited(session)  # the probe table is the test's own: no service writes it
        session.execute(insert(PROBE), rows)
    store.add_active_key()
    seen: list[int] = []
    done = reencrypt(
        probe_db,
        cipher,
        columns=registered_columns([PROBE])[:1],
        after_batch=lambda progress: seen.append(progress.rows),
    )
    assert (done.rows, done.batches, seen) == (501, 2, [500, 501])
