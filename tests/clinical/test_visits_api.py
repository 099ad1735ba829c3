"""Visits through the API: opening, the SOAP note (autosave, versions, signing, the
freeze), addenda, diagnoses, vitals, services, follow-up, who may read what.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from opdesk.automation.models import AutomationEvent
from opdesk.clinical import visits, vitals
from opdesk.clinical.models import SoapVersion, Visit
from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.scheduling.models import Appointment
from opdesk.uow import transaction
from tests.factories import clinic_session, events_of, generate, make_tenant, unaudited
from tests.factories.clinical_visits import (
    consultation,
    doctor_headers,
    make_service,
    open_visit,
    role_headers,
    signed_visit,
)

API = "/api/v1"
NOTE = {"s": "Fever for 3 days", "o": "Temp 101 F", "a": "Viral fever", "p": "Paracetamol"}


def opened(
    client: TestClient, db: Database, ident: Any, **patient: Any
) -> tuple[Any, dict[str, str], dict[str, Any]]:
    c = consultation(db, ident, **patient)
    headers = doctor_headers(db, ident, c)
    response = client.post(f"{API}/appointments/{c.appointment.id}/visit", headers=headers)
    assert response.status_code == 200, response.text
    return c, headers, response.json()


# --------------------------------------------------------------------------- opening


def test_opening_a_visit_twice_gives_the_same_visit(
    client: TestClient, db: Database, ident: Any
) -> None:
    c, headers, first = opened(client, db, ident)
    again = client.post(f"{API}/appointments/{c.appointment.id}/visit", headers=headers).json()
    assert again["id"] == first["id"]
    assert first["status"] == "draft" and first["patientId"] == str(c.patient.id)
    by_appointment = client.get(f"{API}/appointments/{c.appointment.id}/visit", headers=headers)
    assert by_appointment.json()["id"] == first["id"]


def test_two_tabs_opening_at_once_make_one_visit(db: Database, ident: Any) -> None:
    c = consultation(db, ident)
    barrier, found, failures = threading.Barrier(2), [], []

    def open_one() -> None:
        ctx = c.ctx()
        try:
            with transaction(db, ctx) as session:
                barrier.wait()
                found.append(visits.open_visit(session, ctx, appointment_id=c.appointment.id).id)
        except Exception as exc:  # pragma: no cover - shown by the assert
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with clinic_session(db, c.tenant.id) as session:
        count = session.execute(
            select(func.count()).select_from(Visit).where(Visit.appointment_id == c.appointment.id)
        ).scalar_one()
    assert count == 1 and len(set(found)) == 1


def test_a_visit_of_an_unknown_or_cancelled_appointment_is_refused(
    client: TestClient, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    headers = doctor_headers(db, ident, c)
    import uuid

    assert (
        client.post(f"{API}/appointments/{uuid.uuid4()}/visit", headers=headers).status_code == 404
    )
    from tests.factories import cancel

    cancel(db, ident, c.tenant, c.appointment.id)
    refused = client.post(f"{API}/appointments/{c.appointment.id}/visit", headers=headers)
    assert refused.status_code == 409


# --------------------------------------------------------------------------- the note


def test_autosave_keeps_the_draft_and_adds_a_version_at_most_every_three_minutes(
    db: Database, ident: Any, cipher: Any
) -> None:
    c = consultation(db, ident)
    visit = open_visit(db, c)
    base = datetime.now().astimezone()

    def autosave(at: timedelta, s: str) -> int | None:
        ctx = c.ctx()
        ctx.clock = lambda: base + at
        with transaction(db, ctx) as session:
            return visits.save_note(
                session, ctx, cipher, visit_id=visit.id, soap=visits.Soap(s=s), explicit=False
            ).version

    assert autosave(timedelta(0), "F") == 1  # the first words are a version
    assert autosave(timedelta(seconds=30), "Fe") is None
    assert autosave(timedelta(minutes=2, seconds=59), "Fev") is None
    assert autosave(timedelta(minutes=3), "Feve") == 2
    assert autosave(timedelta(minutes=4), "Fever") is None
    with clinic_session(db, c.tenant.id) as session:
        row = session.get(Visit, (c.tenant.id, visit.id))
        assert row is not None
        assert visits.current_note(session, cipher, row).s == "Fever"  # the draft is current
        assert [v.v for v, _ in visits.versions(session, cipher, row)] == [1, 2]


def test_an_explicit_save_adds_a_version_only_when_the_note_changed(
    client: TestClient, db: Database, ident: Any
) -> None:
    _c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}"
    assert client.post(f"{url}/versions", json=NOTE, headers=headers).json()["version"] == 1
    assert client.post(f"{url}/versions", json=NOTE, headers=headers).json()["version"] is None
    changed = {**NOTE, "p": "Paracetamol 650 mg SOS"}
    assert client.post(f"{url}/versions", json=changed, headers=headers).json()["version"] == 2
    body = client.get(url, headers=headers).json()
    assert [v["v"] for v in body["versions"]] == [1, 2]
    assert (
        body["versions"][0]["p"] == "Paracetamol" and body["soap"]["p"] == "Paracetamol 650 mg SOS"
    )


def test_the_note_is_stored_encrypted(client: TestClient, db: Database, ident: Any) -> None:
    _c, headers, visit = opened(client, db, ident)
    client.post(f"{API}/visits/{visit['id']}/versions", json=NOTE, headers=headers)
    with db.owner_engine.connect() as conn:
        raw = conn.execute(
            text("select s_encrypted from visits_soap_versions where visit_id = :v"),
            {"v": visit["id"]},
        ).scalar_one()
        draft = conn.execute(
            text("select soap_draft_encrypted from visits where id = :v"), {"v": visit["id"]}
        ).scalar_one()
    assert b"Fever" not in bytes(raw) and b"Fever" not in bytes(draft)


def test_signing_saves_the_draft_as_the_signed_version_and_locks_the_visit(
    client: TestClient, db: Database, ident: Any
) -> None:
    c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}"
    client.post(f"{url}/versions", json=NOTE, headers=headers)
    client.put(f"{url}/soap", json={**NOTE, "a": "Viral fever, likely dengue"}, headers=headers)
    signed = client.post(f"{url}/sign", headers=headers)
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["status"] == "signed" and body["signedVersion"] == 2 and body["lockedAt"]
    assert body["signedBy"] == str(c.doctor_user.id)
    assert body["soap"]["a"] == "Viral fever, likely dengue"
    with clinic_session(db, c.tenant.id) as session:
        row = session.get(Visit, (c.tenant.id, visit["id"]))
        assert row is not None and row.soap_draft_encrypted is None
    signs = [e for e in events_of(db, c.tenant.id) if e.action == "sign-off"]
    assert [(e.from_state, e.to_state) for e in signs] == [("draft", "signed")]


def test_an_empty_note_cannot_be_signed(client: TestClient, db: Database, ident: Any) -> None:
    _c, headers, visit = opened(client, db, ident)
    refused = client.post(f"{API}/visits/{visit['id']}/sign", headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "soap"


def test_after_signing_every_change_through_the_api_is_a_conflict(
    client: TestClient, db: Database, ident: Any, cipher: Any
) -> None:
    tenant = make_tenant(db, "Signed Clinic")
    c, visit = signed_visit(db, ident, cipher, tenant)
    headers = doctor_headers(db, ident, c)
    service = make_service(db, tenant)
    url = f"{API}/visits/{visit.id}"
    attempts = [
        client.put(f"{url}/soap", json=NOTE, headers=headers),
        client.post(f"{url}/versions", json=NOTE, headers=headers),
        client.post(f"{url}/sign", headers=headers),
        client.post(f"{url}/diagnoses", json={"code": "J06.9"}, headers=headers),
        client.post(f"{url}/vitals", json={"readings": {"pulse": 70}}, headers=headers),
        client.post(f"{url}/services", json={"serviceId": str(service.id)}, headers=headers),
        client.put(f"{url}/follow-up", json={"intervalDays": 7}, headers=headers),
    ]
    assert [r.status_code for r in attempts] == [409] * len(attempts)
    assert "addendum" in attempts[0].json()["detail"]
    body = client.get(url, headers=headers).json()
    assert body["soap"]["s"] == "Fever 3 days" and len(body["diagnoses"]) == 1


def test_the_database_itself_refuses_changes_to_a_signed_visit(
    db: Database, ident: Any, cipher: Any
) -> None:
    """A raw UPDATE, INSERT or DELETE as the app's role: SQLSTATE OD001, nothing changes."""
    tenant = make_tenant(db, "Raw Clinic")
    _c, visit = signed_visit(db, ident, cipher, tenant)
    statements = [
        ("update visits set soap_signed_version = 1, status = 'draft' where id = :v", {}),
        ("update visits set follow_up_interval_days = 5 where id = :v", {}),
        ("delete from visits_diagnoses where visit_id = :v", {}),
        ("update visits_vitals set unit = 'x' where visit_id = :v", {}),
        (
            "insert into visits_soap_versions (tenant_id, visit_id, v, created_at, created_by) "
            "values (:t, :v, 9, now(), :u)",
            {"u": visit.signed_by},
        ),
    ]
    for sql, extra in statements:
        with pytest.raises(DBAPIError) as refused, clinic_session(db, tenant.id) as session:
            unaudited(session)
            session.execute(text(sql), {"v": visit.id, "t": tenant.id, **extra})
        assert getattr(refused.value.orig, "sqlstate", None) == "OD001", sql
    with clinic_session(db, tenant.id) as session:
        row = session.get(Visit, (tenant.id, visit.id))
        assert row is not None and row.status == "signed" and row.follow_up_interval_days is None
        versions = session.execute(
            select(func.count()).select_from(SoapVersion).where(SoapVersion.visit_id == visit.id)
        ).scalar_one()
        assert versions == 1


