"""The worker's daily backup: when it is due, that exactly one worker makes it, the
rotation of the folder, and the health page's line about it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from opdesk.app import create_app
from opdesk.automation.worker import Worker
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.ops.backup import SUFFIX, archives, prune
from opdesk.ops.daily import backup_due, last_due
from opdesk.security.crypto import FieldCipher, StaticKeyring


def backup_settings(tmp_path: Path, **more: object) -> Settings:
    fields: dict[str, object] = {
        "env": "dev",
        "data_dir": tmp_path / "data",
        "backup_dir": tmp_path / "backups",
        "daily_backup": True,
        "fast_password_hashing": True,
        **more,
    }
    return Settings(_env_file=None, **fields)  # type: ignore[arg-type]


def made_at(folder: Path, when: datetime) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"opdesk-{when.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"
    path.write_bytes(b"")
    return path


def test_a_backup_is_due_once_a_day_after_its_hour(tmp_path: Path) -> None:
    settings = backup_settings(tmp_path, daily_backup_hour=2)
    now = datetime.now(UTC)
    slot = last_due(now, 2)
    assert slot <= now < slot + timedelta(days=1)
    assert slot.astimezone().hour == 2
    assert backup_due(settings, now)  # none made yet
    made_at(settings.backups, slot - timedelta(minutes=1))
    assert backup_due(settings, now)  # made before today's slot
    made_at(settings.backups, slot + timedelta(seconds=1))
    assert not backup_due(settings, now)
    assert backup_due(settings, slot + timedelta(days=1, seconds=1))  # the next day's
    off = backup_settings(tmp_path, daily_backup=False)
    assert not backup_due(off, slot + timedelta(days=9))


def test_dev_and_prod_defaults(tmp_path: Path) -> None:
    assert not Settings(env="dev", data_dir=tmp_path, _env_file=None).daily_backup_on
    prod = Settings(env="prod", data_dir=tmp_path, _env_file=None)
    assert prod.daily_backup_on and prod.backups == tmp_path / "backups"


def test_two_workers_make_exactly_one_daily_backup(
    fresh_database: Database, keyring: StaticKeyring, tmp_path: Path
) -> None:
    settings = backup_settings(tmp_path)
    workers = [
        Worker(fresh_database, FieldCipher(keyring), settings=settings, name=f"w{n}")
        for n in range(2)
    ]
    gate = threading.Barrier(2)

    def turn(worker: Worker) -> None:
        gate.wait()
        worker.run_once()

    threads = [threading.Thread(target=turn, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in workers:
        worker.backups.join(120)
    assert sum(len(worker.backups.made) for worker in workers) == 1
    made = archives(settings.backups)
    assert len(made) == 1, made
    assert made[0][1].stat().st_size > 1000
    # Made: no longer due, so the next turns make nothing more.
    workers[0]._next_sweep = 0.0
    workers[0].run_once()
    workers[0].backups.join(60)
    assert len(archives(settings.backups)) == 1
    assert sum(len(worker.backups.made) for worker in workers) == 1


def test_the_folder_is_pruned_to_7_daily_4_weekly_12_monthly(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    newest = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    every_day = [newest - timedelta(days=n) for n in range(400)]
    for when in every_day:
        made_at(folder, when)
    (folder / "notes.txt").write_text("not a backup: never touched")
    gone = prune(folder)
    kept = [when for when, _ in archives(folder)]
    assert len(gone) + len(kept) == 400
    assert kept[-7:] == sorted(every_day[:7])  # the last seven days
    assert len({(k.year, k.month) for k in kept}) == 12
    assert {k.isocalendar()[:2] for k in kept} >= {d.isocalendar()[:2] for d in every_day[:15]}
    assert len(kept) < 7 + 4 + 12
    assert (folder / "notes.txt").exists()
    assert prune(folder) == []  # pruning again keeps the same


def test_the_health_page_says_how_old_the_newest_backup_is(
    fresh_database: Database, keyring: StaticKeyring, tmp_path: Path
) -> None:
    settings = backup_settings(tmp_path)
    with TestClient(create_app(settings, database=fresh_database, keyring=keyring)) as client:
        none = client.get("/readyz").json()
        assert (none["status"], none["backup"]) == ("degraded", "none made yet")
        made_at(settings.backups, datetime.now(UTC) - timedelta(hours=30))
        old = client.get("/readyz").json()
        assert old["status"] == "degraded"
        assert old["backup"].startswith("the newest is 30.0 h old (overdue)")
        made_at(settings.backups, datetime.now(UTC) - timedelta(hours=3))
        fresh = client.get("/readyz").json()
        assert (fresh["status"], fresh["backup"]) == ("ok", "the newest is 3.0 h old")
    off = backup_settings(tmp_path, daily_backup=False)
    with TestClient(create_app(off, database=fresh_database, keyring=keyring)) as client:
        assert "backup" not in client.get("/readyz").json()
