"""The worker's daily backup: made once a day after ``OPDESK_DAILY_BACKUP_HOUR`` (server
time), then the folder pruned to 7 daily, 4 weekly and 12 monthly.

It runs in a thread of its own so the worker keeps sending messages meanwhile, and under
an advisory lock so that of several workers exactly one makes it. A failed backup is logged
and tried again an hour later, not at every turn of the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import text

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.ops.backup import BackupError, BackupMade, archives, make_backup, prune
from opdesk.security.crypto import FieldCipher

log = logging.getLogger("opdesk.backup")

BACKUP_LOCK = 727_275  # pg_try_advisory_lock key: the worker making the daily backup
RETRY_AFTER_FAILURE = 3600.0


def last_due(now: datetime, hour: int) -> datetime:
    """The latest moment a daily backup became due: today's ``hour`` o'clock, server local
    time, if that has passed, else yesterday's."""
    local = now.astimezone()
    slot = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return slot if slot <= local else slot - timedelta(days=1)


def backup_due(settings: Settings, now: datetime) -> bool:
    if not settings.daily_backup_on:
        return False
    made = archives(settings.backups)
    return not made or made[-1][0] < last_due(now, settings.daily_backup_hour)


class DailyBackup:
    def __init__(self, db: Database, settings: Settings, cipher: FieldCipher) -> None:
        self.db, self.settings, self.cipher = db, settings, cipher
        self._thread: threading.Thread | None = None
        self._not_before = 0.0
        self.made: list[BackupMade] = []  # by this worker, newest last

    def start_if_due(self, now: datetime) -> bool:
        """Start the backup in the background when one is due; whether it started."""
        busy = self._thread is not None and self._thread.is_alive()
        if busy or time.monotonic() < self._not_before or not backup_due(self.settings, now):
            return False
        self._thread = threading.Thread(
            target=self._run, args=(now,), name="opdesk-backup", daemon=True
        )
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, now: datetime) -> None:
        with self.db.owner_engine.connect() as conn:
            if not conn.execute(
                text("select pg_try_advisory_lock(:k)"), {"k": BACKUP_LOCK}
            ).scalar():
                return  # another worker is making it
            try:
                # Another worker may have made it between our look and our lock.
                if backup_due(self.settings, now):
                    self._make()
            finally:
                conn.execute(text("select pg_advisory_unlock(:k)"), {"k": BACKUP_LOCK})
                conn.commit()

    def _make(self) -> None:
        try:
            made = make_backup(
                self.db,
                self.cipher.keyring,
                data_dir=self.settings.data_dir,
                to_dir=self.settings.backups,
                bin_dir=self.settings.pg_bin_dir,
            )
        except (BackupError, OSError) as exc:
            self._not_before = time.monotonic() + RETRY_AFTER_FAILURE
            log.error("daily backup failed (trying again in an hour): %s", exc)
            return
        self.made.append(made)
        gone = prune(self.settings.backups)
        log.info(
            "daily backup %s: %.1f MB in %.1f s; %d old backups removed",
            made.path.name,
            made.bytes / 1e6,
            made.seconds,
            len(gone),
        )