def test_the_service_answers_the_databases_refusal_as_a_conflict(
    db: Database, ident: Any, cipher: Any
) -> None:
    """Even when the service's own check is passed by (a stale row), OD001 is a 409."""
    tenant = make_tenant(db, "Stale Clinic")
    _c, visit = signed_visit(db, ident, cipher, tenant)
    with (
        pytest.raises(Conflict),
        clinic_session(db, tenant.id) as session,
        visits.frozen_as_conflict(),
    ):
        session.execute(text("update visits set updated_at = now() where id = :v"), {"v": visit.id})


def test_addenda_go_on_signed_visits_only_and_are_kept_in_order(
    client: TestClient, db: Database, ident: Any
) -> None:
    c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}"
    early = client.post(f"{url}/addenda", json={"text": "too early"}, headers=headers)
    assert early.status_code == 409
    client.post(f"{url}/versions", json=NOTE, headers=headers)
    client.post(f"{url}/sign", headers=headers)
    for words in ("BP was 150/90, not 130/90", "<script>alert(1)</script>"):
        made = client.post(f"{url}/addenda", json={"text": words}, headers=headers)
        assert made.status_code == 201, made.text
    empty = client.post(f"{url}/addenda", json={"text": "   "}, headers=headers)
    assert empty.status_code == 422
    body = client.get(url, headers=headers).json()
    assert [a["text"] for a in body["addenda"]] == [
        "BP was 150/90, not 130/90",
        "<script>alert(1)</script>",
    ]
    assert all(a["createdBy"] == str(c.doctor_user.id) for a in body["addenda"])


