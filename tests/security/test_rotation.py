"""``keys rotate``: every encrypted column moves to the new key, resumable after a crash."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Column, LargeBinary, MetaData, Table, Uuid, insert, select, text

from opdesk.db import Database
from opdesk.migrations.helpers import CURRENT_TENANT
from opdesk.security.crypto import FieldCipher, key_id_of
from opdesk.security.keys import FileKeyring, new_keyring
from opdesk.security.rotation import (
    EncryptedColumn,
    RotationProgress,
    count_stale,
    reencrypt,
    registered_columns,
)
from tests.factories import Where, clinic_session, make_tenant, unaudited

PROBE = Table(
    "rotation_probe",
    MetaData(),
    Column("tenant_id", Uuid, primary_key=True),
    Column("id", Uuid, primary_key=True),
    Column("secret", LargeBinary, info={"encrypted": True}),
    Column("note", LargeBinary, info={"encrypted": True}),
)
COLUMNS = registered_columns([PROBE])
ROWS_PER_TENANT = 23


class Crash(Exception):
    pass


@pytest.fixture
def probe_db(fresh_database: Database) -> Database:
    """A fresh database with one extra tenant-scoped table holding two encrypted columns."""
    with fresh_database.owner_engine.begin() as conn:
        PROBE.create(conn)
        conn.execute(text("ALTER TABLE rotation_probe ENABLE ROW LEVEL SECURITY"))
        conn.execute(text("ALTER TABLE rotation_probe FORCE ROW LEVEL SECURITY"))
        conn.execute(
            text(
                f"CREATE POLICY t ON rotation_probe USING (tenant_id = {CURRENT_TENANT}) "
                f"WITH CHECK (tenant_id = {CURRENT_TENANT})"
            )
        )
        conn.execute(text("GRANT SELECT, INSERT, UPDATE ON rotation_probe TO opdesk_app"))
    return fresh_database


def where(tenant_id: uuid.UUID, column: str, row_id: uuid.UUID) -> Where:
    return Where(tenant_id=tenant_id, table="rotation_probe", column=column, row_id=row_id)


def seed_rows(db: Database, cipher: FieldCipher) -> dict[tuple[uuid.UUID, uuid.UUID], str]:
    expected = {}
    for name in ("Asha", "Bharat"):
        tenant_id = make_tenant(db, name).id
        with clinic_session(db, tenant_id) as session:
            unaudited(session)  # the probe table is the test's own: no service writes it
            for i in range(ROWS_PER_TENANT):
                row_id = uuid.uuid4()
                plain = f"{name} secret {i} — मधुमेह"
                note = (
                    None if i % 5 == 0 else cipher.encrypt("n", **where(tenant_id, "note", row_id))
                )
                session.execute(
                    insert(PROBE).values(
                        tenant_id=tenant_id,
                        id=row_id,
                        secret=cipher.encrypt(plain, **where(tenant_id, "secret", row_id)),
                        note=note,
                    )
                )
                expected[(tenant_id, row_id)] = plain
    return expected


def read_all(
    db: Database, cipher: FieldCipher, expected: dict[tuple[uuid.UUID, uuid.UUID], str]
) -> set[int]:
    """Decrypt every row (asserting the plaintext) and return the key ids seen."""
    kids = set()
    for (tenant_id, row_id), plain in expected.items():
        with clinic_session(db, tenant_id) as session:
            sealed = session.execute(
                select(PROBE.c.secret).where(PROBE.c.id == row_id)
            ).scalar_one()
        assert cipher.decrypt_str(sealed, **where(tenant_id, "secret", row_id)) == plain
        kids.add(key_id_of(sealed))
    return kids


def test_registered_columns_finds_marked_columns_only() -> None:
    assert [c.label for c in COLUMNS] == ["rotation_probe.secret", "rotation_probe.note"]
    assert all(isinstance(c, EncryptedColumn) for c in COLUMNS)


@pytest.fixture
def store(tmp_path: Path) -> FileKeyring:
    keyring = FileKeyring(tmp_path / "keyring.json")
    keyring.save(new_keyring())
    return keyring


def test_rotation_reencrypts_everything_and_resumes_after_a_crash(
    probe_db: Database, store: FileKeyring
) -> None:
    cipher = FieldCipher(store)
    expected = seed_rows(probe_db, cipher)
    notes = sum(1 for i in range(ROWS_PER_TENANT) if i % 5) * 2
    assert count_stale(probe_db, cipher, COLUMNS) == 0

    assert store.add_active_key() == 2
    assert count_stale(probe_db, cipher, COLUMNS) == len(expected) + notes

    def crash_after_two_batches(progress: RotationProgress) -> None:
        if progress.batches == 2:
            raise Crash

    with pytest.raises(Crash):
        reencrypt(
            probe_db, cipher, columns=COLUMNS, batch_size=7, after_batch=crash_after_two_batches
        )

    # Mid-rotation: both keys in use, every row still readable.
    assert count_stale(probe_db, cipher, COLUMNS) == len(expected) + notes - 14
    assert read_all(probe_db, cipher, expected) == {1, 2}

    resumed = reencrypt(probe_db, cipher, columns=COLUMNS, batch_size=7)
    assert resumed.rows == len(expected) + notes - 14
    assert count_stale(probe_db, cipher, COLUMNS) == 0
    assert read_all(probe_db, cipher, expected) == {2}

    # Running again finds nothing left to do.
    assert reencrypt(probe_db, cipher, columns=COLUMNS).rows == 0


def test_rotation_stops_on_a_tampered_row_without_touching_it(
    probe_db: Database, store: FileKeyring
) -> None:
    cipher = FieldCipher(store)
    expected = seed_rows(probe_db, cipher)
    (tenant_a, row_a), (_, row_b) = list(expected)[:2]
    # Copy row B's ciphertext into row A (an attacker swapping records).
    with probe_db.owner_engine.begin() as conn:
        conn.execute(
            text(
                "update rotation_probe set secret = "
                "(select secret from rotation_probe where id = :b) where id = :a"
            ),
            {"a": row_a, "b": row_b},
        )
    store.add_active_key()
    from opdesk.security.crypto import DecryptionError

    with pytest.raises(DecryptionError, match="failed authentication"):
        reencrypt(probe_db, cipher, columns=COLUMNS, batch_size=100)
    with clinic_session(probe_db, tenant_a) as session:
        still = session.execute(select(PROBE.c.secret).where(PROBE.c.id == row_a)).scalar_one()
    assert key_id_of(still) == 1
