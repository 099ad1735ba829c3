"""The ABHA address on a patient (issue 18, item 3): checked, lower-cased, encrypted with
its own blind index, one per patient per clinic; and an ABHA number's verification ends
when the number changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.audit.service import CTX_KEY
from opdesk.db import Database
from opdesk.patients import schemas, service
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    clinic_session,
    csrf_of,
    events_of,
    make_user,
    open_session,
    unique_mobile,
)
from tests.factories.registration import (
    abha_with_check,
    desk_browser,
    field_errors,
    register,
    stored_patient,
)


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("amit.sharma@abdm", "amit.sharma@abdm"),
        ("  Amit_Sharma1@ABDM ", "amit_sharma1@abdm"),
        ("kavita1990@sbx", "kavita1990@sbx"),
        ("91123456789012@ndhm", "91123456789012@ndhm"),
    ],
)
def test_an_abha_address_is_kept_in_lower_case(typed: str, kept: str) -> None:
    assert schemas.abha_address(typed) == kept


@pytest.mark.parametrize(
    "typed",
    [
        "amit@abdm",  # handle under 8
        "a" * 19 + "@abdm",  # handle over 18
        ".amitsharma@abdm",
        "amitsharma.@abdm",
        "amit..sharma@abdm",
        "amit.sha_rma@abdm",  # two separators
        "amitsharma@gmail.com",
        "amitsharma",
        "अमितशर्मा12@abdm",
    ],
)
def test_a_malformed_abha_address_is_refused(typed: str) -> None:
    with pytest.raises(ValueError, match="ABHA address"):
        schemas.abha_address(typed)


def test_the_address_is_stored_encrypted_with_its_own_index_and_shown_back(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    response = register(client, desk, abhaAddress="Sunita.D1979@abdm")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["abhaAddress"] == "sunita.d1979@abdm"
    assert body["abhaVerifiedAt"] is None
    row = stored_patient(db, tenant, body["id"])
    assert row.abha_address_encrypted is not None
    assert b"sunita" not in row.abha_address_encrypted
    assert row.abha_address_hash == cipher.blind_index("sunita.d1979@abdm", purpose="abha-address")
    created = [e for e in events_of(db, tenant.id) if str(e.entity_id) == body["id"]]
    assert "sunita" not in str(created[0].diff)
    assert created[0].diff["added"]["abhaAddress"] == "[encrypted]"


def test_a_bad_address_is_422_naming_the_field(client: TestClient, desk: dict[str, str]) -> None:
    response = register(client, desk, abhaAddress="sunita@gmail.com")
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["field"] == "abhaAddress" and "ABHA address" in e["reason"] for e in errors)


def test_an_address_already_in_the_clinic_is_409_and_free_in_another(
    client: TestClient,
    db: Database,
    ident: Any,
    tenant: Tenant,
    other_tenant: Tenant,
    desk: dict[str, str],
) -> None:
    first = register(client, desk, abhaAddress="ramesh.k55@abdm")
    assert first.status_code == 201
    again = register(client, desk, abhaAddress="RAMESH.K55@abdm")
    assert again.status_code == 409
    assert again.json()["field"] == "abhaAddress"
    assert again.json()["existingNumber"] == first.json()["number"]
    other = register(client, desk).json()
    moved = client.patch(
        f"/api/v1/patients/{other['id']}", json={"abhaAddress": "ramesh.k55@abdm"}, headers=desk
    )
    assert moved.status_code == 409 and moved.json()["field"] == "abhaAddress"
    there = bearer(open_session(db, ident, make_user(db, ident, other_tenant, "frontdesk")))
    assert register(client, there, abhaAddress="ramesh.k55@abdm").status_code == 201


def test_changing_the_abha_number_ends_its_verification(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    body = register(client, desk, abhaNumber=abha_with_check("9100000000011")).json()
    with clinic_session(db, tenant.id) as session:
        service.record_abha_verified(
            session,
            session.info[CTX_KEY],
            cipher,
            patient_id=body["id"],
            digits=abha_with_check("9100000000011"),
            address="sunita.v1979@abdm",
        )
    shown = client.get(f"/api/v1/patients/{body['id']}", headers=desk).json()
    assert shown["abhaVerifiedAt"] is not None
    assert shown["abhaAddress"] == "sunita.v1979@abdm"
    # Another field changed: still verified.
    client.patch(f"/api/v1/patients/{body['id']}", json={"city": "Satara"}, headers=desk)
    assert stored_patient(db, tenant, body["id"]).abha_verified_at is not None
    changed = client.patch(
        f"/api/v1/patients/{body['id']}",
        json={"abhaNumber": abha_with_check("9100000000012")},
        headers=desk,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["abhaVerifiedAt"] is None


def test_the_form_takes_the_address_and_shows_its_problem(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = desk_browser(app, db, ident, tenant)
    form = desk.get("/patients/new").text
    assert 'name="abha_address"' in form
    fields = {
        "csrf_token": csrf_of(form),
        "name.first": "अनीता",
        "name.last": "पवार",
        "phone": "",
        "dob": "1988-02-14",
        "gender": "female",
    }
    bad = desk.post("/patients/new", data={**fields, "abha_address": "anita@abdm"})
    assert bad.status_code == 422
    assert "ABHA address" in field_errors(bad.text)["abha_address"]
    good = desk.post(
        "/patients/new",
        data={**fields, "phone": unique_mobile(), "abha_address": "Anita.Pawar88@abdm"},
        follow_redirects=False,
    )
    assert good.status_code == 303, good.text
    profile = desk.get(good.headers["location"]).text
    assert "anita.pawar88@abdm" in profile and "अनीता" in profile
