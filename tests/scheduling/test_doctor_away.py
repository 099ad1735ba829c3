"""Doctor away: the patients booked inside a doctor's time away, listed for the desk with
their phones, and one button (or API call) that messages them all with a link to choose
another time, once per away period. The calendar shows the time away as a band.

The scenario: a doctor with four 15-minute slots from 09:00 on :data:`DAY`; Asha P0 (SMS
consent) is booked at 09:00 and P1 (no consent to any channel) at 09:15; the doctor is
then away 09:00-09:30, so 09:30 and 09:45 stay free.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.notifications.delivery import payload_of
from opdesk.notifications.models import OutboxMessage
from opdesk.scheduling.models import Appointment
from opdesk.tenancy.models import Tenant
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    bearer,
    book,
    browser_for,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    make_doctor,
    make_tenant,
    make_user,
    open_session,
    patients,
)
from tests.factories.messages import consent_to

API = "/api/v1"


@dataclass
class Away:
    tenant: Tenant
    doctor: Any
    away_id: uuid.UUID
    slots: list[Any]
    people: list[Any]
    booked: list[Appointment]
    admin: Any
    desk: Any


def _at(hour: int, minute: int = 0) -> str:
    return datetime.combine(DAY, time(hour, minute), CLINIC_ZONE).isoformat()


def add_away(
    client: TestClient, token: str, doctor_id: uuid.UUID, start: str, end: str, reason: str
) -> dict[str, Any]:
    response = client.post(
        f"{API}/doctors/{doctor_id}/exceptions",
        json={"startsAt": start, "endsAt": end, "reason": reason},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def away_over_two_bookings(db: Database, ident: Any, client: TestClient) -> Away:
    tenant, doctor, slots = clinic_with_slots(db, ident, 4, make_tenant(db, "Away Clinic"))
    people = patients(db, ident, tenant, 2)
    consent_to(db, ident.cipher, tenant, people[0].id, "sms")
    booked = [book(db, tenant, slots[0], people[0]), book(db, tenant, slots[1], people[1])]
    admin = make_user(db, ident, tenant, "admin")
    desk = make_user(db, ident, tenant, "frontdesk")
    created = add_away(
        client, open_session(db, ident, admin), doctor.id, _at(9), _at(9, 30), "Conference"
    )
    assert created["bookedInside"] == 2
    return Away(tenant, doctor, uuid.UUID(created["id"]), slots, people, booked, admin, desk)


def away_messages(db: Database, tenant: Tenant) -> list[OutboxMessage]:
    with clinic_session(db, tenant.id) as session:
        rows = list(
            session.execute(
                select(OutboxMessage).where(OutboxMessage.template == "doctor-away")
            ).scalars()
        )
        for row in rows:
            session.expunge(row)
        return rows


def user_of(db: Database, doctor: Any) -> User:
    """The doctor-role user behind a doctor profile."""
    with clinic_session(db, doctor.tenant_id) as session:
        user = session.get_one(User, (doctor.tenant_id, doctor.user_id))
        session.expunge(user)
        return user


def statuses(db: Database, tenant: Tenant, ids: list[uuid.UUID]) -> list[str]:
    with clinic_session(db, tenant.id) as session:
        return [session.get_one(Appointment, (tenant.id, i)).status for i in ids]


@pytest.fixture
def away(db: Database, ident: Any, client: TestClient) -> Away:
    return away_over_two_bookings(db, ident, client)


def list_url(a: Away) -> str:
    return f"{API}/doctors/{a.doctor.id}/exceptions/{a.away_id}/appointments"


def message_url(a: Away) -> str:
    return f"{API}/doctors/{a.doctor.id}/exceptions/{a.away_id}/messages"


# --------------------------------------------------------------------------- API


def test_the_list_names_each_booked_patient_with_phone_time_status_and_how_to_reach_them(
    db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    token = open_session(db, ident, away.desk)
    response = client.get(list_url(away), headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body["appointments"]
    assert [r["appointmentId"] for r in rows] == [str(a.id) for a in away.booked]
    first, second = rows
    assert first["patientName"] == away.people[0].full_name
    assert first["phone"] and first["phone"].startswith("+91")
    assert first["status"] == "confirmed"
    assert first["channel"] == "sms"
    assert first["notMessaged"] is None and first["messaged"] is False
    # No consent to SMS or WhatsApp: listed, and marked to be called, not skipped.
    assert second["channel"] is None
    assert second["notMessaged"] == "cannot be messaged — call"
    assert second["phone"]
    # The next free slots are the ones after the time away.
    assert [s["id"] for s in body["nextFree"]] == [str(s.id) for s in away.slots[2:]]


def test_messaging_all_queues_one_rebooking_message_per_patient_and_a_second_press_sends_nothing(
    db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    token = open_session(db, ident, away.desk)
    first = client.post(message_url(away), headers=bearer(token))
    assert first.status_code == 200, first.text
    assert first.json() == {
        "queued": [str(away.booked[0].id)],
        "alreadyMessaged": [],
        "toCall": [str(away.booked[1].id)],
    }
    (message,) = away_messages(db, away.tenant)
    assert message.patient_id == away.people[0].id
    assert message.channel == "sms"
    assert message.dedupe_key == f"doctor-away:{away.away_id}:{away.booked[0].id}"
    payload = payload_of(ident.cipher, message)
    assert payload["link"].endswith(
        f"/me/appointments/{away.booked[0].id}/reschedule?date={DAY.isoformat()}"
    )
    assert payload["doctor"] == away.doctor.display_name
    assert "9:00 am" in payload["startsAt"]
    assert "9:30 am" in payload["nextFree"]
    # Audited; the appointments stay as they were (the desk decides each).
    with clinic_session(db, away.tenant.id) as session:
        event = session.execute(
            select(AuditEvent).where(
                AuditEvent.entity_collection == "notifications_outbox",
                AuditEvent.entity_id == message.id,
            )
        ).scalar_one()
        assert event.diff["awayId"] == str(away.away_id)
    assert statuses(db, away.tenant, [a.id for a in away.booked]) == ["confirmed", "confirmed"]

    again = client.post(message_url(away), headers=bearer(token))
    assert again.status_code == 200
    assert again.json() == {
        "queued": [],
        "alreadyMessaged": [str(away.booked[0].id)],
        "toCall": [str(away.booked[1].id)],
    }
    assert len(away_messages(db, away.tenant)) == 1
    listed = client.get(list_url(away), headers=bearer(token)).json()["appointments"]
    assert [r["messaged"] for r in listed] == [True, False]


def test_two_presses_at_once_queue_each_message_once(
    app: FastAPI, db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    answers: list[int] = []

    def press() -> None:
        with TestClient(app) as own:
            token = open_session(db, ident, away.desk)
            answers.append(own.post(message_url(away), headers=bearer(token)).status_code)

    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200, 200]
    assert len(away_messages(db, away.tenant)) == 1


def test_roles_the_desk_and_admin_message_doctors_see_the_list_others_are_refused(
    db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    pharmacist = open_session(db, ident, make_user(db, ident, away.tenant, "pharmacy"))
    accounts = open_session(db, ident, make_user(db, ident, away.tenant, "accounts"))
    own_doctor = open_session(db, ident, user_of(db, away.doctor))
    other = make_doctor(db, ident, away.tenant, name="Dr. Kiran Rao")
    other_doctor = open_session(db, ident, user_of(db, other))
    for token in (pharmacist, accounts):
        assert client.get(list_url(away), headers=bearer(token)).status_code == 403
        assert client.post(message_url(away), headers=bearer(token)).status_code == 403
    assert client.get(list_url(away), headers=bearer(own_doctor)).status_code == 200
    assert client.post(message_url(away), headers=bearer(own_doctor)).status_code == 403
    # a colleague covering for the doctor sees the list too, and also does not message
    assert client.get(list_url(away), headers=bearer(other_doctor)).status_code == 200
    assert client.post(message_url(away), headers=bearer(other_doctor)).status_code == 403
    admin = open_session(db, ident, away.admin)
    assert client.post(message_url(away), headers=bearer(admin)).status_code == 200
    assert len(away_messages(db, away.tenant)) == 1


def test_another_clinics_away_period_is_404_and_nothing_is_sent(
    db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    elsewhere = make_tenant(db, "Other Clinic")
    outsider = open_session(db, ident, make_user(db, ident, elsewhere, "admin"))
    assert client.get(list_url(away), headers=bearer(outsider)).status_code == 404
    assert client.post(message_url(away), headers=bearer(outsider)).status_code == 404
    page = f"/calendar/doctors/{away.doctor.id}/away/{away.away_id}"
    with browser_for(client.app, outsider) as browser:  # type: ignore[arg-type]
        assert browser.get(page).status_code == 404
    assert away_messages(db, away.tenant) == []


def test_an_away_period_under_another_doctor_of_the_clinic_is_404(
    db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    other = make_doctor(db, ident, away.tenant, name="Dr. Kiran Rao")
    token = open_session(db, ident, away.desk)
    wrong = f"{API}/doctors/{other.id}/exceptions/{away.away_id}/appointments"
    assert client.get(wrong, headers=bearer(token)).status_code == 404
    unknown = f"{API}/doctors/{away.doctor.id}/exceptions/{uuid.uuid4()}/messages"
    assert client.post(unknown, headers=bearer(token)).status_code == 404


def test_an_away_period_with_no_booked_appointments_lists_nobody_and_sends_nothing(
    db: Database, ident: Any, client: TestClient
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 4, make_tenant(db, "Quiet Clinic"))
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    created = add_away(client, admin, doctor.id, _at(9), _at(9, 30), "")
    assert created["bookedInside"] == 0
    base = f"{API}/doctors/{doctor.id}/exceptions/{created['id']}"
    listed = client.get(f"{base}/appointments", headers=bearer(admin)).json()
    assert listed["appointments"] == []
    assert [s["id"] for s in listed["nextFree"]] == [str(s.id) for s in slots[2:]]
    sent = client.post(f"{base}/messages", headers=bearer(admin)).json()
    assert sent == {"queued": [], "alreadyMessaged": [], "toCall": []}
    assert away_messages(db, tenant) == []
    with browser_for(client.app, admin) as browser:  # type: ignore[arg-type]
        page = browser.get(f"/calendar/doctors/{doctor.id}/away/{created['id']}")
        assert page.status_code == 200
        assert "No booked appointments fall in this time away" in page.text
        assert '/message"' not in page.text


# --------------------------------------------------------------------------- pages


def test_the_page_lists_the_patients_and_its_button_messages_them_once(
    app: FastAPI, db: Database, ident: Any, away: Away
) -> None:
    url = f"/calendar/doctors/{away.doctor.id}/away/{away.away_id}"
    with browser_for(app, open_session(db, ident, away.desk)) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        text = page.text
        for person in away.people:
            assert person.full_name in text
        assert "Cannot be messaged — call" in text
        assert "9:00 am" in text and "9:15 am" in text
        assert 'href="tel:+91' in text
        assert f"/appointments/{away.booked[0].id}/reschedule" in text
        assert "Message 1 patient" in text
        assert "Please choose another time" in text  # the message as it will read
        assert "Next free times" in text and "9:30 am" in text

        sent = browser.post(f"{url}/message", data={"csrf_token": csrf_of(text)})
        assert sent.status_code == 200
        assert "Messaged 1 patient with a link to choose another time." in sent.text
        assert "1 patient cannot be messaged: please call them." in sent.text
        assert "Nobody left to message" in sent.text
        assert ">Messaged<" in sent.text

        again = browser.post(f"{url}/message", data={"csrf_token": csrf_of(sent.text)})
        assert "No new messages sent." in again.text
        assert "1 patient had been messaged already (not sent again)." in again.text
    assert len(away_messages(db, away.tenant)) == 1


def test_a_doctor_sees_their_own_list_without_the_button(
    app: FastAPI, db: Database, ident: Any, away: Away
) -> None:
    url = f"/calendar/doctors/{away.doctor.id}/away/{away.away_id}"
    with browser_for(app, open_session(db, ident, user_of(db, away.doctor))) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        assert away.people[0].full_name in page.text
        assert "/message" not in page.text
        refused = browser.post(f"{url}/message", data={"csrf_token": csrf_of(page.text)})
        assert refused.status_code == 403
    assert away_messages(db, away.tenant) == []


def test_saving_time_away_over_bookings_points_the_admin_to_the_patients_to_tell(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 4, make_tenant(db, "Admin Clinic"))
    (patient,) = patients(db, ident, tenant, 1)
    book(db, tenant, slots[0], patient)
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        form = browser.get(f"/admin/doctors/{doctor.id}")
        saved = browser.post(
            f"/admin/doctors/{doctor.id}/away",
            data={
                "starts_at": f"{DAY.isoformat()}T09:00",
                "ends_at": f"{DAY.isoformat()}T09:30",
                "reason": "Conference",
                "csrf_token": csrf_of(form.text),
            },
        )
        assert saved.status_code == 200
        assert "1 booked appointment falls in it" in saved.text
        assert "?added=" in str(saved.url)
        assert 'id="away-added"' in saved.text
        assert f"/calendar/doctors/{doctor.id}/away/" in saved.text
        assert "Patients to tell (1 booked)" in saved.text
        # Time away over nothing booked: no pointer.
        quiet = browser.post(
            f"/admin/doctors/{doctor.id}/away",
            data={
                "starts_at": f"{DAY.isoformat()}T09:45",
                "ends_at": f"{DAY.isoformat()}T10:00",
                "csrf_token": csrf_of(saved.text),
            },
        )
        assert "Time away saved; its free slots are closed." in quiet.text
        assert 'id="away-added"' not in quiet.text


def test_the_calendar_shows_the_time_away_as_a_band_across_its_rows(
    app: FastAPI, db: Database, ident: Any, away: Away
) -> None:
    with browser_for(app, open_session(db, ident, away.desk)) as browser:
        for view in ("day", "week", "all"):
            page = browser.get(f"/calendar?doctor={away.doctor.id}&date={DAY}&view={view}")
            assert page.status_code == 200
            text = page.text
            assert 'class="away-band"' in text, view
            assert f"{away.doctor.display_name} away: Conference" in text, view
            assert "9:00 am to 9:30 am" in text, view
            assert "2 booked: patients to tell" in text, view
            assert f"/calendar/doctors/{away.doctor.id}/away/{away.away_id}" in text
        day = browser.get(f"/calendar?doctor={away.doctor.id}&date={DAY}&view=day").text
        # The band comes before the booked rows inside it, which are marked.
        assert day.index('class="away-band"') < day.index(away.people[0].full_name)
        assert day.count("in-away") >= 2
        assert day.count(">Doctor away<") == 2
        # The printed day list says so too.
        sheet = browser.get(f"/calendar/doctors/{away.doctor.id}/day-list?date={DAY}").text
        assert f"{away.doctor.display_name} away: Conference" in sheet
        assert sheet.count('class="away-mark"') == 2
        # Another day has no band.
        other = browser.get(f"/calendar?doctor={away.doctor.id}&date={DAY + timedelta(days=1)}")
        assert 'class="away-band"' not in other.text


def test_every_doctors_day_marks_an_away_doctors_column_where_others_still_work(
    app: FastAPI, db: Database, ident: Any, client: TestClient
) -> None:
    tenant, working, _ = clinic_with_slots(db, ident, 4, make_tenant(db, "Two Doctor Clinic"))
    _, resting, _ = clinic_with_slots(db, ident, 4, tenant)
    admin = open_session(db, ident, make_user(db, ident, tenant, "admin"))
    add_away(client, admin, resting.id, _at(9), _at(9, 30), "Leave")
    with browser_for(app, admin) as browser:
        page = browser.get(f"/calendar?doctor={working.id}&date={DAY}&view=all").text
    # 09:00 and 09:15: the working doctor's slots, the other doctor's column says away.
    assert page.count('class="away-cell') == 2
    assert page.count("Away: Leave") == 2
    assert f"{resting.display_name} away: Leave" in page
    assert "patients to tell" not in page  # nothing booked inside


def test_moving_a_patient_out_of_the_time_away_does_not_open_the_slot_they_leave(
    db: Database, ident: Any, client: TestClient, away: Away
) -> None:
    token = open_session(db, ident, away.desk)
    moved = client.post(
        f"{API}/appointments/{away.booked[0].id}/reschedule",
        json={"slotId": str(away.slots[2].id)},
        headers=bearer(token),
    )
    assert moved.status_code == 201, moved.text
    free = client.get(
        f"{API}/slots",
        params={"doctorId": str(away.doctor.id), "from": DAY.isoformat()},
        headers=bearer(token),
    ).json()
    assert str(away.slots[0].id) not in [s["id"] for s in free]
