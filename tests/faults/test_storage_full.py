"""Issue 17, item 3: the disk fills (or fails) while a document is uploaded.

The storage below is the real ``LocalStorage`` on a real folder whose disk "fills up"
part-way through a file: it writes the first half of the bytes to the ``.part`` file,
as a full disk does, and then the write fails with ``ENOSPC``. Everything after that,
the cleanup, the refusal, the database, is OPDesk's own code.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.documents import service
from opdesk.documents.models import Document
from opdesk.documents.storage import LocalStorage
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import (
    bearer,
    clinic_session,
    csrf_of,
    ctx_for,
    make_patient,
    make_user,
    open_session,
)

PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 40 + b"%%EOF\n"


class FillingDisk(LocalStorage):
    """A disk with room for half a file, or one that fails outright with ``error``."""

    def __init__(self, root: Path, error: int = errno.ENOSPC) -> None:
        super().__init__(root)
        self.error = error
        self.full = True

    def _write(self, tmp: Path, data: bytes) -> None:
        if not self.full:
            return super()._write(tmp, data)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(self.error, os.strerror(self.error), str(tmp))


@pytest.fixture
def disk(app: FastAPI, tmp_path: Path) -> Iterator[FillingDisk]:
    """The shared test app files documents on this disk for one test."""
    storage = FillingDisk(tmp_path / "files")
    built = app.state.services
    app.state.services = dataclasses.replace(built, storage=storage)
    try:
        yield storage
    finally:
        app.state.services = built


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def documents_of(db: Database, tenant: Tenant, patient_id: Any) -> int:
    with clinic_session(db, tenant.id) as session:
        count = select(func.count()).select_from(Document).where(Document.owner_id == patient_id)
        return int(session.execute(count).scalar_one())


def api_upload(client: TestClient, headers: dict[str, str], patient_id: Any) -> Any:
    return client.post(
        f"/api/v1/patients/{patient_id}/documents",
        data={"category": "lab-report"},
        files={"file": ("cbc.pdf", PDF, "application/pdf")},
        headers=headers,
    )


def test_a_full_disk_refuses_the_upload_with_507_and_leaves_no_row_and_no_file(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, disk: FillingDisk
) -> None:
    desk = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    patient = make_patient(db, ident, tenant)
    refused = api_upload(client, desk, patient.id)
    assert refused.status_code == 507, refused.text
    body = refused.json()
    assert body["title"] == "Storage full"
    assert "storage is full" in body["detail"]
    assert "Nothing was changed" in body["detail"]
    assert documents_of(db, tenant, patient.id) == 0
    assert files_under(disk.root) == [], "the half-written .part file was left behind"
    # Room again: the same upload goes through and its file is whole.
    disk.full = False
    saved = api_upload(client, desk, patient.id)
    assert saved.status_code == 201, saved.text
    content = client.get(f"/api/v1/documents/{saved.json()['id']}/content", headers=desk)
    assert content.content == PDF
    assert documents_of(db, tenant, patient.id) == 1


def test_a_failing_disk_is_a_503_that_says_nothing_was_saved(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, disk: FillingDisk
) -> None:
    disk.error = errno.EIO
    desk = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
    patient = make_patient(db, ident, tenant)
    refused = api_upload(client, desk, patient.id)
    assert refused.status_code == 503, refused.text
    assert "could not be written" in refused.json()["detail"]
    assert documents_of(db, tenant, patient.id) == 0
    assert files_under(disk.root) == []


def test_the_profile_page_says_the_storage_is_full_and_files_nothing(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, disk: FillingDisk
) -> None:
    patient = make_patient(db, ident, tenant)
    with TestClient(app) as client:
        client.cookies.set(
            SESSION_COOKIE, open_session(db, ident, make_user(db, ident, tenant, "frontdesk"))
        )
        token = csrf_of(client.get(f"/patients/{patient.id}").text)
        sent = client.post(
            f"/patients/{patient.id}/documents",
            data={"csrf_token": token, "category": "lab-report"},
            files={"file": ("cbc.pdf", PDF, "application/pdf")},
        )
    assert sent.status_code == 200, sent.text
    assert "the clinic&#39;s file storage is full" in sent.text
    assert documents_of(db, tenant, patient.id) == 0
    assert files_under(disk.root) == []


def test_a_transaction_rolled_back_after_the_file_was_stored_removes_the_file(
    db: Database, ident: Any, tenant: Tenant, tmp_path: Path
) -> None:
    """Whatever fails after the bytes are on disk (the audit append, a later statement),
    the rollback takes the file with it: no file outlives a row that was never saved.
    """
    storage = LocalStorage(tmp_path / "files")
    patient = make_patient(db, ident, tenant)
    cipher = ident.cipher
    ctx = ctx_for(tenant.id)

    def store(session: Any) -> Document:
        return service.upload(
            session,
            ctx,
            cipher,
            storage,
            patient_id=patient.id,
            category="lab-report",
            filename="cbc.pdf",
            data=PDF,
            tags=[],
            max_bytes=10**6,
        )

    with pytest.raises(RuntimeError), transaction(db, ctx) as session:
        store(session)
        assert len(files_under(storage.root)) == 1
        raise RuntimeError("a later step of the same request failed")
    assert files_under(storage.root) == []
    with transaction(db, ctx) as session:
        kept = store(session)
    assert [p.name for p in files_under(storage.root)] == [str(kept.id)]
    assert documents_of(db, tenant, patient.id) == 1
