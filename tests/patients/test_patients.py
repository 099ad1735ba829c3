"""Patients: registration with validation, encryption at rest, families, search, soft delete."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.patients.models import Patient
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    clinic_session,
    clinic_today,
    latest_code,
    make_tenant,
    make_user,
    open_session,
    unique_mobile,
)


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


def register(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {
        "name": {"first": "Ravi", "last": "Patil"},
        "phone": unique_mobile(),
        "dob": "1984-03-15",
        "gender": "male",
        "city": "Pune",
        **fields,
    }
    return client.post("/api/v1/patients", json=body, headers=headers)


def test_registration_numbers_and_encrypts(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    response = register(
        client,
        desk,
        phone="098220 12345",
        email="Ravi.Patil@Example.in",
        allergies=[{"substance": "Penicillin", "reaction": "rash", "severity": "severe"}],
        chronicConditions=["Type 2 diabetes"],
        ongoingMedications=[{"name": "Metformin", "dose": "500 mg", "freq": "twice a day"}],
        emergencyContact={"name": "Sunita Patil", "phone": "+91 98900 54321"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["number"].startswith("P-") and len(body["number"]) == 8
    assert body["phone"] == "+919822012345"
    assert body["email"] == "ravi.patil@example.in"
    assert body["allergies"][0]["substance"] == "Penicillin"
    assert body["emergencyContact"]["phone"] == "+919890054321"
    assert body["ageIsEstimate"] is False
    with clinic_session(db, tenant.id) as session:
        row = session.execute(
            select(Patient).where(Patient.number == int(body["number"][2:]))
        ).scalar_one()
        for column, secret in (
            ("phone_encrypted", b"9822012345"),
            ("allergies", b"Penicillin"),
            ("ongoing_medications", b"Metformin"),
            ("emergency_contact", b"Sunita"),
            ("email_encrypted", b"ravi.patil"),
        ):
            assert secret not in getattr(row, column), column
        assert row.phone_hash == cipher.blind_index("+919822012345", purpose="phone")
        event = session.execute(
            select(AuditEvent).where(AuditEvent.entity_id == row.id)
        ).scalar_one()
        assert event.diff["added"]["allergies"] == "[encrypted]"
        assert "Penicillin" not in str(event.diff)


def test_numbers_are_sequential_per_clinic_under_concurrency(
    app: Any, db: Database, ident: Any
) -> None:
    clinic = make_tenant(db)
    headers = bearer(open_session(db, ident, make_user(db, ident, clinic, "frontdesk")))
    numbers: list[str] = []
    start = threading.Barrier(8)

    def worker() -> None:
        with TestClient(app) as c:
            start.wait()
            for _ in range(5):
                numbers.append(register(c, headers).json()["number"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == [f"P-{n:06d}" for n in range(1, 41)]


def test_age_only_is_kept_as_an_estimate(client: TestClient, desk: dict[str, str]) -> None:
    body = register(client, desk, dob=None, ageYears=62).json()
    assert (body["dob"], body["ageYears"], body["ageIsEstimate"]) == (None, 62, True)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"phone": "020 2553 1234"}, "phone", "must be a mobile number, not a landline"),
        ({"phone": "12345"}, "phone", "not a valid phone number"),
        ({"dob": (clinic_today() + timedelta(days=3)).isoformat()}, "dob", "is in the future"),
        ({"dob": "1850-01-01"}, "dob", "more than 125 years ago"),
        ({"dob": None, "ageYears": 300}, "ageYears", "less than or equal to 125"),
        ({"gender": "robot"}, "gender", "Input should be"),
        ({"email": "nope"}, "email", "not a valid email address"),
        ({"name": {"first": "", "last": "X"}}, "name.first", "at least 1 character"),
        ({"dob": None}, "body", "date of birth"),
        ({"dob": "1990-01-01", "ageYears": 30}, "body", "not both"),
        ({"phone": None}, "body", "mobile number, or the family member"),
        (
            {"allergies": [{"substance": "Dust", "severity": "deadly"}]},
            "allergies.0.severity",
            "Input should be",
        ),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, desk: dict[str, str], fields: dict[str, Any], field: str, reason: str
) -> None:
    response = register(client, desk, **fields)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors


def test_indian_scripts_and_html_are_stored_and_returned_as_typed(
    client: TestClient, desk: dict[str, str]
) -> None:
    names = [("अमित", "शर्मा"), ("முருகன்", "சுப்பிரமணியன்"), ("<script>alert(1)</script>", "<b>X</b>")]
    for first, last in names:
        body = register(
            client, desk, name={"first": first, "last": last}, city="<img src=x>"
        ).json()
        assert body["name"] == {"first": first, "last": last}
        fetched = client.get(f"/api/v1/patients/{body['id']}", headers=desk).json()
        assert fetched["name"] == {"first": first, "last": last}
        page = client.get(f"/patients/{body['id']}", headers=desk)
        assert "<script>alert(1)</script>" not in page.text
        assert "<img src=x>" not in page.text


def test_duplicate_phone_is_409_pointing_to_the_existing_patient(
    client: TestClient, desk: dict[str, str]
) -> None:
    phone = unique_mobile()
    first = register(client, desk, phone=phone).json()
    again = register(client, desk, phone=phone[3:], name={"first": "Other", "last": "Person"})
    assert again.status_code == 409
    problem = again.json()
    assert problem["existingId"] == first["id"]
    assert problem["existingNumber"] == first["number"]


def test_family_members_share_a_phone_through_a_guardian(
    client: TestClient, desk: dict[str, str]
) -> None:
    mother = register(
        client, desk, name={"first": "Sunita", "last": "Patil"}, gender="female"
    ).json()
    child = register(
        client,
        desk,
        name={"first": "Aarav", "last": "Patil"},
        phone=None,
        guardianId=mother["id"],
        guardianRelation="son",
        dob="2018-06-01",
    )
    assert child.status_code == 201, child.text
    found = client.get("/api/v1/patients", params={"q": mother["phone"]}, headers=desk).json()
    assert [p["id"] for p in found] == [mother["id"], child.json()["id"]]
    # The desk tells namesakes apart by the phone's last digits; a child shows the mother's.
    assert [p["phoneLast4"] for p in found] == [mother["phone"][-4:]] * 2
    # A dependent cannot be a guardian (they have no phone of their own).
    grandchild = register(client, desk, phone=None, guardianId=child.json()["id"])
    assert grandchild.status_code == 422
    assert grandchild.json()["errors"][0]["field"] == "guardianId"


def test_search_by_number_name_prefix_and_fuzzy(client: TestClient, desk: dict[str, str]) -> None:
    a = register(client, desk, name={"first": "Lakshmi", "last": "Iyer"}).json()
    b = register(client, desk, name={"first": "Laxmi", "last": "Sharma"}).json()
    c = register(client, desk, name={"first": "अमित", "last": "शर्मा"}).json()

    def ids(q: str) -> list[str]:
        return [
            p["id"] for p in client.get("/api/v1/patients", params={"q": q}, headers=desk).json()
        ]

    assert ids(a["number"]) == [a["id"]]
    assert ids(a["number"].lower().replace("-", "")) == [a["id"]]
    assert ids("laksh") == [a["id"]]
    assert ids("iyer") == [a["id"]]
    assert ids("lakshmi iy") == [a["id"]]
    assert b["id"] in ids("sharm")
    assert ids("अमि") == [c["id"]]
    assert a["id"] in ids("Lakshmee")  # fuzzy: a different spelling still finds her
    assert ids("zzzz-no-such") == []


def test_deleted_patients_vanish_until_an_admin_restores_them(
    client: TestClient, desk: dict[str, str], admin: dict[str, str]
) -> None:
    patient = register(client, desk, name={"first": "Gopal", "last": "Rao"}).json()
    assert client.delete(f"/api/v1/patients/{patient['id']}", headers=desk).status_code == 403
    assert client.delete(f"/api/v1/patients/{patient['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/patients/{patient['id']}", headers=desk).status_code == 404
    assert client.get("/api/v1/patients", params={"q": "gopal"}, headers=desk).json() == []
    assert client.get("/api/v1/patients", params={"q": patient["phone"]}, headers=desk).json() == []
    again = register(client, desk, phone=patient["phone"])
    assert again.status_code == 409 and "deleted" in again.json()["detail"]
    restored = client.post(f"/api/v1/patients/{patient['id']}/restore", headers=admin)
    assert restored.status_code == 200
    assert [
        p["id"] for p in client.get("/api/v1/patients", params={"q": "gopal"}, headers=desk).json()
    ] == [patient["id"]]


def test_edit_records_only_changes_and_can_switch_dob_to_age(
    client: TestClient, db: Database, tenant: Tenant, desk: dict[str, str]
) -> None:
    patient = register(client, desk).json()
    changed = client.patch(
        f"/api/v1/patients/{patient['id']}",
        json={"city": "Nashik", "ageYears": 41, "flags": {"vip": True, "blocked": False}},
        headers=desk,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["city"], body["dob"], body["ageYears"], body["flags"]["vip"]) == (
        "Nashik",
        None,
        41,
        True,
    )
    with clinic_session(db, tenant.id) as session:
        event = session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == "update")
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        ).scalar_one()
    assert set(event.diff["updated"]) == {"city", "dob", "ageYears", "flags"}


def test_another_clinics_patient_is_not_found(
    client: TestClient, db: Database, ident: Any, desk: dict[str, str]
) -> None:
    other = make_tenant(db)
    theirs = bearer(open_session(db, ident, make_user(db, ident, other, "frontdesk")))
    patient = register(client, theirs).json()
    assert client.get(f"/api/v1/patients/{patient['id']}", headers=desk).status_code == 404
    assert (
        client.patch(
            f"/api/v1/patients/{patient['id']}", json={"city": "X"}, headers=desk
        ).status_code
        == 404
    )
    assert client.get("/api/v1/patients", params={"q": patient["phone"]}, headers=desk).json() == []


def test_registered_phone_can_sign_in_and_sees_only_its_family(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    mother = register(
        client, desk, name={"first": "Sunita", "last": "More"}, gender="female"
    ).json()
    child = register(
        client, desk, name={"first": "Isha", "last": "More"}, phone=None, guardianId=mother["id"]
    ).json()
    register(client, desk, name={"first": "Someone", "last": "Else"})
    attempt = client.post(
        "/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": mother["phone"]}
    ).json()["attempt"]
    code = latest_code(db, cipher, tenant, mother["phone"])
    proof = client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": code}).json()[
        "proof"
    ]
    token = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": tenant.slug}
    ).json()["token"]
    mine = client.get("/api/v1/me/patients", headers=bearer(token)).json()
    assert {p["id"] for p in mine} == {mother["id"], child["id"]}
    assert client.get(f"/api/v1/patients/{mother['id']}", headers=bearer(token)).status_code == 403


def test_nul_characters_are_refused_or_ignored_not_a_server_error(
    client: TestClient, desk: dict[str, str]
) -> None:
    searched = client.get("/api/v1/patients", params={"q": "ra\x00vi"}, headers=desk)
    assert searched.status_code == 422 and searched.json()["errors"][0]["field"] == "q"
    refused = register(client, desk, city="Pu\x00ne")
    assert refused.status_code == 422
    assert "NUL" in refused.json()["detail"]


def test_html_in_every_text_field_is_shown_escaped(
    client: TestClient, desk: dict[str, str]
) -> None:
    evil = "<script>alert(1)</script>"
    body = register(
        client,
        desk,
        name={"first": evil, "last": evil},
        city=evil,
        allergies=[{"substance": evil, "reaction": evil, "severity": "mild"}],
        chronicConditions=[evil],
        ongoingMedications=[{"name": evil, "dose": evil, "freq": evil}],
        emergencyContact={"name": evil, "phone": unique_mobile()},
    ).json()
    guardian_child = register(
        client, desk, phone=None, guardianId=body["id"], guardianRelation=evil, name={"first": "C"}
    ).json()
    for pid in (body["id"], guardian_child["id"]):
        page = client.get(f"/patients/{pid}", headers=desk).text
        assert evil not in page
        assert "&lt;script&gt;" in page
    results = client.get("/patients/results", params={"q": body["phone"]}, headers=desk).text
    assert evil not in results
