"""Issue 10 in a real browser: the patient profile as the desk's starting point (its
appointments, Book, Add family member), the share link shown on the page, the consent
Revoke that asks first, a guardian's delete that moves the family, and the registration
form's errors all at once. Screenshots at 1280 and 390 px.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import (
    DAY,
    book,
    clinic_with_slots,
    make_consent,
    make_patient,
    make_tenant,
    make_user,
    unique_mobile,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_profile_is_where_the_desk_starts(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Ganga Family Clinic")
    _, doctor, slots = clinic_with_slots(db, ident, 4, clinic)
    desk = make_user(db, ident, clinic, "frontdesk", name="Ravi Patil")
    mother = make_patient(
        db,
        ident,
        clinic,
        name={"first": "सुनीता", "last": "Deshmukh"},
        phone=unique_mobile(),
        city="Satara",
    )
    make_patient(
        db,
        ident,
        clinic,
        name={"first": "Arjun", "last": "Deshmukh"},
        phone=None,
        guardianId=str(mother.id),
        guardianRelation="son",
    )
    book(db, clinic, slots[1], mother, channel="phone")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/patients/{mother.id}")
    assert "Coming up" in page.content()
    assert doctor.display_name in page.locator("table").first.inner_text()
    shot(page, f"desk-profile-{width}")

    # Book: the patient is already chosen; choose a time.
    page.get_by_role("button", name="Book").first.click()
    page.wait_for_url("**/book")
    page.goto(f"{live_server}/patients/{mother.id}/book?doctor={doctor.id}&date={DAY}")
    shot(page, f"desk-book-for-patient-{width}")
    page.get_by_label("9:30 am").check()
    page.get_by_role("button", name="Book appointment").click()
    page.wait_for_url(f"**/patients/{mother.id}")
    assert "Booked सुनीता Deshmukh with" in page.get_by_role("status").inner_text()

    # Add family member: registration starts with the guardian chosen.
    page.get_by_role("button", name="Add family member").click()
    assert page.locator("#f-guardian").input_value() == mother.display_number
    assert "Add a family member of सुनीता Deshmukh" in page.locator("h1").inner_text()
    shot(page, f"desk-add-family-member-{width}")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_share_link_consent_revoke_and_registration_errors(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Yamuna Clinic")
    desk = make_user(db, ident, clinic, "frontdesk", name="Asha More")
    consent = make_consent(db, ident, clinic)
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/patients/{consent.patient_id}")
    page.get_by_text("Upload a document").click()
    page.locator("#f-file").set_input_files(
        {"name": "hba1c.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"}
    )
    page.get_by_label("Category").select_option("lab-report")
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("button", name="Share link").first.click()
    assert "/s/" in page.locator("#f-share-url").input_value()
    shot(page, f"desk-share-link-{width}")

    page.get_by_text("Revoke Treatment consent…").click()
    page.get_by_text("they must sign again").wait_for()
    shot(page, f"desk-consent-revoke-confirm-{width}")
    page.get_by_role("button", name="Revoke Treatment consent").click()
    assert "Consent revoked." in page.get_by_role("status").inner_text()

    page.goto(f"{live_server}/patients/new")
    page.get_by_label("Date of birth").fill("2099-01-01")
    page.get_by_role("button", name="Register").click()
    summary = page.locator(".error-summary").inner_text()
    assert "Date of birth: this date is in the future" in summary and "First name" in summary
    assert page.evaluate("document.activeElement.id") == "f-name-first"
    shot(page, f"desk-register-all-errors-{width}")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_deleting_a_guardian_moves_the_family(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Narmada Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera")
    father = make_patient(db, ident, clinic, name={"first": "Vijay", "last": "Rao"})
    aunt = make_patient(db, ident, clinic, name={"first": "Kavita", "last": "Rao"})
    make_patient(
        db,
        ident,
        clinic,
        name={"first": "Arjun", "last": "Rao"},
        phone=None,
        guardianId=str(father.id),
        guardianRelation="son",
    )
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/patients/{father.id}")
    page.get_by_text("Delete this patient").click()
    assert "1 family member shares this phone" in page.locator(".danger-zone").inner_text()
    page.locator("#f-move-to").fill(aunt.display_number)
    shot(page, f"desk-delete-guardian-{width}")
    page.get_by_role("button", name="Move family and delete").click()
    page.wait_for_url("**/patients")
    assert "Arjun Rao now shares Kavita Rao's phone" in page.get_by_role("status").inner_text()
    assert problems == [], problems
    page.context.close()
