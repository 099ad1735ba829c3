"""Backup and restore (issue 15): time, archive size and memory, for two installations.

Each installation gets a database of its own on the bench's server (so the archive holds
exactly it, whatever else the bench database holds) and a data folder of its own (its
keys, its documents). Then:

* ``make_backup`` (as ``opdesk backup`` runs it) is timed and the archive's size printed;
* ``restore`` (as ``opdesk restore`` runs it) is timed into a new, empty database on the
  same server and a new, empty data folder, and its self-check printed: tables, rows,
  documents, audit chains verified, values decrypted; any problem fails the bench.

The two installations:

* **the demo clinic**, built by ``opdesk demo`` run as a subprocess against its database
  (staff, patients, signed consents with their PDFs, a calendar, consultations, bills, 90
  days of reports);
* **a big clinic**: 100,000 patients loaded as ``bench.patient_search`` loads them (real
  encrypted phones, blind indexes, search keys), and a year of ~1,000,000 appointments
  with their visits, diagnoses, prescriptions, diet plans, invoices, payments, refunds and
  ledger rows, written by ``bench.reports``'s writers (100 doctors x 365 days x 28 slots).
  Those writers go straight to the tables, so this clinic has no audit events for that
  history and no documents, and its visits carry no note text: a real clinic of that size
  has a larger archive (the audit trail especially).

The split of each run is read by timing the steps ``make_backup`` and ``restore`` call
(their module functions are wrapped for the run, nothing else changes): the manifest's row
counts, ``pg_dump`` and the sealing (tar, SHA-256, AES-GCM, fsync); unsealing into the
staging folder, ``pg_restore`` and the self-check's parts. The bench process's peak RSS is
read from ``VmHWM``, reset before each backup and restore to give each its own peak.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import URL, text

import opdesk.ops.backup as backup_module
import opdesk.ops.restore as restore_module
from bench.patient_search import load as load_patients
from bench.reports import IST, PATIENTS, Shape, _clinic, write_history
from opdesk.config import Settings
from opdesk.db import Database, drop_database, ensure_database
from opdesk.identity.service import Identity
from opdesk.migrate import upgrade
from opdesk.ops.backup import BackupMade, make_backup
from opdesk.ops.restore import RestoreReport, restore
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import load_keyring

BIG_PATIENTS = 100_000
# The year of bench/reports.py: 100 doctors x 365 days x 28 quarter-hour slots, 2 % empty.
YEAR_DAYS, YEAR_SLOTS, YEAR_MINUTES, YEAR_OPENS, YEAR_EMPTY = 365, 28, 15, 9, 0.02
MB = 1e6  # as `opdesk backup` prints sizes

BACKUP_STEPS = ("_dump_database", "table_counts")
RESTORE_STEPS = (
    "_unseal",
    "_restore_database",
    "check_restored",
    "table_counts",
    "verify_all",
    "_decrypt_sample",
)


# ------------------------------------------------------------------ measuring


@contextmanager
def timed_steps(module: ModuleType, names: tuple[str, ...]) -> Iterator[dict[str, float]]:
    """Seconds spent in each of ``module``'s functions ``names`` while the block runs.

    The functions are looked up as module globals when called, so wrapping the module's
    attribute times every call made from inside the module too.
    """
    spent = dict.fromkeys(names, 0.0)
    originals = {name: getattr(module, name) for name in names}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return timed

    for name, fn in originals.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


class PeakRss:
    """The process's peak RSS, overall and per phase (``VmHWM``, reset through clear_refs)."""

    def __init__(self) -> None:
        self.overall = 0.0

    @staticmethod
    def _hwm_mib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    @contextmanager
    def phase(self) -> Iterator[list[float]]:
        """Yields a list that holds the phase's peak (MiB) once the block ends."""
        peak: list[float] = []
        self.overall = max(self.overall, self._hwm_mib())
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
            reset = True
        except OSError:
            reset = False
        try:
            yield peak
        finally:
            now = self._hwm_mib()
            self.overall = max(self.overall, now)
            peak.append(now if reset else float("nan"))

    def final(self) -> float:
        return max(self.overall, self._hwm_mib())


def _line(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:<46} {seconds:8.2f} s{'   ' + note if note else ''}")


def _size(db: Database) -> int:
    with db.owner_engine.connect() as conn:
        return int(conn.execute(text("select pg_database_size(current_database())")).scalar_one())


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ------------------------------------------------------------------ databases


