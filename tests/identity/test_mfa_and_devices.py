"""TOTP enrolment and sign-in, replay, recovery codes, admin reset, required MFA, devices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.db import Database
from opdesk.identity.models import Device, User
from opdesk.identity.service import MFA_FAILS_SESSION, RECOVERY_CODES
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import DEVICE_COOKIE
from tests.factories import STAFF_PASSWORD, bearer, clinic_session, make_user, open_session


def sign_in(
    client: TestClient, tenant: Tenant, user: User, device: str | None = None
) -> dict[str, Any]:
    body = {"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD}
    if device:
        body["deviceToken"] = device
    response = client.post("/api/v1/auth/sign-in", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def enrol(client: TestClient, token: str, at: datetime) -> tuple[pyotp.TOTP, list[str], str]:
    """Turn MFA on for the token's user at time ``at``; returns TOTP, recovery codes, token."""
    with time_machine.travel(at, tick=False):
        started = client.post("/api/v1/auth/mfa/enrolment", headers=bearer(token)).json()
        totp = pyotp.TOTP(started["secret"])
        confirmed = client.post(
            "/api/v1/auth/mfa/enrolment/confirm",
            json={"code": totp.at(at)},
            headers=bearer(token),
        )
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    return totp, body["recoveryCodes"], body.get("token") or token


