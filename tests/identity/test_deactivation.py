"""Deactivating a user is an explicit, confirmed action; a form without the box never does it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.tenancy.models import Tenant
from tests.factories import bearer, clinic_session, csrf_of, make_user, open_session
from tests.factories.web import cookie_browser


def active(db: Database, tenant: Tenant, user: User) -> bool:
    with clinic_session(db, tenant.id) as session:
        stored = session.get(User, (tenant.id, user.id))
        assert stored is not None
        return stored.active


def test_saving_the_user_form_without_the_active_box_keeps_the_user_active(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    with cookie_browser(app, admin) as browser:
        page = browser.get(f"/admin/users/{user.id}")
        assert 'name="active"' not in page.text
        saved = browser.post(
            f"/admin/users/{user.id}",
            data={"csrf_token": csrf_of(page.text), "role": "doctor"},
            follow_redirects=False,
        )
        assert saved.status_code == 303
        partial = browser.post(f"/admin/users/{user.id}", data={"csrf_token": csrf_of(page.text)})
        assert partial.status_code == 200
    assert active(db, tenant, user)


def test_deactivation_confirms_what_happens_then_signs_the_user_out_everywhere(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor", name="Dr. Meera Kulkarni")
    their_session = open_session(db, ident, user)
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    with cookie_browser(app, admin) as browser:
        profile = browser.get(f"/admin/users/{user.id}")
        assert f'href="/admin/users/{user.id}/deactivate"' in profile.text
        confirm = browser.get(f"/admin/users/{user.id}/deactivate")
        assert confirm.status_code == 200
        assert "signed out everywhere" in confirm.text
        assert "cannot sign in" in confirm.text
        assert active(db, tenant, user)  # looking at the question changes nothing
        done = browser.post(
            f"/admin/users/{user.id}/deactivate",
            data={"csrf_token": csrf_of(confirm.text)},
            follow_redirects=True,
        )
        assert done.status_code == 200
        assert "signed out everywhere and can no longer sign in" in done.text
        assert not active(db, tenant, user)
        assert client.get("/api/v1/auth/me", headers=bearer(their_session)).status_code == 401
        again = browser.post(
            f"/admin/users/{user.id}/activate",
            data={"csrf_token": csrf_of(done.text)},
            follow_redirects=True,
        )
        assert "can sign in again" in again.text
    assert active(db, tenant, user)


def test_an_admin_cannot_deactivate_themselves_from_the_page(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = make_user(db, ident, tenant, "admin")
    with cookie_browser(app, open_session(db, ident, admin)) as browser:
        page = browser.get(f"/admin/users/{admin.id}")
        assert "/deactivate" not in page.text
        refused = browser.post(
            f"/admin/users/{admin.id}/deactivate",
            data={"csrf_token": csrf_of(page.text)},
            follow_redirects=True,
        )
        assert "cannot deactivate themselves" in refused.text
    assert active(db, tenant, admin)


def test_the_api_patch_without_active_leaves_it(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "pharmacy")
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    renamed = client.patch(
        f"/api/v1/users/{user.id}", json={"name": "Renamed"}, headers=bearer(admin)
    )
    assert renamed.status_code == 200
    assert renamed.json()["active"] is True
    off = client.patch(f"/api/v1/users/{user.id}", json={"active": False}, headers=bearer(admin))
    assert off.json()["active"] is False
    assert not active(db, tenant, user)