class Scratch:
    """Databases made on the bench's server for this run, dropped at the end."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.server: URL = db.owner_url.set(database="postgres")
        self._run = uuid.uuid4().hex[:6]
        self._made: list[Database] = []

    def new(self, label: str) -> Database:
        name = f"opdesk_bench_{self._run}_{label}"
        ensure_database(self.server, name)
        app = self._db.app_url.set(database=name) if self._db.app_url is not None else None
        made = Database(self._db.owner_url.set(database=name), app)
        self._made.append(made)
        return made

    def drop(self, db: Database) -> None:
        db.dispose()
        assert db.owner_url.database is not None
        drop_database(self.server, db.owner_url.database)
        self._made.remove(db)

    def drop_all(self) -> None:
        for db in list(self._made):
            self.drop(db)


def _settings(data_dir: Path) -> Settings:
    return Settings(_env_file=None, env="dev", data_dir=data_dir, fast_password_hashing=True)


# ------------------------------------------------------------------ the two installations


def build_demo(db: Database, data_dir: Path) -> None:
    """``opdesk demo`` against ``db``, with ``data_dir`` as its data folder."""
    env = dict(os.environ)
    for name in ("OPDESK_APP_DATABASE_URL", "OPDESK_BACKUP_DIR", "OPDESK_ENV"):
        env.pop(name, None)
    env["OPDESK_DATABASE_URL"] = db.owner_url.render_as_string(hide_password=False)
    env["OPDESK_DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # our own interpreter and command, no shell
        [sys.executable, "-m", "opdesk", "demo"],
        cwd=data_dir,  # no stray .env is read
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"opdesk demo failed:\n{done.stdout}\n{done.stderr}")
    for line in done.stdout.splitlines():
        if line.startswith(("registered", "recorded", "made", "signed", "issued")):
            print(f"    opdesk demo: {line}")


def build_big(db: Database, data_dir: Path) -> dict[str, int]:
    """100,000 patients and a year of ~1,000,000 appointments; rows written per table."""
    upgrade(db.owner_engine)
    settings = _settings(data_dir)
    cipher = FieldCipher(load_keyring(settings))
    ident = Identity.create(settings, cipher)
    started = time.perf_counter()
    # bench.reports makes the clinic with its 20,000 patients; the rest follow them.
    clinic = _clinic(db, ident, cipher, "backup")
    load_patients(db, cipher, clinic.tenant_id, PATIENTS + 1, BIG_PATIENTS + 1)
    print(
        f"  clinic made, {BIG_PATIENTS:,} patients loaded in {time.perf_counter() - started:.0f} s"
    )
    yesterday = datetime.now(UTC).astimezone(IST).date() - timedelta(days=1)
    shape = Shape(
        yesterday - timedelta(days=YEAR_DAYS - 1),
        YEAR_DAYS,
        YEAR_SLOTS,
        YEAR_MINUTES,
        YEAR_OPENS,
        empty=YEAR_EMPTY,
    )
    started = time.perf_counter()
    written = write_history(db, clinic, shape)
    print(f"  a year written in {time.perf_counter() - started:.0f} s")
    print("    " + ", ".join(f"{name} {count:,}" for name, count in written.items()))
    seal_placeholder_keys(db, cipher, clinic.tenant_id)
    return written


def seal_placeholder_keys(db: Database, cipher: FieldCipher, tenant_id: uuid.UUID) -> None:
    """Give the signing key ``bench.reports`` writes (a ``\\x00`` placeholder) a real key.

    The restore's self-check decrypts a sample of every encrypted column and (rightly)
    reports a value that does not decrypt, so the placeholder would fail the restore.
    """
    with db.owner_engine.begin() as conn:
        placeholders = conn.execute(
            text(
                "select id from signing_keys "
                "where tenant_id = :t and private_key_encrypted = '\\x00'::bytea"
            ),
            {"t": tenant_id},
        ).scalars()
        for key_id in list(placeholders):
            private = Ed25519PrivateKey.generate()
            sealed = cipher.encrypt(
                private.private_bytes_raw(),
                tenant_id=tenant_id,
                table="signing_keys",
                column="private_key_encrypted",
                row_id=key_id,
            )
            conn.execute(
                text(
                    "update signing_keys set public_key = :public, "
                    "private_key_encrypted = :sealed where tenant_id = :t and id = :id"
                ),
                {
                    "public": private.public_key().public_bytes_raw(),
                    "sealed": sealed,
                    "t": tenant_id,
                    "id": key_id,
                },
            )


# ------------------------------------------------------------------ backup, then restore


def backup_and_restore(
    scratch: Scratch, source: Database, source_dir: Path, work: Path, rss: PeakRss
) -> None:
    settings = _settings(source_dir)
    keys = load_keyring(settings)
    size = _size(source)
    print(f"  database size (pg_database_size)               {size / MB:10.1f} MB")

    with timed_steps(backup_module, BACKUP_STEPS) as steps, rss.phase() as peak:
        made: BackupMade = make_backup(
            source,
            keys.current(),
            data_dir=source_dir,
            to_dir=work / "backups",
            bin_dir=settings.pg_bin_dir,
        )
    _line(
        "backup (make_backup)",
        made.seconds,
        f"archive {made.bytes / MB:.1f} MB ({made.bytes / size:.0%} of the database); "
        f"{made.tables} tables, {made.rows:,} rows, {made.files} documents",
    )
    dump = steps["_dump_database"]
    _line("  row counts for the manifest", steps["table_counts"])
    _line("  pg_dump (custom, compress 6; + snapshot)", dump - steps["table_counts"])
    _line("  sealing: tar, SHA-256, AES-GCM, fsync", made.seconds - dump)
    print(f"    bench process peak RSS during the backup: {peak[0]:.0f} MiB")

    target = scratch.new("restored")
    target_dir = work / "restored"
    target_dir.mkdir()
    with timed_steps(restore_module, RESTORE_STEPS) as steps, rss.phase() as peak:
        report: RestoreReport = restore(
            made.path,
            target,
            FieldCipher(keys),
            data_dir=target_dir,
            bin_dir=settings.pg_bin_dir,
        )
    _line(
        "restore (into an empty database and folder)",
        report.seconds,
        f"{report.tables} tables, {report.rows:,} rows, {report.files} documents",
    )
    check = steps["check_restored"]
    _line("  unseal into staging (AES-GCM, SHA-256)", steps["_unseal"])
    _line("  pg_restore (one transaction)", steps["_restore_database"])
    _line("  self-check: row counts", steps["table_counts"])
    _line(f"  self-check: {report.clinics_verified} audit chains verified", steps["verify_all"])
    _line(f"  self-check: {report.decrypted} values decrypted", steps["_decrypt_sample"])
    others = check - steps["table_counts"] - steps["verify_all"] - steps["_decrypt_sample"]
    _line("  self-check: document checksums, chain heads", others)
    rest = report.seconds - steps["_unseal"] - steps["_restore_database"] - check
    _line("  the rest (target checks, moving files)", rest)
    print(f"    bench process peak RSS during the restore: {peak[0]:.0f} MiB")
    print(f"  restored database size                          {_size(target) / MB:10.1f} MB")
    if report.rows != made.rows or report.files != made.files:
        report.problems.append(
            f"restored {report.rows} rows and {report.files} documents, the backup "
            f"counted {made.rows} and {made.files}"
        )
    if report.problems:
        print("  PROBLEMS:")
        for problem in report.problems:
            print(f"    {problem}")
        raise RuntimeError(f"restore reported {len(report.problems)} problem(s)")
    print("  problems: none")
    scratch.drop(target)
    made.path.unlink()


def _server_line(db: Database) -> str:
    with db.owner_engine.connect() as conn:
        version = conn.execute(text("show server_version")).scalar_one()
        buffers = conn.execute(text("show shared_buffers")).scalar_one()
    return f"PostgreSQL {version}, shared_buffers {buffers}"


def run(db: Database, data_dir: Path, **_: Any) -> None:
    rss = PeakRss()
    started = time.perf_counter()
    print(f"\nbackup and restore (issue 15); {_server_line(db)}")
    print(f"  load average at the start: {_load()}")
    scratch = Scratch(db)
    try:
        print("the demo clinic (opdesk demo)")
        demo = scratch.new("demo")
        began = time.perf_counter()
        build_demo(demo, data_dir / "demo")
        print(f"  built in {time.perf_counter() - began:.0f} s")
        backup_and_restore(scratch, demo, data_dir / "demo", data_dir / "demo-work", rss)
        scratch.drop(demo)

        print(f"a big clinic: {BIG_PATIENTS:,} patients, a year of ~1,000,000 appointments")
        big = scratch.new("big")
        build_big(big, data_dir / "big")
        print(f"  load average before the backup: {_load()}")
        backup_and_restore(scratch, big, data_dir / "big", data_dir / "big-work", rss)
        scratch.drop(big)
    finally:
        scratch.drop_all()
    print(f"  bench process peak RSS (whole run): {rss.final():.0f} MiB")
    print(f"  load average at the end: {_load()}")
    print(f"  backup bench took {(time.perf_counter() - started) / 60:.1f} min")
