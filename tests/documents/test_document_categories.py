"""Issue 10, item 6: documents are read by category. Clinical documents (lab reports,
imaging, referrals, consents, ID proofs, other) are for the desk, doctors and admins;
pharmacy sees prescriptions only; accounts sees invoices only. A document a role may not
read answers 404 by id and is absent from lists, on the API and on the pages alike.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.documents.models import CATEGORIES
from opdesk.security.permissions import (
    DOCUMENT_READ_ACTIONS,
    PERMISSIONS,
    ROLES,
    document_action,
    may_read_document,
)
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import bearer, csrf_of, make_patient, make_tenant, make_user, open_session

PDF = b"%PDF-1.4\n%%EOF\n"
STAFF_ROLES = ("frontdesk", "doctor", "pharmacy", "accounts", "admin")
CLINICAL_READERS = {"frontdesk", "doctor", "admin"}


def expected(role: str, category: str) -> bool:
    """The product rule, written out independently of the permission table."""
    if category == "prescription":
        return role in CLINICAL_READERS | {"pharmacy"}
    if category == "invoice":
        return role in {"frontdesk", "accounts", "admin"}
    return role in CLINICAL_READERS


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("category", [*CATEGORIES, "prescription", "invoice", "some-new-kind"])
def test_the_rule_for_every_role_and_category(role: str, category: str) -> None:
    """Including categories that do not exist yet: prescriptions and invoices already
    have their rule, and an unnamed new category is clinical until named.
    """
    want = expected(role, category) if role != "patient" else False
    assert may_read_document(role, category) is want


def test_each_category_action_is_in_the_table() -> None:
    for category in [*CATEGORIES, *DOCUMENT_READ_ACTIONS]:
        assert document_action(category) in PERMISSIONS
    assert PERMISSIONS["documents:read-prescriptions"] >= {"pharmacy"}
    assert "pharmacy" not in PERMISSIONS["documents:read-clinical"]
    assert "accounts" not in PERMISSIONS["documents:read-clinical"]


@pytest.fixture
def filed(app: FastAPI, db: Database, ident: Any) -> dict[str, Any]:
    """One patient with one document of every category, uploaded by an admin."""
    tenant = make_tenant(db, "Category Clinic")
    admin = bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))
    patient = make_patient(db, ident, tenant)
    ids = {}
    with TestClient(app) as client:
        for category in CATEGORIES:
            response = client.post(
                f"/api/v1/patients/{patient.id}/documents",
                data={"category": category},
                files={"file": (f"{category}.pdf", PDF, "application/pdf")},
                headers=admin,
            )
            assert response.status_code == 201, response.text
            ids[category] = response.json()["id"]
    return {"tenant": tenant, "patient": patient, "ids": ids}


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_api_lists_and_opens_only_the_categories_the_role_may_read(
    app: FastAPI, db: Database, ident: Any, filed: dict[str, Any], role: str
) -> None:
    tenant: Tenant = filed["tenant"]
    who = bearer(open_session(db, ident, make_user(db, ident, tenant, role)))
    with TestClient(app) as client:
        listed = client.get(f"/api/v1/patients/{filed['patient'].id}/documents", headers=who)
        assert listed.status_code == 200
        assert {d["category"] for d in listed.json()} == {
            c for c in CATEGORIES if expected(role, c)
        }
        for category, document_id in filed["ids"].items():
            want = 200 if expected(role, category) else 404
            meta = client.get(f"/api/v1/documents/{document_id}", headers=who)
            content = client.get(f"/api/v1/documents/{document_id}/content", headers=who)
            assert (meta.status_code, content.status_code) == (want, want), (role, category)
            if want == 404:
                assert "document" in meta.json()["detail"] and category not in meta.text


@pytest.mark.parametrize("role", ["pharmacy", "accounts"])
def test_pharmacy_and_accounts_see_no_clinical_documents_on_the_profile(
    app: FastAPI, db: Database, ident: Any, filed: dict[str, Any], role: str
) -> None:
    tenant: Tenant = filed["tenant"]
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, open_session(db, ident, make_user(db, ident, tenant, role)))
    page = client.get(f"/patients/{filed['patient'].id}")
    assert page.status_code == 200
    for category, document_id in filed["ids"].items():
        assert document_id not in page.text, category
        assert f"{category}.pdf" not in page.text
    assert "No documents yet." in page.text


def test_sharing_from_a_profile_takes_only_that_patients_documents(
    app: FastAPI, db: Database, ident: Any, filed: dict[str, Any]
) -> None:
    """The desk may share a lab report (a category it reads); the same document named
    under another patient's page answers 404 and makes no link.
    """
    tenant: Tenant = filed["tenant"]
    desk_user = make_user(db, ident, tenant, "frontdesk")
    desk = bearer(open_session(db, ident, desk_user))
    lab = filed["ids"]["lab-report"]
    other = make_patient(db, ident, tenant)
    with TestClient(app) as client:
        made = client.post(f"/api/v1/documents/{lab}/share-links", json={}, headers=desk)
        assert made.status_code == 201
        browser = TestClient(app)
        browser.cookies.set(SESSION_COOKIE, open_session(db, ident, desk_user))
        token = csrf_of(browser.get(f"/patients/{other.id}").text)
        wrong_patient = browser.post(
            f"/patients/{other.id}/documents/{lab}/share",
            data={"csrf_token": token},
            follow_redirects=False,
        )
        assert wrong_patient.status_code == 404


def test_pharmacy_cannot_reach_a_lab_report_by_any_route(
    app: FastAPI, db: Database, ident: Any, filed: dict[str, Any]
) -> None:
    tenant: Tenant = filed["tenant"]
    admin = bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))
    pharmacy = bearer(open_session(db, ident, make_user(db, ident, tenant, "pharmacy")))
    lab = filed["ids"]["lab-report"]
    with TestClient(app) as client:
        link = client.post(f"/api/v1/documents/{lab}/share-links", json={}, headers=admin).json()
        for method, path in (
            ("GET", f"/api/v1/documents/{lab}"),
            ("GET", f"/api/v1/documents/{lab}/content"),
        ):
            assert client.request(method, path, headers=pharmacy).status_code == 404
        # The consent copy link on the profile is not offered to pharmacy either.
        browser = TestClient(app)
        browser.cookies.set(
            SESSION_COOKIE,
            open_session(db, ident, make_user(db, ident, tenant, "pharmacy")),
        )
        page = browser.get(f"/patients/{filed['patient'].id}").text
        assert "Signed copy" not in page
        assert not re.search(re.escape(link["id"]), page)
