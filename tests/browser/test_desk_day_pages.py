"""The desk's day in a real browser (issue 10): the booking dialog is a real modal (focus
in, Esc out, focus back, a mistake keeps it open), Cancel asks in a dialog naming who the
waitlist will offer the slot to, the desk moves an appointment, and the patient's page
after a move. Screenshots at both widths.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
import time_machine

from opdesk.db import Database
from opdesk.scheduling import booking, queries, service, waitlist
from opdesk.scheduling.service import Opening
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import (
    CLINIC_ZONE,
    clinic_today,
    coming,
    ctx_for,
    make_tenant,
    make_user,
    patients,
    portal_login,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture(autouse=True)
def clinic_evening() -> Iterator[datetime]:
    """20:00 at the clinic a week or more ahead (the clock keeps running): tomorrow's
    slots all lie ahead.
    """
    moment = datetime.combine(coming(0), time(20), CLINIC_ZONE)
    with time_machine.travel(moment, tick=True):
        yield moment


def a_clinic(db: Database, ident: Any, name: str) -> tuple[Any, Any, date, list[Any], list[Any]]:
    """Two doctors working mornings; tomorrow Suresh is booked at 9:00 with the first,
    Ravi waits for that doctor, and लक्ष्मी is booked at 9:30.
    """
    tenant = make_tenant(db, name)
    people = [
        patients(db, ident, tenant, 1, name={"first": first, "last": last})[0]
        for first, last in (("Suresh", "Jadhav"), ("Ravi", "Rao"), ("लक्ष्मी", "अय्यर"))
    ]
    ctx = ctx_for(tenant.id)
    doctors = []
    for label in ("Dr. Anjali Deshmukh", "Dr. Farhan Shaikh"):
        user = make_user(db, ident, tenant, "doctor", name=label)
        with transaction(db, ctx) as session:
            doctor = service.create_doctor(
                session,
                ctx,
                user_id=user.id,
                fields=service.DoctorFields(
                    display_name=label,
                    specialty="General medicine",
                    registration_number="MMC-2011-04512",
                    consultation_fee=__import__("decimal").Decimal("500"),
                    visit_types=(service.VisitType("consultation", "Consultation", 15),),
                ),
            )
            service.set_templates(
                session,
                ctx,
                doctor_id=doctor.id,
                openings=[Opening(d, time(9), time(11), 15) for d in range(7)],
                valid_from=clinic_today(),
            )
            service.generate_slots(session, ctx, doctor_id=doctor.id, days=4)
            doctors.append(doctor)
    tomorrow = clinic_today() + timedelta(days=1)
    with transaction(db, ctx) as session:
        slots = queries.slots(
            session, ctx, doctors[0].id, queries.SlotWindow(tomorrow, tomorrow), None, True
        )
        for slot, person in ((slots[0], people[0]), (slots[2], people[2])):
            booking.book(
                session,
                ctx,
                booking.BookingRequest(slot.id, person.id, "consultation", "phone"),
            )
        waitlist.join(
            session,
            ctx,
            patient_id=people[1].id,
            doctor_id=doctors[0].id,
            from_date=tomorrow,
            until_date=tomorrow,
            visit_type="consultation",
        )
    return tenant, doctors, tomorrow, slots, people


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_booking_dialog_is_a_modal_that_keeps_what_was_typed(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, doctors, tomorrow, _slots, _people = a_clinic(db, ident, "Modal Clinic")
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/calendar?doctor={doctors[0].id}&date={tomorrow.isoformat()}")

    opener = page.locator(".slot.st-free").first.get_by_role("button", name="Book", exact=True)
    opener.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert page.evaluate("document.querySelector('#dialog dialog').matches(':modal')")
    assert page.evaluate("document.activeElement.id") == "book-search", "focus moves in"
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Book", "focus returns"

    opener.click()
    dialog.wait_for()
    dialog.get_by_label("Reason").fill("Sugar check")
    dialog.get_by_role("button", name="Book appointment").click()
    error = page.locator("#book-patient-error")
    error.wait_for()
    assert "Choose the patient" in error.inner_text()
    assert page.get_by_role("dialog").get_by_label("Reason").input_value() == "Sugar check"
    assert page.evaluate("document.activeElement.id") == "book-search", "focus on the mistake"
    shot(page, f"desk-book-dialog-error-{width}")

    page.get_by_role("dialog").get_by_label("Patient").fill("Suresh")
    page.locator("#patient-options .patient-option input").first.check()
    page.get_by_role("dialog").get_by_role("button", name="Book appointment").click()
    warning = page.locator(".warning-box")
    warning.wait_for()  # Suresh is booked at 9:00 with this doctor already
    assert "Booked twice?" in warning.inner_text()
    shot(page, f"desk-book-dialog-near-{width}")
    warning.get_by_label("Yes, both visits are meant").check()
    page.get_by_role("dialog").get_by_role("button", name="Book both").click()
    assert page.get_by_role("status").inner_text() == "Booked."
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_cancel_asks_in_a_dialog_and_the_desk_moves_an_appointment(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, doctors, tomorrow, _slots, _people = a_clinic(db, ident, "Confirm Clinic")
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    calendar = f"{live_server}/calendar?doctor={doctors[0].id}&date={tomorrow.isoformat()}"
    page.goto(calendar)

    booked = page.locator(".slot.st-confirmed").filter(has_text="Suresh")
    booked.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    text = dialog.inner_text()
    assert "Cancel Suresh Jadhav's appointment?" in text
    assert "The 9:00 am slot will be offered to Ravi Rao from the waitlist" in text
    assert page.evaluate("document.activeElement.textContent.trim()") == "Keep the appointment"
    shot(page, f"desk-confirm-cancel-{width}")
    dialog.get_by_role("button", name="Keep the appointment").click()
    dialog.wait_for(state="detached")
    assert page.locator(".slot.st-confirmed").filter(has_text="Suresh").count() == 1

    page.locator(".slot.st-confirmed").filter(has_text="अय्यर").get_by_role(
        "button", name="Move"
    ).click()
    page.wait_for_url("**/reschedule")
    page.get_by_label("Doctor").select_option(label="Dr. Farhan Shaikh · General medicine")
    page.get_by_role("button", name="Show free times").click()
    page.locator(".slot-buttons button").first.wait_for()
    shot(page, f"desk-move-pick-{width}")
    page.locator(".slot-buttons button").nth(1).click()
    assert "Move लक्ष्मी अय्यर to" in page.get_by_role("heading", level=2).inner_text()
    shot(page, f"desk-move-confirm-{width}")
    page.get_by_role("button", name="Yes, move it").click()
    moved = page.get_by_role("status").inner_text()
    assert moved.startswith("Moved to") and "Dr. Farhan Shaikh" in moved
    assert page.locator(".slot.st-confirmed").filter(has_text="अय्यर").count() == 1
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_patient_confirms_a_new_time_and_sees_where_it_moved(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, _doctors, tomorrow, _slots, people = a_clinic(db, ident, "Portal Clinic")
    token = portal_login(db, ident, tenant, people[2])["Authorization"].removeprefix("Bearer ")
    page, problems = open_page(browser, width)
    page.context.add_cookies([{"name": "opdesk_session", "value": token, "url": live_server}])
    page.goto(f"{live_server}/me/appointments")
    page.get_by_role("button", name="Change time").click()
    day = tomorrow.strftime("%a %-d %b")
    assert page.locator('.day-tabs [aria-current="date"]').inner_text() == day
    page.locator(".slot-buttons button").last.click()
    assert "goes to another patient" in page.locator(".confirm").inner_text()
    shot(page, f"patient-change-time-confirm-{width}")
    page.get_by_role("button", name="Yes, move it").click()
    assert page.get_by_role("status").inner_text().startswith("Moved to")
    assert "Moved to" in page.locator(".past-list").inner_text()
    shot(page, f"patient-appointments-moved-{width}")
    page.get_by_role("button", name="Cancel").click()
    assert "Cancel this appointment?" in page.get_by_role("heading", level=1).inner_text()
    shot(page, f"patient-confirm-cancel-{width}")
    page.goto(f"{live_server}/account")
    shot(page, f"patient-account-{width}")
    assert problems == [], problems
    page.context.close()
