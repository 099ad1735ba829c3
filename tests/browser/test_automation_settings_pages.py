"""The "Reminders and messages" page in a real browser at desktop and phone width, with
Hindi visit type names: a bad value shown by its field, then a good one saved."""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from opdesk.scheduling.service import VisitType
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_doctor, make_tenant, make_user

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

KINDS = (
    VisitType(code="consultation", label="परामर्श (Consultation)", minutes=15),
    VisitType(code="vaccination", label="टीकाकरण", minutes=10),
    VisitType(code="follow-up", label="फ़ॉलो-अप जाँच", minutes=10),
)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_reminders_and_messages_page(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    make_doctor(db, ident, clinic, visit_types=KINDS)

    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/admin/reminders")
    assert page.get_by_role("heading", name="Reminders and messages").is_visible()
    assert page.get_by_text("टीकाकरण", exact=True).first.is_visible()
    shot(page, f"admin-reminders-{width}")

    page.get_by_label("No-show grace period (minutes)").fill("500")
    page.get_by_label("टीकाकरण: 2 h reminder", exact=True).select_option("off")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Please correct 1 field").wait_for()
    assert page.get_by_label("टीकाकरण: 2 h reminder", exact=True).input_value() == "off"
    shot(page, f"admin-reminders-error-{width}")

    page.get_by_label("No-show grace period (minutes)").fill("20")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Reminder and message settings saved.").wait_for()
    assert page.get_by_text("Patients who have not checked in 20 minutes").is_visible()
    shot(page, f"admin-reminders-saved-{width}")
    assert problems == []
