"""The desk's home page (issue 14, item 4): today's totals, who is due in the next hour, and
which doctor is running late, for the clinic or for one doctor; never another clinic's
patients, and no patient names for staff who do not follow appointments.

One clinic morning is built once for the module (a Monday a week or more ahead, every
move made at a chosen clinic time) and read at 10:30 that morning.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.scheduling import booking, desk_home, lifecycle, waitlist
from opdesk.scheduling.models import Appointment, DoctorProfile, Slot
from opdesk.scheduling.service import Opening
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    DAY,
    book,
    browser_for,
    clinic_session,
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


def at(hour: int, minute: int) -> datetime:
    """A clinic time on :data:`DAY`."""
    return datetime.combine(DAY, time(hour, minute), CLINIC_ZONE)


NOW = at(10, 30)


def a_doctor(db: Database, ident: Any, tenant: Tenant, name: str, until: time) -> Any:
    """A doctor with 15-minute slots from 9:00 to ``until`` on :data:`DAY`."""
    doctor = make_doctor(db, ident, tenant, name=name)
    set_week(db, tenant, doctor, Opening(0, time(9), until, 15))
    generate(db, tenant, doctor, DAY, 1)
    return doctor


def steps(db: Database, ident: Any, tenant: Tenant, *moves: tuple[datetime, Any, str]) -> None:
    """Each move made at its own clinic time, in time order (tokens follow check-ins)."""
    offers = waitlist.Offers(ident.cipher, OFFER_FOR)
    for when, appointment, to in sorted(moves, key=lambda m: m[0]):
        with time_machine.travel(when, tick=False):
            ctx = ctx_for(tenant.id)
            with transaction(db, ctx) as session:
                lifecycle.transition(session, ctx, offers, appointment_id=appointment.id, to=to)


def walk_in_at(db: Database, tenant: Tenant, when: datetime, doctor: Any, patient: Any) -> Any:
    with time_machine.travel(when, tick=False):
        ctx = ctx_for(tenant.id)
        with transaction(db, ctx) as session:
            return lifecycle.walk_in(
                session, ctx, patient_id=patient.id, doctor_id=doctor.id, visit_type="consultation"
            )


def move(db: Database, ident: Any, tenant: Tenant, appointment: Any, slot: Slot) -> Appointment:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return lifecycle.reschedule(
            session,
            ctx,
            waitlist.Offers(ident.cipher, OFFER_FOR),
            appointment_id=appointment.id,
            slot_id=slot.id,
            origin=booking.Origin(),
        )


@dataclass
class Morning:
    tenant: Tenant
    anjali: DoctorProfile
    farhan: DoctorProfile
    people: list[Any]
    appointments: dict[str, Any]


@pytest.fixture(scope="module")
def morning(db: Database, ident: Any) -> Morning:
    """Dr. Anjali (slots 9:00-10:45) and Dr. Farhan (9:00-11:45) on DAY, seen at 10:30:

    Anjali: P0, P1, P2 seen (20, 20 and 25 minutes with her); P3 a no-show; P4 with her
    now; P5 (10:15) and the walk-in P8 waiting; P6 due at 10:30; P7 (10:45) cancelled.
    Farhan: P9 moved from 9:00 to 10:45; P11 (10:15) waiting since 10:10; P10 at 11:30.
    Another clinic has a patient booked and checked in on the same day.
    """
    tenant = make_tenant(db, "Desk Home Clinic")
    anjali = a_doctor(db, ident, tenant, "Dr. Anjali Deshmukh", time(11))
    farhan = a_doctor(db, ident, tenant, "Dr. Farhan Shaikh", time(12))
    people = patients(db, ident, tenant, 12)
    a_slots, f_slots = slots_of(db, tenant, anjali), slots_of(db, tenant, farhan)
    booked = {f"P{i}": book(db, tenant, a_slots[i], people[i], channel="phone") for i in range(8)}
    first = book(db, tenant, f_slots[0], people[9])
    booked["P9"] = move(db, ident, tenant, first, f_slots[7])  # 10:45
    booked["P10"] = book(db, tenant, f_slots[10], people[10])  # 11:30: an hour from now
    booked["P11"] = book(db, tenant, f_slots[5], people[11])  # 10:15
    p = booked
    steps(
        db,
        ident,
        tenant,
        *[(at(8, 55), p["P0"], "checked-in"), (at(9, 0), p["P0"], "in-consult")],
        *[(at(9, 20), p["P0"], "completed"), (at(9, 10), p["P1"], "checked-in")],
        *[(at(9, 20), p["P1"], "in-consult"), (at(9, 40), p["P1"], "completed")],
        *[(at(9, 25), p["P2"], "checked-in"), (at(9, 40), p["P2"], "in-consult")],
        *[(at(10, 5), p["P2"], "completed"), (at(10, 0), p["P3"], "no-show")],
        *[(at(9, 55), p["P4"], "checked-in"), (at(10, 5), p["P4"], "in-consult")],
        *[(at(10, 10), p["P5"], "checked-in"), (at(10, 0), p["P7"], "cancelled")],
        (at(10, 10), p["P11"], "checked-in"),
    )
    booked["P8"] = walk_in_at(db, tenant, at(10, 20), anjali, people[8])
    elsewhere = make_tenant(db, "Elsewhere Clinic")
    other = a_doctor(db, ident, elsewhere, "Dr. Other Clinic", time(10))
    strangers = patients(db, ident, elsewhere, 2)
    theirs = [
        book(db, elsewhere, s, x)
        for s, x in zip(slots_of(db, elsewhere, other), strangers, strict=False)
    ]
    steps(db, ident, elsewhere, (at(9, 50), theirs[0], "checked-in"))
    return Morning(tenant, anjali, farhan, people, booked)


def desk_today(db: Database, tenant: Tenant, role: str, user_id: uuid.UUID) -> Any:
    with time_machine.travel(NOW, tick=False):
        ctx = ctx_for(tenant.id)
        with clinic_session(db, tenant.id) as session:
            return desk_home.desk_today(session, ctx, role=role, user_id=user_id)


# --------------------------------------------------------------------------- the blocks


def test_the_clinics_totals_count_each_appointment_once_where_it_stands(
    db: Database, morning: Morning
) -> None:
    today = desk_today(db, morning.tenant, "frontdesk", uuid.uuid4())
    assert today.day == DAY
    assert today.totals == desk_home.Totals(
        booked=11,  # P9's move counts once, at its new time; P7 cancelled
        walk_ins=1,
        arrived=4,  # P4 with the doctor; P5, P8 and P11 waiting
        seen=3,
        no_shows=1,
        cancelled=1,
        still_to_come=3,  # P6, P9, P10
    )


def test_a_doctor_sees_only_their_own_patients(db: Database, morning: Morning) -> None:
    today = desk_today(db, morning.tenant, "doctor", morning.anjali.user_id)
    assert today.doctor.id == morning.anjali.id
    assert today.totals == desk_home.Totals(
        booked=8, walk_ins=1, arrived=3, seen=3, no_shows=1, cancelled=1, still_to_come=1
    )
    assert [a.patient_name for a in today.arrivals] == ["P6"]
    assert [p.doctor_id for p in today.pace] == [morning.anjali.id]
    farhan = desk_today(db, morning.tenant, "doctor", morning.farhan.user_id)
    assert farhan.totals.booked == 3 and farhan.totals.cancelled == 0
    assert [a.patient_name for a in farhan.arrivals] == ["P9"]


def test_a_doctor_without_a_profile_has_nothing_counted(
    db: Database, ident: Any, morning: Morning
) -> None:
    user = make_user(db, ident, morning.tenant, "doctor", name="Dr. New Joiner")
    assert desk_today(db, morning.tenant, "doctor", user.id) is None


def test_arrivals_are_the_next_hours_slots_not_yet_checked_in_soonest_first(
    db: Database, morning: Morning
) -> None:
    today = desk_today(db, morning.tenant, "admin", uuid.uuid4())
    # P6 at 10:30 (now: included), P9 at 10:45; not P5/P11 (checked in), P7 (cancelled),
    # P10 (11:30, an hour from now: excluded), nor the other clinic's patients.
    assert [(a.patient_name, a.doctor_name, a.starts_at) for a in today.arrivals] == [
        ("P6", "Dr. Anjali Deshmukh", at(10, 30)),
        ("P9", "Dr. Farhan Shaikh", at(10, 45)),
    ]
    assert [a.appointment_id for a in today.arrivals] == [
        morning.appointments["P6"].id,
        morning.appointments["P9"].id,
    ]
    assert all(a.token is None for a in today.arrivals)


def test_the_running_late_figures_follow_the_written_definition(
    db: Database, morning: Morning
) -> None:
    today = desk_today(db, morning.tenant, "frontdesk", uuid.uuid4())
    anjali, farhan = today.pace
    # Anjali: 3 seen in 20, 20 and 25 minutes, so her own average (21 min 40 s); P5 and
    # the walk-in wait: 43 min 20 s. Due 10:30 (P5's slot ended, P6 booked): 45 min late.
    assert (anjali.doctor_id, anjali.basis, anjali.seen) == (morning.anjali.id, "today", 3)
    assert (anjali.waiting, anjali.with_doctor) == (2, 1)
    assert anjali.consult == timedelta(minutes=21, seconds=40)
    assert anjali.expected_wait == timedelta(minutes=43, seconds=20)
    assert anjali.due_at == at(10, 30)
    assert (anjali.late, anjali.late_minutes) == (True, 45)
    # Farhan: nobody seen yet, so his 15-minute slots; P11's 10:15 slot ended at 10:30.
    assert (farhan.basis, farhan.consult, farhan.waiting) == ("slot", timedelta(minutes=15), 1)
    assert farhan.due_at == at(10, 30)
    assert farhan.late_minutes == 15


@pytest.mark.parametrize(
    ("waiting_from", "late"),
    [((10, 30), 0), ((10, 0), 30)],
    ids=["booked-for-now-on-time", "booked-half-an-hour-ago-late"],
)
def test_the_docstring_example_on_time_and_late(
    db: Database, ident: Any, waiting_from: tuple[int, int], late: int
) -> None:
    """Three waiting, the next patient booked at 11:15, 15-minute consultations."""
    tenant = make_tenant(db, "Pace Clinic")
    doctor = a_doctor(db, ident, tenant, "Dr. Pace", time(12))
    slots = slots_of(db, tenant, doctor)
    people = patients(db, ident, tenant, 4)
    first = (at(*waiting_from) - at(9, 0)) // timedelta(minutes=15)
    waiting = [book(db, tenant, slots[first + i], people[i]) for i in range(3)]
    book(db, tenant, slots[9], people[3])  # 11:15
    steps(db, ident, tenant, *[(at(9, 50), a, "checked-in") for a in waiting])
    (pace,) = desk_today(db, tenant, "frontdesk", uuid.uuid4()).pace
    assert pace.expected_wait == timedelta(minutes=45)
    assert pace.late_minutes == late and pace.late is bool(late)


def test_a_walk_in_only_queue_has_nothing_to_compare_with_and_the_usual_15_minutes(
    db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Walk-in Clinic")
    doctor = make_doctor(db, ident, tenant, name="Dr. No Slots")
    walk_in_at(db, tenant, at(10, 0), doctor, patients(db, ident, tenant, 1)[0])
    today = desk_today(db, tenant, "frontdesk", uuid.uuid4())
    (pace,) = today.pace
    assert (pace.basis, pace.consult, pace.waiting) == ("default", timedelta(minutes=15), 1)
    assert pace.due_at is None and pace.late_by is None and not pace.late
    assert today.totals.booked == 1 and today.totals.walk_ins == 1 and today.arrivals == []


def test_an_empty_day_counts_nothing(db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Quiet Clinic")
    a_doctor(db, ident, tenant, "Dr. Quiet", time(10))
    today = desk_today(db, tenant, "frontdesk", uuid.uuid4())
    assert today.totals == desk_home.Totals()
    assert today.arrivals == [] and today.pace == []


def queries_sent(db: Database, tenant: Tenant, role: str, user_id: uuid.UUID) -> int:
    """How many statements the home page's blocks send (not the tenant setting)."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("select set_config("):
            sent.append(statement)

    with time_machine.travel(NOW, tick=False), clinic_session(db, tenant.id) as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", note)
        try:
            desk_home.desk_today(session, ctx_for(tenant.id), role=role, user_id=user_id)
        finally:
            event.remove(engine, "before_cursor_execute", note)
    return len(sent)


