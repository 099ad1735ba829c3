"""The ABDM pages in a real browser at desktop and phone width: an admin saves the
clinic's ABDM settings (a bad facility id shown by its field first), prints a counter's
QR code, and the desk reads today's Scan & Share tokens (names in Hindi)."""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.abdm.settings import Counter
from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_tenant, make_user
from tests.factories.abdm import (
    consent_granted,
    linking_paused,
    scanned,
    unique_facility_id,
    with_abdm,
)
from tests.factories.clinical_visits import signed_visit

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_an_admin_connects_the_clinic_to_abdm(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/admin/abdm")
    assert page.get_by_role("heading", name="ABDM", exact=True).is_visible()
    shot(page, f"admin-abdm-empty-{width}")
    page.get_by_label("HFR facility id").fill("IN-27")
    page.get_by_label("Facility name as registered").fill("सनराइज़ फ़ैमिली क्लिनिक")
    page.get_by_label("Client id").fill("SBX_004411")
    page.get_by_label("Client secret").fill("a-sandbox-secret-4411")
    page.get_by_label("Counters, one per line").fill("desk-1: Front desk\nlab: पैथोलॉजी काउंटर")
    page.get_by_role("button", name="Save ABDM settings").click()
    page.get_by_text("Please correct 1 field").wait_for()
    assert "HFR facility id" in page.locator("#f-facilityId-error").inner_text()
    shot(page, f"admin-abdm-error-{width}")

    page.get_by_label("HFR facility id").fill(unique_facility_id())
    page.get_by_label("Client secret").fill("a-sandbox-secret-4411")
    page.get_by_role("button", name="Save ABDM settings").click()
    page.get_by_text("ABDM settings saved.").wait_for()
    assert page.get_by_role("link", name="पैथोलॉजी काउंटर").is_visible()
    shot(page, f"admin-abdm-saved-{width}")

    page.get_by_role("link", name="पैथोलॉजी काउंटर").click()
    page.get_by_role("heading", name="पैथोलॉजी काउंटर").wait_for()
    assert page.locator("figure.qr svg").is_visible()
    shot(page, f"abdm-counter-qr-{width}")
    assert problems == []


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_desk_reads_todays_scan_and_share_tokens(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    desk = make_user(db, ident, clinic, "frontdesk", name="Ravi Patil")
    on = with_abdm(db, ident.cipher, clinic, counters=(Counter("desk-1", "Front desk"),))
    scanned(db, ident, clinic, on, name="सुनीता देशमुख", gender="F", abhaNumber=None)
    scanned(
        db,
        ident,
        clinic,
        on,
        name="Arjun Nair",
        gender="M",
        abhaNumber=None,
        abhaAddress="arjun.nair90@sbx",
        phoneNumber="9876500077",
        yearOfBirth="1990",
    )
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/queue")
    shot(page, f"desk-queue-scan-share-{width}")
    page.get_by_role("button", name="Scan & Share · 2 waiting").click()
    page.get_by_role("heading", name="Scan & Share").wait_for()
    assert page.get_by_role("link", name="सुनीता देशमुख").is_visible()
    shot(page, f"desk-scan-share-{width}")
    assert problems == []


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_desk_reads_a_patient_s_abdm_page(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    desk = make_user(db, ident, clinic, "frontdesk", name="Ravi Patil")
    on = with_abdm(db, ident.cipher, clinic)
    consult, visit = signed_visit(
        db,
        ident,
        ident.cipher,
        clinic,
        name={"first": "आशा", "last": "पाटील"},
        abhaAddress="asha.p1996@sbx",
    )
    consent_granted(db, clinic, on.facility_id, consult.patient.id, visit.id)
    linking_paused(db, clinic, consult.patient, "ABDM-1001: Demographic details do not match")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/patients/{consult.patient.id}")
    page.get_by_role("link", name="ABDM").click()
    page.get_by_role("heading", name="Consents").wait_for()
    assert page.get_by_text("Granted").is_visible()
    assert page.get_by_role("status").filter(has_text="Demographic details").is_visible()
    shot(page, f"desk-patient-abdm-{width}")
    assert problems == []
