"""Consents and documents on the pages: at the desk and in the patient's portal."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    browser_for,
    clinic_session,
    csrf_of,
    make_user,
    open_session,
    unique_mobile,
)

TEXT = "I agree that the clinic may send me appointment reminders on WhatsApp."


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
        shown = browser.get(f"/patients/{patient['id']}/consents/new?type=whatsapp")
        assert TEXT in shown.text
        done = browser.post(
            f"/patients/{patient['id']}/consents/new",
            data={"type": "whatsapp", "version": "1", "csrf_token": csrf_of(shown.text)},
        )
        assert "Recorded WhatsApp messages consent (version 1)" in done.text
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
    with clinic_session(db, tenant.id) as session:
        login = session.execute(
            select(User).where(
                User.role == "patient",
                User.phone_hash == ident.cipher.blind_index(phone, purpose="phone"),
            )
        ).scalar_one()
    with browser_for(app, open_session(db, ident, login)) as browser:
        home = browser.get("/me")
        assert "Read and agree: WhatsApp messages" in home.text
        shown = browser.get(f"/me/patients/{mine['id']}/consents/new?type=whatsapp")
        given = browser.post(
            f"/me/patients/{mine['id']}/consents/new",
            data={
                "type": "whatsapp",
                "version": "1",
                "text_hash": hashlib.sha256(TEXT.encode()).hexdigest(),
                "csrf_token": csrf_of(shown.text),
            },
        )
        assert "Your consent to WhatsApp messages (version 1) is recorded" in given.text
        assert "consent-whatsapp-v1.pdf" in given.text
        doc_id = given.text.split('href="/me/documents/')[1].split('"')[0]
        assert browser.get(f"/me/documents/{doc_id}").content.startswith(b"%PDF-")
        assert browser.get(f"/me/documents/{other_doc['id']}").status_code == 404
        stranger = browser.post(
            f"/me/patients/{theirs['id']}/consents/new",
            data={"type": "whatsapp", "version": "1", "csrf_token": csrf_of(given.text)},
        )
        assert stranger.status_code == 404
        consent_id = given.text.split('action="/me/consents/')[1].split("/revoke")[0]
        withdrawn = browser.post(
            f"/me/consents/{consent_id}/revoke", data={"csrf_token": csrf_of(given.text)}
        )
        assert "Your consent is withdrawn." in withdrawn.text
        assert "withdrawn" in withdrawn.text


def test_admin_publishes_consent_texts_on_a_page(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        page = browser.get("/admin/consents")
        assert "No consent texts yet." in page.text
        bad = browser.post(
            "/admin/consents",
            data={"type": "", "title": "", "body": "short", "csrf_token": csrf_of(page.text)},
        )
        assert bad.status_code == 422
        assert "choose one of the options" in bad.text
        assert "at least 20 characters" in bad.text
        good = browser.post(
            "/admin/consents",
            data={"type": "sms", "title": "SMS", "body": TEXT, "csrf_token": csrf_of(page.text)},
        )
        assert "Published version 1 of SMS messages." in good.text
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        assert browser.get("/admin/consents").status_code == 403


def test_admin_restores_a_deleted_patient_from_a_page(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = make_user(db, ident, tenant, "admin")
    token = open_session(db, ident, admin)
    body = {"name": {"first": "Vasant"}, "phone": unique_mobile(), "ageYears": 70, "gender": "male"}
    patient = client.post("/api/v1/patients", json=body, headers=bearer(token)).json()
    client.delete(f"/api/v1/patients/{patient['id']}", headers=bearer(token))
    with browser_for(app, token) as browser:
        listed = browser.get("/patients/deleted")
        assert "Vasant" in listed.text
        restored = browser.post(
            f"/patients/{patient['id']}/restore", data={"csrf_token": csrf_of(listed.text)}
        )
        assert "Patient restored." in restored.text
        assert "Vasant" not in browser.get("/patients/deleted").text


def test_share_links_are_listed_and_revoked_on_the_profile(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = make_user(db, ident, tenant, "frontdesk")
    token = open_session(db, ident, desk)
    body = {"name": {"first": "Kiran"}, "phone": unique_mobile(), "ageYears": 29, "gender": "other"}
    patient = client.post("/api/v1/patients", json=body, headers=bearer(token)).json()
    doc = client.post(
        f"/api/v1/patients/{patient['id']}/documents",
        data={"category": "imaging"},
        files={"file": ("xray.png", b"\x89PNG\r\n\x1a\n" + b"0" * 32, "image/png")},
        headers=bearer(token),
    ).json()
    link = client.post(
        f"/api/v1/documents/{doc['id']}/share-links", json={}, headers=bearer(token)
    ).json()
    with browser_for(app, token) as browser:
        page = browser.get(f"/patients/{patient['id']}")
        assert "Open share links" in page.text
        assert "xray.png · until" in page.text
        done = browser.post(
            f"/patients/{patient['id']}/share-links/{link['id']}/revoke",
            data={"csrf_token": csrf_of(page.text)},
        )
        assert "Link revoked." in done.text
        assert "Open share links" not in done.text
    assert client.get("/s/" + link["url"].rsplit("/s/", 1)[1]).status_code == 404
