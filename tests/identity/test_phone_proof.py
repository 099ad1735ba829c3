"""The phone proof (a verified code, used to choose the clinic) opens one session, once."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.identity.models import AuthSession, User
from opdesk.tenancy.models import Tenant
from tests.factories import clinic_session, latest_code, make_tenant, make_user, unique_mobile
from tests.factories.web import cookie_browser


def verified_proof(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, phone: str
) -> str:
    attempt = client.post("/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": phone})
    code = latest_code(db, cipher, tenant, phone)
    verified = client.post(
        "/api/v1/auth/otp/verify", json={"attempt": attempt.json()["attempt"], "code": code}
    )
    assert verified.status_code == 200, verified.text
    proof: str = verified.json()["proof"]
    return proof


def sessions_of(db: Database, tenant: Tenant, user: User) -> int:
    with clinic_session(db, tenant.id) as session:
        return int(
            session.execute(
                select(func.count()).select_from(AuthSession).where(AuthSession.user_id == user.id)
            ).scalar_one()
        )


def test_a_phone_proof_opens_one_session_and_is_refused_the_second_time(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    patient = make_user(db, ident, tenant, "patient", phone=phone)
    proof = verified_proof(client, db, cipher, tenant, phone)
    body = {"proof": proof, "clinic": tenant.slug}
    assert client.post("/api/v1/auth/patient-sign-in", json=body).status_code == 200
    replay = client.post("/api/v1/auth/patient-sign-in", json=body)
    assert replay.status_code == 401
    assert "used already" in replay.json()["detail"]
    assert sessions_of(db, tenant, patient) == 1


def test_a_proof_used_at_one_clinic_does_not_open_another(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    other = make_tenant(db, "Second Clinic")
    make_user(db, ident, tenant, "patient", phone=phone)
    there = make_user(db, ident, other, "patient", phone=phone)
    proof = verified_proof(client, db, cipher, tenant, phone)
    first = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": tenant.slug}
    )
    assert first.status_code == 200
    second = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": other.slug}
    )
    assert second.status_code == 401
    assert sessions_of(db, other, there) == 0


def test_two_uses_at_once_open_exactly_one_session(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    patient = make_user(db, ident, tenant, "patient", phone=phone)
    with cookie_browser(app, None) as client:
        proof = verified_proof(client, db, cipher, tenant, phone)
    start = threading.Barrier(4)
    statuses: list[int] = []

    def use() -> None:
        with cookie_browser(app, None) as mine:
            start.wait()
            answer = mine.post(
                "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": tenant.slug}
            )
            statuses.append(answer.status_code)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200, 401, 401, 401]
    assert sessions_of(db, tenant, patient) == 1


def test_the_clinic_choice_page_refuses_a_proof_used_already(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    other = make_tenant(db, "Choice Clinic")
    make_user(db, ident, tenant, "patient", phone=phone)
    make_user(db, ident, other, "patient", phone=phone)
    with cookie_browser(app, None) as browser:
        browser.post("/patient/sign-in", data={"clinic": tenant.slug, "phone": phone})
        code = latest_code(db, cipher, tenant, phone)
        choices = browser.post("/patient/sign-in/code", data={"code": code})
        assert choices.status_code == 200 and other.name in choices.text
        proof_cookie = dict(browser.cookies)
    with cookie_browser(app, None) as first:
        first.cookies.update(proof_cookie)
        chosen = first.post(
            "/patient/sign-in/clinic", data={"clinic": other.slug}, follow_redirects=False
        )
        assert chosen.status_code == 303 and chosen.headers["location"] == "/me"
    with cookie_browser(app, None) as replay:
        replay.cookies.update(proof_cookie)
        again = replay.post(
            "/patient/sign-in/clinic", data={"clinic": tenant.slug}, follow_redirects=True
        )
    assert "used already" in again.text
    assert again.url.path == "/patient/sign-in"
