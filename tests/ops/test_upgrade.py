"""Upgrading an installation of the previous release loses nothing.

The previous release's own code (a git worktree of its commit, run with this venv's
interpreter and packages) migrates an empty database and makes its demo clinic. What is
there is recorded: every table's rows, the document files, the audit chain heads. Then
this tree's ``opdesk migrate`` upgrades it, and every row, file and chain must still be
there, unchanged; ``opdesk audit verify`` passes, this tree's ``opdesk demo`` refreshes
the clinic, and a demo doctor signs in through the app and reads a demo patient and their
documents (decrypted with the keys the previous release made).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database, drop_database, ensure_database
from opdesk.demo import CREDENTIALS_FILE, DEMO_PATIENT_COUNT, DEMO_PATIENTS, DEMO_SLUG, DEMO_STAFF
from opdesk.migrate import alembic_config, head_revision
from opdesk.security.keys import KEYRING_FILE, FileKeyring
from tests.conftest import PgServer
from tests.factories.cli import opdesk

# The commit of the last release. Move it forward at each release, so this test always
# upgrades from the release before the code under test.
PREVIOUS_RELEASE = "2987fee"

# Columns of the previous release's tables that a migration since PREVIOUS_RELEASE
# rewrites on purpose, by table: left out of the contents comparison (their rows are still
# counted and the other columns compared). Empty: the migrations since 0017 (0018,
# reports) only create tables and add partial indexes to existing ones.
REWRITTEN: Mapping[str, frozenset[str]] = {}

REPO = Path(__file__).resolve().parents[2]
VENDOR = Path("src/opdesk/static/vendor")

pytestmark = pytest.mark.xdist_group("upgrade")


@dataclass(frozen=True)
class Snapshot:
    """What an installation holds: columns (name -> type) and contents of every table,
    the document files under the data folder (sha256), and each clinic's audit chain head.
    """

    columns: dict[str, dict[str, str]]
    contents: dict[str, tuple[int, str]]
    files: dict[str, str]
    heads: dict[str, tuple[int, str]]


@dataclass(frozen=True)
class Upgraded:
    db: Database
    data_dir: Path
    before: Snapshot
    after: Snapshot


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(scope="module")
def worktree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A checkout of PREVIOUS_RELEASE, removed afterwards whatever happens."""
    if _git("cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}").returncode != 0:
        pytest.skip(
            f"the previous release's commit {PREVIOUS_RELEASE} is not in this clone "
            "(a shallow clone?): fetch the history to run the upgrade test"
        )
    if not (REPO / VENDOR).is_dir():
        pytest.skip(f"{VENDOR} is missing: run `make setup` first")
    place = tmp_path_factory.mktemp("previous-release") / "opdesk"
    added = _git("worktree", "add", "--detach", str(place), PREVIOUS_RELEASE)
    assert added.returncode == 0, added.stderr
    try:
        # The npm assets are git-ignored; the previous release pins the same package.json,
        # and its PDFs need the vendored fonts.
        (place / VENDOR).symlink_to(REPO / VENDOR, target_is_directory=True)
        yield place
    finally:
        removed = _git("worktree", "remove", "--force", str(place))
        assert removed.returncode == 0, removed.stderr


@pytest.fixture(scope="module")
def upgraded(
    pg: PgServer, worktree: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upgraded]:
    """The previous release's demo installation, recorded, then upgraded by this tree."""
    name = f"opdesk_upgrade_{uuid.uuid4().hex[:8]}"
    ensure_database(pg.server_url, name)
    db = pg.database(name)
    data_dir = tmp_path_factory.mktemp("install")
    try:
        _build_with_previous_release(worktree, db, data_dir)
        before = snapshot(db, data_dir)
        migrated = opdesk("migrate", database=db, data_dir=data_dir)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        with db.owner_engine.connect() as conn:
            assert _revision(conn) == head_revision()
        yield Upgraded(db, data_dir, before, snapshot(db, data_dir, before.columns))
    finally:
        db.dispose()
        drop_database(pg.server_url, name)