def test_enrolment_gives_a_qr_code_and_ten_recovery_codes(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    token = sign_in(client, tenant, user)["token"]
    started = client.post("/api/v1/auth/mfa/enrolment", headers=bearer(token)).json()
    assert started["otpauthUri"].startswith("otpauth://totp/OPDesk:")
    assert started["qrSvg"].startswith("<svg")
    with clinic_session(db, tenant.id) as session:
        stored = session.get(User, (tenant.id, user.id))
        assert stored is not None and stored.mfa_secret is not None
        assert started["secret"].encode() not in stored.mfa_secret  # encrypted at rest
        assert not stored.mfa_enabled

    wrong = client.post(
        "/api/v1/auth/mfa/enrolment/confirm", json={"code": "000000"}, headers=bearer(token)
    )
    assert wrong.status_code == 422
    _, codes, _ = enrol(client, token, datetime.now(UTC))
    assert len(set(codes)) == RECOVERY_CODES


def test_sign_in_with_mfa_rejects_a_replayed_code(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    start = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        token = sign_in(client, tenant, user)["token"]
    totp, _, _ = enrol(client, token, start)

    later = start + timedelta(minutes=2)
    with time_machine.travel(later, tick=False):
        pending = sign_in(client, tenant, user)
        assert pending["stage"] == "mfa"
        # A half-signed-in session can do nothing else yet.
        assert client.get("/api/v1/users", headers=bearer(pending["token"])).status_code == 401
        code = totp.at(later)
        done = client.post(
            "/api/v1/auth/mfa/verify", json={"code": code}, headers=bearer(pending["token"])
        )
        assert done.status_code == 200
        full = done.json()["token"]
        assert full != pending["token"]  # stepping up issues a new token
        assert client.get("/api/v1/auth/me", headers=bearer(full)).json()["stage"] == "active"
        assert client.get("/api/v1/auth/me", headers=bearer(pending["token"])).status_code == 401

        again = sign_in(client, tenant, user)
        replay = client.post(
            "/api/v1/auth/mfa/verify", json={"code": code}, headers=bearer(again["token"])
        )
        assert replay.status_code == 401
    with time_machine.travel(later + timedelta(seconds=30), tick=False):
        fresh = client.post(
            "/api/v1/auth/mfa/verify",
            json={"code": totp.at(later + timedelta(seconds=30))},
            headers=bearer(again["token"]),
        )
        assert fresh.status_code == 200


def test_recovery_codes_work_once_and_wrong_codes_lock_the_attempt(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "admin")
    now = datetime.now(UTC)
    token = sign_in(client, tenant, user)["token"]
    _, codes, _ = enrol(client, token, now)

    pending = sign_in(client, tenant, user)["token"]
    used = client.post(
        "/api/v1/auth/mfa/verify", json={"recoveryCode": codes[0].upper()}, headers=bearer(pending)
    )
    assert used.status_code == 200
    pending = sign_in(client, tenant, user)["token"]
    reused = client.post(
        "/api/v1/auth/mfa/verify", json={"recoveryCode": codes[0]}, headers=bearer(pending)
    )
    assert reused.status_code == 401

    # One failure so far (the reused code); four more, then the attempt is locked and over.
    statuses = [
        client.post(
            "/api/v1/auth/mfa/verify", json={"code": "123456"}, headers=bearer(pending)
        ).status_code
        for _ in range(MFA_FAILS_SESSION.count + 1)
    ]
    assert statuses == [401] * (MFA_FAILS_SESSION.count - 1) + [429, 401]
    # The locked attempt is over: even a good recovery code cannot finish it.
    assert (
        client.post(
            "/api/v1/auth/mfa/verify", json={"recoveryCode": codes[1]}, headers=bearer(pending)
        ).status_code
        == 401
    )


def test_enrolling_ends_other_sessions_and_admin_reset_turns_mfa_off(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    here = sign_in(client, tenant, user)["token"]
    elsewhere = sign_in(client, tenant, user)["token"]
    _, _, here = enrol(client, here, datetime.now(UTC))
    assert client.get("/api/v1/auth/me", headers=bearer(elsewhere)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(here)).status_code == 200

    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    reset = client.post(f"/api/v1/users/{user.id}/mfa-reset", headers=bearer(admin))
    assert reset.status_code == 200
    assert reset.json()["mfaEnabled"] is False
    assert client.get("/api/v1/auth/me", headers=bearer(here)).status_code == 401
    assert sign_in(client, tenant, user)["stage"] == "active"

    log = client.get("/api/v1/sign-in-log", headers=bearer(admin)).json()
    events = {entry["event"] for entry in log}
    assert {"mfa-enrolled", "mfa-reset", "session-ended", "sign-in-succeeded"} <= events


def test_clinic_can_require_mfa_for_a_role(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    client.put(
        "/api/v1/clinic/security", json={"mfaRequiredRoles": ["doctor"]}, headers=bearer(admin)
    )
    doctor = make_user(db, ident, tenant, "doctor")
    desk = make_user(db, ident, tenant, "frontdesk")
    assert sign_in(client, tenant, desk)["stage"] == "active"
    pending = sign_in(client, tenant, doctor)
    assert pending["stage"] == "mfa-enrol"
    assert client.get("/api/v1/users", headers=bearer(pending["token"])).status_code == 401
    _, _, token = enrol(client, pending["token"], datetime.now(UTC))
    assert token != pending["token"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).json()["stage"] == "active"


def test_a_new_device_waits_for_approval_and_revoking_ends_its_sessions(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "pharmacy", device_approval_required=True)
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    first = sign_in(client, tenant, user)
    assert first["stage"] == "device"
    device_token = first["deviceToken"]
    assert client.get("/api/v1/auth/me", headers=bearer(first["token"])).json()["stage"] == "device"

    pending = client.get("/api/v1/devices?status=pending", headers=bearer(admin)).json()
    [device] = [d for d in pending if d["userId"] == str(user.id)]
    assert (
        client.post(f"/api/v1/devices/{device['id']}/approve", headers=bearer(admin)).status_code
        == 200
    )
    assert client.get("/api/v1/auth/me", headers=bearer(first["token"])).json()["stage"] == "active"

    # The same browser is recognised next time; another browser is a new device.
    assert sign_in(client, tenant, user, device_token)["stage"] == "active"
    other = sign_in(client, tenant, user)
    assert other["stage"] == "device"
    assert other["deviceToken"] != device_token

    assert (
        client.post(f"/api/v1/devices/{device['id']}/revoke", headers=bearer(admin)).status_code
        == 200
    )
    assert client.get("/api/v1/auth/me", headers=bearer(first["token"])).status_code == 401
    again = sign_in(client, tenant, user, device_token)
    assert again["stage"] == "device"  # a revoked device starts over
    assert (
        client.post(f"/api/v1/devices/{device['id']}/approve", headers=bearer(admin)).status_code
        == 409
    )


def test_browser_gets_a_long_lived_device_cookie(
    client: TestClient, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "frontdesk")
    page = client.post(
        "/sign-in",
        data={"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD},
        follow_redirects=False,
    )
    assert DEVICE_COOKIE in page.cookies
    client.post(
        "/sign-in", data={"clinic": tenant.slug, "email": user.email, "password": STAFF_PASSWORD}
    )
    with clinic_session(db, tenant.id) as session:
        devices = session.execute(select(Device).where(Device.user_id == user.id)).scalars().all()
    assert len(devices) == 1
    assert devices[0].approved