# --------------------------------------------------------------------------- who may


@pytest.mark.parametrize("role", ["frontdesk", "pharmacy", "accounts", "admin"])
def test_only_doctors_read_notes(client: TestClient, db: Database, ident: Any, role: str) -> None:
    c, _headers, visit = opened(client, db, ident)
    headers = role_headers(db, ident, c.tenant, role)
    assert client.get(f"{API}/visits/{visit['id']}", headers=headers).status_code == 403
    assert (
        client.get(f"{API}/appointments/{c.appointment.id}/visit", headers=headers).status_code
        == 403
    )
    assert (
        client.put(f"{API}/visits/{visit['id']}/soap", json=NOTE, headers=headers).status_code
        == 403
    )


def test_another_clinics_visit_is_not_found(client: TestClient, db: Database, ident: Any) -> None:
    _c, _headers, visit = opened(client, db, ident)
    other = consultation(db, ident)
    theirs = doctor_headers(db, ident, other)
    url = f"{API}/visits/{visit['id']}"
    assert client.get(url, headers=theirs).status_code == 404
    assert client.put(f"{url}/soap", json=NOTE, headers=theirs).status_code == 404
    assert client.post(f"{url}/sign", headers=theirs).status_code == 404


# --------------------------------------------------------------------------- diagnoses


def test_icd_search_finds_codes_by_prefix_and_by_words(
    client: TestClient, db: Database, ident: Any
) -> None:
    _c, headers, _visit = opened(client, db, ident)
    by_code = client.get(f"{API}/icd10", params={"q": "e11"}, headers=headers).json()
    assert by_code and all(r["code"].startswith("E11") for r in by_code)
    assert by_code[0]["isLeaf"] is True
    by_words = client.get(f"{API}/icd10", params={"q": "typhoid fever"}, headers=headers).json()
    assert "A01.0" in [r["code"] for r in by_words]
    leaves = [r["isLeaf"] for r in by_words]
    assert leaves == sorted(leaves, reverse=True)
    assert client.get(f"{API}/icd10", params={"q": "%_"}, headers=headers).json() == []


