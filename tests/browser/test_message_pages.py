"""The admin's message pages in a real browser at desktop and phone width, with Hindi
and Tamil texts, and the retry confirmation."""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_patient, make_tenant, make_user
from tests.factories.messages import fail, failed_event, mark_sent, queue, set_provider

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

OFFER = {
    "patient": "Kavya Iyer",
    "doctor": "Dr. Anjali Deshmukh",
    "startsAt": "Tue 08 Dec, 09:30 AM",
    "minutes": 15,
}


@pytest.mark.parametrize("width", list(WIDTHS))
def test_outbox_providers_and_automation_pages(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    kavya = make_patient(db, ident, clinic, name={"first": "Kavya", "last": "Iyer"})
    cipher = ident.cipher
    queue(
        db,
        cipher,
        clinic,
        template="waitlist-offer",
        payload=OFFER,
        language="ta",
        patient_id=kavya.id,
    )
    hindi = queue(db, cipher, clinic, channel="whatsapp", language="hi", patient_id=kavya.id)
    mark_sent(db, clinic, hindi, "wamid.HBgMOTE5ODEy")
    failed = queue(db, cipher, clinic, template="appointment-reminder", patient_id=kavya.id)
    fail(db, clinic, failed, "MSG91: HTTP 401")
    failed_event(db, clinic, "appointment 01a2 is gone")
    set_provider(
        db,
        cipher,
        clinic,
        "sms",
        authKey="msg91-auth-key-7f3a9c21",
        senderId="SUNRSE",
        templates='{"otp": {"en": {"templateId": "t1", "dltTemplateId": "1107"}}}',
    )

    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")

    page.goto(f"{live_server}/admin/outbox")
    assert page.get_by_text("MSG91: HTTP 401").is_visible()
    assert page.get_by_text("Kavya Iyer, a slot", exact=False).count() == 0  # Tamil text
    assert page.locator("p[lang=ta]").first.is_visible()
    shot(page, f"admin-outbox-{width}")

    page.get_by_role("button", name="Send again…").click()
    assert page.get_by_role("heading", name="Send this message again?").is_visible()
    shot(page, f"admin-outbox-retry-{width}")
    page.get_by_role("button", name="Send again").click()
    page.get_by_text("The message is back in the queue.").wait_for()

    page.goto(f"{live_server}/admin/messaging")
    assert page.get_by_text("Set · ends 9c21").is_visible()
    assert "msg91-auth-key-7f3a9c21" not in page.content()
    shot(page, f"admin-messaging-{width}")

    page.goto(f"{live_server}/admin/automation")
    assert page.get_by_text("appointment 01a2 is gone").is_visible()
    shot(page, f"admin-automation-{width}")

    page.goto(f"{live_server}/dev/inbox")
    assert page.locator("p[lang=hi]").first.is_visible()
    shot(page, f"dev-inbox-{width}")
    assert problems == [], problems
    page.context.close()
