"""Issue 10 at the desk: the patient profile as a starting point (appointments, Book,
Check in without knowing the doctor, Add family member), deleting a guardian without
losing the family, a consent Revoke that says what stops, and a registration form that
shows every error at once.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from opdesk.db import Database
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import SESSION_COOKIE
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    bearer,
    book,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    events_of,
    make_consent,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    unaudited,
    unique_mobile,
)
from tests.factories.scheduling import cancel

# Half an hour before the test slots (09:00 IST on DAY): "today" is DAY.
MORNING = datetime.combine(DAY, time(8, 30), CLINIC_ZONE).astimezone(UTC)


def browser(app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str) -> TestClient:
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, open_session(db, ident, make_user(db, ident, tenant, role)))
    return client


def post(client: TestClient, path: str, page: str, **data: str) -> Any:
    token = csrf_of(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)


def fetch(db: Database, tenant: Tenant, model: Any, row_id: uuid.UUID) -> Any:
    with clinic_session(db, tenant.id) as session:
        found = session.execute(
            select(model).where(model.id == row_id).execution_options(include_deleted=True)
        ).scalar_one()
        session.expunge(found)
        return found


# --------------------------------------------------------------------------- item 14


def test_the_profile_lists_appointments_ahead_and_earlier_with_doctor_time_and_status(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 3)
    patient = make_patient(db, ident, tenant, name={"first": "Meera", "last": "Kulkarni"})
    kept = book(db, tenant, slots[1], patient, channel="phone")
    dropped = book(db, tenant, slots[2], patient, channel="phone")
    cancel(db, ident, tenant, dropped.id)
    page = browser(app, db, ident, tenant, "frontdesk").get(f"/patients/{patient.id}").text
    ahead, _, earlier = page.partition("Earlier appointments")
    assert "Coming up" in ahead and doctor.display_name in ahead
    assert "9:15 am" in ahead and "Confirmed" in ahead
    assert "9:30 am" in earlier and "Cancelled" in earlier
    assert kept.id  # the kept booking is the one shown ahead
    # Pharmacy reads patients but not appointments: no appointments section for them.
    pharmacy = browser(app, db, ident, tenant, "pharmacy").get(f"/patients/{patient.id}").text
    assert "Coming up" not in pharmacy and "/book" not in pharmacy


def test_book_from_the_profile_has_the_patient_chosen(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 2)
    patient = make_patient(db, ident, tenant, name={"first": "Ravi"})
    desk = browser(app, db, ident, tenant, "frontdesk")
    profile = desk.get(f"/patients/{patient.id}").text
    assert f'href="/patients/{patient.id}/book"' in profile
    page_url = f"/patients/{patient.id}/book?doctor={doctor.id}&date={DAY.isoformat()}"
    page = desk.get(page_url)
    assert page.status_code == 200 and "Book for Ravi" in page.text and "9:00 am" in page.text

    # No time chosen: the form says so, naming the field, and books nothing.
    missing = post(desk, f"/patients/{patient.id}/book", page_url, visit_type="consultation")
    assert missing.status_code == 422 and "Time: choose one of the free times." in missing.text

    booked = post(
        desk,
        f"/patients/{patient.id}/book",
        page_url,
        slot_id=str(slots[0].id),
        visit_type="consultation",
        channel="phone",
        doctor=str(doctor.id),
        day=DAY.isoformat(),
    )
    assert booked.status_code == 303 and booked.headers["location"] == f"/patients/{patient.id}"
    assert "Booked Ravi with" in desk.get(booked.headers["location"]).text
    with clinic_session(db, tenant.id) as session:
        made = session.execute(
            select(Appointment).where(Appointment.patient_id == patient.id)
        ).scalar_one()
        assert made.slot_id == slots[0].id and made.channel == "phone"

    # The same time again: refused with the reason, on the same page.
    again = post(
        desk,
        f"/patients/{patient.id}/book",
        page_url,
        slot_id=str(slots[0].id),
        visit_type="consultation",
    )
    assert again.status_code == 409 and "already booked" in again.text


def test_book_page_refuses_the_wrong_role_and_a_foreign_patient(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _, _ = clinic_with_slots(db, ident, 1)
    patient = make_patient(db, ident, tenant)
    pharmacy = browser(app, db, ident, tenant, "pharmacy")
    assert pharmacy.get(f"/patients/{patient.id}/book").status_code == 403
    other = make_tenant(db, "Elsewhere Clinic")
    stranger = browser(app, db, ident, other, "frontdesk")
    assert stranger.get(f"/patients/{patient.id}/book").status_code == 404


def test_check_in_from_the_profile_without_choosing_the_doctor(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 2)
    patient = make_patient(db, ident, tenant, name={"first": "Sunita"})
    nobody_today = make_patient(db, ident, tenant, name={"first": "Kiran"})
    appointment = book(db, tenant, slots[0], patient, channel="phone")
    other = book(db, tenant, slots[1], make_patient(db, ident, tenant), channel="phone")
    with time_machine.travel(MORNING, tick=False):
        desk = browser(app, db, ident, tenant, "frontdesk")
        profile = desk.get(f"/patients/{patient.id}").text
        assert "Today" in profile and f'value="{appointment.id}"' in profile

        # Another patient's appointment named under this patient: 404, nothing moves.
        stolen = post(
            desk,
            f"/patients/{patient.id}/check-in",
            f"/patients/{patient.id}",
            appointment_id=str(other.id),
        )
        assert stolen.status_code == 404
        assert fetch(db, tenant, Appointment, other.id).status == "confirmed"

        # No appointment today: told what to do instead.
        none = post(desk, f"/patients/{nobody_today.id}/check-in", f"/patients/{nobody_today.id}")
        assert none.status_code == 303
        assert "has no appointment today" in desk.get(none.headers["location"]).text

        # Search results offer Check in for today's appointment, naming the doctor.
        results = desk.get("/patients/results", params={"q": "Sunita"}).text
        assert f'action="/patients/{patient.id}/check-in"' in results
        assert doctor.display_name in results
        others = desk.get("/patients/results", params={"q": "Kiran"}).text
        assert "/check-in" not in others

        # From the search results (no appointment named): back to search with the token.
        done = post(
            desk, f"/patients/{patient.id}/check-in", f"/patients/{patient.id}", back="search"
        )
        assert done.status_code == 303 and done.headers["location"] == "/patients"
        shown = desk.get("/patients").text
        assert f"Checked in Sunita for {doctor.display_name}: token 1." in shown
    moved = fetch(db, tenant, Appointment, appointment.id)
    assert moved.status == "checked-in" and moved.token_number == 1
    assert any(
        e.entity_id == appointment.id and e.to_state == "checked-in"
        for e in events_of(db, tenant.id)
    )


def test_add_family_member_starts_registration_with_the_guardian_chosen(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    mother = make_patient(db, ident, tenant, name={"first": "Anita", "last": "Joshi"}, city="Pune")
    desk = browser(app, db, ident, tenant, "frontdesk")
    assert (
        f"/patients/new?guardian={mother.display_number}" in desk.get(f"/patients/{mother.id}").text
    )
    form = desk.get(f"/patients/new?guardian={mother.display_number}").text
    assert "Add a family member of Anita Joshi" in form
    assert f'name="guardian" type="text" value="{mother.display_number}"' in form
    assert 'name="name.last" type="text" value="Joshi"' in form
    made = post(
        desk,
        "/patients/new",
        f"/patients/new?guardian={mother.display_number}",
        **{
            "name.first": "Tara",
            "name.last": "Joshi",
            "age_years": "6",
            "gender": "female",
            "guardian": mother.display_number,
            "guardian_relation": "daughter",
        },
    )
    assert made.status_code == 303, made.text
    child_id = uuid.UUID(made.headers["location"].rsplit("/", 1)[-1])
    assert fetch(db, tenant, Patient, child_id).guardian_id == mother.id


# --------------------------------------------------------------------------- item 11


def family(db: Database, ident: Any, tenant: Tenant) -> tuple[Patient, Patient, str]:
    phone = unique_mobile()
    guardian = make_patient(db, ident, tenant, name={"first": "Vijay"}, phone=phone)
    child = make_patient(
        db,
        ident,
        tenant,
        name={"first": "Arjun"},
        phone=None,
        guardianId=str(guardian.id),
        guardianRelation="son",
    )
    return guardian, child, phone


def test_deleting_a_guardian_is_refused_until_the_family_is_moved(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    guardian, child, _ = family(db, ident, tenant)
    admin_user = make_user(db, ident, tenant, "admin")
    with TestClient(app) as client:
        refused = client.delete(
            f"/api/v1/patients/{guardian.id}", headers=bearer(open_session(db, ident, admin_user))
        )
    assert refused.status_code == 409
    assert "Arjun" in refused.json()["detail"] and "Move them" in refused.json()["detail"]
    assert fetch(db, tenant, Patient, guardian.id).deleted_at is None

    admin = browser(app, db, ident, tenant, "admin")
    profile = admin.get(f"/patients/{guardian.id}").text
    danger = profile.split("Delete this patient", 1)[1]
    assert "1 family member shares this phone" in danger and "Arjun" in danger
    assert 'name="move_to"' in danger

    unnamed = post(admin, f"/patients/{guardian.id}/delete", f"/patients/{guardian.id}")
    assert unnamed.status_code == 303
    assert "is the guardian of Arjun" in admin.get(unnamed.headers["location"]).text
    assert fetch(db, tenant, Patient, guardian.id).deleted_at is None

    onto_child = post(
        admin,
        f"/patients/{guardian.id}/delete",
        f"/patients/{guardian.id}",
        move_to=child.display_number,
    )
    assert "Move them to" in admin.get(onto_child.headers["location"]).text
    unknown = post(
        admin, f"/patients/{guardian.id}/delete", f"/patients/{guardian.id}", move_to="P-9999999"
    )
    assert "no patient has the number" in admin.get(unknown.headers["location"]).text
    assert fetch(db, tenant, Patient, guardian.id).deleted_at is None


def test_moving_the_family_keeps_the_child_reachable_by_page_and_phone(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    guardian, child, _ = family(db, ident, tenant)
    aunt_phone = unique_mobile()
    aunt = make_patient(db, ident, tenant, name={"first": "Kavita"}, phone=aunt_phone)
    admin = browser(app, db, ident, tenant, "admin")
    deleted = post(
        admin,
        f"/patients/{guardian.id}/delete",
        f"/patients/{guardian.id}",
        move_to=aunt.display_number,
    )
    assert deleted.status_code == 303 and deleted.headers["location"] == "/patients"
    assert fetch(db, tenant, Patient, guardian.id).deleted_at is not None
    assert fetch(db, tenant, Patient, child.id).guardian_id == aunt.id

    page = admin.get(f"/patients/{child.id}")
    assert page.status_code == 200 and "Kavita" in page.text
    found = admin.get("/patients/results", params={"q": aunt_phone[3:]}).text
    assert "Arjun" in found
    moved = [e for e in events_of(db, tenant.id) if e.entity_id == child.id]
    assert moved[-1].action == "update" and "guardianId" in str(moved[-1].diff)


def test_a_child_whose_guardian_was_deleted_before_still_opens(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    """Families orphaned before the delete was guarded: the page says what happened and
    how to fix it, instead of answering 404.
    """
    guardian, child, _ = family(db, ident, tenant)
    with clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(
            update(Patient).where(Patient.id == guardian.id).values(deleted_at=datetime.now(UTC))
        )
    admin = browser(app, db, ident, tenant, "admin")
    page = admin.get(f"/patients/{child.id}")
    assert page.status_code == 200
    assert "who was deleted" in page.text and f"/patients/{child.id}/edit" in page.text
    assert admin.get(f"/patients/{child.id}/edit").status_code == 200


# --------------------------------------------------------------------------- item 13


def test_revoking_a_consent_asks_first_and_says_what_stops(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    consent = make_consent(db, ident, tenant)
    desk = browser(app, db, ident, tenant, "frontdesk")
    page = desk.get(f"/patients/{consent.patient_id}").text
    revoke_form = f'action="/patients/{consent.patient_id}/consents/{consent.id}/revoke"'
    before_form = page.split(revoke_form, 1)[0]
    confirm = before_form.rsplit("<details", 1)[1]
    assert "Revoke Treatment consent…" in confirm
    assert "consent to treatment: they must sign again" in confirm
    done = post(
        desk,
        f"/patients/{consent.patient_id}/consents/{consent.id}/revoke",
        f"/patients/{consent.patient_id}",
    )
    assert done.status_code == 303
    assert "Consent revoked. The clinic no longer has" in desk.get(done.headers["location"]).text


# --------------------------------------------------------------------------- item 18


def test_registration_shows_every_error_at_once_naming_each_field(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = browser(app, db, ident, tenant, "frontdesk")
    form = desk.get("/patients/new").text
    for label in ("First name", "Gender"):
        assert re.search(label + r' <span aria-hidden="true" class="req">\*</span>', form), label
    future = date(DAY.year + 1, 1, 1).isoformat()
    answer = post(
        desk,
        "/patients/new",
        "/patients/new",
        **{"name.first": "", "dob": future, "gender": "", "guardian": "P-9999999"},
    )
    assert answer.status_code == 422
    errors = re.findall(
        r'<small id="f-([\w-]+)-error" class="field-error">([^<]+)</small>', answer.text
    )
    by_field = dict(errors)
    assert set(by_field) == {"name-first", "dob", "gender", "guardian"}
    assert by_field["dob"] == "This date is in the future; check the year"
    assert by_field["guardian"] == "No patient has the number P-9999999; check it"
    assert next(f for f, _ in errors) == "name-first"
    # The summary names each field as the form labels it, in the order of the form.
    summary = answer.text.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    named = re.findall(r'<a href="#f-([\w-]+)">([^<]+)</a>', summary)
    assert [f for f, _ in named] == ["name-first", "dob", "gender", "guardian"]
    texts = dict(named)
    assert texts["dob"] == "Date of birth: this date is in the future; check the year"
    assert texts["name-first"].startswith("First name: ")
    assert texts["guardian"].startswith("Shares the phone of (patient number): no patient")
    assert "String should" not in summary and "__all__" not in summary
    # The first field in error takes the focus; no other does.
    assert re.search(r'id="f-name-first"[^>]* autofocus', answer.text)
    assert answer.text.count(" autofocus") == 1
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(Patient).where(Patient.name_first == "")).first() is None


def test_registration_without_phone_or_age_names_both_fields(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    desk = browser(app, db, ident, tenant, "frontdesk")
    answer = post(
        desk, "/patients/new", "/patients/new", **{"name.first": "Nisha", "gender": "female"}
    )
    assert answer.status_code == 422
    assert "Mobile number: enter a mobile number, or the patient number" in answer.text
    assert "Date of birth: enter the date of birth, or the age in years" in answer.text
    assert "Enter the date of birth, or the age in years" in answer.text  # under the field
    assert "__all__" not in answer.text and "Value error" not in answer.text


def test_the_book_page_never_opens_on_a_day_already_past(
    app: FastAPI, db: Database, ident: Any
) -> None:
    """A day before today is read as today (no booking in the past)."""
    tenant, doctor, _ = clinic_with_slots(db, ident, 1)
    patient = make_patient(db, ident, tenant)
    desk = browser(app, db, ident, tenant, "frontdesk")
    page = desk.get(f"/patients/{patient.id}/book?doctor={doctor.id}&date=2020-01-01").text
    assert 'value="2020-01-01"' not in page
    assert f"{doctor.display_name}, today" in page