def test_diagnoses_one_primary_and_unknown_codes_refused(
    client: TestClient, db: Database, ident: Any
) -> None:
    _c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}/diagnoses"
    first = client.post(url, json={"code": "a09"}, headers=headers).json()
    assert first[0]["code"] == "A09" and first[0]["primary"] is True
    both = client.post(
        url,
        json={"code": "E11.9", "text": "<b>poorly controlled</b>", "primary": True},
        headers=headers,
    ).json()
    assert [(d["code"], d["primary"]) for d in both] == [("A09", False), ("E11.9", True)]
    assert both[1]["text"] == "<b>poorly controlled</b>" and both[1]["description"]
    unknown = client.post(url, json={"code": "Q99.99"}, headers=headers)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "code"
    chapter = client.post(url, json={"code": "I"}, headers=headers)
    assert chapter.status_code == 422
    nothing = client.post(url, json={}, headers=headers)
    assert nothing.status_code == 422
    again = client.post(url, json={"code": "A09"}, headers=headers)
    assert again.status_code == 409
    # removing the primary passes the mark on
    removed = client.delete(f"{url}/{both[1]['id']}", headers=headers)
    assert removed.status_code == 204
    left = client.get(f"{API}/visits/{visit['id']}", headers=headers).json()["diagnoses"]
    assert [(d["code"], d["primary"]) for d in left] == [("A09", True)]


def test_free_text_diagnoses_are_encrypted(client: TestClient, db: Database, ident: Any) -> None:
    _c, headers, visit = opened(client, db, ident)
    client.post(
        f"{API}/visits/{visit['id']}/diagnoses", json={"text": "Tinea cruris"}, headers=headers
    )
    with db.owner_engine.connect() as conn:
        raw = conn.execute(
            text("select text_encrypted from visits_diagnoses where visit_id = :v"),
            {"v": visit["id"]},
        ).scalar_one()
    assert b"Tinea" not in bytes(raw)


def test_the_doctors_recent_diagnoses_come_newest_first(
    client: TestClient, db: Database, ident: Any, cipher: Any
) -> None:
    c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}/diagnoses"
    for code in ("A09", "J06.9", "E11.9"):
        client.post(url, json={"code": code}, headers=headers)
    with clinic_session(db, c.tenant.id) as session:
        recent = visits.recent_diagnoses(session, cipher, c.doctor.id)
    assert [code for code, _ in recent] == ["E11.9", "J06.9", "A09"]


# --------------------------------------------------------------------------- vitals


def test_the_desk_records_vitals_before_the_doctor(
    client: TestClient, db: Database, ident: Any
) -> None:
    c, _headers, visit = opened(client, db, ident)
    desk = role_headers(db, ident, c.tenant, "frontdesk")
    made = client.post(
        f"{API}/visits/{visit['id']}/vitals",
        json={"readings": {"weight": "70", "height": 175, "temperature": 98.6, "bp-systolic": 120}},
        headers=desk,
    )
    assert made.status_code == 201, made.text
    units = {v["type"]: (Decimal(str(v["value"])), v["unit"]) for v in made.json()}
    assert units["temperature"] == (Decimal("98.6"), "°F") and units["weight"][1] == "kg"
    assert client.get(f"{API}/visits/{visit['id']}/vitals", headers=desk).status_code == 200
    pharmacy = role_headers(db, ident, c.tenant, "pharmacy")
    assert client.get(f"{API}/visits/{visit['id']}/vitals", headers=pharmacy).status_code == 403


def test_implausible_vitals_are_refused_with_the_range(
    client: TestClient, db: Database, ident: Any
) -> None:
    _c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}/vitals"
    refused = client.post(url, json={"readings": {"pulse": 72, "spo2": 140}}, headers=headers)
    assert refused.status_code == 422
    (error,) = refused.json()["errors"]
    assert error["field"] == "spo2" and "between 50 and 100 %" in error["reason"]
    words = client.post(url, json={"readings": {"pulse": "fast"}}, headers=headers)
    assert words.status_code == 422 and words.json()["errors"][0]["field"] == "pulse"
    unknown = client.post(url, json={"readings": {"mood": 5}}, headers=headers)
    assert unknown.status_code == 422
    assert client.get(url, headers=headers).json() == []  # nothing half-written


