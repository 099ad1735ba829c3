"""The desk's day views (issue 10, items 21, 22, 27): the waiting-room "Now serving"
display, every doctor's day side by side, a doctor's printable day list, and the week
summarised per day. Pages with a cookie session, as a browser sends them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.db import Database
from opdesk.scheduling import lifecycle, waitlist
from opdesk.scheduling.models import Appointment, DoctorProfile
from opdesk.scheduling.service import Opening
from opdesk.scheduling.web import initial, public_name
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    book,
    browser_for,
    cancel,
    csrf_of,
    ctx_for,
    generate,
    make_doctor,
    make_tenant,
    make_user,
    open_session,
    patients,
    set_week,
    slots_of,
)
from tests.factories.scheduling import OFFER_FOR


@pytest.fixture(autouse=True)
def clinic_noon() -> Iterator[datetime]:
    """Noon at the clinic on the day before :data:`DAY` (the clock keeps running): walk-ins
    join today's queue, and all of DAY's slots lie ahead.
    """
    moment = datetime.combine(DAY - timedelta(days=1), time(12), CLINIC_ZONE)
    with time_machine.travel(moment, tick=True):
        yield moment


def desk(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str = "frontdesk"
) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, role)))


def person(db: Database, ident: Any, tenant: Tenant, first: str, last: str, phone: str) -> Any:
    return patients(db, ident, tenant, 1, name={"first": first, "last": last}, phone=phone)[0]


def walk_in(
    db: Database, ident: Any, tenant: Tenant, doctor: DoctorProfile, patient: Any, *to: str
) -> Appointment:
    """``patient`` walks in for ``doctor`` today (a token, checked in), then moves on."""
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        made = lifecycle.walk_in(
            session, ctx, patient_id=patient.id, doctor_id=doctor.id, visit_type="consultation"
        )
        for step in to:
            lifecycle.transition(
                session,
                ctx,
                waitlist.Offers(ident.cipher, OFFER_FOR),
                appointment_id=made.id,
                to=step,
            )
        session.expunge(made)
        return made


def national(phone: str) -> str:
    return phone.removeprefix("+91")


# ------------------------------------------------------------------ the waiting-room display


def test_a_name_on_the_public_screen_is_a_first_name_and_an_initial() -> None:
    assert public_name("Suresh", "Jadhav") == "Suresh J."
    assert public_name("लक्ष्मी", "अय्यर") == "लक्ष्मी अ."
    # A conjunct's joining sign is not left dangling; a vowel sign stays with its letter.
    assert public_name("Ravi", "क्षत्रिय") == "Ravi क."
    assert initial("முருகன்") == "மு"
    assert public_name("Ravi", "") == "Ravi"
    assert public_name("Ravi", "  ") == "Ravi"


def test_the_display_shows_who_is_in_and_who_is_next_and_nothing_private(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Now Serving Clinic")
    anjali = make_doctor(db, ident, tenant, name="Dr. Anjali Deshmukh")
    farhan = make_doctor(db, ident, tenant, name="Dr. Farhan Shaikh")
    phones = ["+919822011111", "+919822022222", "+919822033333", "+919822044444", "+919822055555"]
    done = person(db, ident, tenant, "Meena", "Kulkarni", phones[0])
    inside = person(db, ident, tenant, "Suresh", "Jadhav", phones[1])
    next_up = person(db, ident, tenant, "लक्ष्मी", "अय्यर", phones[2])
    later = person(db, ident, tenant, "Ravi", "Rao", phones[3])
    other = person(db, ident, tenant, "Imran", "Qureshi", phones[4])
    walk_in(db, ident, tenant, anjali, done, "in-consult", "completed")
    two = walk_in(db, ident, tenant, anjali, inside, "in-consult")
    three = walk_in(db, ident, tenant, anjali, next_up)
    four = walk_in(db, ident, tenant, anjali, later)
    farhans = walk_in(db, ident, tenant, farhan, other)
    # Another clinic's queue never shows here.
    elsewhere = make_tenant(db, "Far Away Clinic")
    stranger = person(db, ident, elsewhere, "Zoya", "Farooqui", "+919822066666")
    walk_in(db, ident, elsewhere, make_doctor(db, ident, elsewhere), stranger, "in-consult")

    with desk(app, db, ident, tenant) as browser:
        shown = browser.get("/queue/display")
    assert shown.status_code == 200
    html = shown.text
    sections = html.split('class="tv-doctor"')[1:]
    assert len(sections) == 2
    anjalis = next(s for s in sections if "Dr. Anjali Deshmukh" in s)
    now, upcoming = anjalis.split('class="tv-next"')
    assert f">{two.token_number}<" in now and "Suresh J." in now
    assert "Meena" not in anjalis, "a finished patient is off the board"
    assert upcoming.index("लक्ष्मी अ.") < upcoming.index("Ravi R."), "next in token order"
    assert f">{three.token_number}<" in upcoming and f">{four.token_number}<" in upcoming
    farhans_section = next(s for s in sections if "Dr. Farhan Shaikh" in s)
    assert f">{farhans.token_number}<" in farhans_section and "Imran Q." in farhans_section
    # A public screen: no surname, no phone, nothing to press, nobody of another clinic.
    for private in ("Jadhav", "अय्यर", "Rao<", "Kulkarni", "Qureshi", "Zoya", "Farooqui"):
        assert private not in html
    for phone in phones:
        assert national(phone) not in html and national(phone)[-4:] not in html
    for control in ("<form", "<button", "<input", "<select", "<textarea", "hx-post"):
        assert control not in html
    assert 'src="/static/board' in html, "the page refreshes itself"


def test_the_display_before_anyone_checks_in_says_so(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Quiet Clinic")
    make_doctor(db, ident, tenant)
    with desk(app, db, ident, tenant, "doctor") as browser:
        shown = browser.get("/queue/display")
    assert shown.status_code == 200
    assert "Tokens appear here as patients check in." in shown.text


@pytest.mark.parametrize("role", ["pharmacy", "accounts"])
def test_the_display_is_for_the_desk_doctors_and_admins(
    app: FastAPI, db: Database, ident: Any, role: str
) -> None:
    tenant = make_tenant(db, "Display Roles Clinic")
    with desk(app, db, ident, tenant, role) as browser:
        assert browser.get("/queue/display").status_code == 403
    with desk(app, db, ident, tenant, "admin") as browser:
        assert browser.get("/queue/display").status_code == 200


def test_the_queue_page_opens_the_display_and_its_board_is_not_a_page_alone(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Board Alone Clinic")
    doctor = make_doctor(db, ident, tenant)
    walk_in(
        db, ident, tenant, doctor, person(db, ident, tenant, "Suresh", "Jadhav", "+919822077777")
    )
    with desk(app, db, ident, tenant) as browser:
        queue = browser.get("/queue")
        assert 'href="/queue/display"' in queue.text
        assert "Open the waiting-room display" in queue.text
        alone = browser.get("/queue/board", follow_redirects=False)
        assert alone.status_code == 303 and alone.headers["location"] == "/queue"
        swapped = browser.get("/queue/board", headers={"HX-Request": "true"})
        assert swapped.status_code == 200 and "Suresh Jadhav" in swapped.text
        assert "<html" not in swapped.text
    with desk(app, db, ident, tenant, "doctor") as browser:
        mine = browser.get("/my-queue/board", follow_redirects=False)
        assert mine.status_code == 303 and mine.headers["location"] == "/my-queue"


# ------------------------------------------------------------------ every doctor's day


def two_doctors(
    db: Database, ident: Any, name: str
) -> tuple[Tenant, list[DoctorProfile], list[Any]]:
    """Two doctors on :data:`DAY`: Anjali 9:00-10:00, Farhan 9:30-10:30 (15 minutes)."""
    tenant = make_tenant(db, name)
    anjali = make_doctor(db, ident, tenant, name="Dr. Anjali Deshmukh")
    farhan = make_doctor(db, ident, tenant, name="Dr. Farhan Shaikh")
    set_week(db, tenant, anjali, Opening(DAY.weekday(), time(9), time(10), 15))
    set_week(db, tenant, farhan, Opening(DAY.weekday(), time(9, 30), time(10, 30), 15))
    generate(db, tenant, anjali, DAY, 1)
    generate(db, tenant, farhan, DAY, 1)
    return tenant, [anjali, farhan], [slots_of(db, tenant, anjali), slots_of(db, tenant, farhan)]


def grid_rows(html: str) -> list[str]:
    body = html.split('<table class="day-grid">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[^>]*>.*?</tr>", body.split("<tbody>", 1)[1], re.S)


def test_every_doctors_day_side_by_side_with_the_day_views_actions(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, (anjali, farhan), (a_slots, f_slots) = two_doctors(db, ident, "Side By Side Clinic")
    suresh = person(db, ident, tenant, "Suresh", "Jadhav", "+919822088881")
    ravi = person(db, ident, tenant, "Ravi", "Rao", "+919822088882")
    on_a = book(db, tenant, a_slots[2], suresh)  # 9:30 with Anjali
    book(db, tenant, f_slots[0], ravi)  # 9:30 with Farhan
    with desk(app, db, ident, tenant) as browser:
        shown = browser.get(f"/calendar?doctor={farhan.id}&date={DAY}&view=all")
    assert shown.status_code == 200
    html = shown.text
    head = html.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert head.index("Dr. Anjali Deshmukh") < head.index("Dr. Farhan Shaikh")
    assert f"/calendar/doctors/{anjali.id}/day-list?date={DAY}" in head
    assert f"/calendar/doctors/{farhan.id}/day-list?date={DAY}" in head
    rows = grid_rows(html)
    # 9:00, 9:15 (Anjali only), 9:30, 9:45 (both), 10:00, 10:15 (Farhan only).
    assert [re.search(r'scope="row"[^>]*>([^<]+)<', r).group(1) for r in rows] == [  # type: ignore[union-attr]
        "9:00 am", "9:15 am", "9:30 am", "9:45 am", "10:00 am", "10:15 am",
    ]  # fmt: skip
    both = rows[2]
    assert both.index("Suresh Jadhav") < both.index("Ravi Rao"), "a row holds each doctor's slot"
    assert f"/appointments/{on_a.id}/move?to=cancelled&amp;back=all-doctors" in both
    assert f"/patients/{suresh.id}" in both
    assert f"/calendar/book?slot={a_slots[0].id}" in rows[0]
    assert "is-empty" in rows[0], "Farhan has no 9:00 slot"
    # On a phone the chosen doctor (Farhan) is the one shown: rows he has no slot in hide.
    assert "chosen-empty" in rows[0] and "chosen-empty" not in rows[2]
    assert 'aria-current="true">Dr. Farhan Shaikh' in html


def test_booking_from_every_doctors_day_comes_back_to_it(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, (anjali, _farhan), (a_slots, _f) = two_doctors(db, ident, "Book From Grid Clinic")
    suresh = person(db, ident, tenant, "Suresh", "Jadhav", "+919822088883")
    grid_url = f"/calendar?doctor={anjali.id}&date={DAY}&view=all"
    with desk(app, db, ident, tenant) as browser:
        page = browser.get(grid_url)
        booked = browser.post(
            "/calendar/book",
            data={
                "slot_id": str(a_slots[1].id),
                "patient_id": str(suresh.id),
                "visit_type": "consultation",
                "csrf_token": csrf_of(page.text),
            },
            headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{grid_url}"},
        )
        assert booked.status_code == 200
        assert booked.headers["HX-Redirect"] == f"/calendar?doctor={anjali.id}&date={DAY}&view=all"
        blocked = browser.post(
            f"/calendar/slots/{a_slots[3].id}/block",
            data={"back": "all-doctors", "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert blocked.headers["location"] == f"/calendar?doctor={anjali.id}&date={DAY}&view=all"
        again = browser.get(grid_url)
    assert "Suresh Jadhav" in again.text


def test_every_doctors_day_shows_only_this_clinics_doctors(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, _doctors, _slots = two_doctors(db, ident, "Own Doctors Clinic")
    other = make_tenant(db, "Other Doctors Clinic")
    outsider = make_doctor(db, ident, other, name="Dr. Outsider Mehta")
    set_week(db, other, outsider, Opening(DAY.weekday(), time(9), time(10), 15))
    generate(db, other, outsider, DAY, 1)
    with desk(app, db, ident, tenant) as browser:
        shown = browser.get(f"/calendar?doctor={outsider.id}&date={DAY}&view=all")
    assert shown.status_code == 200
    assert "Dr. Outsider Mehta" not in shown.text and str(outsider.id) not in shown.text
    assert "Dr. Anjali Deshmukh" in shown.text


def test_every_doctors_day_is_not_for_pharmacy(app: FastAPI, db: Database, ident: Any) -> None:
    tenant, _doctors, _slots = two_doctors(db, ident, "Grid Roles Clinic")
    with desk(app, db, ident, tenant, "pharmacy") as browser:
        assert browser.get(f"/calendar?date={DAY}&view=all").status_code == 403


# ------------------------------------------------------------------ the printable day list


def test_a_doctors_day_list_has_what_the_desk_prints(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, (anjali, _farhan), (a_slots, f_slots) = two_doctors(db, ident, "Day List Clinic")
    suresh = person(db, ident, tenant, "Suresh", "Jadhav", "+919822012345")
    ravi = person(db, ident, tenant, "Ravi", "Rao", "+919822067890")
    meena = person(db, ident, tenant, "Meena", "Kulkarni", "+919822054321")
    book(db, tenant, a_slots[1], ravi)  # 9:15
    book(db, tenant, a_slots[0], suresh)  # 9:00
    gone = book(db, tenant, a_slots[2], meena)
    cancel(db, ident, tenant, gone.id)
    book(db, tenant, f_slots[0], meena)  # Farhan's, not on Anjali's list
    with desk(app, db, ident, tenant) as browser:
        listed = browser.get(f"/calendar/doctors/{anjali.id}/day-list?date={DAY}")
        calendar = browser.get(f"/calendar?doctor={anjali.id}&date={DAY}")
    assert listed.status_code == 200
    html = listed.text
    assert f'href="/calendar/doctors/{anjali.id}/day-list?date={DAY}"' in calendar.text
    assert "Print day list" in calendar.text
    rows = re.findall(r"<tr>.*?</tr>", html.split("<tbody>", 1)[1], re.S)
    assert len(rows) == 2, "the cancelled visit and the other doctor's patient are left out"
    first, second = rows
    for expected in (
        "9:00 am",
        "Suresh Jadhav",
        suresh.display_number,
        "Consultation",
        "Confirmed",
        "··· 2345",
    ):
        assert expected in first
    assert "Ravi Rao" in second and "··· 7890" in second
    assert "9822012345" not in html and "Kulkarni" not in html
    assert "Dr. Anjali Deshmukh" in html and "2 patients" in html
    assert 'href="/static/print' in html and "<nav" in html


def test_a_day_list_for_another_clinics_doctor_is_not_found(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Here Clinic")
    elsewhere = make_tenant(db, "There Clinic")
    theirs = make_doctor(db, ident, elsewhere)
    with desk(app, db, ident, tenant) as browser:
        assert browser.get(f"/calendar/doctors/{theirs.id}/day-list?date={DAY}").status_code == 404
        assert browser.get(f"/calendar/doctors/{uuid.uuid4()}/day-list").status_code == 404
    with desk(app, db, ident, elsewhere, "pharmacy") as browser:
        assert browser.get(f"/calendar/doctors/{theirs.id}/day-list").status_code == 403


def test_a_day_list_lists_walk_ins_after_the_booked_times(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Walk In List Clinic")
    doctor = make_doctor(db, ident, tenant)
    arrived = walk_in(
        db, ident, tenant, doctor, person(db, ident, tenant, "Suresh", "Jadhav", "+919822099991")
    )
    with desk(app, db, ident, tenant, "doctor") as browser:
        listed = browser.get(f"/calendar/doctors/{doctor.id}/day-list")
    row = re.findall(r"<tr>.*?</tr>", listed.text.split("<tbody>", 1)[1], re.S)[0]
    assert "Walk-in" in row and f">{arrived.token_number}<" in row and "Checked in" in row


# ------------------------------------------------------------------ the week


def test_the_week_says_for_each_day_when_it_runs_and_how_full_it_is(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant, (anjali, _farhan), (a_slots, _f) = two_doctors(db, ident, "Week Summary Clinic")
    book(db, tenant, a_slots[0], person(db, ident, tenant, "Suresh", "Jadhav", "+919822099992"))
    with desk(app, db, ident, tenant) as browser:
        week = browser.get(f"/calendar?doctor={anjali.id}&date={DAY}&view=week")
    assert week.status_code == 200
    summary = re.search(r'<p class="day-summary">(.*?)</p>', week.text, re.S)
    assert summary is not None
    assert "9:00 am\u201310:00 am" in summary.group(1) and "1 booked · 3 free" in summary.group(1)
