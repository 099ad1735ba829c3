"""``opdesk check`` finds each fault it names, made on purpose, and passes when all is well."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from opdesk.automation.worker import Worker
from opdesk.config import Settings
from opdesk.db import APP_ROLE, Database
from opdesk.ops.backup import SUFFIX
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import keyring_env
from tests.factories.cli import opdesk


def check(
    db: Database, data_dir: Path, keyring: StaticKeyring, **env: str
) -> subprocess.CompletedProcess[str]:
    return opdesk(
        "check",
        database=db,
        data_dir=data_dir,
        **{"OPDESK_DISK_MIN_FREE_GB": "0", **keyring_env(keyring.keyring), **env},
    )


def problems(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    found = {}
    for line in done.stdout.splitlines():
        if line.strip().startswith("PROBLEM"):
            name, _, problem = line.strip().removeprefix("PROBLEM").strip().partition(": ")
            found[name] = problem
    return found


@pytest.fixture
def healthy(fresh_database: Database, keyring: StaticKeyring, tmp_path: Path) -> Iterator[Path]:
    """A data folder with a recent backup, and a worker connected to the database."""
    backups = tmp_path / "backups"
    backups.mkdir()
    stamp = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    (backups / f"opdesk-{stamp}{SUFFIX}").write_bytes(b"")
    settings = Settings(env="dev", data_dir=tmp_path, _env_file=None)
    worker = Worker(fresh_database, FieldCipher(keyring), settings=settings, name="checked")
    started = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"ready": started.set})
    thread.start()
    assert started.wait(30)
    yield tmp_path
    worker.stop()
    thread.join(30)


def test_all_is_well(fresh_database: Database, keyring: StaticKeyring, healthy: Path) -> None:
    done = check(fresh_database, healthy, keyring)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (
        "keys",
        "schema",
        "table owners",
        "row-level security",
        "worker",
        "backup",
        "disk",
    ):
        assert f"ok  {name}" in done.stdout


def test_each_fault_is_found(
    fresh_database: Database, keyring: StaticKeyring, healthy: Path
) -> None:
    weak = json.dumps({"active": 1, "keys": {"1": base64.b64encode(bytes(32)).decode()}})
    found = problems(check(fresh_database, healthy, keyring, OPDESK_MASTER_KEYS=weak))
    assert found == {"keys": "data key 1 not random (too few distinct bytes): generate new keys"}

    found = problems(check(fresh_database, healthy, keyring, OPDESK_DISK_MIN_FREE_GB="1000000"))
    assert list(found) == ["disk"] and "GiB free of" in found["disk"]

    with fresh_database.owner_engine.begin() as conn:
        conn.execute(text("alter table patients no force row level security"))
        conn.execute(text("create table stray (id int primary key)"))
        conn.execute(text(f"alter table stray owner to {APP_ROLE}"))
        conn.execute(text("update alembic_version set version_num = '0017_older'"))
    done = check(fresh_database, healthy, keyring)
    assert done.returncode == 1
    found = problems(done)
    assert set(found) == {"schema", "table owners", "row-level security"}
    assert found["row-level security"].startswith("patients lack forced row-level security")
    assert found["table owners"].startswith(f"the app role {APP_ROLE} owns stray")
    assert "0017_older, which this OPDesk release does not know" in found["schema"]


def test_no_worker_and_no_recent_backup(
    fresh_database: Database, keyring: StaticKeyring, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    stamp = (datetime.now(UTC) - timedelta(hours=30)).strftime("%Y%m%dT%H%M%SZ")
    (backups / f"opdesk-{stamp}{SUFFIX}").write_bytes(b"")
    done = check(fresh_database, tmp_path, keyring)
    assert done.returncode == 1
    found = problems(done)
    assert set(found) == {"worker", "backup"}
    assert found["worker"].startswith("no worker is connected")
    assert found["backup"].endswith("is 30 h old")
