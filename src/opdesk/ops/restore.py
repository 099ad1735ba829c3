"""``opdesk restore``: a sealed backup into an empty database and data folder, then checked.

Nothing touches the target until the whole archive has been opened and checked: it is
unsealed into a staging folder beside the data (every chunk authenticated, its end
included), and the dump and every file must match the manifest. Only then is the dump
restored (one transaction) and the files moved into place. Afterwards the result checks
itself: every table's row count equals the manifest's, each clinic's audit chain verifies
and ends at the head the manifest recorded, and a sample of every encrypted column
decrypts with the keys in use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, text

from opdesk.audit.verify import verify_all
from opdesk.db import CREATE_APP_ROLE, Database, libpq_url
from opdesk.models import load_all_models
from opdesk.ops.backup import (
    DUMP,
    FILES,
    MANIFEST,
    audit_heads,
    pg_tool,
    require_whole_view,
    table_counts,
)
from opdesk.ops.sealed import SealedReader
from opdesk.security.crypto import DecryptionError, FieldCipher
from opdesk.security.rotation import registered_columns

SAMPLE_PER_COLUMN = 5


class RestoreError(RuntimeError):
    """The restore was refused or failed; the message says why and what to do."""


@dataclass
class RestoreReport:
    seconds: float = 0.0
    tables: int = 0
    rows: int = 0
    files: int = 0
    clinics_verified: int = 0
    decrypted: int = 0
    problems: list[str] = field(default_factory=list)


def restore(
    archive: Path,
    db: Database,
    cipher: FieldCipher,
    *,
    data_dir: Path,
    force: bool = False,
    bin_dir: Path | None = None,
) -> RestoreReport:
    """Restore ``archive``; refuses a target holding data unless ``force``."""
    started = time.monotonic()
    files_dir = data_dir / FILES
    _check_target(db, files_dir, force)
    staging = data_dir / f".restore-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True, mode=0o700)
    try:
        manifest = _unseal(archive, cipher, staging)
        if force:
            _clear_database(db)
            _set_aside(files_dir)
        _restore_database(db, staging / DUMP, bin_dir)
        if (staging / FILES).exists():
            files_dir.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / FILES, files_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = check_restored(db, cipher, manifest, files_dir)
    report.seconds = time.monotonic() - started
    return report


def _check_target(db: Database, files_dir: Path, force: bool) -> None:
    with db.owner_engine.connect() as conn:
        require_whole_view(conn)
        if force:
            return
        tables = conn.execute(
            text("select count(*) from pg_tables where schemaname = 'public'")
        ).scalar_one()
    if tables:
        raise RestoreError(
            f"the database {db.owner_url.database!r} is not empty ({tables} tables): restore "
            "into a new, empty database, or add --force to replace what it holds"
        )
    if files_dir.exists() and any(files_dir.iterdir()):
        raise RestoreError(
            f"{files_dir} already holds documents: restore into an empty data folder, or add "
            "--force (the folder is kept aside, never deleted)"
        )


def _unseal(archive: Path, cipher: FieldCipher, staging: Path) -> dict[str, Any]:
    """Unseal into ``staging`` and return the manifest, once every byte matched it."""
    streamed: dict[str, str] = {}
    manifest: dict[str, Any] | None = None
    with archive.open("rb") as source:
        reader = SealedReader(source, cipher.keyring)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name
                if not member.isfile() or not _allowed(name):
                    raise RestoreError(f"the backup holds an unexpected entry {name!r}")
                data = tar.extractfile(member)
                assert data is not None  # a regular file always has a body
                if name == MANIFEST:
                    manifest = json.loads(data.read())
                    continue
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                digest = hashlib.sha256()
                with target.open("wb") as out:
                    while chunk := data.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                streamed[name] = digest.hexdigest()
    if manifest is None:
        raise RestoreError("the backup has no manifest")
    _match_manifest(manifest, streamed)
    return manifest


def _allowed(name: str) -> bool:
    parts = Path(name).parts
    safe = ".." not in parts and not Path(name).is_absolute()
    return safe and (name in (MANIFEST, DUMP) or (len(parts) == 3 and parts[0] == FILES))


def _match_manifest(manifest: dict[str, Any], streamed: dict[str, str]) -> None:
    expected = {DUMP: manifest["database"]["sha256"]}
    expected |= {f"{FILES}/{name}": meta["sha256"] for name, meta in manifest["files"].items()}
    if expected.keys() != streamed.keys():
        missing = sorted(expected.keys() - streamed.keys())
        extra = sorted(streamed.keys() - expected.keys())
        raise RestoreError(
            f"the backup does not match its manifest: missing {missing}, extra {extra}"
        )
    wrong = sorted(name for name, digest in streamed.items() if expected[name] != digest)
    if wrong:
        raise RestoreError(f"checksums differ from the manifest for {wrong}")


def _clear_database(db: Database) -> None:
    with db.owner_engine.begin() as conn:
        conn.execute(text("drop schema public cascade"))
        conn.execute(text("create schema public"))


def _set_aside(files_dir: Path) -> None:
    if files_dir.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        os.replace(files_dir, files_dir.with_name(f"{files_dir.name}.before-restore-{stamp}"))


def _restore_database(db: Database, dump: Path, bin_dir: Path | None) -> None:
    with db.owner_engine.begin() as conn:
        # Roles live in the server, not the database: the app role the dump grants to.
        conn.execute(text(CREATE_APP_ROLE))
    command = [
        str(pg_tool("pg_restore", bin_dir)),
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        f"--dbname={libpq_url(db.owner_url)}",
        str(dump),
    ]
    # Our own argv to PostgreSQL's tool; no shell, nothing from a request.
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RestoreError(f"pg_restore failed: {done.stderr.strip()[-2000:]}")


# --------------------------------------------------------------------------- self-check


def check_restored(
    db: Database, cipher: FieldCipher, manifest: dict[str, Any], files_dir: Path
) -> RestoreReport:
    """What the restored installation says about itself against the manifest."""
    load_all_models()  # the encrypted columns are found in every domain's tables
    report = RestoreReport(files=len(manifest["files"]))
    with db.owner_engine.connect() as conn:
        counts = table_counts(conn)
        report.tables, report.rows = len(counts), sum(counts.values())
        if counts != manifest["tables"]:
            differ = sorted(
                name
                for name in counts.keys() | manifest["tables"].keys()
                if counts.get(name) != manifest["tables"].get(name)
            )
            report.problems.append(f"row counts differ from the manifest in {differ}")
        for chain in verify_all(conn):
            if chain.ok:
                report.clinics_verified += 1
            else:
                report.problems.append(f"audit chain: {chain.describe()}")
        if audit_heads(conn) != manifest["auditHeads"]:
            report.problems.append("the audit chain heads differ from the manifest")
        report.decrypted = _decrypt_sample(conn, cipher, report.problems)
    for name, meta in manifest["files"].items():
        path = files_dir / name
        if not path.is_file() or _sha256(path) != meta["sha256"]:
            report.problems.append(f"document file {name} is missing or differs")
    return report


def _decrypt_sample(conn: Connection, cipher: FieldCipher, problems: list[str]) -> int:
    """Decrypt a few values of every encrypted column with the keys in use."""
    done = 0
    for target in registered_columns():
        table = target.table
        value = table.c[target.column]
        rows = conn.execute(select(table).where(value.is_not(None)).limit(SAMPLE_PER_COLUMN))
        for row in rows.mappings():
            column, row_id = target.bound(dict(row))
            try:
                cipher.decrypt(
                    row[target.column],
                    tenant_id=row["tenant_id"],
                    table=table.name,
                    column=column,
                    row_id=row_id,
                )
                done += 1
            except DecryptionError as exc:
                problems.append(f"{target.label} of row {row_id} does not decrypt: {exc}")
                break
    return done


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
