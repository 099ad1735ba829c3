"""Front desk patient pages in a real browser: live search, registration, profile."""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_tenant, make_user, unique_mobile

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_register_find_and_open_a_patient(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    desk = make_user(db, ident, clinic, "frontdesk", name="Ravi Patil")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/patients/new")
    page.get_by_label("First name").fill("सुनीता")
    page.get_by_label("Mobile number").fill("020 2553 1234")
    page.get_by_role("button", name="Register").click()
    assert "must be a mobile number" in page.locator("#f-phone-error").inner_text().lower()
    assert page.locator(".error-summary").is_visible()
    shot(page, f"patient-form-errors-{width}")

    phone = unique_mobile()
    page.get_by_label("Mobile number").fill(phone[3:])
    page.get_by_label("Last name").fill("Deshmukh")
    page.get_by_label("…or age in years").fill("58")
    page.get_by_label("Gender").select_option("female")
    page.get_by_label("City / village").fill("Satara")
    page.locator("#f-allergies").fill("Penicillin: rash (severe)\nDust")
    page.get_by_label("Chronic conditions").fill("Diabetes, Hypertension")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url("**/patients/*")
    assert "Registered सुनीता Deshmukh" in page.get_by_role("status").inner_text()
    banner = page.get_by_role("alert").inner_text()
    assert "Penicillin" in banner and "severe" in banner
    shot(page, f"patient-profile-{width}")

    page.get_by_text("Upload a document").click()
    page.locator("#f-file").set_input_files(
        {"name": "hba1c.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"}
    )
    page.get_by_label("Category").select_option("lab-report")
    page.get_by_role("button", name="Upload").click()
    assert "Uploaded hba1c.pdf." in page.get_by_role("status").inner_text()
    page.get_by_role("button", name="Share link").click()
    assert "/s/" in page.locator("#f-share-url").input_value()  # on the page, not a cookie
    shot(page, f"patient-documents-{width}")

    page.goto(f"{live_server}/patients")
    page.get_by_role("searchbox").fill("सुनी")
    page.locator(".patient-list a").first.wait_for()
    assert "Deshmukh" in page.locator(".patient-list").inner_text()
    shot(page, f"patient-search-{width}")
    page.get_by_role("searchbox").fill(phone[-10:])
    page.wait_for_function("document.querySelectorAll('.patient-list li').length == 1")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_admin_consent_texts_and_deleted_patients_pages(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Kaveri Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/consents")
    page.get_by_role("button", name="Write the first text of Use of health data (DPDP)").click()
    page.get_by_label("Title").fill("स्वास्थ्य जानकारी का उपयोग")
    page.locator("#f-body").fill("मैं क्लिनिक को अपनी स्वास्थ्य जानकारी रखने की अनुमति देता हूँ।")
    page.get_by_role("button", name="Publish").click()
    assert "Published version 1" in page.get_by_role("status").inner_text()
    shot(page, f"admin-consents-{width}")
    page.goto(f"{live_server}/patients/deleted")
    assert page.get_by_text("No deleted patients.").is_visible()
    assert problems == [], problems
    page.context.close()
