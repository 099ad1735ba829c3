"""New patients book online (issue 10, item 26): phone, code, then a short form; the
record is made flagged "registered online" and the patient goes on to book.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import (
    DAY,
    bearer,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    events_of,
    latest_code,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    unique_mobile,
)
from tests.factories.web import cookie_browser


def verified_proof(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant, phone: str
) -> str:
    attempt = client.post("/api/v1/auth/otp", json={"clinic": tenant.slug, "phone": phone})
    assert attempt.status_code == 200, attempt.text
    code = latest_code(db, cipher, tenant, phone)
    verified = client.post(
        "/api/v1/auth/otp/verify", json={"attempt": attempt.json()["attempt"], "code": code}
    )
    assert verified.status_code == 200, verified.text
    proof: str = verified.json()["proof"]
    return proof


def sign_up(client: TestClient, tenant: Tenant, **fields: Any) -> Any:
    body = {
        "name": {"first": "Farhan", "last": "Shaikh"},
        "ageYears": 27,
        "gender": "male",
        "preferredLanguage": "ur",
        **fields,
    }
    return client.post(f"/api/v1/public/clinics/{tenant.slug}/patients", json=body)


def patients_with(db: Database, tenant: Tenant, cipher: Any, phone: str) -> list[Patient]:
    digest = cipher.blind_index(phone, purpose="phone")
    with clinic_session(db, tenant.id) as session:
        found = list(session.execute(select(Patient).where(Patient.phone_hash == digest)).scalars())
        for row in found:
            session.expunge(row)
        return found


def patient_count(db: Database, tenant: Tenant) -> int:
    with clinic_session(db, tenant.id) as session:
        return int(session.execute(select(func.count()).select_from(Patient)).scalar_one())


# --------------------------------------------------------------------------- API


def test_a_new_phone_registers_online_and_is_signed_in(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    proof = verified_proof(client, db, cipher, tenant, phone)
    made = sign_up(client, tenant, proof=proof, phone=phone)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["created"] is True and body["stage"] == "active"
    (patient,) = patients_with(db, tenant, cipher, phone)
    assert str(patient.id) == body["patientId"]
    assert patient.registered_online is True
    assert (patient.name_first, patient.gender, patient.age_years) == ("Farhan", "male", 27)
    assert patient.preferred_language == "ur"
    mine = client.get("/api/v1/me/patients", headers=bearer(body["token"]))
    assert mine.status_code == 200
    assert [p["registeredOnline"] for p in mine.json()] == [True]
    created = [
        e
        for e in events_of(db, tenant.id)
        if e.entity_collection == "patients" and e.entity_id == patient.id
    ]
    assert [e.action for e in created] == ["create"]
    assert created[0].diff["added"]["registeredOnline"] is True
    assert created[0].actor_id is None  # nobody at the clinic made it


def test_the_proof_makes_one_record_once(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    proof = verified_proof(client, db, cipher, tenant, phone)
    assert sign_up(client, tenant, proof=proof, phone=phone).status_code == 201
    again = sign_up(client, tenant, proof=proof, phone=phone, name={"first": "Second"})
    assert again.status_code == 401
    assert len(patients_with(db, tenant, cipher, phone)) == 1


def test_without_a_verified_code_nothing_is_made(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    before = patient_count(db, tenant)
    forged = sign_up(client, tenant, proof="e30.deadbeef", phone=unique_mobile())
    assert forged.status_code == 401
    assert patient_count(db, tenant) == before


def test_the_phone_must_be_the_one_the_code_went_to(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    proven, other = unique_mobile(), unique_mobile()
    proof = verified_proof(client, db, cipher, tenant, proven)
    refused = sign_up(client, tenant, proof=proof, phone=other)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "phone"
    assert patients_with(db, tenant, cipher, other) == []
    # The proof was not spent by the refusal: the right phone still registers.
    assert sign_up(client, tenant, proof=proof, phone=proven).status_code == 201


def test_a_code_from_one_clinic_does_not_register_at_another(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    other = make_tenant(db, "Other Clinic")
    phone = unique_mobile()
    proof = verified_proof(client, db, cipher, tenant, phone)
    refused = sign_up(client, other, proof=proof, phone=phone)
    assert refused.status_code == 401
    assert patients_with(db, other, cipher, phone) == []


def test_bad_input_is_422_naming_the_field_and_makes_nothing(
    client: TestClient, db: Database, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    proof = verified_proof(client, db, cipher, tenant, phone)
    for fields, field in (
        ({"name": {"first": ""}}, "name.first"),
        ({"gender": "unknown"}, "gender"),
        ({"preferredLanguage": "xx"}, "preferredLanguage"),
        ({"ageYears": None}, None),  # neither birth date nor age
        ({"dob": "2001-01-01"}, None),  # both
    ):
        refused = sign_up(client, tenant, proof=proof, phone=phone, **fields)
        assert refused.status_code == 422, (fields, refused.text)
        if field is not None:
            assert any(e["field"] == field for e in refused.json()["errors"]), refused.json()
    future = sign_up(client, tenant, proof=proof, phone=phone, ageYears=None, dob="2999-01-01")
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "dob"
    assert patients_with(db, tenant, cipher, phone) == []
    assert sign_up(client, tenant, proof=proof, phone=phone).status_code == 201


def test_a_phone_that_already_has_a_patient_gets_the_existing_record(
    client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    known = make_patient(db, ident, tenant, phone=phone, name={"first": "Lata"})
    before = patient_count(db, tenant)
    proof = verified_proof(client, db, cipher, tenant, phone)
    answer = sign_up(client, tenant, proof=proof, phone=phone, name={"first": "Somebody"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] is False
    assert answer.json()["patientId"] == str(known.id)
    assert patient_count(db, tenant) == before
    (kept,) = patients_with(db, tenant, cipher, phone)
    assert kept.name_first == "Lata" and kept.registered_online is False


# --------------------------------------------------------------------------- pages


def anonymous_token(html: str) -> str:
    """The CSRF field of a page seen before signing in (empty: the origin check guards)."""
    match = re.search(r'name="csrf_token" value="([0-9a-f]*)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def code_step(browser: TestClient, db: Database, cipher: Any, tenant: Tenant, phone: str) -> Any:
    sent = browser.post(
        "/patient/sign-in", data={"clinic": tenant.slug, "phone": phone}, follow_redirects=False
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/patient/sign-in/code"
    code = latest_code(db, cipher, tenant, phone)
    return browser.post("/patient/sign-in/code", data={"code": code}, follow_redirects=False)


def test_known_and_unknown_phones_get_the_same_answer_until_the_code(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    known = unique_mobile()
    make_patient(db, ident, tenant, phone=known)
    answers = []
    for phone in (known, unique_mobile()):
        with cookie_browser(app, None) as browser:
            sent = browser.post(
                "/patient/sign-in",
                data={"clinic": tenant.slug, "phone": phone},
                follow_redirects=False,
            )
            page = browser.get("/patient/sign-in/code")
            answers.append(
                (sent.status_code, sent.headers["location"], sorted(sent.cookies.keys()), page.text)
            )
    assert answers[0][:3] == answers[1][:3]
    assert answers[0][3].replace(known, "") == answers[1][3].replace(known, "")


def test_a_new_patient_signs_up_after_the_code_and_confirms_the_held_time(
    app: FastAPI, db: Database, ident: Any, cipher: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 2)
    phone = unique_mobile()
    with cookie_browser(app, None) as browser:
        picking = browser.get(f"/c/{tenant.slug}/book?doctor={doctor.id}&date={DAY}")
        held = browser.post(
            f"/c/{tenant.slug}/book/hold",
            data={"slot_id": str(slots[0].id), "csrf_token": anonymous_token(picking.text)},
        )
        assert "New to " in held.text
        form = code_step(browser, db, cipher, tenant, phone)
        assert form.status_code == 200
        assert f"New to {tenant.name}?" in form.text
        assert '<option value="hi">हिन्दी (Hindi)</option>' in form.text
        assert browser.get("/patient/sign-up").status_code == 200  # while the proof lasts
        bad = browser.post(
            "/patient/sign-up",
            data={"csrf_token": anonymous_token(form.text), "name.first": "", "gender": ""},
        )
        assert bad.status_code == 422
        errors = dict(
            re.findall(
                r'<small id="f-([\w-]+)-error" class="field-error">([^<]+)</small>', bad.text
            )
        )
        assert set(errors) == {"name-first", "dob", "gender"}
        assert errors["dob"] == "Enter your date of birth, or your age in years"
        assert patients_with(db, tenant, cipher, phone) == []
        done = browser.post(
            "/patient/sign-up",
            data={
                "csrf_token": anonymous_token(bad.text),
                "name.first": "Anjali",
                "name.last": "Rao",
                "dob": "1995-02-14",
                "gender": "female",
                "preferred_language": "kn",
            },
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/c/{tenant.slug}/book/confirm"
        assert browser.cookies.get(SESSION_COOKIE)
        confirm = browser.get(done.headers["location"])
        assert "Confirm your appointment" in confirm.text and "Anjali Rao" in confirm.text
        (patient,) = patients_with(db, tenant, cipher, phone)
        booked = browser.post(
            f"/c/{tenant.slug}/book/confirm",
            data={
                "csrf_token": csrf_of(confirm.text),
                "patient_id": str(patient.id),
                "visit_type": "consultation",
            },
        )
        assert booked.url.path == "/me/appointments", booked.text
    assert patient.registered_online and patient.preferred_language == "kn"
    with clinic_session(db, tenant.id) as session:
        appointment = session.execute(
            select(Appointment).where(Appointment.slot_id == slots[0].id)
        ).scalar_one()
        assert appointment.patient_id == patient.id
        assert session.execute(
            select(User).where(User.role == "patient", User.phone_hash == patient.phone_hash)
        ).scalar_one()


def test_a_known_phone_signs_in_without_the_form(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    make_patient(db, ident, tenant, phone=phone)
    with cookie_browser(app, None) as browser:
        signed = code_step(browser, db, cipher, tenant, phone)
        assert signed.status_code == 303 and signed.headers["location"] == "/me"


def test_the_sign_up_form_needs_a_verified_code(
    app: FastAPI, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    before = patient_count(db, tenant)
    with cookie_browser(app, None) as browser:
        browser.cookies.set("opdesk_otp_phone", unique_mobile())
        browser.cookies.set("opdesk_phone_proof", "e30.deadbeef")
        shown = browser.get("/patient/sign-up", follow_redirects=False)
        assert shown.status_code == 303 and shown.headers["location"] == "/patient/sign-in"
        posted = browser.post(
            "/patient/sign-up",
            data={"name.first": "X", "age_years": "30", "gender": "male"},
            follow_redirects=False,
        )
        assert posted.status_code == 303 and posted.headers["location"] == "/patient/sign-in"
    assert patient_count(db, tenant) == before


def test_the_desk_sees_registered_online_on_the_profile_and_in_search(
    app: FastAPI, client: TestClient, db: Database, ident: Any, cipher: Any, tenant: Tenant
) -> None:
    phone = unique_mobile()
    proof = verified_proof(client, db, cipher, tenant, phone)
    made = sign_up(
        client, tenant, proof=proof, phone=phone, name={"first": "Imran", "last": "Qureshi"}
    )
    patient_id = made.json()["patientId"]
    desk = TestClient(app)
    desk.cookies.set(
        SESSION_COOKIE, open_session(db, ident, make_user(db, ident, tenant, "frontdesk"))
    )
    profile = desk.get(f"/patients/{patient_id}").text
    assert "Registered online — complete the record." in profile
    results = desk.get("/patients/results?q=Imran Qureshi").text
    assert "Registered online</span>" in results
    # Completing the record at the desk clears the flag (and says so in the audit trail).
    edit = desk.get(f"/patients/{patient_id}/edit").text
    assert 'name="record_complete" value="1" checked' in edit
    values = dict(re.findall(r'name="([\w.]+)" type="\w+" value="([^"]*)"', edit))
    saved = desk.post(
        f"/patients/{patient_id}/edit",
        data={
            **values,
            "csrf_token": csrf_of(edit),
            "gender": "male",
            "preferred_language": "ur",
            "pin_code": "400001",
            "record_complete": "1",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    assert "Registered online" not in desk.get(f"/patients/{patient_id}").text
    updates = [
        e
        for e in events_of(db, tenant.id)
        if str(e.entity_id) == patient_id and e.action == "update"
    ]
    assert updates[-1].diff["updated"]["registeredOnline"] == {"from": True, "to": False}