def test_the_blocks_take_a_few_queries_however_busy_the_day(
    db: Database, ident: Any, morning: Morning
) -> None:
    quiet = make_tenant(db, "Quiet Count Clinic")
    a_doctor(db, ident, quiet, "Dr. Quiet", time(10))
    walk_in_at(
        db,
        quiet,
        at(10, 0),
        a_doctor(db, ident, quiet, "Dr. Two", time(10)),
        patients(db, ident, quiet, 1)[0],
    )
    busy = queries_sent(db, morning.tenant, "frontdesk", uuid.uuid4())
    assert busy <= 5  # the clinic's zone, totals, arrivals, the queues, the doctors' plans
    assert busy == queries_sent(db, quiet, "frontdesk", uuid.uuid4())


# --------------------------------------------------------------------------- the page


@pytest.fixture
def at_ten_thirty() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def signed_in(app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str) -> TestClient:
    user = make_user(db, ident, tenant, role, name=f"Test {role}")
    return browser_for(app, open_session(db, ident, user))


def test_the_desk_home_shows_todays_blocks(
    app: FastAPI, db: Database, ident: Any, morning: Morning, at_ten_thirty: None
) -> None:
    with signed_in(app, db, ident, morning.tenant, "frontdesk") as desk:
        html = desk.get("/app").text
    assert 'id="today-totals"' in html and 'data-label="Booked"><strong>11</strong>' in html
    assert "(1 walk-in)" in html
    assert 'data-label="Still to come"><strong>3</strong>' in html
    assert ">P6</a>" in html and ">P9</a>" in html and ">P10</a>" not in html
    assert "10:30 am" in html and "10:45 am" in html
    assert f'action="/appointments/{morning.appointments["P6"].id}/move"' in html
    assert "running about 45 min late" in html and "running about 15 min late" in html
    assert "average of 3 seen today" in html and "slot length: fewer than 3 seen today" in html
    assert "Expected wait = people waiting" in html
    assert 'hx-get="/app"' in html and 'href="/app">Refresh now' in html
    assert 'href="/queue"' in html and 'href="/calendar"' in html
    assert "Dr. Other Clinic" not in html


