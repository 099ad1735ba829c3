"""Prescriptions in a real browser, at 1280 and 390 px: the doctor writes one by keyboard
only (a formulary drug for a patient allergic to penicillin, the warning acknowledged,
signed and issued), the pharmacy looks it up and sees it valid, the public page a
scanned QR code opens, and the patient's own prescriptions in Hindi.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from opdesk.identity.models import User
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import clinic_session, make_tenant, make_user, portal_login
from tests.factories.clinical_rx import open_draft

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

XSS = "<script>alert(1)</script>"
AMOXICILLIN = "Amoxicillin 500 mg capsule"  # as the formulary's list suggests it
HINDI = "सुबह 1, दोपहर 1, रात को 1 · खाने के बाद · 5 दिन तक"


def tab_to(page: Any, target: Any, limit: int = 120) -> None:
    """Press Tab until ``target`` has the focus (fails if the keyboard never reaches it)."""
    handle = target.element_handle()
    for _ in range(limit):
        if page.evaluate("el => el === document.activeElement", handle):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target}")


def submit_with_enter(page: Any) -> None:
    """Press Enter on the focused field or button and wait for the page it opens."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_doctor_writes_and_issues_by_keyboard_and_everyone_checks_it(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "आरोग्य Clinic Pune")
    setting, draft = open_draft(
        db,
        ident,
        clinic,
        name={"first": "सुनीता", "last": "देशमुख"},
        allergies=[{"substance": "Penicillin", "severity": "severe"}],
        preferredLanguage="hi",
    )
    with clinic_session(db, clinic.id) as session:
        email = session.get_one(User, (clinic.id, setting.doctor.user_id)).email or ""

    # The doctor: keyboard only, from the first field of the builder.
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, email)
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/prescriptions/{draft.id}")
    assert "Penicillin" in page.get_by_role("alert").inner_text()
    tab_to(page, page.locator("input[name=name-1]"))
    page.keyboard.type(AMOXICILLIN)
    for field, value in (("dose", "1 capsule"), ("frequency", "1-1-1"), ("days", "5")):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.name") == f"{field}-1"
        page.keyboard.type(value)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "timing-1"
    page.keyboard.type("After")  # typing picks the option on a focused select
    tab_to(page, page.locator("input[name=instructions-1]"))
    page.keyboard.type(f"Finish the course {XSS}")
    submit_with_enter(page)  # saves the medicines
    assert "Medicines saved." in page.get_by_role("status").inner_text()
    warnings = page.locator("article[aria-labelledby=rx-flags]")
    assert "Amoxicillin" in warnings.inner_text() and "allergy" in warnings.inner_text()
    assert page.locator("input[name=frequency-1]").input_value() == "1-1-1"
    shot(page, f"rx-builder-warning-{width}")

    tab_to(page, warnings.get_by_role("button", name="Acknowledge"))
    submit_with_enter(page)
    assert "Warning acknowledged." in page.get_by_role("status").inner_text()
    assert "(acknowledged)" in page.locator("article[aria-labelledby=rx-flags]").inner_text()
    tab_to(page, page.get_by_text("Sign and issue…"))
    page.keyboard.press("Enter")  # opens the confirmation
    confirm = page.get_by_role("button", name="Yes, sign and issue")
    assert confirm.is_visible()
    shot(page, f"rx-builder-confirm-{width}")
    tab_to(page, confirm)
    submit_with_enter(page)
    assert "Prescription signed and issued." in page.get_by_role("status").inner_text()
    assert page.locator(".rx-status-valid").inner_text() == "valid"
    assert XSS in page.locator("main").inner_text()  # shown as text, never run
    shot(page, f"rx-issued-{width}")
    verify_url = page.get_by_role("link", name="Verification page").get_attribute("href")
    assert verify_url and verify_url.startswith("/rx/verify/")
    assert problems == []

    # The pharmacy pastes what the QR code holds.
    pharmacist = make_user(db, ident, clinic, "pharmacy", name="Farhan Shaikh")
    chemist, problems = open_page(browser, width)
    staff_sign_in(chemist, live_server, clinic.slug, pharmacist.email or "")
    chemist.wait_for_url("**/app")
    chemist.goto(f"{live_server}/pharmacy/prescriptions")
    chemist.get_by_role("searchbox").fill(f"{live_server}{verify_url}")
    submit_with_enter(chemist)
    found = chemist.locator("main article")
    assert "valid" in found.locator("header").inner_text()
    assert "सुनीता देशमुख" in found.inner_text() and "Amoxicillin" in found.inner_text()
    shot(chemist, f"rx-pharmacy-{width}")
    assert problems == []

    # Anyone who scans the code: the public page, no sign-in.
    public, problems = open_page(browser, width)
    public.goto(f"{live_server}{verify_url}")
    assert public.locator("h1 .rx-status-valid").inner_text() == "valid"
    text = public.locator("main").inner_text()
    assert "Amoxicillin" in text and "सुनीता देशमुख" in text
    assert "Penicillin" not in text  # only what a pharmacist needs
    shot(public, f"rx-verify-{width}")
    assert problems == []

    # The patient: how to take it, in Hindi below the English.
    token = portal_login(db, ident, clinic, setting.patient)["Authorization"]
    mine, problems = open_page(browser, width)
    mine.context.add_cookies(
        [{"name": "opdesk_session", "value": token.removeprefix("Bearer "), "url": live_server}]
    )
    mine.goto(f"{live_server}/me/prescriptions")
    said = mine.locator(".rx-said")
    assert said.inner_text() == HINDI and said.get_attribute("lang") == "hi"
    assert "1 in the morning, 1 in the afternoon, 1 at night" in mine.locator("main").inner_text()
    assert mine.get_by_role("link", name="Download PDF").is_visible()
    shot(mine, f"rx-mine-{width}")
    assert problems == []
