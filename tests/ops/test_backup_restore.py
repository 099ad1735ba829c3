"""Backup and restore, proven the way an operator would need them after losing a machine.

The demo clinic is made by ``opdesk demo``; ``opdesk keys export`` and ``opdesk backup`` run
as processes; then the database, the documents and the keys are destroyed, the keys are
imported from the sealed file and ``opdesk restore`` brings everything back. Every table's
contents must hash equal to before, every document decrypt to the same bytes, the audit
chains verify, and a demo patient signs in through a real ``opdesk serve``.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from opdesk.db import Database, drop_database, ensure_database
from opdesk.documents.models import Document
from opdesk.documents.service import content
from opdesk.documents.storage import LocalStorage
from opdesk.ops.backup import SUFFIX, to_keep
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import KEYRING_FILE, FileKeyring, new_keyring
from tests.conftest import PgServer
from tests.factories.cli import opdesk
from tests.factories.serve import patient_signs_in, serving

PASSPHRASE = "mango monsoon ledger pillow"


@dataclass
class Installation:
    db: Database
    name: str
    data_dir: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return opdesk(
            *args, database=self.db, data_dir=self.data_dir, OPDESK_KEYS_PASSPHRASE=PASSPHRASE
        )


@pytest.fixture(scope="module")
def demo(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """A demo installation of its own (made once: ``opdesk demo`` takes a while)."""
    name = f"opdesk_backup_{uuid.uuid4().hex[:8]}"
    ensure_database(pg.server_url, name)
    place = Installation(pg.database(name), name, tmp_path_factory.mktemp("install"))
    assert place.run("migrate").returncode == 0
    made = place.run("demo")
    assert made.returncode == 0, made.stderr
    yield place
    place.db.dispose()
    drop_database(pg.server_url, name)


def contents(db: Database) -> dict[str, str]:
    """Each table's whole contents as one hash (rows in a fixed order)."""
    with db.owner_engine.connect() as conn:
        names = conn.execute(
            text("select tablename from pg_tables where schemaname = 'public' order by 1")
        ).scalars()
        return {
            name: conn.execute(
                text(
                    f"select count(*) || ':' || coalesce(md5(string_agg(t::text, '|' "
                    f"order by t::text)), '') from public.\"{name}\" t"
                )
            ).scalar_one()
            for name in list(names)
        }


def documents(db: Database, data_dir: Path) -> dict[uuid.UUID, bytes]:
    """Every document as a download gives it: its file, decrypted."""
    cipher = FieldCipher(FileKeyring(data_dir / "keys" / KEYRING_FILE))
    storage = LocalStorage(data_dir / "files")
    with Session(db.owner_engine) as session:
        return {
            doc.id: content(cipher, storage, doc)
            for doc in session.query(Document).execution_options(include_deleted=True)
        }


def test_a_lost_installation_comes_back_from_its_backup_and_keys(
    demo: Installation, pg: PgServer, tmp_path: Path
) -> None:
    before = contents(demo.db)
    docs_before = documents(demo.db, demo.data_dir)
    assert docs_before, "the demo has documents to bring back"
    assert before["patients"].split(":")[0] != "0"

    exported = demo.run("keys", "export", "--to", str(tmp_path / "keys.json"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "keys.pdf").read_bytes().startswith(b"%PDF")
    made = demo.run("backup", "--to", str(tmp_path / "backups"))
    assert made.returncode == 0, made.stderr
    (archive,) = (tmp_path / "backups").glob(f"*{SUFFIX}")
    assert b"Demo" not in archive.read_bytes()  # sealed: not a name in the clear

    # The machine is lost: database, documents and the key file.
    demo.db.dispose()
    drop_database(pg.server_url, demo.name)
    ensure_database(pg.server_url, demo.name)
    for folder in ("files", "keys"):
        shutil.rmtree(demo.data_dir / folder)

    no_keys = demo.run("restore", str(archive))
    assert no_keys.returncode == 1 and "no keys: put the keys this backup" in no_keys.stderr
    imported = demo.run("keys", "import", str(tmp_path / "keys.json"))
    assert imported.returncode == 0, imported.stderr
    restored = demo.run("restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    assert "audit chains verified" in restored.stdout

    assert contents(demo.db) == before
    assert documents(demo.db, demo.data_dir) == docs_before
    verified = demo.run("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    with (
        serving(demo.db, demo.data_dir, fresh_keys=False) as base,
        httpx.Client(base_url=base, timeout=10) as patient,
    ):
        signed_in = patient_signs_in(base, patient)
        assert signed_in.status_code == 200, signed_in.text
        assert str(signed_in.url).endswith("/me")

    # A second restore onto what is now there is refused, and nothing changes.
    again = demo.run("restore", str(archive))
    assert again.returncode == 1
    assert "is not empty" in again.stderr and "--force" in again.stderr


def test_a_tampered_or_cut_archive_is_refused_before_anything_is_touched(
    demo: Installation, pg: PgServer, tmp_path: Path
) -> None:
    made = demo.run("backup", "--to", str(tmp_path))
    assert made.returncode == 0, made.stderr
    (archive,) = tmp_path.glob(f"*{SUFFIX}")
    raw = bytearray(archive.read_bytes())
    target = Installation(_empty(pg), "", tmp_path / "target")
    shutil.copytree(demo.data_dir / "keys", target.data_dir / "keys")
    try:
        flipped = tmp_path / "flipped.opdesk-backup"
        raw[len(raw) // 2] ^= 0x20
        flipped.write_bytes(bytes(raw))
        cut = tmp_path / "cut.opdesk-backup"
        cut.write_bytes(archive.read_bytes()[: len(raw) - 1000])
        for bad, reason in ((flipped, "altered or damaged"), (cut, "cut off")):
            done = target.run("restore", str(bad))
            assert done.returncode == 1, done.stdout
            assert reason in done.stderr
            with target.db.owner_engine.connect() as conn:
                assert (
                    conn.execute(
                        text("select count(*) from pg_tables where schemaname = 'public'")
                    ).scalar()
                    == 0
                )
            assert not (target.data_dir / "files").exists()
        # Keys that are not the backup's are named as the likely cause.
        FileKeyring(target.data_dir / "keys" / KEYRING_FILE).save(new_keyring())
        wrong = target.run("restore", str(archive))
        assert wrong.returncode == 1
        assert "not the ones it was sealed with" in wrong.stderr
    finally:
        target.db.dispose()
        drop_database(pg.server_url, target.db.owner_url.database or "")


def _empty(pg: PgServer) -> Database:
    name = f"opdesk_target_{uuid.uuid4().hex[:8]}"
    ensure_database(pg.server_url, name)
    return pg.database(name)


def test_the_rotation_keeps_7_daily_4_weekly_and_12_monthly() -> None:
    start = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)
    made = [start + timedelta(days=n) for n in range(500)]  # one a day for 500 days
    kept = to_keep(made)
    newest = made[-1]
    days = sorted(k for k in kept if newest - k < timedelta(days=7))
    assert days == made[-7:]
    weeks = {k.isocalendar()[:2] for k in kept}
    assert len({m.isocalendar()[:2] for m in made[-28:]} & weeks) >= 4
    months = {(k.year, k.month) for k in kept}
    assert len(months) == 12 and (newest.year, newest.month) in months
    assert len(kept) <= 7 + 4 + 12
    # each kept monthly one is its month's newest
    for k in kept:
        same_month = [m for m in made if (m.year, m.month) == (k.year, k.month)]
        if newest - k > timedelta(days=35):
            assert k == max(same_month)
