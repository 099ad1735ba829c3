"""Doctor away in a real browser, at 1280 and 390 px: the admin adds time away over booked
appointments, follows the pointer to the patients to tell, messages them with one button;
the calendar (one doctor's day, and every doctor's) shows the time away as a band.
Screenshots of each step.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import DAY, book, clinic_with_slots, make_tenant, make_user, patients
from tests.factories.messages import consent_to

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

NAMES = (
    ("Suresh", "Jadhav"),
    ("लक्ष्मी", "अय्यर"),
    ("Imran", "Shaikh"),
    ("Kavya", "Nair"),
    ("Rahul", "Pawar"),
)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_admin_adds_time_away_and_messages_the_patients_booked_inside(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant, doctor, slots = clinic_with_slots(db, ident, 12, make_tenant(db, "Sahyadri Clinic"))
    people = [
        patients(db, ident, tenant, 1, name={"first": first, "last": last})[0]
        for first, last in NAMES
    ]
    # 09:00 is outside the time away; 10:00, 10:15, 10:30 and 10:45 are inside.
    for slot, person in zip([slots[0], *slots[4:8]], people, strict=True):
        book(db, tenant, slot, person, channel="phone")
    for person in people[:3]:
        consent_to(db, ident.cipher, tenant, person.id, "sms")
    admin = make_user(db, ident, tenant, "admin", name="Meera Kulkarni")

    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/doctors/{doctor.id}")
    page.locator("input[name=starts_at]").fill(f"{DAY.isoformat()}T10:00")
    page.locator("input[name=ends_at]").fill(f"{DAY.isoformat()}T11:00")
    page.locator("input[name=reason]").fill("Medical conference")
    page.get_by_role("button", name="Add time away").click()
    page.wait_for_url("**added=*")
    assert "4 booked appointments fall in it" in page.locator(".flashes").inner_text()
    shot(page, f"doctor-away-saved-{width}")

    page.get_by_role("link", name="Patients to tell: message or call them →").click()
    page.wait_for_url("**/away/*")
    body = page.locator("main").inner_text()
    assert "Mon" in body and "10:00 am to 11:00 am" in body
    assert "लक्ष्मी अय्यर" in body
    assert "Suresh Jadhav" not in body  # booked at 09:00, before the time away
    assert body.count("Cannot be messaged — call") == 2
    shot(page, f"doctor-away-list-{width}")

    page.get_by_role("button", name="Message 2 patients").click()
    page.wait_for_url("**/away/*")
    flash = page.locator(".flashes").inner_text()
    assert "Messaged 2 patients with a link to choose another time." in flash
    assert "2 patients cannot be messaged: please call them." in flash
    assert page.locator("main").inner_text().count("Messaged") >= 2
    shot(page, f"doctor-away-messaged-{width}")

    page.locator("main .page-head a", has_text="Calendar").click()
    page.wait_for_url("**/calendar?*")
    band = page.locator(".away-band").first
    assert "away: Medical conference" in band.inner_text()
    assert "10:00 am to 11:00 am" in band.inner_text()
    assert page.locator(".slot.in-away").count() == 4
    shot(page, f"doctor-away-calendar-{width}")

    page.goto(f"{live_server}/calendar?doctor={doctor.id}&date={DAY.isoformat()}&view=all")
    assert "away: Medical conference" in page.locator(".away-band").first.inner_text()
    shot(page, f"doctor-away-calendar-all-{width}")

    page.goto(f"{live_server}/calendar?doctor={doctor.id}&date={DAY.isoformat()}&view=week")
    assert page.locator(".away-band").count() == 1
    # A phone's week hides the slots; the day still says the doctor is away.
    summary = page.locator(".away-summary")
    assert summary.is_visible() == (width == "phone")
    if width == "phone":
        assert "Away 10:00 am to 11:00 am · 4 booked" in summary.inner_text()
    shot(page, f"doctor-away-calendar-week-{width}")
    assert problems == [], problems
    page.context.close()
