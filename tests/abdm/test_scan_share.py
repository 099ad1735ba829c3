"""Scan & Share end to end (issue 18, item 4): the gateway's signed profile reaches the
bridge, the worker finds or registers the patient and sends ``on-share`` with a token; a
rescan within 30 minutes gets the same token, a later one the next; duplicates act once;
forged calls change nothing.

The gateway is tests/fakes/abdm_gateway.py on a real socket: OPDesk fetches its keys and
session from it and sends ``on-share`` to it. The gateway's calls to OPDesk go through the
app's TestClient with the headers the fake signed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.abdm.messages import V3_PATHS
from opdesk.abdm.models import AbdmCallback, ShareToken
from opdesk.abdm.settings import Abdm
from opdesk.audit.models import AuditEvent
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.patients.models import Patient
from opdesk.tenancy.models import Tenant
from tests.factories import browser_for, clinic_session, make_patient, make_user, open_session
from tests.factories.abdm import (
    BRIDGE,
    Shifted,
    arrivals,
    deliver,
    share_body,
    signed_call,
    with_abdm,
)
from tests.factories.automation import make_worker
from tests.fakes.abdm_gateway import Callback, FakeAbdmGateway

SHARE = BRIDGE + V3_PATHS.share
ON_SHARE = "/api/hiecm/patient-share/v3/on-share"


def prepared(gateway: FakeAbdmGateway, clinic: Abdm, clock: Shifted, **patient: Any) -> Callback:
    body = share_body(clinic.facility_id, clinic.counters[0].id, **patient)
    return signed_call(gateway, V3_PATHS.share, body, clinic.facility_id, clock)


def work(db: Database, cipher: Any, pointed: Settings, clock: Shifted) -> None:
    make_worker(db, cipher, settings=pointed, clock=clock).run_once()


def on_shares(gateway: FakeAbdmGateway) -> list[dict[str, Any]]:
    return arrivals(gateway, ON_SHARE)


def kept(db: Database, tenant: Tenant) -> int:
    with clinic_session(db, tenant.id) as session:
        return session.scalar(select(func.count()).select_from(AbdmCallback)) or 0


def test_a_new_patient_scans_and_gets_token_1(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
) -> None:
    callback = prepared(gateway, clinic, clock)
    assert deliver(gateway_side, callback).status_code == 202
    assert on_shares(gateway) == []  # answered by the worker, not the request
    work(db, cipher, pointed, clock)
    (answer,) = on_shares(gateway)
    assert answer["response"] == {"requestId": callback.request_id}
    ack = answer["acknowledgement"]
    assert ack["status"] == "SUCCESS" and ack["abhaAddress"] == "amit.sharma88@sbx"
    assert ack["profile"]["context"] == clinic.counters[0].id
    assert ack["profile"]["tokenNumber"] == "1"
    assert 1700 <= ack["profile"]["expiry"] <= 1800
    arrival = next(a for a in gateway.received if a.path == ON_SHARE)
    assert arrival.headers["x-hip-id"] == clinic.facility_id
    with clinic_session(db, tenant.id) as session:
        patient = session.scalar(select(Patient).where(Patient.name_first == "Amit"))
        assert patient is not None and patient.name_last == "Sharma"
        assert patient.abha_address_hash is not None and patient.abha_hash is not None
        token = session.scalar(select(ShareToken))
        assert token is not None and token.patient_id == patient.id


def test_a_duplicate_callback_acts_once(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
) -> None:
    callback = prepared(gateway, clinic, clock)
    assert deliver(gateway_side, callback).status_code == 202
    assert deliver(gateway_side, callback).status_code == 202  # the gateway's retry
    work(db, cipher, pointed, clock)
    assert deliver(gateway_side, callback).status_code == 202  # a late retry, after the answer
    work(db, cipher, pointed, clock)
    assert kept(db, tenant) == 1
    assert len(on_shares(gateway)) == 1


def test_a_rescan_within_30_minutes_gets_the_same_token_then_a_new_one(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    cipher: Any,
    pointed: Settings,
) -> None:
    start = clock.clear_of_midnight()  # tokens are numbered per day
    for minutes in (0, 29):
        clock.offset = start + timedelta(minutes=minutes)
        assert deliver(gateway_side, prepared(gateway, clinic, clock)).status_code == 202
        work(db, cipher, pointed, clock)
    clock.offset = start + timedelta(minutes=31)
    deliver(gateway_side, prepared(gateway, clinic, clock))
    work(db, cipher, pointed, clock)
    # Someone else at the same counter: the next number.
    other = prepared(
        gateway,
        clinic,
        clock,
        abhaAddress="sunita.d79@sbx",
        abhaNumber=None,
        name="Sunita Deshmukh",
        gender="F",
        yearOfBirth="1979",
        phoneNumber="9876500002",
    )
    deliver(gateway_side, other)
    work(db, cipher, pointed, clock)
    numbers = [a["acknowledgement"]["profile"]["tokenNumber"] for a in on_shares(gateway)]
    assert numbers == ["1", "1", "2", "3"]


def test_an_existing_patient_written_in_hindi_is_found_not_registered_again(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
) -> None:
    known = make_patient(
        db,
        ident,
        tenant,
        name={"first": "अमित", "last": "शर्मा"},
        phone="+919876500001",
        dob="1988-08-14",
        ageYears=None,
        gender="male",
    )
    deliver(gateway_side, prepared(gateway, clinic, clock))
    work(db, cipher, pointed, clock)
    with clinic_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 1
        token = session.scalar(select(ShareToken))
        assert token is not None and token.patient_id == known.id
        found = session.get(Patient, (tenant.id, known.id))
        assert found is not None and found.abha_address_hash is not None


@pytest.mark.parametrize("forgery", ["wrong-key", "alg-none", "hs256", "expired", "tampered"])
def test_a_forged_callback_is_refused_and_changes_nothing(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    tenant: Tenant,
    forgery: str,
) -> None:
    with clinic_session(db, tenant.id) as session:
        events_before = session.scalar(select(func.count()).select_from(AuditEvent))
    body = share_body(clinic.facility_id, clinic.counters[0].id)
    callback = gateway.prepare_callback(
        SHARE, body, hip_id=clinic.facility_id, token=gateway.forged_token(forgery)
    )
    response = deliver(gateway_side, callback)
    assert response.status_code == 401, response.text
    assert "Not a call from the ABDM gateway" in response.json()["detail"]
    assert kept(db, tenant) == 0
    with clinic_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events_before


def test_a_call_for_an_unknown_or_switched_off_facility_is_404(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    db: Database,
    cipher: Any,
    other_tenant: Tenant,
    clock: Shifted,
) -> None:
    off = with_abdm(db, cipher, other_tenant, enabled=False)
    for facility in ("IN9999999999", off.facility_id):
        body = share_body(facility, "desk-1")
        callback = gateway.prepare_callback(SHARE, body, hip_id=facility)
        assert deliver(gateway_side, callback).status_code == 404


def test_a_bad_profile_is_422_naming_the_field_and_nothing_is_kept(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    tenant: Tenant,
) -> None:
    callback = prepared(gateway, clinic, clock, gender="X")
    response = deliver(gateway_side, callback)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "profile.patient.gender"
    assert kept(db, tenant) == 0


def test_the_desk_sees_the_token_on_the_queue_and_the_scan_share_list(
    gateway_side: TestClient,
    gateway: FakeAbdmGateway,
    clinic: Abdm,
    clock: Shifted,
    db: Database,
    ident: Any,
    cipher: Any,
    pointed: Settings,
    tenant: Tenant,
    bridge_app: FastAPI,
) -> None:
    desk = browser_for(
        bridge_app, open_session(db, ident, make_user(db, ident, tenant, "frontdesk"))
    )
    assert "Scan &amp; Share" in desk.get("/queue").text
    assert "No one has scanned today." in desk.get("/queue/scan-share").text
    deliver(gateway_side, prepared(gateway, clinic, clock, name="सुनीता देशमुख"))
    work(db, cipher, pointed, clock)
    assert "Scan &amp; Share · 1 waiting" in desk.get("/queue").text
    listed = desk.get("/queue/scan-share").text
    assert "सुनीता देशमुख" in listed and "Front desk" in listed
    assert "<strong>1</strong>" in listed


def test_a_clinic_not_on_abdm_shows_no_scan_share_on_its_queue(
    app: FastAPI, db: Database, ident: Any, other_tenant: Tenant
) -> None:
    desk = browser_for(
        app, open_session(db, ident, make_user(db, ident, other_tenant, "frontdesk"))
    )
    assert "/queue/scan-share" not in desk.get("/queue").text