def test_bmi_comes_from_the_latest_weight_and_height(
    client: TestClient, db: Database, ident: Any, cipher: Any
) -> None:
    c, headers, visit = opened(client, db, ident)
    client.post(
        f"{API}/visits/{visit['id']}/vitals",
        json={"readings": {"weight": 80, "height": 180}},
        headers=headers,
    )
    client.post(
        f"{API}/visits/{visit['id']}/vitals", json={"readings": {"weight": 81}}, headers=headers
    )
    with clinic_session(db, c.tenant.id) as session:
        trend = vitals.trend(session, cipher, c.patient.id)
    assert vitals.bmi(trend) == Decimal("25.0")
    assert vitals.bmi({}) is None


# --------------------------------------------------------------------------- services


def test_the_catalogue_and_adding_services_to_a_visit(
    client: TestClient, db: Database, ident: Any
) -> None:
    c, headers, visit = opened(client, db, ident)
    admin = role_headers(db, ident, c.tenant, "admin")
    body = {"code": "ecg", "name": "ECG", "price": "300", "taxRate": "18", "sacHsn": "999316"}
    made = client.post(f"{API}/clinic-services", json=body, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["code"] == "ECG"
    assert client.post(f"{API}/clinic-services", json=body, headers=admin).status_code == 409
    bad = client.post(
        f"{API}/clinic-services", json={**body, "code": "X", "taxRate": "40"}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "taxRate"
    assert client.post(f"{API}/clinic-services", json=body, headers=headers).status_code == 403
    service_id = made.json()["id"]
    line = client.post(
        f"{API}/visits/{visit['id']}/services",
        json={"serviceId": service_id, "quantity": 2},
        headers=headers,
    )
    assert line.status_code == 201, line.text
    # a later price change does not touch the line already on the visit
    client.put(f"{API}/clinic-services/{service_id}", json={**body, "price": "350"}, headers=admin)
    lines = client.get(f"{API}/visits/{visit['id']}", headers=headers).json()["services"]
    assert [(s["code"], s["quantity"], Decimal(str(s["unitPrice"]))) for s in lines] == [
        ("ECG", 2, Decimal("300.00"))
    ]
    foreign = make_service(db, make_tenant(db, "Elsewhere"))
    wrong = client.post(
        f"{API}/visits/{visit['id']}/services", json={"serviceId": str(foreign.id)}, headers=headers
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "serviceId"


# --------------------------------------------------------------------------- follow-up


def test_follow_up_is_booked_in_one_click(client: TestClient, db: Database, ident: Any) -> None:
    c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}/follow-up"
    both = client.put(url, json={"recommendedAt": "2030-01-01", "intervalDays": 7}, headers=headers)
    assert both.status_code == 422 and both.json()["errors"][0]["field"] == "intervalDays"
    assert client.post(f"{url}/booking", headers=headers).status_code == 422  # nothing set yet
    due = c.slots[0].date
    generate(db, c.tenant, c.doctor, due, 21)
    client.put(url, json={"intervalDays": 7}, headers=headers)
    shown = client.get(f"{API}/visits/{visit['id']}", headers=headers).json()["followUp"]
    assert shown["intervalDays"] == 7 and shown["dueOn"]
    booked = client.post(f"{url}/booking", headers=headers)
    assert booked.status_code == 201, booked.text
    with clinic_session(db, c.tenant.id) as session:
        follow = session.get(Appointment, (c.tenant.id, booked.json()["appointmentId"]))
        assert follow is not None and follow.follow_up_for == c.appointment.id
        assert str(follow.patient_id) == str(c.patient.id)
        reminders = (
            session.execute(
                select(AutomationEvent).where(AutomationEvent.entity_ref_id == visit["id"])
            )
            .scalars()
            .all()
        )
        assert [e.rule for e in reminders] == ["follow-up-due"]
    starts = datetime.fromisoformat(booked.json()["startsAt"])
    assert starts.date() >= date.fromisoformat(shown["dueOn"])
    again = client.post(f"{url}/booking", headers=headers)
    assert again.status_code == 409


def test_follow_up_without_a_free_slot_is_a_conflict(
    client: TestClient, db: Database, ident: Any
) -> None:
    _c, headers, visit = opened(client, db, ident)
    url = f"{API}/visits/{visit['id']}/follow-up"
    client.put(url, json={"intervalDays": 300}, headers=headers)
    refused = client.post(f"{url}/booking", headers=headers)
    assert refused.status_code == 409 and "no free slot" in refused.json()["detail"]
