"""Patient sign-in by phone OTP: delivery through the outbox, guessing, expiry, limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.identity.service import OTP_MAX_TRIES, OTP_SENDS_PHONE, OTP_TTL
from opdesk.notifications.models import OutboxMessage
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    clinic_session,
    latest_code,
    make_tenant,
    make_user,
    unique_mobile,
)


def request_code(client: TestClient, tenant: Tenant, phone: str, ip: str | None = None) -> Any:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return client.post(
        "/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": phone}, headers=headers
    )


def test_patient_signs_in_with_the_code_from_the_outbox(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    patient = make_user(db, ident, tenant, "patient", name="Lakshmi Iyer")
    phone = outbox_phone = None
    with clinic_session(db, tenant.id) as session:
        stored = session.get(type(patient), (tenant.id, patient.id))
        assert stored is not None and stored.phone_encrypted is not None
        phone = cipher.decrypt_str(
            stored.phone_encrypted,
            tenant_id=tenant.id,
            table="users",
            column="phone_encrypted",
            row_id=patient.id,
        )
    sent = request_code(client, tenant, phone[3:])  # typed without +91
    assert sent.status_code == 200
    attempt = sent.json()["attempt"]
    with clinic_session(db, tenant.id) as session:
        message = (
            session.execute(select(OutboxMessage).order_by(OutboxMessage.created_at.desc()))
            .scalars()
            .first()
        )
        assert message is not None and message.channel == "sms" and message.status == "pending"
        assert phone.encode() not in message.recipient  # encrypted at rest
    code = latest_code(db, cipher, tenant, phone)
    outbox_phone = phone

    verified = client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": code})
    assert verified.status_code == 200
    body = verified.json()
    assert body["clinics"] == [{"slug": tenant.slug, "name": tenant.name}]
    signed = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": body["proof"], "clinic": tenant.slug}
    )
    assert signed.status_code == 200
    token = signed.json()["token"]
    me = client.get("/api/v1/auth/me", headers=bearer(token)).json()
    assert (me["userId"], me["role"]) == (str(patient.id), "patient")
    # Used once: the same code and attempt do not work again.
    assert (
        client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": code}).status_code
        == 401
    )
    assert outbox_phone == phone


def test_a_thousand_guesses_never_succeed_and_the_code_dies_after_five(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    make_user(db, ident, tenant, "patient", phone=phone)
    attempt = request_code(client, tenant, phone).json()["attempt"]
    real = latest_code(db, cipher, tenant, phone)
    guesses = [f"{n:06d}" for n in range(1000) if f"{n:06d}" != real][:1000]
    successes = 0
    for guess in guesses:
        response = client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": guess})
        successes += response.status_code == 200
    assert successes == 0
    # After five wrong tries even the right code is refused.
    late = client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": real})
    assert late.status_code == 401
    from opdesk.identity.models import OtpToken
    from opdesk.security.tokens import token_hash

    with clinic_session(db, None) as session:
        tries = session.execute(
            select(OtpToken.attempts).where(OtpToken.attempt_hash == token_hash(attempt))
        ).scalar_one()
    assert tries == OTP_MAX_TRIES


def test_the_code_is_bound_to_the_attempt_that_asked_for_it(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    mine = request_code(client, tenant, phone).json()["attempt"]
    code = latest_code(db, cipher, tenant, phone)
    theirs = request_code(client, tenant, unique_mobile()).json()["attempt"]
    assert (
        client.post("/api/v1/auth/otp/verify", json={"attempt": theirs, "code": code}).status_code
        == 401
    )
    assert (
        client.post("/api/v1/auth/otp/verify", json={"attempt": mine, "code": code}).status_code
        == 200
    )


def test_codes_expire_after_five_minutes(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        attempt = request_code(client, tenant, phone).json()["attempt"]
    code = latest_code(db, cipher, tenant, phone)
    with time_machine.travel(start + OTP_TTL + timedelta(seconds=1), tick=False):
        late = client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": code})
    assert late.status_code == 401


def test_send_limits_per_phone_per_day_and_per_ip(client: TestClient, tenant: Tenant) -> None:
    phone = unique_mobile()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        statuses = [request_code(client, tenant, phone).status_code for _ in range(4)]
    assert statuses == [200] * OTP_SENDS_PHONE.count + [429]
    sent_today = OTP_SENDS_PHONE.count
    moment = start
    while sent_today < 10:
        moment += timedelta(minutes=16)
        with time_machine.travel(moment, tick=False):
            for _ in range(min(OTP_SENDS_PHONE.count, 10 - sent_today)):
                assert request_code(client, tenant, phone).status_code == 200
                sent_today += 1
    with time_machine.travel(moment + timedelta(minutes=16), tick=False):
        day_limit = request_code(client, tenant, phone)
    assert day_limit.status_code == 429
    assert int(day_limit.headers["retry-after"]) > 3600


def test_per_ip_limit(app: Any, tenant: Tenant) -> None:
    with TestClient(app, client=("198.51.100.7", 5000)) as from_one_ip:
        statuses = [
            request_code(from_one_ip, tenant, unique_mobile()).status_code for _ in range(21)
        ]
    assert statuses[:20] == [200] * 20
    assert statuses[20] == 429
    with TestClient(app, client=("198.51.100.8", 5000)) as elsewhere:
        assert request_code(elsewhere, tenant, unique_mobile()).status_code == 200


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        ("+91 20 2553 1234", "must be a mobile number, not a landline"),
        ("12345", "not a valid phone number"),
        ("hello", "not a phone number"),
    ],
)
def test_bad_phones_are_422_naming_the_field(
    client: TestClient, tenant: Tenant, phone: str, reason: str
) -> None:
    response = request_code(client, tenant, phone)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "phone"
    assert reason in error["reason"]


def test_codes_never_reach_the_logs(
    client: TestClient,
    db: Database,
    ident: Any,
    cipher: Any,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone = unique_mobile()
    make_user(db, ident, tenant, "patient", phone=phone)
    with caplog.at_level(logging.DEBUG):
        attempt = request_code(client, tenant, phone).json()["attempt"]
        code = latest_code(db, cipher, tenant, phone)
        proof = client.post(
            "/api/v1/auth/otp/verify", json={"attempt": attempt, "code": code}
        ).json()["proof"]
        token = client.post(
            "/api/v1/auth/patient-sign-in", json={"proof": proof, "clinic": tenant.slug}
        ).json()["token"]
    text = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert caplog.records, "the requests were logged"
    for secret in (code, attempt, proof, token, phone, phone[3:]):
        assert secret not in text


def test_phone_known_to_two_clinics_lists_both(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    other = make_tenant(db, "Another Clinic")
    make_user(db, ident, tenant, "patient", phone=phone)
    make_user(db, ident, other, "patient", phone=phone)
    attempt = request_code(client, tenant, phone).json()["attempt"]
    code = latest_code(db, cipher, tenant, phone)
    body = client.post("/api/v1/auth/otp/verify", json={"attempt": attempt, "code": code}).json()
    assert {c["slug"] for c in body["clinics"]} == {tenant.slug, other.slug}
    stranger = make_tenant(db, "Unknown To Patient")
    refused = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": body["proof"], "clinic": stranger.slug}
    )
    assert refused.status_code == 404
    signed = client.post(
        "/api/v1/auth/patient-sign-in", json={"proof": body["proof"], "clinic": other.slug}
    )
    assert signed.status_code == 200


def test_a_forged_or_expired_proof_is_refused(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/api/v1/auth/patient-sign-in",
        json={"proof": "eyJwIjoiMDAifQ.0000000000", "clinic": tenant.slug},
    )
    assert response.status_code == 401


def test_every_send_writes_one_outbox_row(client: TestClient, db: Database, tenant: Tenant) -> None:
    with clinic_session(db, tenant.id) as session:
        before = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    request_code(client, tenant, unique_mobile())
    with clinic_session(db, tenant.id) as session:
        after = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    assert after == before + 1
