"""Scheduling pages with a cookie session (as a browser sends them): refusals come back
as a message on the page and change nothing; foreign records are 404.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from opdesk.db import Database
from opdesk.scheduling.models import Appointment
from opdesk.tenancy.models import Tenant
from tests.factories import (
    DAY,
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
    portal_login,
)


def appointments_on(db: Database, tenant: Tenant, slot_id: Any) -> int:
    with clinic_session(db, tenant.id) as session:
        return int(
            session.execute(
                select(func.count()).select_from(Appointment).where(Appointment.slot_id == slot_id)
            ).scalar_one()
        )


def test_booking_a_taken_slot_from_the_calendar_says_why_and_adds_nothing(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 2)
    first, second = patients(db, ident, tenant, 2)
    book(db, tenant, slots[0], first)
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        calendar = browser.get(f"/calendar?doctor={doctor.id}&date={DAY.isoformat()}")
        assert calendar.status_code == 200
        refused = browser.post(
            "/calendar/book",
            data={
                "slot_id": str(slots[0].id),
                "patient_id": str(second.id),
                "visit_type": "consultation",
                "csrf_token": csrf_of(calendar.text),
            },
        )
        assert refused.status_code == 200  # after the redirect back to the calendar
        assert "this slot is already booked" in refused.text
        assert appointments_on(db, tenant, slots[0].id) == 1
        forged = browser.post(
            "/calendar/book",
            data={"slot_id": str(slots[1].id), "patient_id": str(second.id), "csrf_token": "x"},
        )
        assert forged.status_code == 403
        assert appointments_on(db, tenant, slots[1].id) == 0


def test_a_forbidden_move_from_the_queue_is_explained_and_changes_nothing(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(db, tenant, slots[0], patient)
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        page = browser.get("/queue")
        refused = browser.post(
            f"/appointments/{appointment.id}/move",
            data={"to": "completed", "back": "queue", "csrf_token": csrf_of(page.text)},
        )
        assert "an appointment cannot go from confirmed to completed" in refused.text
    with clinic_session(db, tenant.id) as session:
        found = session.get(Appointment, (tenant.id, appointment.id))
        assert found is not None and found.status == "confirmed"


def test_confirming_without_a_live_hold_sends_the_patient_back_to_pick(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, _slots = clinic_with_slots(db, ident, 1)
    with browser_for(app, "") as browser:
        browser.cookies.set("opdesk_hold", "not-a-slot.not-a-token")
        page = browser.get(f"/c/{tenant.slug}/book/confirm")
        assert "That time is no longer held; please pick again." in page.text
        assert page.url.path == f"/c/{tenant.slug}/book"


def test_a_patient_of_another_clinic_cannot_confirm_here(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 1)
    other = make_tenant(db, "Far Away Clinic")
    (stranger,) = patients(db, ident, other, 1)
    token = portal_login(db, ident, other, stranger)["Authorization"].removeprefix("Bearer ")
    with browser_for(app, token) as browser:
        picking = browser.get(f"/c/{tenant.slug}/book?doctor={doctor.id}&date={DAY}")
        held = browser.post(
            f"/c/{tenant.slug}/book/hold",
            data={"slot_id": str(slots[0].id), "csrf_token": csrf_of(picking.text)},
        )
        assert held.url.path == f"/c/{tenant.slug}/book/confirm"
        assert "Sign in with my mobile" in held.text  # not signed in to this clinic
        mine = browser.get("/me/appointments")
        refused = browser.post(
            f"/c/{tenant.slug}/book/confirm",
            data={
                "patient_id": str(stranger.id),
                "visit_type": "consultation",
                "csrf_token": csrf_of(mine.text),
            },
        )
        assert refused.status_code == 404
    assert appointments_on(db, tenant, slots[0].id) == 0


def test_change_time_opens_on_the_appointments_day_and_follows_the_date_asked(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 3)
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(db, tenant, slots[0], patient)
    token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
    url = f"/me/appointments/{appointment.id}/reschedule"
    day = DAY.strftime("%a %-d %b")
    with browser_for(app, token) as browser:
        for opened in (browser.get(url), browser.get(f"{url}?date=not-a-day")):
            assert f'aria-current="date">{day}</a>' in opened.text  # a week or more ahead
            assert f"Free times on {day}" in opened.text
            offered = re.findall(r'name="slot_id" value="([0-9a-f-]{36})"', opened.text)
            assert offered == [str(slots[1].id), str(slots[2].id)]
        later = DAY + timedelta(days=1)  # the doctor works Mondays only
        other = browser.get(f"{url}?date={later.isoformat()}")
        assert f'aria-current="date">{later.strftime("%a %-d %b")}</a>' in other.text
        assert f"No free times on {later.strftime('%a %-d %b')}" in other.text
        assert f'href="{url}?date={DAY.isoformat()}"' in other.text  # one tap back


def test_weekly_hours_with_a_mistake_come_back_as_typed_and_save_once_fixed(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Hours Clinic")
    doctor = make_doctor(db, ident, tenant)
    admin = make_user(db, ident, tenant, "admin")
    url = f"/admin/doctors/{doctor.id}"
    with browser_for(app, open_session(db, ident, admin)) as browser:
        form = {
            "csrf_token": csrf_of(browser.get(url).text),
            "rows": "1",
            "weekday_0": "0",
            "start_time_0": "10:00",
            "end_time_0": "09:30",
            "slot_minutes_0": "15",
            "visit_types_0": "consultation",
        }
        wrong = browser.post(f"{url}/hours", data=form)
        assert wrong.status_code == 422
        assert "must be after the start time" in wrong.text
        assert 'value="09:30"' in wrong.text, "the row comes back as the admin typed it"
        saved = browser.post(f"{url}/hours", data={**form, "end_time_0": "11:00"})
        assert saved.status_code == 200
        assert "Weekly hours saved" in saved.text
        assert 'value="11:00"' in saved.text
