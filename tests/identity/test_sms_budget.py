"""SMS pumping: a clinic's daily budget of sign-in codes, a limit per number prefix, the
admins' warning, and the same answer for numbers the clinic knows and numbers it does not.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.app import create_app
from opdesk.audit.models import AuditEvent
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.identity.service import SMS_BUDGET_SPENT, SMS_SENDS_PREFIX
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy.models import Tenant
from tests.factories import clinic_session, latest_code, make_user, open_session, unique_mobile
from tests.factories.web import cookie_browser

BUDGET = 5  # warned at 4 (80%)


@pytest.fixture(scope="module")
def small_budget_app(settings: Settings, db: Database, keyring: StaticKeyring) -> FastAPI:
    return create_app(
        settings.model_copy(update={"sms_daily_budget": BUDGET}), database=db, keyring=keyring
    )


@pytest.fixture
def stranger(small_budget_app: FastAPI) -> Iterator[TestClient]:
    with cookie_browser(small_budget_app, None) as client:
        yield client


def ask(client: TestClient, tenant: Tenant, phone: str, **extra: Any) -> Any:
    return client.post("/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": phone, **extra})


def same_answer(a: Any, b: Any) -> bool:
    def shape(r: Any) -> tuple[Any, ...]:
        body = r.json()
        return r.status_code, body.get("title"), body.get("detail"), body.get("errors")

    return shape(a) == shape(b)


def budget_events(db: Database, tenant: Tenant) -> list[tuple[str, int]]:
    with clinic_session(db, tenant.id) as session:
        rows = session.execute(
            select(AuditEvent)
            .where(AuditEvent.to_state.in_(("sms-budget-near", "sms-budget-reached")))
            .order_by(AuditEvent.seq)
        ).scalars()
        return [(e.to_state or "", e.diff["added"]["used"]) for e in rows]


def test_the_daily_budget_stops_codes_warns_admins_and_answers_every_number_alike(
    small_budget_app: FastAPI,
    stranger: TestClient,
    db: Database,
    ident: Any,
    cipher: Any,
    tenant: Tenant,
) -> None:
    known = unique_mobile()
    make_user(db, ident, tenant, "patient", phone=known)
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    with cookie_browser(small_budget_app, admin) as browser:
        assert "running low" not in browser.get("/admin/users").text

        for _ in range(BUDGET - 2):
            assert ask(stranger, tenant, unique_mobile()).status_code == 200
        with cookie_browser(small_budget_app, None) as own:
            # The known patient signs in on their phone, which is then recognised.
            assert ask(own, tenant, known).status_code == 200
            attempt = own.post("/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": known})
            assert attempt.status_code == 200
            code = latest_code(db, cipher, tenant, known)
            proof = own.post(
                "/api/v1/auth/otp/verify",
                json={"attempt": attempt.json()["attempt"], "code": code},
            ).json()["proof"]
            device = own.post(
                "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": tenant.slug}
            ).json()["deviceToken"]
        # (BUDGET - 2) + 2 codes: the fourth warned the admins, the fifth spent the budget.
        assert budget_events(db, tenant) == [
            ("sms-budget-near", BUDGET - 1),
            ("sms-budget-reached", BUDGET),
        ]
        warned = browser.get("/admin/users")
        assert "Sign-in codes by SMS have stopped" in warned.text
        assert browser.get("/admin/sign-ins").text.count("sms-budget-") >= 2

    to_known = ask(stranger, tenant, known)
    to_unknown = ask(stranger, tenant, unique_mobile())
    assert to_known.status_code == 429
    assert to_known.json()["detail"] == SMS_BUDGET_SPENT
    assert same_answer(to_known, to_unknown)
    # The patient's own recognised phone still gets its code.
    with cookie_browser(small_budget_app, None) as own:
        assert ask(own, tenant, known, deviceToken=device).status_code == 200


def test_codes_to_one_number_prefix_are_limited_per_hour_alike_for_known_and_unknown(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    block = f"+9197{secrets.randbelow(1000):03d}"  # one operator block: 7 digits
    numbers = iter(f"{block}{n:05d}" for n in range(100_000))
    known = next(numbers)
    make_user(db, ident, tenant, "patient", phone=known)
    sent = 0
    while sent < SMS_SENDS_PREFIX.count:
        # Several addresses, so the per-address limit is not what stops them.
        with cookie_browser(app, None) as client:
            for _ in range(min(10, SMS_SENDS_PREFIX.count - sent)):
                assert ask(client, tenant, next(numbers)).status_code == 200
                sent += 1
    with cookie_browser(app, None) as client:
        to_known = ask(client, tenant, known)
        to_unknown = ask(client, tenant, next(numbers))
        elsewhere = ask(client, tenant, unique_mobile())
    assert to_known.status_code == 429
    assert same_answer(to_known, to_unknown)
    assert elsewhere.status_code == 200
