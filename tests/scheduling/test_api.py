"""Scheduling through the HTTP API: validation naming fields, holds, idempotent booking,
the lifecycle, the queue, and the public booking page with the patient portal.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.patients.schemas import PatientUpdate
from opdesk.patients.service import update as update_patient
from opdesk.scheduling.models import Appointment
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    DAY,
    bearer,
    clinic_session,
    ctx_for,
    make_tenant,
    make_user,
    open_session,
    patients,
    portal_login,
)

Headers = dict[str, str]
MONDAY = DAY.isoformat()
VISITS = [
    {"code": "consultation", "label": "Consultation", "minutes": 15},
    {"code": "new", "label": "New patient", "minutes": 30},
]


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> Headers:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


@pytest.fixture
def desk(db: Database, ident: Any, tenant: Tenant) -> Headers:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))


def add_doctor(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, **extra: Any
) -> Any:
    user = make_user(db, ident, tenant, "doctor")
    body = {
        "userId": str(user.id),
        "displayName": "Dr. Meera Iyer",
        "specialty": "Paediatrics",
        "registrationNumber": "TNMC-88231",
        "consultationFee": "600.00",
        "visitTypes": VISITS,
        **extra,
    }
    response = client.post("/api/v1/doctors", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def opening(**over: Any) -> dict[str, Any]:
    return {
        "weekday": 0,
        "startTime": "09:00",
        "endTime": "10:00",
        "slotMinutes": 15,
        "visitTypes": ["consultation"],
        **over,
    }


def doctor_with_slots(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers
) -> tuple[Any, list[Any]]:
    doctor = add_doctor(client, db, ident, tenant, admin)
    put = client.put(
        f"/api/v1/doctors/{doctor['id']}/templates",
        json={"validFrom": MONDAY, "templates": [opening()]},  # DAY is the first day
        headers=admin,
    )
    assert put.status_code == 200, put.text
    slots = client.get(
        "/api/v1/slots", params={"doctorId": doctor["id"], "from": MONDAY}, headers=admin
    )
    assert slots.status_code == 200
    assert len(slots.json()) == 4  # 09:00, 09:15, 09:30, 09:45
    return doctor, slots.json()


def fields_of(response: Any) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


def test_doctor_profiles_need_a_doctor_user_once(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers
) -> None:
    doctor = add_doctor(client, db, ident, tenant, admin)
    again = client.post(
        "/api/v1/doctors",
        json={
            "userId": doctor["userId"],
            "displayName": "Dr. Again",
            "specialty": "Paediatrics",
            "registrationNumber": "TNMC-1",
            "consultationFee": "1.00",
            "visitTypes": VISITS,
        },
        headers=admin,
    )
    assert again.status_code == 409
    desk_user = make_user(db, ident, tenant, "frontdesk")
    wrong = client.post(
        "/api/v1/doctors",
        json={
            "userId": str(desk_user.id),
            "displayName": "Not a doctor",
            "specialty": "x",
            "registrationNumber": "abc",
            "consultationFee": "1",
            "visitTypes": VISITS,
        },
        headers=admin,
    )
    assert wrong.status_code == 422 and fields_of(wrong) == {"userId"}


@pytest.mark.parametrize(
    ("templates", "field"),
    [
        ([opening(), opening(startTime="09:30", endTime="11:00")], "templates.1"),
        ([opening(startTime="11:00", endTime="10:00")], "templates.0.endTime"),
        ([opening(slotMinutes=0)], "templates.0.slotMinutes"),
        ([opening(weekday=7)], "templates.0.weekday"),
        ([opening(visitTypes=["surgery"])], "templates.0.visitTypes"),
    ],
)
def test_bad_templates_name_the_field_and_change_nothing(
    client: TestClient,
    db: Database,
    ident: Any,
    tenant: Tenant,
    admin: Headers,
    templates: list[Any],
    field: str,
) -> None:
    doctor = add_doctor(client, db, ident, tenant, admin)
    response = client.put(
        f"/api/v1/doctors/{doctor['id']}/templates", json={"templates": templates}, headers=admin
    )
    assert response.status_code == 422
    assert any(f.startswith(field) for f in fields_of(response)), response.json()
    assert client.get(f"/api/v1/doctors/{doctor['id']}/templates", headers=admin).json() == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": str(DAY - timedelta(days=400))}, "from"),  # over a year before today
        ({"from": MONDAY, "to": str(DAY + timedelta(days=400))}, "to"),  # a year after
        ({"from": MONDAY, "to": str(DAY - timedelta(days=1))}, "to"),  # backwards
        ({"from": MONDAY, "to": str(DAY + timedelta(days=32))}, "to"),  # over 31 days
    ],
)
def test_slot_search_refuses_dates_far_away_or_backwards(
    client: TestClient,
    db: Database,
    ident: Any,
    tenant: Tenant,
    admin: Headers,
    params: dict[str, str],
    field: str,
) -> None:
    doctor = add_doctor(client, db, ident, tenant, admin)
    response = client.get(
        "/api/v1/slots", params={"doctorId": doctor["id"], **params}, headers=admin
    )
    assert response.status_code == 422 and fields_of(response) == {field}


def test_another_clinics_doctor_and_slot_are_unknown(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    other = make_tenant(db, "Other Clinic")
    other_desk = bearer(open_session(db, ident, make_user(db, ident, other, "frontdesk")))
    (stranger,) = patients(db, ident, other, 1)
    search = client.get(
        "/api/v1/slots", params={"doctorId": doctor["id"], "from": MONDAY}, headers=other_desk
    )
    assert search.status_code == 404
    hold = client.post(f"/api/v1/slots/{slots[0]['id']}/hold", headers=other_desk)
    assert hold.status_code == 404
    booked = client.post(
        "/api/v1/appointments",
        json={"slotId": slots[0]["id"], "patientId": str(stranger.id), "visitType": "consultation"},
        headers=other_desk,
    )
    assert booked.status_code == 404


def book(client: TestClient, headers: Headers, slot: Any, patient: Any, **extra: Any) -> Any:
    return client.post(
        "/api/v1/appointments",
        json={
            "slotId": slot["id"],
            "patientId": str(patient.id),
            "visitType": "consultation",
            **extra,
        },
        headers=headers,
    )


def test_holds_blocked_and_booked_slots_refuse_other_bookings(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    _doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    a, b = patients(db, ident, tenant, 2)
    held = client.post(f"/api/v1/slots/{slots[0]['id']}/hold", headers=desk)
    assert held.status_code == 201
    token = held.json()["holdToken"]
    someone_elses = book(client, desk, slots[0], b)
    assert someone_elses.status_code == 409
    assert "being booked by someone else" in someone_elses.json()["detail"]
    assert book(client, desk, slots[0], b, holdToken="not-the-token").status_code == 409
    assert book(client, desk, slots[0], a, holdToken=token).status_code == 201
    taken = book(client, desk, slots[0], b)
    assert taken.status_code == 409 and "already booked" in taken.json()["detail"]
    blocked = client.post(f"/api/v1/slots/{slots[1]['id']}/block", headers=desk)
    assert blocked.status_code == 200 and blocked.json()["status"] == "blocked"
    closed = book(client, desk, slots[1], b)
    assert closed.status_code == 409 and "not open for booking" in closed.json()["detail"]
    wrong_type = book(client, desk, slots[2], b, visitType="new")
    assert wrong_type.status_code == 422 and fields_of(wrong_type) == {"visitType"}
    free = client.get(
        "/api/v1/slots", params={"doctorId": slots[0]["doctorId"], "from": MONDAY}, headers=desk
    )
    assert [s["id"] for s in free.json()] == [slots[2]["id"], slots[3]["id"]]
    reopened = client.post(f"/api/v1/slots/{slots[1]['id']}/unblock", headers=desk)
    assert reopened.status_code == 200 and reopened.json()["status"] == "free"
    assert book(client, desk, slots[1], b).status_code == 201


def appointments_of(db: Database, tenant: Tenant, patient: Any) -> int:
    with clinic_session(db, tenant.id) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(Appointment)
                .where(Appointment.patient_id == patient.id)
            ).scalar_one()
        )


def test_idempotency_key_makes_a_retry_return_the_first_booking(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    _doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    (patient,) = patients(db, ident, tenant, 1)
    keyed = {**desk, "Idempotency-Key": "booking-7f3a"}
    first = book(client, keyed, slots[0], patient)
    retry = book(client, keyed, slots[0], patient)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    changed = book(client, keyed, slots[1], patient)
    assert changed.status_code == 409 and "Idempotency-Key" in changed.json()["detail"]
    # Without a key a double submission is a second attempt on a taken slot.
    assert book(client, desk, slots[0], patient).status_code == 409
    assert appointments_of(db, tenant, patient) == 1


def status(client: TestClient, headers: Headers, appointment: Any, to: str) -> Any:
    return client.post(
        f"/api/v1/appointments/{appointment['id']}/status", json={"status": to}, headers=headers
    )


def test_lifecycle_over_the_api_and_a_completed_visit_cannot_go_back(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    _doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(client, desk, slots[0], patient).json()
    for step in ("checked-in", "in-consult", "completed"):
        moved = status(client, desk, appointment, step)
        assert moved.status_code == 200, moved.text
    done = moved.json()
    assert done["timeline"]["completedAt"] is not None and done["tokenNumber"] == 1
    back = status(client, desk, appointment, "confirmed")
    assert back.status_code == 409
    assert back.json()["detail"] == "an appointment cannot go from completed to confirmed"
    refund = status(client, desk, appointment, "refunded")
    assert refund.status_code == 422  # billing sets refunds, not the desk


def test_reschedule_and_walk_in_through_the_api(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    a, b = patients(db, ident, tenant, 2)
    old = book(client, desk, slots[0], a).json()
    moved = client.post(
        f"/api/v1/appointments/{old['id']}/reschedule",
        json={"slotId": slots[1]["id"]},
        headers=desk,
    )
    assert moved.status_code == 201 and moved.json()["rescheduleOf"] == old["id"]
    assert client.get(f"/api/v1/appointments/{old['id']}", headers=desk).json()["status"] == (
        "cancelled"
    )
    walk = client.post(
        "/api/v1/walk-ins",
        json={"patientId": str(b.id), "doctorId": doctor["id"], "visitType": "consultation"},
        headers=desk,
    )
    assert walk.status_code == 201 and walk.json()["tokenNumber"] == 1
    queue = client.get("/api/v1/queue", params={"doctorId": doctor["id"]}, headers=desk)
    assert [q["id"] for q in queue.json()] == [walk.json()["id"]]


def test_next_available_across_a_specialty(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)  # from DAY on only
    (patient,) = patients(db, ident, tenant, 1)
    assert book(client, desk, slots[0], patient).status_code == 201
    found = client.get(
        "/api/v1/slots/next", params={"specialty": "Paediatrics"}, headers=desk
    ).json()
    assert [f["slot"]["id"] for f in found if f["doctor"]["id"] == doctor["id"]] == [slots[1]["id"]]
    none = client.get("/api/v1/slots/next", params={"specialty": "Dermatology"}, headers=desk)
    assert none.json() == []


def test_self_booking_holds_without_sign_in_and_books_with_the_portal_session(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    me, blocked = patients(db, ident, tenant, 2)
    base = f"/api/v1/public/clinics/{tenant.slug}"
    listed = client.get(f"{base}/doctors").json()
    assert [d["id"] for d in listed] == [doctor["id"]]
    assert "registrationNumber" not in listed[0]
    free = client.get(f"{base}/slots", params={"doctorId": doctor["id"], "from": MONDAY})
    assert len(free.json()) == 4
    held = client.post(f"{base}/holds", json={"slotId": slots[0]["id"]})
    assert held.status_code == 201
    token = held.json()["holdToken"]
    mine = portal_login(db, ident, tenant, me)
    body = {"slotId": slots[0]["id"], "patientId": str(me.id), "visitType": "consultation"}
    stolen = client.post(
        "/api/v1/me/appointments", json={**body, "holdToken": "guess"}, headers=mine
    )
    assert stolen.status_code == 409
    booked = client.post("/api/v1/me/appointments", json={**body, "holdToken": token}, headers=mine)
    assert booked.status_code == 201 and booked.json()["channel"] == "web"
    listed_mine = client.get("/api/v1/me/appointments", headers=mine).json()
    assert [a["id"] for a in listed_mine] == [booked.json()["id"]]
    cancelled = client.post(f"/api/v1/me/appointments/{booked.json()['id']}/cancel", headers=mine)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # A patient the clinic has blocked cannot book online even with a good hold.
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:  # the desk's flag, set as the patient form sets it
        update_patient(
            session,
            ctx,
            ident,
            patient_id=blocked.id,
            changes=PatientUpdate.model_validate({"flags": {"vip": False, "blocked": True}}),
        )
    held_again = client.post(f"{base}/holds", json={"slotId": slots[1]["id"]}).json()
    refused = client.post(
        "/api/v1/me/appointments",
        json={
            "slotId": slots[1]["id"],
            "patientId": str(blocked.id),
            "visitType": "consultation",
            "holdToken": held_again["holdToken"],
        },
        headers=portal_login(db, ident, tenant, blocked),
    )
    assert refused.status_code == 403


def test_public_holds_are_limited_per_address(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers
) -> None:
    _doctor, _slots = doctor_with_slots(client, db, ident, tenant, admin)
    more = client.put(
        f"/api/v1/doctors/{_doctor['id']}/templates",
        json={"validFrom": MONDAY, "templates": [opening(endTime="13:00")]},
        headers=admin,
    )
    assert more.status_code == 200
    slots = client.get(
        "/api/v1/slots", params={"doctorId": _doctor["id"], "from": MONDAY}, headers=admin
    ).json()
    base = f"/api/v1/public/clinics/{tenant.slug}"
    codes = [client.post(f"{base}/holds", json={"slotId": s["id"]}).status_code for s in slots[:11]]
    assert codes == [201] * 10 + [429]


def test_exceptions_take_free_slots_away_and_bad_ranges_name_the_field(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    (patient,) = patients(db, ident, tenant, 1)
    assert book(client, desk, slots[1], patient).status_code == 201
    away = {"startsAt": slots[0]["start"], "endsAt": slots[2]["end"], "reason": "Leave"}
    made = client.post(f"/api/v1/doctors/{doctor['id']}/exceptions", json=away, headers=admin)
    assert made.status_code == 201 and made.json()["bookedInside"] == 1
    left = client.get(
        "/api/v1/slots",
        params={"doctorId": doctor["id"], "from": MONDAY, "includeTaken": "true"},
        headers=admin,
    ).json()
    assert [s["id"] for s in left] == [slots[1]["id"], slots[3]["id"]]  # the booked one stays
    backwards = {"startsAt": slots[2]["end"], "endsAt": slots[0]["start"]}
    refused = client.post(
        f"/api/v1/doctors/{doctor['id']}/exceptions", json=backwards, headers=admin
    )
    assert refused.status_code == 422 and fields_of(refused) == {"endsAt"}
    past = {"startsAt": "2020-01-01T09:00:00+05:30", "endsAt": "2020-01-02T09:00:00+05:30"}
    old = client.post(f"/api/v1/doctors/{doctor['id']}/exceptions", json=past, headers=admin)
    assert old.status_code == 422 and fields_of(old) == {"endsAt"}
    removed = client.delete(
        f"/api/v1/doctors/{doctor['id']}/exceptions/{made.json()['id']}", headers=admin
    )
    assert removed.status_code == 204
    regenerated = client.post(
        f"/api/v1/doctors/{doctor['id']}/slots/generate", json={"days": 30}, headers=admin
    )
    assert regenerated.status_code == 200 and regenerated.json()["created"] == 2
    again = client.post(
        f"/api/v1/doctors/{doctor['id']}/slots/generate", json={"days": 30}, headers=admin
    )
    assert again.json()["created"] == 0  # idempotent


def test_waitlist_offer_reaches_the_patient_and_they_accept_it_online(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin: Headers, desk: Headers
) -> None:
    doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
    first, waiting = patients(db, ident, tenant, 2)
    taken = book(client, desk, slots[0], first).json()
    joined = client.post(
        "/api/v1/waitlist",
        json={
            "patientId": str(waiting.id),
            "doctorId": doctor["id"],
            "fromDate": MONDAY,
            "untilDate": MONDAY,
            "visitType": "consultation",
        },
        headers=desk,
    )
    assert joined.status_code == 201 and joined.json()["status"] == "waiting"
    assert status(client, desk, taken, "cancelled").status_code == 200
    mine = portal_login(db, ident, tenant, waiting)
    (offer,) = client.get("/api/v1/me/waitlist-offers", headers=mine).json()
    assert offer["slotId"] == slots[0]["id"]
    strangers = portal_login(db, ident, tenant, first)
    assert (
        client.post(f"/api/v1/me/waitlist-offers/{offer['id']}/accept", headers=strangers)
    ).status_code == 404
    accepted = client.post(f"/api/v1/me/waitlist-offers/{offer['id']}/accept", headers=mine)
    assert accepted.status_code == 201
    assert accepted.json()["waitlistOrigin"] == joined.json()["id"]
    assert client.get("/api/v1/waitlist", headers=desk).json() == []


def test_the_offer_time_follows_the_setting(
    settings: Any, db: Database, ident: Any, tenant: Tenant, keyring: Any
) -> None:
    from datetime import datetime

    from opdesk.app import create_app

    quick = create_app(
        settings.model_copy(update={"waitlist_offer_minutes": 4}), database=db, keyring=keyring
    )
    with TestClient(quick) as client:
        admin = bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))
        desk = bearer(open_session(db, ident, make_user(db, ident, tenant, "frontdesk")))
        doctor, slots = doctor_with_slots(client, db, ident, tenant, admin)
        first, waiting = patients(db, ident, tenant, 2)
        taken = book(client, desk, slots[0], first).json()
        client.post(
            "/api/v1/waitlist",
            json={
                "patientId": str(waiting.id),
                "doctorId": doctor["id"],
                "fromDate": MONDAY,
                "untilDate": MONDAY,
                "visitType": "consultation",
            },
            headers=desk,
        )
        cancelled_at = datetime.now().astimezone()
        assert status(client, desk, taken, "cancelled").status_code == 200
        (offer,) = client.get(
            "/api/v1/me/waitlist-offers", headers=portal_login(db, ident, tenant, waiting)
        ).json()
    kept = datetime.fromisoformat(offer["expiresAt"]) - cancelled_at
    assert timedelta(minutes=3, seconds=50) < kept <= timedelta(minutes=4, seconds=10)
