"""Verifying a patient's ABHA number by ABDM's login OTP (issue 18, item 3), through the
API and the desk's page, against the fake gateway's ABHA service (which decrypts what
OPDesk encrypted with its public key)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.abdm.settings import Abdm
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from tests.factories import bearer, browser_for, csrf_of, make_patient, make_user, open_session
from tests.factories.registration import field_errors
from tests.fakes.abdm_gateway import TEST_ABHA, TEST_OTP, FakeAbdmGateway

SHOWN = f"{TEST_ABHA[:2]}-{TEST_ABHA[2:6]}-{TEST_ABHA[6:10]}-{TEST_ABHA[10:]}"


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def test_the_right_code_verifies_the_number_and_adds_the_abha_address(
    gateway_side: TestClient,
    clinic: Abdm,
    db: Database,
    ident: Any,
    tenant: Tenant,
    desk: dict[str, str],
    gateway: FakeAbdmGateway,
) -> None:
    patient = make_patient(db, ident, tenant, abhaNumber=TEST_ABHA)
    base = f"/api/v1/abdm/patients/{patient.id}"
    sent = gateway_side.post(f"{base}/abha-otp", json={}, headers=desk)
    assert sent.status_code == 200, sent.text
    assert sent.json()["abhaNumber"] == SHOWN
    wrong = gateway_side.post(
        f"{base}/abha-verify", json={"check": sent.json()["check"], "otp": "000000"}, headers=desk
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "otp"
    right = gateway_side.post(
        f"{base}/abha-verify", json={"check": sent.json()["check"], "otp": TEST_OTP}, headers=desk
    )
    assert right.status_code == 200, right.text
    assert right.json()["abhaVerifiedAt"] is not None
    assert right.json()["abhaAddress"] == "asha.verma@sbx"
    # ABDM received the number encrypted, and it decrypted to the dashed number.
    assert SHOWN in gateway.abha_plaintexts


def test_a_check_of_one_patient_cannot_verify_another(
    gateway_side: TestClient,
    clinic: Abdm,
    db: Database,
    ident: Any,
    tenant: Tenant,
    desk: dict[str, str],
) -> None:
    first = make_patient(db, ident, tenant, abhaNumber=TEST_ABHA)
    other = make_patient(db, ident, tenant)
    sent = gateway_side.post(f"/api/v1/abdm/patients/{first.id}/abha-otp", json={}, headers=desk)
    stolen = gateway_side.post(
        f"/api/v1/abdm/patients/{other.id}/abha-verify",
        json={"check": sent.json()["check"], "otp": TEST_OTP},
        headers=desk,
    )
    assert stolen.status_code == 422
    assert "lapsed" in stolen.json()["errors"][0]["reason"]


def test_a_bad_number_is_refused_before_abdm_is_asked(
    gateway_side: TestClient,
    clinic: Abdm,
    db: Database,
    ident: Any,
    tenant: Tenant,
    desk: dict[str, str],
    gateway: FakeAbdmGateway,
) -> None:
    patient = make_patient(db, ident, tenant)
    answer = gateway_side.post(
        f"/api/v1/abdm/patients/{patient.id}/abha-otp",
        json={"abhaNumber": "12-3456"},
        headers=desk,
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "abhaNumber"
    assert gateway.abha_plaintexts == []


def test_a_clinic_not_on_abdm_is_told_so(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, desk: dict[str, str]
) -> None:
    patient = make_patient(db, ident, tenant, abhaNumber=TEST_ABHA)
    answer = client.post(f"/api/v1/abdm/patients/{patient.id}/abha-otp", json={}, headers=desk)
    assert answer.status_code == 409
    assert "not connected to ABDM" in answer.json()["detail"]


def test_the_desk_verifies_on_the_page(
    bridge_app: FastAPI, clinic: Abdm, db: Database, ident: Any, tenant: Tenant
) -> None:
    patient = make_patient(
        db, ident, tenant, name={"first": "आशा", "last": "वर्मा"}, abhaNumber=TEST_ABHA
    )
    page = browser_for(
        bridge_app, open_session(db, ident, make_user(db, ident, tenant, "frontdesk"))
    )
    profile = page.get(f"/patients/{patient.id}").text
    assert f'href="/patients/{patient.id}/abha"' in profile
    form = page.get(f"/patients/{patient.id}/abha").text
    assert "आशा वर्मा" in form and SHOWN in form
    sent = page.post(
        f"/patients/{patient.id}/abha/send", data={"csrf_token": csrf_of(form), "abhaNumber": SHOWN}
    )
    assert sent.status_code == 200 and "Code from the SMS" in sent.text
    check = sent.text.split('name="check" value="')[1].split('"')[0]
    fields = {"csrf_token": csrf_of(sent.text), "check": check, "shown": SHOWN}
    wrong = page.post(f"/patients/{patient.id}/abha/verify", data={**fields, "otp": "999999"})
    assert wrong.status_code == 422
    assert "wrong" in field_errors(wrong.text)["otp"]
    right = page.post(
        f"/patients/{patient.id}/abha/verify",
        data={**fields, "otp": TEST_OTP},
        follow_redirects=False,
    )
    assert right.status_code == 303
    shown = page.get(right.headers["location"]).text
    assert "ABHA number verified." in shown and "(verified)" in shown
