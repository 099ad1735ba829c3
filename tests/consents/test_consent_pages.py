"""Consents and documents on the pages: at the desk and in the patient's portal."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.db import Database, tenant_session
from opdesk.identity.models import User
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.conftest import bearer, make_user, open_session, unique_mobile
from tests.identity.test_users_admin import csrf_of

TEXT = "I agree that the clinic may send me appointment reminders on WhatsApp."


def browser_for(app: FastAPI, token: str) -> TestClient:
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, token)
    return client


def test_desk_records_and_revokes_a_consent_on_the_profile(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))
    client.post(
        "/api/v1/consent-templates",
        json={"type": "whatsapp", "title": "WhatsApp reminders", "body": TEXT},
        headers=admin,
    )
    desk = make_user(db, ident, tenant, "frontdesk")
    body = {"name": {"first": "Ganesh"}, "phone": unique_mobile(), "ageYears": 50, "gender": "male"}
    patient = client.post("/api/v1/patients", json=body, headers=admin).json()
    with browser_for(app, open_session(db, ident, desk)) as browser:
        page = browser.get(f"/patients/{patient['id']}")
        assert "No consents recorded." in page.text
        done = browser.post(
            f"/patients/{patient['id']}/consents",
            data={"type": "whatsapp", "csrf_token": csrf_of(page.text)},
        )
        assert "Recorded whatsapp consent (version 1)" in done.text
        assert "Signed copy" in done.text
        assert "consent-whatsapp-v1.pdf" in done.text
        consent = client.get(f"/api/v1/patients/{patient['id']}/consents", headers=admin).json()[0]
        revoked = browser.post(
            f"/patients/{patient['id']}/consents/{consent['id']}/revoke",
            data={"csrf_token": csrf_of(done.text)},
        )
        assert "Consent revoked." in revoked.text
        assert "Revoked" in revoked.text


def test_patient_gives_and_withdraws_consent_and_opens_documents_in_the_portal(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))
    client.post(
        "/api/v1/consent-templates",
        json={"type": "whatsapp", "title": "WhatsApp reminders", "body": TEXT},
        headers=admin,
    )
    phone = unique_mobile()
    body = {"name": {"first": "Rekha"}, "phone": phone, "ageYears": 35, "gender": "female"}
    mine = client.post("/api/v1/patients", json=body, headers=admin).json()
    theirs = client.post(
        "/api/v1/patients",
        json={**body, "name": {"first": "Other"}, "phone": unique_mobile()},
        headers=admin,
    ).json()
    other_doc = client.post(
        f"/api/v1/patients/{theirs['id']}/documents",
        data={"category": "other"},
        files={"file": ("x.pdf", b"%PDF-1.4 other", "application/pdf")},
        headers=admin,
    ).json()
    with tenant_session(db, tenant.id) as session:
        login = session.execute(
            select(User).where(
                User.role == "patient",
                User.phone_hash == ident.cipher.blind_index(phone, purpose="phone"),
            )
        ).scalar_one()
    with browser_for(app, open_session(db, ident, login)) as browser:
        home = browser.get("/me")
        assert "Agree: WhatsApp messages" in home.text
        given = browser.post(
            "/me/consents",
            data={"patient_id": mine["id"], "type": "whatsapp", "csrf_token": csrf_of(home.text)},
        )
        assert "Your consent is recorded" in given.text
        assert "consent-whatsapp-v1.pdf" in given.text
        doc_id = given.text.split('href="/me/documents/')[1].split('"')[0]
        assert browser.get(f"/me/documents/{doc_id}").content.startswith(b"%PDF-")
        assert browser.get(f"/me/documents/{other_doc['id']}").status_code == 404
        stranger = browser.post(
            "/me/consents",
            data={
                "patient_id": theirs["id"],
                "type": "whatsapp",
                "csrf_token": csrf_of(given.text),
            },
        )
        assert stranger.status_code == 404
        consent_id = given.text.split('action="/me/consents/')[1].split("/revoke")[0]
        withdrawn = browser.post(
            f"/me/consents/{consent_id}/revoke", data={"csrf_token": csrf_of(given.text)}
        )
        assert "Your consent is withdrawn." in withdrawn.text
        assert "withdrawn" in withdrawn.text