def test_the_check_in_button_on_the_home_page_checks_the_patient_in(
    app: FastAPI, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Check-in Clinic")
    doctor = a_doctor(db, ident, tenant, "Dr. Arrival", time(11))
    (person,) = patients(db, ident, tenant, 1, name={"first": "लक्ष्मी", "last": "अय्यर"})
    appointment = book(db, tenant, slots_of(db, tenant, doctor)[6], person)  # 10:30
    with (
        time_machine.travel(NOW, tick=False),
        signed_in(app, db, ident, tenant, "frontdesk") as desk,
    ):
        home = desk.get("/app")
        assert "लक्ष्मी अय्यर" in home.text
        done = desk.post(
            f"/appointments/{appointment.id}/move",
            data={"to": "checked-in", "back": "queue", "csrf_token": csrf_of(home.text)},
        )
        assert done.url.path == "/queue" and "Checked in: token 1." in done.text
        after = desk.get("/app").text
    arrivals = after.split('id="arrivals"')[1].split("</article>")[0]
    assert "लक्ष्मी अय्यर" not in arrivals
    assert "Nobody else is booked to arrive in the next hour." in arrivals
    assert "Dr. Arrival</strong>:" in after and "on time" in after  # her slot is now


def test_a_doctor_sees_only_their_own_on_the_page(
    app: FastAPI, db: Database, ident: Any, morning: Morning, at_ten_thirty: None
) -> None:
    token = open_session(db, ident, _user_of(db, morning.tenant, morning.farhan))
    with browser_for(app, token) as doctor:
        html = doctor.get("/app").text
    assert "Today: your patients" in html
    assert ">P9</a>" in html and ">P6</a>" not in html
    assert "Dr. Anjali Deshmukh" not in html
    assert 'data-label="Booked"><strong>3</strong>' in html


def _user_of(db: Database, tenant: Tenant, doctor: DoctorProfile) -> Any:
    with clinic_session(db, tenant.id) as session:
        user = session.get(User, (tenant.id, doctor.user_id))
        assert user is not None
        session.expunge(user)
        return user


@pytest.mark.parametrize("role", ["pharmacy", "accounts"])
def test_staff_who_do_not_follow_appointments_see_their_links_and_no_patients(
    app: FastAPI, db: Database, ident: Any, morning: Morning, at_ten_thirty: None, role: str
) -> None:
    with signed_in(app, db, ident, morning.tenant, role) as staff:
        home = staff.get("/app")
    assert home.status_code == 200
    for name in ("P6", "P9", "P5", "P8"):
        assert f">{name}<" not in home.text
    assert "Expected in the next hour" not in home.text and "running about" not in home.text
    assert 'id="desk-today"' not in home.text
    assert 'href="/account"' in home.text  # the links grid is still there


def test_a_patient_is_still_sent_to_their_own_page(
    app: FastAPI, db: Database, ident: Any, morning: Morning, at_ten_thirty: None
) -> None:
    with signed_in(app, db, ident, morning.tenant, "patient") as patient:
        answer = patient.get("/app", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/me"
