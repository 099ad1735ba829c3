"""Scheduling pages in a real browser: the desk's calendar and booking dialog, check-in,
the queue board updating itself, the doctor's queue, and a patient booking online.

Every test here runs on a chosen evening (``clinic_evening``): the clock, running, starts
at 20:00 in the clinic a week or more ahead, so today's hours are over whenever the
tests run, and the scenario's day is tomorrow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
import time_machine

from opdesk.db import Database
from opdesk.scheduling import booking, lifecycle, queries, service, waitlist
from opdesk.scheduling.models import DoctorProfile, Slot
from opdesk.scheduling.service import Opening
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import (
    CLINIC_ZONE,
    clinic_today,
    coming,
    ctx_for,
    latest_code,
    make_tenant,
    make_user,
    patients,
)
from tests.factories.scheduling import HOLD_FOR, OFFER_FOR

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

NAMES = (
    ("Suresh", "Jadhav"),
    ("लक्ष्मी", "अय्यर"),
    ("Imran", "Shaikh"),
    ("Kavya", "Nair"),
    ("Rahul", "Pawar"),
    ("Deepa", "Rao"),
    ("Sunita", "Kulkarni"),
    ("Arjun", "Menon"),
)


@pytest.fixture(autouse=True)
def clinic_evening() -> Iterator[datetime]:
    """20:00 at the clinic on a Monday a week or more ahead; the clock keeps running.

    The server thread reads the same moved clock; Chromium keeps its own, which only
    counts cookie lifetimes (max-age) here.
    """
    moment = datetime.combine(coming(0), time(20), CLINIC_ZONE)
    with time_machine.travel(moment, tick=True):
        yield moment


@dataclass
class Clinic:
    tenant: Tenant
    doctor: DoctorProfile
    doctor_user: Any
    tomorrow: date
    slots: list[Slot]
    people: list[Any]


def clinic_with_a_day(db: Database, ident: Any, name: str) -> Clinic:
    """A doctor working every morning, and tomorrow's first slots in every state."""
    tenant = make_tenant(db, name)
    user = make_user(db, ident, tenant, "doctor", name="Dr. Anjali Deshmukh")
    ctx = ctx_for(tenant.id)
    people = [
        patients(db, ident, tenant, 1, name={"first": first, "last": last})[0]
        for first, last in NAMES
    ]
    with transaction(db, ctx) as session:
        doctor = service.create_doctor(
            session,
            ctx,
            user_id=user.id,
            fields=service.DoctorFields(
                display_name="Dr. Anjali Deshmukh",
                specialty="General medicine",
                registration_number="MMC-2011-04512",
                consultation_fee=__import__("decimal").Decimal("500"),
                visit_types=(service.VisitType("consultation", "Consultation", 15),),
            ),
        )
        today = clinic_today()
        service.set_templates(
            session,
            ctx,
            doctor_id=doctor.id,
            openings=[Opening(d, time(9), time(12), 15) for d in range(7)],
            valid_from=today,
        )
        service.generate_slots(session, ctx, doctor_id=doctor.id, days=8)
        tomorrow = today + timedelta(days=1)
        slots = queries.slots(
            session, ctx, doctor.id, queries.SlotWindow(tomorrow, tomorrow), None, True
        )
        plan = ("completed", "in-consult", "checked-in", "no-show", "confirmed", "cancelled")
        steps = {
            "completed": ("checked-in", "in-consult", "completed"),
            "in-consult": ("checked-in", "in-consult"),
            "checked-in": ("checked-in",),
            "no-show": ("no-show",),
            "confirmed": (),
            "cancelled": ("cancelled",),
        }
        offers = waitlist.Offers(ident.cipher, OFFER_FOR)
        for slot, person, state in zip(slots, people, plan, strict=False):
            made = booking.book(
                session,
                ctx,
                booking.BookingRequest(slot.id, person.id, "consultation", "phone", reason="Fever"),
            )
            for step in steps[state]:
                lifecycle.transition(session, ctx, offers, appointment_id=made.id, to=step)
        service.set_blocked(session, ctx, slots[7].id, blocked=True)
        booking.hold(session, ctx, slot_id=slots[8].id, hold_for=HOLD_FOR)
    return Clinic(tenant, doctor, user, tomorrow, slots, people)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_desk_books_from_the_calendar_and_checks_in(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = clinic_with_a_day(db, ident, "Sunrise Family Clinic")
    desk = make_user(db, ident, clinic.tenant, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.tenant.slug, desk.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/calendar?date={clinic.tomorrow.isoformat()}")
    rows = page.locator(".slot")
    assert rows.count() == 12
    for state in ("completed", "in-consult", "checked-in", "no-show", "free", "held", "blocked"):
        assert page.locator(f".slot.st-{state}").count() >= 1, state
    shot(page, f"calendar-day-{width}")

    # htmx wires the dialog's search up when it settles; a long settle shows that the
    # dialog is not offered for typing before then (typing into it would go unanswered).
    page.evaluate("htmx.config.settleDelay = 600")
    page.locator(".slot.st-free").first.get_by_role("button", name="Book").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Patient").fill(clinic.people[6].name_first)
    dialog.locator(".patient-option input").first.check()
    dialog.get_by_label("Reason").fill("Follow-up of BP")
    shot(page, f"calendar-book-dialog-{width}")
    dialog.get_by_role("button", name="Book appointment").click()
    assert page.get_by_role("status").inner_text() == "Booked."
    booked = page.locator(".slot.st-confirmed").filter(has_text=clinic.people[6].name_first)
    booked.get_by_role("button", name="Check in").click()
    assert "Checked in: token" in page.get_by_role("status").inner_text()

    page.goto(f"{live_server}/calendar?date={clinic.tomorrow.isoformat()}&view=week")
    assert page.locator(".cal-day").count() == 7
    shot(page, f"calendar-week-{width}")

    page.goto(f"{live_server}/queue")
    assert page.locator(".token-row").count() == 4  # three checked in tomorrow's slots + one now
    shot(page, f"queue-board-{width}")
    assert problems == [], problems
    page.context.close()


def test_the_queue_board_updates_itself_and_the_doctor_sends_patients_in(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic = clinic_with_a_day(db, ident, "Kaveri Clinic")
    page, problems = open_page(browser, "desktop")
    staff_sign_in(page, live_server, clinic.tenant.slug, clinic.doctor_user.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/my-queue")
    assert page.locator(".token-row").count() == 3
    ctx = ctx_for(clinic.tenant.id)
    with transaction(db, ctx) as session:  # a walk-in at the desk, while the doctor looks
        lifecycle.walk_in(
            session,
            ctx,
            patient_id=clinic.people[7].id,
            doctor_id=clinic.doctor.id,
            visit_type="consultation",
        )
    page.locator(".token-row").nth(3).wait_for(timeout=15_000)
    assert "Walk-in" in page.locator(".token-row").nth(3).inner_text()
    page.locator(".token-row.st-checked-in").first.get_by_role("button", name="Send in").click()
    # Someone is still with the doctor: Send in asks first (issue 10).
    page.get_by_role("dialog").get_by_role("button", name="Send in anyway").click()
    assert page.get_by_role("status").inner_text() == "With doctor."
    shot(page, "my-queue-desktop")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_patient_books_online_signing_in_while_the_slot_is_held(
    browser: Any, live_server: str, db: Database, ident: Any, cipher: Any, width: str
) -> None:
    clinic = clinic_with_a_day(db, ident, "Nilgiri Clinic")
    me = clinic.people[6]
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        phone = __import__("opdesk.patients.service", fromlist=["x"]).contact_phone(
            session, cipher, me
        )
    page, problems = open_page(browser, width)
    page.goto(f"{live_server}/c/{clinic.tenant.slug}")
    page.get_by_role("button", name="Book an appointment").click()
    shot(page, f"self-book-doctors-{width}")
    page.get_by_role("button", name="See times").click()
    page.get_by_role("link", name=clinic.tomorrow.strftime("%a %-d %b")).click()
    shot(page, f"self-book-times-{width}")
    page.locator(".slot-buttons button").first.click()
    page.wait_for_url("**/book/confirm")
    assert "Kept for you until" in page.locator(".held-slot").inner_text()
    shot(page, f"self-book-sign-in-{width}")

    page.get_by_role("button", name="Sign in with my mobile").click()
    page.get_by_label("Mobile number").fill(phone[3:])
    page.get_by_role("button", name="Send code").click()
    page.get_by_label("6-digit code").fill(latest_code(db, cipher, clinic.tenant, phone))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/book/confirm")
    shot(page, f"self-book-confirm-{width}")
    page.get_by_role("button", name="Confirm appointment").click()
    page.wait_for_url("**/me/appointments")
    assert "Your appointment is booked" in page.get_by_role("status").inner_text()
    shot(page, f"my-appointments-{width}")

    page.get_by_role("button", name="Change time").click()
    day = clinic.tomorrow.strftime("%a %-d %b")  # the appointment's day, not today
    assert page.locator('.day-tabs [aria-current="date"]').inner_text() == day
    assert f"Free times on {day}" in page.locator(".slot-picker").inner_text()
    shot(page, f"change-time-{width}")
    page.locator(".slot-buttons button").last.click()  # asks first (issue 10)
    page.get_by_role("button", name="Yes, move it").click()
    assert page.get_by_role("status").inner_text().startswith("Moved to ")
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    assert page.get_by_role("status").inner_text() == "Your appointment is cancelled."
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_admin_adds_a_doctor_sets_hours_and_time_away(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = make_tenant(db, "Sahyadri Clinic")
    admin = make_user(db, ident, tenant, "admin", name="Meera Kulkarni")
    make_user(db, ident, tenant, "doctor", name="Dr. Farhan Shaikh")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/doctors")
    page.get_by_label("Name shown to patients").fill("Dr. Farhan Shaikh")
    page.get_by_label("Specialty").fill("Paediatrics")
    page.get_by_label("Medical registration number").fill("MMC-2015-11873")
    page.get_by_role("button", name="Add profile").click()
    page.wait_for_url("**/admin/doctors/*")
    assert "Now set the weekly hours" in page.get_by_role("status").inner_text()

    page.get_by_label("Day, row 1").select_option("Monday")  # chosen, never assumed (issue 10)
    page.get_by_label("From, row 1").fill("10:00")
    page.get_by_label("To, row 1").fill("13:00")
    page.get_by_label("Day, row 2").select_option("Monday")
    page.get_by_label("From, row 2").fill("12:00")  # overlaps row 1 on Monday
    page.get_by_label("To, row 2").fill("14:00")
    page.get_by_role("button", name="Save weekly hours").click()
    assert "overlaps row 1" in page.get_by_role("alert").inner_text()
    page.get_by_label("Day, row 2").select_option("Tuesday")
    page.get_by_label("From, row 2").fill("12:00")
    page.get_by_label("To, row 2").fill("14:00")
    page.get_by_role("button", name="Save weekly hours").click()
    saved = page.get_by_role("status").inner_text()
    assert "Weekly hours saved" in saved and "slots ready" in saved
    assert page.get_by_label("From, row 1").input_value() == "10:00"  # Monday kept
    assert page.get_by_label("From, row 2").input_value() == "12:00"

    tomorrow = clinic_today() + timedelta(days=1)
    page.get_by_label("From", exact=True).fill(f"{tomorrow.isoformat()}T00:00")
    page.get_by_label("Until", exact=True).fill(f"{tomorrow.isoformat()}T23:59")
    page.get_by_label("Reason").fill("Conference")
    page.get_by_role("button", name="Add time away").click()
    assert "Time away saved" in page.get_by_role("status").inner_text()
    assert "Conference" in page.locator(".away-list").inner_text()
    shot(page, f"admin-doctor-{width}")
    page.goto(f"{live_server}/admin/doctors")
    shot(page, f"admin-doctors-{width}")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_desk_puts_a_patient_on_the_waitlist_and_books_the_offer(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = clinic_with_a_day(db, ident, "Godavari Clinic")
    desk = make_user(db, ident, clinic.tenant, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/waitlist")
    page.get_by_label("Patient").fill("Arjun")
    page.locator("#wait-options .patient-option input").first.check()
    page.get_by_label("From").fill(clinic.tomorrow.isoformat())
    page.get_by_label("Until").fill(clinic.tomorrow.isoformat())
    page.get_by_role("button", name="Add to waitlist").click()
    assert "Added to the waitlist" in page.get_by_role("status").inner_text()

    page.goto(f"{live_server}/calendar?date={clinic.tomorrow.isoformat()}")
    confirmed = page.locator(".slot.st-confirmed").first
    confirmed.get_by_role("button", name="Cancel").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel it").click()  # issue 10
    assert page.get_by_role("status").inner_text() == "Cancelled."
    page.goto(f"{live_server}/waitlist")
    assert "Offered" in page.locator("tbody").inner_text()
    shot(page, f"waitlist-{width}")
    page.get_by_role("button", name="Book it").click()
    assert page.get_by_role("status").inner_text() == "Booked from the waitlist."
    assert problems == [], problems
    page.context.close()
