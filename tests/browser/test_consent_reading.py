"""A consent is read before it is agreed to (issue 10, item 16), in a real browser: the
patient on a phone, and the desk, at 1280 and 390 px.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.consents import service as consents
from opdesk.db import Database
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import ctx_for, make_patient, make_tenant, make_user, portal_login

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

BODY = (
    "मैं सहमति देता/देती हूँ कि क्लिनिक मुझे WhatsApp पर अपॉइंटमेंट की याद दिलाए।\n\n"
    "I agree that the clinic may send me appointment reminders, reports and bills on "
    "WhatsApp at my registered mobile number. I can stop this at any time."
)


def clinic_with_text(db: Database, name: str) -> Any:
    tenant = make_tenant(db, name)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        consents.add_template(
            session, ctx, type_="whatsapp", title="Reminders on WhatsApp", body=BODY
        )
    return tenant


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_patient_reads_the_text_then_agrees(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = clinic_with_text(db, "Krishna Clinic")
    patient = make_patient(db, ident, tenant, name={"first": "लक्ष्मी", "last": "अय्यर"})
    token = portal_login(db, ident, tenant, patient)["Authorization"].removeprefix("Bearer ")
    page, problems = open_page(browser, width)
    page.context.add_cookies([{"name": "opdesk_session", "value": token, "url": live_server}])
    page.goto(f"{live_server}/me")
    assert page.get_by_role("button", name="I agree").count() == 0
    page.get_by_role("button", name="Read and agree: WhatsApp messages").click()
    page.wait_for_url("**/consents/new?type=whatsapp")
    text = page.locator(".consent-text")
    assert "अपॉइंटमेंट" in text.inner_text() and "registered mobile number" in text.inner_text()
    assert "version 1" in text.inner_text()
    agree = page.get_by_role("button", name="I agree")
    below = agree.bounding_box()["y"] > text.bounding_box()["y"] + text.bounding_box()["height"]
    assert below, "the button comes after the text"
    shot(page, f"patient-consent-read-{width}")
    agree.click()
    page.wait_for_url("**/me")
    assert "(version 1) is recorded" in page.get_by_role("status").inner_text()
    assert page.get_by_role("link", name="consent-whatsapp-v1.pdf").is_visible()
    shot(page, f"patient-consent-given-{width}")
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_desk_shows_the_text_before_recording_the_signature(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = clinic_with_text(db, "Godavari Clinic")
    desk = make_user(db, ident, tenant, "frontdesk", name="Ravi Patil")
    patient = make_patient(db, ident, tenant, name={"first": "Suresh", "last": "Jadhav"})
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/patients/{patient.id}")
    page.get_by_label("Record a consent signed at the desk").select_option("whatsapp")
    page.get_by_role("button", name="Show the text to sign").click()
    page.wait_for_url("**/consents/new?type=whatsapp")
    assert "registered mobile number" in page.locator(".consent-text").inner_text()
    shot(page, f"desk-consent-read-{width}")
    page.get_by_role("button", name="The patient agreed to version 1: record it").click()
    page.wait_for_url(f"**/patients/{patient.id}")
    status = page.get_by_role("status").inner_text()
    assert "Recorded WhatsApp messages consent (version 1)" in status
    assert problems == [], problems
    page.context.close()
