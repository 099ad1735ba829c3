"""Lockouts that hold against guessing but cannot be turned on their owner: the sign-in
log with anonymous failures, change-password counted with the sign-in lockout, and the
recognised browser (staff and patients) that keeps trying while strangers are locked out.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.identity.service import (
    OTP_SENDS_DEVICE,
    OTP_SENDS_PHONE,
    PASSWORD_FAILS_ACCOUNT,
    PASSWORD_FAILS_DEVICE,
)
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import DEVICE_COOKIE, SESSION_COOKIE
from tests.factories import (
    STAFF_PASSWORD,
    bearer,
    browser_for,
    clinic_session,
    csrf_of,
    latest_code,
    make_user,
    open_session,
    unique_mobile,
)
from tests.factories.web import cookie_browser

NEW_PASSWORD = "a brand new passphrase"


def sign_in(client: TestClient, tenant: Tenant, email: str, password: str, **extra: Any) -> Any:
    body = {"clinic": tenant.slug, "email": email, "password": password, **extra}
    return client.post("/api/v1/auth/sign-in", json=body)


def events(db: Database, tenant: Tenant, name: str) -> list[AuditEvent]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.execute(
                select(AuditEvent).where(AuditEvent.to_state == name).order_by(AuditEvent.seq)
            ).scalars()
        )


def lock_out(app: FastAPI, tenant: Tenant, email: str, tries: int) -> None:
    """A stranger (another address, no device cookie) guessing ``tries`` times."""
    with cookie_browser(app, None) as stranger:
        for i in range(tries):
            assert sign_in(stranger, tenant, email, f"guess {i}").status_code in (401, 429)
        assert sign_in(stranger, tenant, email, STAFF_PASSWORD).status_code == 429


# --------------------------------------------------------------------------- 1. the log


def test_sign_in_log_lists_a_failed_sign_in_for_an_unknown_email_as_an_unknown_account(
    client: TestClient, app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    refused = sign_in(client, tenant, "nobody-here@example.in", "whatever it is")
    assert refused.status_code == 401

    log = client.get("/api/v1/sign-in-log", headers=bearer(admin))
    assert log.status_code == 200, log.text
    [entry] = [e for e in log.json() if e["event"] == "sign-in-failed"]
    assert entry["details"]["user"] == "unknown account"
    assert entry["details"]["email"] == "nobody-here@example.in"
    assert entry["details"]["reason"] == "bad-credentials"

    with browser_for(app, admin) as browser:
        page = browser.get("/admin/sign-ins")
    assert page.status_code == 200, page.text
    assert "unknown account" in page.text
    assert "nobody-here@example.in" in page.text


# --------------------------------------------------------------------------- 2. change-password


def test_change_password_failures_lock_even_the_right_password_out(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    assert user.email is not None
    signed = sign_in(client, tenant, user.email, STAFF_PASSWORD).json()
    headers = bearer(signed["token"])
    for i in range(PASSWORD_FAILS_DEVICE.count):
        wrong = client.post(
            "/api/v1/auth/password",
            json={"current": f"guess {i}", "new": NEW_PASSWORD},
            headers=headers,
        )
        assert wrong.status_code == 422
    right = client.post(
        "/api/v1/auth/password",
        json={"current": STAFF_PASSWORD, "new": NEW_PASSWORD},
        headers=headers,
    )
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) > 0
    # The password did not change, and every refusal is on record.
    assert sign_in(client, tenant, user.email, NEW_PASSWORD).status_code in (401, 429)
    reasons = [e.diff["added"]["reason"] for e in events(db, tenant, "password-change-failed")]
    assert reasons == ["wrong-current-password"] * PASSWORD_FAILS_DEVICE.count + ["locked-out"]


def test_change_password_failures_count_toward_the_sign_in_lockout(
    client: TestClient, app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    assert user.email is not None
    token = open_session(db, ident, user)
    for i in range(PASSWORD_FAILS_ACCOUNT.count):
        client.post(
            "/api/v1/auth/password",
            json={"current": f"guess {i}", "new": NEW_PASSWORD},
            headers=bearer(token),
        )
    with cookie_browser(app, None) as elsewhere:
        assert sign_in(elsewhere, tenant, user.email, STAFF_PASSWORD).status_code == 429


def test_change_password_page_refuses_with_429_after_the_limit(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "accounts")
    with cookie_browser(app, open_session(db, ident, user)) as browser:
        csrf = csrf_of(browser.get("/account").text)
        for i in range(PASSWORD_FAILS_ACCOUNT.count):
            wrong = browser.post(
                "/account/password",
                data={"csrf_token": csrf, "current": f"guess {i}", "new": NEW_PASSWORD},
            )
            assert wrong.status_code == 422
            assert "That is not your current password." in wrong.text
        locked = browser.post(
            "/account/password",
            data={"csrf_token": csrf, "current": STAFF_PASSWORD, "new": NEW_PASSWORD},
        )
    assert locked.status_code == 429
    assert "Too many attempts. Try again in" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    assert events(db, tenant, "password-changed") == []


# --------------------------------------------------------------------------- 3. staff browsers


def test_a_browser_that_signed_in_before_keeps_trying_while_strangers_are_locked_out(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "admin")
    assert user.email is not None
    with cookie_browser(app, None) as own:
        first = sign_in(own, tenant, user.email, STAFF_PASSWORD)
        assert first.status_code == 200
        device = first.json()["deviceToken"]
        lock_out(app, tenant, user.email, PASSWORD_FAILS_ACCOUNT.count)

        again = sign_in(own, tenant, user.email, STAFF_PASSWORD, deviceToken=device)
        assert again.status_code == 200, again.text
        # Its own counter: the recognised browser is not an unlimited oracle either.
        for i in range(PASSWORD_FAILS_DEVICE.count):
            wrong = sign_in(own, tenant, user.email, f"typo {i}", deviceToken=device)
            assert wrong.status_code == 401
        own_lock = sign_in(own, tenant, user.email, STAFF_PASSWORD, deviceToken=device)
        assert own_lock.status_code == 429
        # ...while a browser it never saw is still locked out.
        assert sign_in(own, tenant, user.email, STAFF_PASSWORD).status_code == 429


def test_a_browser_never_fully_signed_in_does_not_escape_the_lockout(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    """Passing the password on a device still awaiting approval is not a sign-in."""
    user = make_user(db, ident, tenant, "doctor", device_approval_required=True)
    assert user.email is not None
    pending = sign_in(client, tenant, user.email, STAFF_PASSWORD).json()
    assert pending["stage"] == "device"
    lock_out(app, tenant, user.email, PASSWORD_FAILS_ACCOUNT.count)
    again = sign_in(client, tenant, user.email, STAFF_PASSWORD, deviceToken=pending["deviceToken"])
    assert again.status_code == 429


def test_a_device_cookie_from_another_user_does_not_help(
    app: FastAPI, client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    mine = make_user(db, ident, tenant, "doctor")
    victim = make_user(db, ident, tenant, "admin")
    assert mine.email is not None and victim.email is not None
    device = sign_in(client, tenant, mine.email, STAFF_PASSWORD).json()["deviceToken"]
    lock_out(app, tenant, victim.email, PASSWORD_FAILS_ACCOUNT.count)
    borrowed = sign_in(client, tenant, victim.email, STAFF_PASSWORD, deviceToken=device)
    assert borrowed.status_code == 429


def test_the_sign_in_page_lets_its_recognised_browser_in_during_a_lockout(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    assert user.email is not None
    form = {"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD}
    with cookie_browser(app, None) as own:
        first = own.post("/sign-in", data=form, follow_redirects=False)
        assert first.status_code == 303
        assert own.cookies.get(DEVICE_COOKIE)
        own.cookies.delete(SESSION_COOKIE)  # signed out; the device cookie stays
        lock_out(app, tenant, user.email, PASSWORD_FAILS_ACCOUNT.count)
        again = own.post("/sign-in", data=form, follow_redirects=False)
    assert again.status_code == 303, again.text
    assert again.headers["location"] == "/app"


# --------------------------------------------------------------------------- 3. patients


def patient_sign_in(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, phone: str
) -> Any:
    attempt = client.post("/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": phone})
    assert attempt.status_code == 200, attempt.text
    code = latest_code(db, cipher, tenant, phone)
    proof = client.post(
        "/api/v1/auth/otp/verify", json={"attempt": attempt.json()["attempt"], "code": code}
    ).json()["proof"]
    signed = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": tenant.slug}
    )
    assert signed.status_code == 200, signed.text
    return signed.json()


def ask_code(client: TestClient, tenant: Tenant, phone: str, **extra: Any) -> Any:
    return client.post("/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": phone, **extra})


def test_a_stranger_asking_for_codes_does_not_lock_the_patient_out_of_their_own_phone(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    make_user(db, ident, tenant, "patient", phone=phone)
    with cookie_browser(app, None) as own:
        device = patient_sign_in(own, db, cipher, tenant, phone)["deviceToken"]
        assert device
    with cookie_browser(app, None) as stranger:
        statuses = [ask_code(stranger, tenant, phone).status_code for _ in range(6)]
    # The patient's own first request counted on the number too.
    allowed = OTP_SENDS_PHONE.count - 1
    assert statuses == [200] * allowed + [429] * (6 - allowed)
    with cookie_browser(app, None) as own:
        assert ask_code(own, tenant, phone).status_code == 429  # without its cookie
        mine = [
            ask_code(own, tenant, phone, deviceToken=device).status_code
            for _ in range(OTP_SENDS_DEVICE.count + 1)
        ]
    assert mine == [200] * OTP_SENDS_DEVICE.count + [429]


def test_the_patient_sign_in_page_remembers_the_phone_it_signed_in_on(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    make_user(db, ident, tenant, "patient", phone=phone)
    form = {"clinic": tenant.slug, "phone": phone}
    with cookie_browser(app, None) as own:
        assert own.post("/patient/sign-in", data=form, follow_redirects=False).status_code == 303
        code = latest_code(db, cipher, tenant, phone)
        signed = own.post("/patient/sign-in/code", data={"code": code}, follow_redirects=False)
        assert signed.status_code == 303 and signed.headers["location"] == "/me"
        assert own.cookies.get(DEVICE_COOKIE)
        own.cookies.delete(SESSION_COOKIE)  # signed out; the device cookie stays
        with cookie_browser(app, None) as stranger:
            for _ in range(OTP_SENDS_PHONE.count + 1):
                stranger.post("/patient/sign-in", data=form, follow_redirects=False)
            refused = stranger.post("/patient/sign-in", data=form, follow_redirects=False)
            assert refused.status_code == 429
        again = own.post("/patient/sign-in", data=form, follow_redirects=False)
    assert again.status_code == 303, again.text
    assert again.headers["location"] == "/patient/sign-in/code"
