"""Admin work on users through the API, and the pages of the whole sign-in journey."""

from __future__ import annotations

import re
from typing import Any

import pyotp
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import (
    STAFF_PASSWORD,
    bearer,
    csrf_of,
    latest_code,
    make_user,
    open_session,
    unique_mobile,
)


def admin_token(db: Database, ident: Any, tenant: Tenant) -> str:
    return open_session(db, ident, make_user(db, ident, tenant, "admin"))


def test_create_update_and_list_users(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = admin_token(db, ident, tenant)
    created = client.post(
        "/api/v1/users",
        json={
            "name": "Dr. Kavya Rao",
            "role": "doctor",
            "email": "Kavya@Example.in",
            "password": "long enough pw",
        },
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == "kavya@example.in"
    duplicate = client.post(
        "/api/v1/users",
        json={
            "name": "Again",
            "role": "frontdesk",
            "email": "kavya@example.in",
            "password": "long enough pw",
        },
        headers=bearer(admin),
    )
    assert duplicate.status_code == 409
    changed = client.patch(
        f"/api/v1/users/{user['id']}", json={"role": "admin"}, headers=bearer(admin)
    )
    assert changed.json()["role"] == "admin"
    listed = client.get("/api/v1/users", headers=bearer(admin)).json()
    assert user["id"] in {u["id"] for u in listed}


def test_bad_user_input_names_each_field(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = admin_token(db, ident, tenant)
    response = client.post(
        "/api/v1/users",
        json={"name": "", "role": "surgeon", "email": "nope", "phone": "123"},
        headers=bearer(admin),
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"name", "role", "email", "phone"}
    missing = client.post(
        "/api/v1/users",
        json={"name": "No Password", "role": "doctor", "email": "np@example.in"},
        headers=bearer(admin),
    )
    assert missing.status_code == 422
    assert missing.json()["errors"] == [
        {"field": "password", "reason": "staff need a first password"}
    ]


def test_admins_cannot_lock_themselves_out(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin_user = make_user(db, ident, tenant, "admin")
    admin = open_session(db, ident, admin_user)
    response = client.patch(
        f"/api/v1/users/{admin_user.id}", json={"active": False}, headers=bearer(admin)
    )
    assert response.status_code == 409
    assert client.get("/api/v1/auth/me", headers=bearer(admin)).status_code == 200


def test_patient_logins_need_a_mobile_and_are_unique_per_clinic(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = admin_token(db, ident, tenant)
    phone = unique_mobile()
    body = {"name": "Suresh", "role": "patient", "phone": phone}
    assert client.post("/api/v1/users", json=body, headers=bearer(admin)).status_code == 201
    again = client.post("/api/v1/users", json=body, headers=bearer(admin))
    assert again.status_code == 409
    landline = client.post(
        "/api/v1/users", json={**body, "phone": "+912025531234"}, headers=bearer(admin)
    )
    assert landline.status_code == 422


# --------------------------------------------------------------------------- pages


def test_staff_pages_sign_in_set_up_mfa_and_sign_out(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor", name="Dr. Anjali Deshmukh")
    form = client.get(f"/sign-in?clinic={tenant.slug}")
    assert f'value="{tenant.slug}"' in form.text

    bad = client.post(
        "/sign-in", data={"clinic": tenant.slug, "email": user.email, "password": "nope"}
    )
    assert bad.status_code == 401
    assert "The clinic code, email or password is not right." in bad.text
    assert f'value="{user.email}"' in bad.text  # what was typed stays, except the password
    assert "nope" not in bad.text

    home = client.post(
        "/sign-in", data={"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD}
    )
    assert home.url.path == "/app"
    assert "Namaste, Dr. Anjali Deshmukh" in home.text

    setup = client.post("/account/mfa/start", data={"csrf_token": csrf_of(home.text)})
    assert "<svg" in setup.text
    secret = re.search(r"<code>([A-Z2-7]{32})</code>", setup.text)
    assert secret
    codes_page = client.post(
        "/account/mfa/confirm",
        data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": csrf_of(setup.text)},
    )
    assert codes_page.status_code == 200
    assert codes_page.text.count("<li>") >= 10

    account = client.get("/account")
    out = client.post("/sign-out", data={"csrf_token": csrf_of(account.text)})
    assert out.url.path == "/sign-in"
    assert "You have signed out." in out.text
    assert client.get("/app", follow_redirects=False).status_code == 303

    pending = client.post(
        "/sign-in", data={"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD}
    )
    assert pending.url.path == "/sign-in/mfa"


def test_patient_pages_sign_in_through_the_dev_inbox(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    make_user(db, ident, tenant, "patient", phone=phone, name="अमित शर्मा")
    landline = client.post(
        "/patient/sign-in", data={"clinic": tenant.slug, "phone": "020 2553 1234"}
    )
    assert landline.status_code == 422
    assert "must be a mobile number" in landline.text

    sent = client.post("/patient/sign-in", data={"clinic": tenant.slug, "phone": phone})
    assert sent.url.path == "/patient/sign-in/code"
    inbox = client.get("/dev/inbox")
    code = latest_code(db, cipher, tenant, phone)
    assert code in inbox.text

    wrong = client.post(
        "/patient/sign-in/code", data={"code": "000000" if code != "000000" else "111111"}
    )
    assert wrong.status_code == 401
    home = client.post("/patient/sign-in/code", data={"code": code})
    assert home.url.path == "/me"
    assert "Namaste, अमित शर्मा" in home.text
    assert SESSION_COOKIE in client.cookies


def test_admin_pages_manage_users_and_devices(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = make_user(db, ident, tenant, "admin")
    waiting = make_user(db, ident, tenant, "pharmacy", device_approval_required=True, name="Sameer")
    with TestClient(client.app) as other_browser:
        other_browser.post(
            "/sign-in",
            data={"clinic": tenant.slug, "email": waiting.email, "password": STAFF_PASSWORD},
        )
        assert "needs approval" in other_browser.get("/sign-in/device").text

    client.post(
        "/sign-in", data={"clinic": tenant.slug, "email": admin.email, "password": STAFF_PASSWORD}
    )
    users_page = client.get("/admin/users")
    assert "Sameer" in users_page.text
    created = client.post(
        "/admin/users",
        data={
            "name": "<script>x</script> Nurse",
            "role": "frontdesk",
            "email": "nurse@example.in",
            "password": "short",
            "csrf_token": csrf_of(users_page.text),
        },
    )
    assert created.status_code == 422
    assert "at least 10 characters" in created.text
    assert "<script>x</script>" not in created.text

    devices = client.get("/admin/devices?status=pending")
    assert "Sameer" in devices.text and "Waiting" in devices.text
    device_id = re.search(r"/admin/devices/([0-9a-f-]{36})/approve", devices.text)
    assert device_id
    approved = client.post(
        f"/admin/devices/{device_id.group(1)}/approve", data={"csrf_token": csrf_of(devices.text)}
    )
    assert "Device approved." in approved.text
    log = client.get("/admin/sign-ins")
    assert "device-approved" in log.text and "sign-in-succeeded" in log.text
