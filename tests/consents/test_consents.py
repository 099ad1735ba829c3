"""Consents: versioned templates, signing with a PDF copy, revoking, the patient mirror."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opdesk.consents import service
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    clinic_session,
    make_tenant,
    make_user,
    open_session,
    unique_mobile,
)

BODY = (
    "मैं इस क्लिनिक को मेरे उपचार के लिए सहमति देता/देती हूँ।\n\n"
    "I consent to examination and treatment at this clinic. I may withdraw this consent."
)


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


def new_patient(client: TestClient, headers: dict[str, str], phone: str | None = None) -> Any:
    body = {
        "name": {"first": "Kavya"},
        "phone": phone or unique_mobile(),
        "ageYears": 30,
        "gender": "female",
    }
    return client.post("/api/v1/patients", json=body, headers=headers).json()


def add_template(
    client: TestClient, admin: dict[str, str], type_: str = "treatment", body: str = BODY
) -> Any:
    response = client.post(
        "/api/v1/consent-templates",
        json={"type": type_, "title": "Consent for treatment", "body": body},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_templates_are_versioned_with_a_text_hash(
    client: TestClient, admin: dict[str, str], desk: dict[str, str]
) -> None:
    first = add_template(client, admin)
    second = add_template(client, admin, body=BODY + " Revised.")
    assert (first["version"], second["version"]) == (1, 2)
    assert first["textHash"] == hashlib.sha256(BODY.encode()).hexdigest()
    refused = client.post(
        "/api/v1/consent-templates",
        json={"type": "treatment", "title": "x", "body": BODY},
        headers=desk,
    )
    assert refused.status_code == 403


def test_signing_keeps_a_pdf_copy_and_updates_the_patient(
    client: TestClient, admin: dict[str, str], desk: dict[str, str]
) -> None:
    template = add_template(client, admin)
    patient = new_patient(client, desk)
    signed = client.post(
        f"/api/v1/patients/{patient['id']}/consents",
        json={"type": "treatment", "version": 1},
        headers=desk,
    )
    assert signed.status_code == 201, signed.text
    consent = signed.json()
    assert (consent["version"], consent["textHash"], consent["method"]) == (
        1,
        template["textHash"],
        "in-clinic",
    )
    copy = client.get(f"/api/v1/documents/{consent['fileId']}/content", headers=desk)
    assert copy.content.startswith(b"%PDF-")
    document = client.get(f"/api/v1/documents/{consent['fileId']}", headers=desk).json()
    assert document["category"] == "consent"
    mirror = client.get(f"/api/v1/patients/{patient['id']}", headers=desk).json()["consents"]
    assert [(c["consentId"], c["type"], c["version"]) for c in mirror] == [
        (consent["id"], "treatment", 1)
    ]


def test_latest_per_type_and_revocation(
    client: TestClient, db: Database, tenant: Tenant, admin: dict[str, str], desk: dict[str, str]
) -> None:
    add_template(client, admin)
    add_template(client, admin, "whatsapp", "I agree to receive appointment reminders on WhatsApp.")
    patient = new_patient(client, desk)
    url = f"/api/v1/patients/{patient['id']}/consents"
    client.post(url, json={"type": "treatment", "version": 1}, headers=desk)
    add_template(client, admin, body=BODY + " Version two.")
    newest = client.post(url, json={"type": "treatment", "version": 2}, headers=desk).json()
    whatsapp = client.post(url, json={"type": "whatsapp", "version": 1}, headers=desk).json()
    latest = {c["type"]: c for c in client.get(url, headers=desk).json()}
    assert (latest["treatment"]["id"], latest["treatment"]["version"]) == (newest["id"], 2)
    assert latest["whatsapp"]["id"] == whatsapp["id"]

    with clinic_session(db, tenant.id) as session:
        assert service.allows(session, patient["id"], "whatsapp")
    assert client.post(f"/api/v1/consents/{whatsapp['id']}/revoke", headers=desk).status_code == 200
    assert client.post(f"/api/v1/consents/{whatsapp['id']}/revoke", headers=desk).status_code == 409
    with clinic_session(db, tenant.id) as session:
        assert not service.allows(session, patient["id"], "whatsapp")
        assert not service.allows(session, patient["id"], "sms")
    mirror = client.get(f"/api/v1/patients/{patient['id']}", headers=desk).json()["consents"]
    assert [c["type"] for c in mirror] == ["treatment"]


def test_signing_without_a_template_is_a_conflict(client: TestClient, desk: dict[str, str]) -> None:
    patient = new_patient(client, desk)
    response = client.post(
        f"/api/v1/patients/{patient['id']}/consents",
        json={"type": "teleconsultation", "version": 1},
        headers=desk,
    )
    assert response.status_code == 409
    assert "no teleconsultation consent text" in response.json()["detail"]


def test_a_patient_signs_and_revokes_from_the_portal_for_their_family_only(
    client: TestClient,
    db: Database,
    ident: Any,
    tenant: Tenant,
    admin: dict[str, str],
    desk: dict[str, str],
) -> None:
    from sqlalchemy import select

    from opdesk.identity.models import User

    add_template(
        client,
        admin,
        "data-processing",
        "I consent to the clinic processing my health data (DPDP Act).",
    )
    mother = new_patient(client, desk)
    stranger = new_patient(client, desk)
    with clinic_session(db, tenant.id) as session:
        login = session.execute(
            select(User).where(User.role == "patient", User.name == "Kavya").limit(1)
        ).scalar_one()
        phone_hash = session.execute(
            select(User.phone_hash).where(User.id == login.id)
        ).scalar_one()
    own = [
        p
        for p in (mother, stranger)
        if ident.cipher.blind_index(p["phone"], purpose="phone") == phone_hash
    ]
    token = bearer(open_session(db, ident, login))
    mine = own[0]
    other = stranger if mine["id"] == mother["id"] else mother
    signed = client.post(
        "/api/v1/me/consents",
        json={"patientId": mine["id"], "type": "data-processing", "version": 1},
        headers=token,
    )
    assert signed.status_code == 201, signed.text
    assert signed.json()["method"] == "otp"
    refused = client.post(
        "/api/v1/me/consents",
        json={"patientId": other["id"], "type": "data-processing", "version": 1},
        headers=token,
    )
    assert refused.status_code == 404
    revoked = client.post(f"/api/v1/me/consents/{signed.json()['id']}/revoke", headers=token)
    assert revoked.status_code == 200


def test_another_clinics_consents_are_not_found(
    client: TestClient, db: Database, ident: Any, admin: dict[str, str], desk: dict[str, str]
) -> None:
    add_template(client, admin)
    patient = new_patient(client, desk)
    consent = client.post(
        f"/api/v1/patients/{patient['id']}/consents",
        json={"type": "treatment", "version": 1},
        headers=desk,
    ).json()
    other = make_tenant(db)
    theirs = bearer(open_session(db, ident, make_user(db, ident, other, "frontdesk")))
    assert (
        client.post(f"/api/v1/consents/{consent['id']}/revoke", headers=theirs).status_code == 404
    )
    assert (
        client.get(f"/api/v1/patients/{patient['id']}/consents", headers=theirs).status_code == 404
    )
