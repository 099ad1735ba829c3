"""Documents: content-checked uploads, encryption at rest, versions, downloads, share links."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.documents import service
from opdesk.documents.models import ShareLink
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    clinic_session,
    ctx_for,
    make_tenant,
    make_user,
    open_session,
    unique_mobile,
)

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 64


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


@pytest.fixture
def patient_id(client: TestClient, desk: dict[str, str]) -> str:
    body = {
        "name": {"first": "Meena"},
        "phone": unique_mobile(),
        "ageYears": 40,
        "gender": "female",
    }
    return str(client.post("/api/v1/patients", json=body, headers=desk).json()["id"])


def upload(
    client: TestClient,
    headers: dict[str, str],
    patient_id: str,
    data: bytes = PDF,
    name: str = "cbc-report.pdf",
    **form: str,
) -> Any:
    fields = {"category": "lab-report", **form}
    files = {"file": (name, data, "application/pdf")}
    return client.post(
        f"/api/v1/patients/{patient_id}/documents", data=fields, files=files, headers=headers
    )


def test_upload_checks_content_and_encrypts_at_rest(
    client: TestClient, desk: dict[str, str], patient_id: str, settings: Any
) -> None:
    response = upload(client, desk, patient_id, tags="blood, cbc")
    assert response.status_code == 201, response.text
    doc = response.json()
    assert (doc["mime"], doc["size"], doc["version"]) == ("application/pdf", len(PDF), 1)
    assert doc["checksum"] == hashlib.sha256(PDF).hexdigest()
    assert doc["tags"] == ["blood", "cbc"]
    stored = (Path(settings.data_dir) / "files").rglob(doc["id"])
    [path] = list(stored)
    assert b"%PDF" not in path.read_bytes()
    download = client.get(f"/api/v1/documents/{doc['id']}/content", headers=desk)
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert "cbc-report.pdf" in download.headers["content-disposition"]


@pytest.mark.parametrize(
    ("data", "name", "status", "field", "reason"),
    [
        (EXE, "report.pdf", 422, "file", "must be a PDF, JPEG, PNG or WebP"),
        (b"", "empty.pdf", 422, "file", "is empty"),
        (b"just some text", "notes.pdf", 422, "file", "must be a PDF"),
    ],
)
def test_bad_files_are_refused_naming_the_field(
    client: TestClient,
    desk: dict[str, str],
    patient_id: str,
    data: bytes,
    name: str,
    status: int,
    field: str,
    reason: str,
) -> None:
    response = upload(client, desk, patient_id, data, name)
    assert response.status_code == status
    assert any(e["field"] == field and reason in e["reason"] for e in response.json()["errors"])


def test_a_21_mb_upload_is_refused(
    client: TestClient, desk: dict[str, str], patient_id: str
) -> None:
    big = PDF + b"0" * (21 * 1024 * 1024)
    response = upload(client, desk, patient_id, big)
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "file"
    assert client.get(f"/api/v1/patients/{patient_id}/documents", headers=desk).json() == []


def test_path_tricks_in_the_file_name_stay_a_name(
    client: TestClient, desk: dict[str, str], patient_id: str, settings: Any
) -> None:
    doc = upload(client, desk, patient_id, PNG, "../../etc/passwd.png").json()
    assert doc["filename"] == "passwd.png"
    assert service.clean_filename("x-ray\x07\x1b.png") == "x-ray.png"
    assert not (Path(settings.data_dir).parent / "etc").exists()
    assert service.clean_filename("..\\..\\boot.ini") == "boot.ini"
    assert service.clean_filename("..") == "document"


def test_new_upload_adds_a_version_and_old_versions_stay(
    client: TestClient, desk: dict[str, str], patient_id: str
) -> None:
    first = upload(client, desk, patient_id).json()
    second = upload(client, desk, patient_id, PNG, "scan.png", replaces=first["id"]).json()
    assert (second["seriesId"], second["version"]) == (first["seriesId"], 2)
    third = upload(client, desk, patient_id, replaces=first["id"]).json()
    assert third["version"] == 3
    assert client.get(f"/api/v1/documents/{first['id']}/content", headers=desk).content == PDF
    listed = client.get(f"/api/v1/patients/{patient_id}/documents", headers=desk).json()
    assert sorted(d["version"] for d in listed) == [1, 2, 3]


def test_share_links_expire_and_can_be_revoked(
    client: TestClient, db: Database, tenant: Tenant, desk: dict[str, str], patient_id: str
) -> None:
    doc = upload(client, desk, patient_id).json()
    assert (
        client.post(
            f"/api/v1/documents/{doc['id']}/share-links", json={"days": 31}, headers=desk
        ).status_code
        == 422
    )
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        link = client.post(
            f"/api/v1/documents/{doc['id']}/share-links", json={}, headers=desk
        ).json()
    path = "/s/" + link["url"].rsplit("/s/", 1)[1]
    with time_machine.travel(start + timedelta(days=6), tick=False):
        opened = client.get(path)
    assert opened.status_code == 200
    assert opened.content == PDF
    assert opened.headers["referrer-policy"] == "no-referrer"
    assert opened.headers["cache-control"] == "no-store"
    with clinic_session(db, tenant.id) as session:
        row = session.get(ShareLink, (tenant.id, link["id"]))
        assert row is not None and row.last_access_at is not None
    with time_machine.travel(start + timedelta(days=7, seconds=1), tick=False):
        assert client.get(path).status_code == 404

    other = client.post(
        f"/api/v1/documents/{doc['id']}/share-links", json={"days": 1}, headers=desk
    ).json()
    other_path = "/s/" + other["url"].rsplit("/s/", 1)[1]
    assert client.get(other_path).status_code == 200
    assert client.post(f"/api/v1/share-links/{other['id']}/revoke", headers=desk).status_code == 204
    assert client.get(other_path).status_code == 404
    assert client.get("/s/not-a-token").status_code == 404


def test_sweeper_removes_expired_links(
    client: TestClient, db: Database, tenant: Tenant, desk: dict[str, str], patient_id: str
) -> None:
    doc = upload(client, desk, patient_id).json()
    start = datetime.now(UTC)
    with time_machine.travel(start - timedelta(days=3), tick=False):
        client.post(f"/api/v1/documents/{doc['id']}/share-links", json={"days": 1}, headers=desk)
    fresh = client.post(f"/api/v1/documents/{doc['id']}/share-links", json={}, headers=desk).json()
    ctx = ctx_for(tenant.id, clock=lambda: start)
    with transaction(db, ctx) as session:
        swept = service.sweep_share_links(session, ctx)
    assert swept == 1
    with clinic_session(db, tenant.id) as session:
        left = session.query(ShareLink).filter(ShareLink.document_id == doc["id"]).all()
    assert [str(link.id) for link in left] == [fresh["id"]]


def test_another_clinics_documents_are_not_found(
    client: TestClient, db: Database, ident: Any, desk: dict[str, str], patient_id: str
) -> None:
    doc = upload(client, desk, patient_id).json()
    other = make_tenant(db)
    theirs = bearer(open_session(db, ident, make_user(db, ident, other, "doctor")))
    assert client.get(f"/api/v1/documents/{doc['id']}/content", headers=theirs).status_code == 404
    assert upload(client, theirs, patient_id).status_code == 404
    shared = client.post(f"/api/v1/documents/{doc['id']}/share-links", json={}, headers=theirs)
    assert shared.status_code == 404
