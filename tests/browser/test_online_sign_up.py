"""A new patient books online from a phone: time, mobile, code, a short form, confirm;
the desk then sees the record flagged to complete (issue 10, items 25 and 26).
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import DAY, clinic_with_slots, latest_code, make_user, unique_mobile

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_new_patient_registers_while_booking_and_the_desk_completes_the_record(
    browser: Any, live_server: str, db: Database, ident: Any, cipher: Any, width: str
) -> None:
    clinic, doctor, _slots = clinic_with_slots(db, ident, 3)
    phone = unique_mobile()
    page, problems = open_page(browser, width)
    page.goto(f"{live_server}/c/{clinic.slug}/book?doctor={doctor.id}&date={DAY}")
    page.locator(".slot-buttons button").first.click()
    page.wait_for_url("**/book/confirm")
    assert "New to" in page.locator("article").inner_text()
    page.get_by_role("button", name="Sign in with my mobile").click()
    page.get_by_label("Mobile number").fill(phone[3:])
    page.get_by_role("button", name="Send code").click()
    page.wait_for_url("**/patient/sign-in/code")
    page.get_by_label("6-digit code").fill(latest_code(db, cipher, clinic, phone))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=f"New to {clinic.name}?").wait_for()
    shot(page, f"online-sign-up-form-{width}")

    page.get_by_role("button", name="Register and continue").click()
    assert page.locator(".error-summary").is_visible()
    focused = page.evaluate("document.activeElement.id")
    assert focused == "f-name-first", focused
    shot(page, f"online-sign-up-errors-{width}")

    page.get_by_label("First name").fill("सीमा")
    page.get_by_label("Last name").fill("Kulkarni")
    page.get_by_label("…or age in years").fill("41")
    page.get_by_label("Gender").select_option("female")
    page.get_by_label("Language for messages").select_option("hi")
    page.get_by_role("button", name="Register and continue").click()
    page.wait_for_url("**/book/confirm")
    assert "सीमा Kulkarni" in page.locator("article").inner_text()
    shot(page, f"online-sign-up-confirm-{width}")
    page.get_by_role("button", name="Confirm appointment").click()
    page.wait_for_url("**/me/appointments")
    assert "booked" in page.get_by_role("status").inner_text()
    assert problems == [], problems
    page.context.close()

    desk = make_user(db, ident, clinic, "frontdesk", name="Pooja")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/patients")
    page.get_by_role("searchbox").fill("Kulkarni")
    page.locator(".patient-list a").first.wait_for()
    assert "Registered online" in page.locator(".patient-list").inner_text()
    shot(page, f"online-sign-up-search-{width}")
    page.locator(".patient-list a").first.click()
    page.wait_for_url("**/patients/*")
    assert "Registered online — complete the record." in page.locator("main").inner_text()
    shot(page, f"online-sign-up-profile-{width}")

    page.get_by_role("button", name="Edit").click()
    page.locator("#f-address").fill(  # "ABHA address" has the word too
        "7 Tilak Road, Sadashiv Peth"
    )
    page.get_by_label("PIN code").fill("411030")
    page.get_by_label("Blood group").select_option("AB+")
    page.get_by_label("ABHA number").fill("43 4221 5105 6748")  # last digit wrong
    page.get_by_role("button", name="Save").click()
    assert "last digit" in page.locator("#f-abha_number-error").inner_text()
    shot(page, f"patient-form-new-fields-{width}")
    page.get_by_label("ABHA number").fill("43-4221-5105-6749")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/patients/*")
    text = page.locator("main").inner_text()
    assert "Registered online" not in text
    assert "43-4221-5105-6749" in text and "AB+" in text and "411030" in text
    assert "हिन्दी (Hindi)" in text
    shot(page, f"patient-profile-new-fields-{width}")
    assert problems == [], problems
    page.context.close()
