"""Where document bytes live. The default keeps them in the data folder; an S3-compatible
backend can implement the same three methods.

A write either leaves the whole file in place or nothing at all: the bytes go to a
``.part`` file that is renamed only once they are on disk, and removed when the write
fails (a full disk most often). A failure is raised as ``StorageFailed`` — a refusal the
person can read, not a crash — before any database row names the file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from pathlib import Path
from typing import Protocol

from opdesk.errors import DomainError

log = logging.getLogger(__name__)

_SAFE_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f-]{27}/[0-9a-f]{8}-[0-9a-f-]{27}$")

# The disk or the user's quota is full: 507 says so; anything else is the storage failing.
_FULL = {errno.ENOSPC, errno.EDQUOT}


class StorageFailed(DomainError):
    """The file could not be written. Nothing was saved, so sending it again is safe."""

    status = 503
    title = "File not saved"


class StorageFull(StorageFailed):
    status = 507
    title = "Storage full"


def refusal(exc: OSError) -> StorageFailed:
    if exc.errno in _FULL:
        return StorageFull(
            "The file was not saved: the clinic's file storage is full. Nothing was "
            "changed. Tell your clinic's admin, then send the file again."
        )
    return StorageFailed(
        "The file was not saved: the clinic's file storage could not be written. "
        "Nothing was changed; try again in a minute, and tell your clinic's admin if it "
        "keeps happening."
    )


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` whole under ``key``, or raise ``StorageFailed`` leaving nothing."""

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if it is there."""


class LocalStorage:
    """Files under ``root/<tenant id>/<document id>``, mode 0600, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        # Keys are made by OPDesk from two UUIDs; anything else never touches the disk.
        if not _SAFE_KEY.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_suffix(".part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._write(tmp, data)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.error(
                "document storage write failed",
                extra={"errno": errno.errorcode.get(exc.errno or 0, exc.errno), "key": key},
            )
            raise refusal(exc) from exc

    def _write(self, tmp: Path, data: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