PROBE = "import opdesk, opdesk.migrate as m; print(opdesk.__file__, m.head_revision())"


def _build_with_previous_release(worktree: Path, db: Database, data_dir: Path) -> None:
    """``opdesk migrate`` and ``opdesk demo`` run by the previous release's own code."""
    old_code = {"PYTHONPATH": str(worktree / "src")}
    # Where that interpreter finds opdesk, and the last migration that code knows.
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **old_code},
    )
    where, old_head = probe.stdout.split()
    assert Path(where).is_relative_to(worktree), where

    migrated = opdesk("migrate", database=db, data_dir=data_dir, **old_code)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    made = opdesk("demo", database=db, data_dir=data_dir, **old_code)
    assert made.returncode == 0, made.stdout + made.stderr[-3000:]

    with db.owner_engine.connect() as conn:
        assert _revision(conn) == old_head
        patients = conn.execute(text("select count(*) from patients")).scalar_one()
    assert patients == DEMO_PATIENT_COUNT, "the owner login must see every clinic's rows"
    # This tree must know the revision it upgrades from (no squashed or lost migration).
    known = {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    assert old_head in known, f"{old_head} is not among this tree's migrations"


def _revision(conn: Connection) -> str | None:
    return conn.execute(text("select version_num from alembic_version")).scalar_one_or_none()


# --------------------------------------------------------------------------- recording


def snapshot(
    db: Database, data_dir: Path, columns: dict[str, dict[str, str]] | None = None
) -> Snapshot:
    """The installation as it is; with ``columns``, contents hash those columns only (a
    later migration may add columns; the ones that were there must keep their values).
    """
    with db.owner_engine.connect() as conn:
        found = _columns(conn)
        wanted = columns if columns is not None else found
        contents = {
            table: _contents(conn, table, [c for c in cols if c not in REWRITTEN.get(table, ())])
            for table, cols in wanted.items()
            if table in found
        }
        heads = {
            str(tenant): (seq, str(last))
            for tenant, seq, last in conn.execute(
                text("select tenant_id, last_seq, last_hash from audit_chain_heads")
            )
        }
    files_dir = data_dir / "files"
    files = {
        path.relative_to(files_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(files_dir.rglob("*"))
        if path.is_file()
    }
    return Snapshot(found, contents, files, heads)


def _columns(conn: Connection) -> dict[str, dict[str, str]]:
    """Every table of the public schema (but Alembic's own) with its columns and types."""
    rows = conn.execute(
        text(
            "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "from pg_attribute a join pg_class c on c.oid = a.attrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 "
            "and not a.attisdropped and c.relname <> 'alembic_version' "
            "order by c.relname, a.attnum"
        )
    )
    tables: dict[str, dict[str, str]] = {}
    for table, column, type_ in rows:
        tables.setdefault(table, {})[column] = type_
    return tables


def _contents(conn: Connection, table: str, columns: list[str]) -> tuple[int, str]:
    """Row count and a hash of the rows (these columns, in a fixed order)."""
    quote = conn.dialect.identifier_preparer.quote
    picked = ", ".join(quote(c) for c in columns) or "1"
    count, digest = conn.execute(
        text(
            f"select count(*), coalesce(md5(string_agg(r::text, '|' order by r::text)), '') "
            f"from (select {picked} from public.{quote(table)}) r"
        )
    ).one()
    return int(count), str(digest)


# --------------------------------------------------------------------------- the checks


def test_the_upgrade_keeps_every_row_file_and_audit_chain(upgraded: Upgraded) -> None:
    before, after = upgraded.before, upgraded.after
    assert before.files, "the previous release's demo has document files"
    assert before.heads, "the previous release's demo has an audit trail"

    gone = sorted(before.columns.keys() - after.columns.keys())
    assert gone == [], f"tables lost in the upgrade: {gone}"
    changed = {
        f"{table}.{column}": (type_, after.columns[table].get(column))
        for table, columns in before.columns.items()
        for column, type_ in columns.items()
        if after.columns[table].get(column) != type_
    }
    assert changed == {}, f"columns dropped or retyped (before, after): {changed}"

    differ = {
        table: (before.contents[table], after.contents[table])
        for table in before.contents
        if before.contents[table] != after.contents[table]
    }
    assert differ == {}, f"tables whose rows changed, (count, hash) before and after: {differ}"

    assert after.files == before.files
    assert after.heads == before.heads

    verified = opdesk("audit", "verify", database=upgraded.db, data_dir=upgraded.data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": ok, ") == len(before.heads), verified.stdout


def test_this_release_runs_the_upgraded_demo_and_reads_its_people(upgraded: Upgraded) -> None:
    db, data_dir = upgraded.db, upgraded.data_dir
    refreshed = opdesk("demo", database=db, data_dir=data_dir)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr[-3000:]

    # The refresh finds the previous release's clinic, staff, patients and documents and
    # makes none of them again; it adds this release's report days (one audit event).
    before = upgraded.before
    now = snapshot(db, data_dir, before.columns)
    for table in ("tenants", "users", "patients", "documents", "audit_chain_heads"):
        assert now.contents[table][0] == before.contents[table][0], table
    assert {k: v for k, v in now.files.items() if k in before.files} == before.files
    with db.owner_engine.connect() as conn:
        assert conn.execute(text("select count(*) from report_daily")).scalar_one() > 0
        # The trail goes on from the previous release's head, which is still there.
        for tenant, (seq, last) in before.heads.items():
            kept = conn.execute(
                text("select hash from audit_events where tenant_id = :t and seq = :s"),
                {"t": tenant, "s": seq},
            ).scalar_one()
            assert kept == last and now.heads[tenant][0] >= seq, tenant
    verified = opdesk("audit", "verify", database=db, data_dir=data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # A demo doctor signs in with the password the previous release gave them, and reads a
    # demo patient and their documents through the app (decrypted with the old keys).
    passwords = json.loads((data_dir / CREDENTIALS_FILE).read_text())
    doctor = dict(DEMO_STAFF)["doctor"]
    phone, patient_name = DEMO_PATIENTS[0]
    settings = Settings(env="dev", data_dir=data_dir, _env_file=None)
    app = create_app(settings, database=db, keyring=FileKeyring(data_dir / "keys" / KEYRING_FILE))
    with TestClient(app) as client:
        signed = client.post(
            "/api/v1/auth/sign-in",
            json={
                "clinic": DEMO_SLUG,
                "email": f"doctor@{DEMO_SLUG}.example",
                "password": passwords["doctor"],
            },
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["stage"] == "active", signed.json()
        auth = {"Authorization": f"Bearer {signed.json()['token']}"}
        me = client.get("/api/v1/auth/me", headers=auth)
        assert me.status_code == 200, me.text
        assert (me.json()["role"], me.json()["name"]) == ("doctor", doctor)

        found = client.get("/api/v1/patients", params={"q": phone}, headers=auth)
        assert found.status_code == 200, found.text
        (patient_id,) = {p["id"] for p in found.json() if p["guardianId"] is None}
        patient = client.get(f"/api/v1/patients/{patient_id}", headers=auth).json()
        assert f"{patient['name']['first']} {patient['name']['last']}" == patient_name
        assert patient["phone"] == phone

        documents = client.get(f"/api/v1/patients/{patient_id}/documents", headers=auth)
        assert documents.status_code == 200, documents.text
        assert documents.json(), "the previous release gave the first demo patient documents"
        for doc in documents.json():
            got = client.get(f"/api/v1/documents/{doc['id']}/content", headers=auth)
            assert got.status_code == 200, got.text
            assert got.content.startswith(b"%PDF")
            assert hashlib.sha256(got.content).hexdigest() == doc["checksum"]
