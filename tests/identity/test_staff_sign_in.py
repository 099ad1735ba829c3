"""Staff sign-in, lockout, sessions (fixation, timeouts, sign-out, deactivation), CSRF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.app import create_app
from opdesk.db import Database
from opdesk.identity.models import AuthSession
from opdesk.identity.service import GENERIC_SIGN_IN_FAILURE, PASSWORD_FAILS_ACCOUNT
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import (
    STAFF_PASSWORD,
    bearer,
    clinic_session,
    make_tenant,
    make_user,
    open_session,
)


def sign_in(
    client: TestClient, tenant: Tenant, email: str | None, password: str = STAFF_PASSWORD
) -> Any:
    assert email is not None
    return client.post(
        "/api/v1/auth/sign-in",
        json={"clinic": tenant.slug, "email": email, "password": password},
    )


def test_sign_in_gives_a_working_token(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    assert user.email is not None
    response = sign_in(client, tenant, user.email.upper())  # emails compare case-insensitively
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stage"] == "active"
    assert body["token"].startswith(str(tenant.id) + ".")
    me = client.get("/api/v1/auth/me", headers=bearer(body["token"]))
    assert me.json()["userId"] == str(user.id)
    assert me.json()["role"] == "doctor"


@pytest.mark.parametrize("case", ["wrong-password", "unknown-email", "unknown-clinic"])
def test_failures_all_look_the_same(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, case: str
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    clinic, email, password = tenant.slug, user.email, STAFF_PASSWORD
    if case == "wrong-password":
        password = "not the password"
    elif case == "unknown-email":
        email = "nobody@example.in"
    else:
        clinic = "no-such-clinic"
    response = client.post(
        "/api/v1/auth/sign-in", json={"clinic": clinic, "email": email, "password": password}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == GENERIC_SIGN_IN_FAILURE


def test_inactive_user_cannot_sign_in_even_with_the_right_password(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    client.patch(f"/api/v1/users/{user.id}", json={"active": False}, headers=bearer(admin))
    assert sign_in(client, tenant, user.email).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"clinic": "Bad Code!"}, "clinic"),
        ({"password": ""}, "password"),
    ],
)
def test_malformed_sign_in_is_422_naming_the_field(
    client: TestClient, tenant: Tenant, body: dict[str, str], field: str
) -> None:
    full = {"clinic": tenant.slug, "email": "x@example.in", "password": "x", **body}
    response = client.post("/api/v1/auth/sign-in", json=full)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_password_brute_force_hits_the_account_lockout(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "accounts")
    statuses = [sign_in(client, tenant, user.email, f"guess-{i}").status_code for i in range(8)]
    assert statuses[: PASSWORD_FAILS_ACCOUNT.count] == [401] * PASSWORD_FAILS_ACCOUNT.count
    assert set(statuses[PASSWORD_FAILS_ACCOUNT.count :]) == {429}
    locked = sign_in(client, tenant, user.email)  # the right password does not help now
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "Try again in" in locked.json()["detail"]


def test_lockout_is_shared_by_every_app_process(
    settings: Any, db: Database, keyring: StaticKeyring, ident: Any, tenant: Tenant
) -> None:
    """Two app instances (own engines and pools) agree, because counts live in PostgreSQL."""
    user = make_user(db, ident, tenant, "doctor")
    other = Database(db.owner_url, db.app_url, pool_size=2)
    with (
        TestClient(create_app(settings, database=db, keyring=keyring)) as first,
        TestClient(create_app(settings, database=other, keyring=keyring)) as second,
    ):
        for i in range(PASSWORD_FAILS_ACCOUNT.count):
            (first if i % 2 else second).post(
                "/api/v1/auth/sign-in",
                json={"clinic": tenant.slug, "email": user.email, "password": f"x{i}"},
            )
        assert sign_in(second, tenant, user.email).status_code == 429
        assert sign_in(first, tenant, user.email).status_code == 429
    other.dispose()


def test_lockout_lifts_after_the_window(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, app: FastAPI
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        for i in range(PASSWORD_FAILS_ACCOUNT.count):
            sign_in(client, tenant, user.email, f"x{i}")
        assert sign_in(client, tenant, user.email).status_code == 429
    with time_machine.travel(start + PASSWORD_FAILS_ACCOUNT.window + timedelta(seconds=1)):
        assert sign_in(client, tenant, user.email).status_code == 200


def test_session_fixation_a_planted_cookie_is_replaced(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    planted = f"{tenant.id}.{'a' * 43}"
    client.cookies.set(SESSION_COOKIE, planted)
    page = client.post(
        "/sign-in",
        data={"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD},
        follow_redirects=False,
    )
    assert page.status_code == 303
    issued = page.cookies.get(SESSION_COOKIE)
    assert issued and issued != planted
    assert client.get("/api/v1/auth/me", headers=bearer(planted)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(issued)).status_code == 200
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_each_sign_in_gets_a_new_token(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    tokens = {sign_in(client, tenant, user.email).json()["token"] for _ in range(3)}
    assert len(tokens) == 3


def test_idle_timeout_and_absolute_lifetime(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        token = sign_in(client, tenant, user.email).json()["token"]
    # Active every 20 minutes: stays signed in until the 12-hour limit.
    moment = start
    while moment < start + timedelta(hours=11, minutes=40):
        moment += timedelta(minutes=20)
        with time_machine.travel(moment, tick=False):
            assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    with time_machine.travel(start + timedelta(hours=12, minutes=1), tick=False):
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401

    with time_machine.travel(start, tick=False):
        idle_token = sign_in(client, tenant, user.email).json()["token"]
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        assert client.get("/api/v1/auth/me", headers=bearer(idle_token)).status_code == 401
    with clinic_session(db, tenant.id) as session:
        reasons = set(
            session.execute(
                select(AuthSession.end_reason).where(AuthSession.user_id == user.id)
            ).scalars()
        )
    assert {"expired", "idle"} <= reasons


def test_sign_out_ends_the_session(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "pharmacy")
    token = sign_in(client, tenant, user.email).json()["token"]
    assert client.post("/api/v1/auth/sign-out", headers=bearer(token)).status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401


def test_a_deactivated_users_live_session_stops_at_once(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    token = sign_in(client, tenant, user.email).json()["token"]
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"active": False}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401


def test_password_change_ends_the_other_sessions_only(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    here = sign_in(client, tenant, user.email).json()["token"]
    elsewhere = sign_in(client, tenant, user.email).json()["token"]
    weak = client.post(
        "/api/v1/auth/password",
        json={"current": STAFF_PASSWORD, "new": "short"},
        headers=bearer(here),
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "new"
    wrong = client.post(
        "/api/v1/auth/password",
        json={"current": "nope", "new": "a much longer one"},
        headers=bearer(here),
    )
    assert wrong.status_code == 422
    changed = client.post(
        "/api/v1/auth/password",
        json={"current": STAFF_PASSWORD, "new": "a much longer one"},
        headers=bearer(here),
    )
    assert changed.status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer(here)).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(elsewhere)).status_code == 401
    assert sign_in(client, tenant, user.email, "a much longer one").status_code == 200


def test_cookie_sessions_need_the_csrf_token_for_unsafe_requests(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "admin")
    client.post(
        "/sign-in",
        data={"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD},
    )
    page = client.get("/admin/security")
    assert page.status_code == 200
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert len(token) == 40

    without = client.post("/admin/security", data={"mfa_roles": "doctor"}, follow_redirects=False)
    assert without.status_code == 403
    forged = client.post(
        "/admin/security",
        data={"mfa_roles": "doctor", "csrf_token": "0" * 40},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    cross_site = client.post(
        "/admin/security",
        data={"mfa_roles": "doctor", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross_site.status_code == 403
    with clinic_session(db, tenant.id) as session:
        assert session.get(Tenant, tenant.id).mfa_required_roles == []  # type: ignore[union-attr]

    ok = client.post(
        "/admin/security", data={"mfa_roles": "doctor", "csrf_token": token}, follow_redirects=False
    )
    assert ok.status_code == 303
    via_header = client.put(
        "/api/v1/clinic/security", json={"mfaRequiredRoles": []}, headers={"X-CSRF-Token": token}
    )
    assert via_header.status_code == 200


def test_bearer_requests_need_no_csrf_token(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    response = client.put(
        "/api/v1/clinic/security", json={"mfaRequiredRoles": ["doctor"]}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert response.json() == {"mfaRequiredRoles": ["doctor"]}


def test_tokens_of_another_clinic_or_garbage_are_rejected(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    token = open_session(db, ident, user)
    other = make_tenant(db)
    secret = token.split(".", 1)[1]
    for bad in (f"{other.id}.{secret}", "garbage", f"{tenant.id}.short", token + "x"):
        assert client.get("/api/v1/auth/me", headers=bearer(bad)).status_code == 401
