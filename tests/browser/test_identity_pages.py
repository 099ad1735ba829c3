"""Sign-in journeys in a real browser, with screenshots at desktop and phone width."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import ctx_for, latest_code, make_tenant, make_user, unique_mobile

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_admin_journey(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sunrise Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    make_user(db, ident, clinic, "doctor", name="Dr. Anjali Deshmukh")
    page, problems = open_page(browser, width)

    page.goto(f"{live_server}/sign-in?clinic={clinic.slug}")
    page.get_by_label("Email").fill(admin.email or "")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    assert "not right" in page.locator("#f-password-error").inner_text()
    shot(page, f"sign-in-error-{width}")

    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    assert page.get_by_role("heading", name="Namaste, Meera Kulkarni").is_visible()
    shot(page, f"staff-home-{width}")

    page.goto(f"{live_server}/admin/users")
    assert page.get_by_role("link", name="Dr. Anjali Deshmukh").is_visible()
    shot(page, f"admin-users-{width}")

    page.goto(f"{live_server}/account/mfa")
    page.get_by_role("button", name="Set up two-step sign-in").click()
    secret = page.locator("code").inner_text()
    assert page.locator(".qr svg").is_visible()
    shot(page, f"mfa-setup-{width}")
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    assert page.get_by_role("heading", name="Two-step sign-in is on").is_visible()
    assert page.locator(".codes li").count() == 10

    page.goto(f"{live_server}/admin/sign-ins")
    assert page.get_by_text("mfa-enrolled").first.is_visible()
    shot(page, f"sign-in-log-{width}")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    assert problems == [], problems
    page.context.close()


def test_device_approval_in_two_browsers(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic = make_tenant(db, "Approval Clinic")
    admin = make_user(db, ident, clinic, "admin")
    chemist = make_user(db, ident, clinic, "pharmacy", name="Sameer", device_approval_required=True)

    waiting, problems = open_page(browser, "phone")
    staff_sign_in(waiting, live_server, clinic.slug, chemist.email or "")
    waiting.wait_for_url("**/sign-in/device")
    shot(waiting, "device-waiting-phone")

    desk, _ = open_page(browser, "desktop")
    staff_sign_in(desk, live_server, clinic.slug, admin.email or "")
    desk.goto(f"{live_server}/admin/devices?status=pending")
    shot(desk, "admin-devices-desktop")
    desk.get_by_role("button", name="Approve").click()
    desk.get_by_text("Device approved.").wait_for()

    # The waiting page polls with htmx and moves on by itself.
    waiting.wait_for_url("**/app", timeout=15000)
    assert problems == [], problems
    waiting.context.close()
    desk.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_patient_journey(
    browser: Any, live_server: str, db: Database, ident: Any, cipher: Any, width: str
) -> None:
    from opdesk.consents import service as consents
    from opdesk.patients.schemas import PatientCreate
    from opdesk.patients.service import register
    from opdesk.uow import transaction

    clinic = make_tenant(db, "Kaveri Clinic")
    phone = unique_mobile()
    ctx = ctx_for(clinic.id)
    with transaction(db, ctx) as session:
        person = {"first": "लक्ष्मी", "last": "अय्यर"}
        data = PatientCreate.model_validate(
            {"name": person, "phone": phone, "ageYears": 44, "gender": "female"}
        )
        register(session, ctx, ident, data=data)
        consents.add_template(
            session,
            ctx,
            type_="whatsapp",
            title="WhatsApp reminders",
            body="I agree to appointment reminders on WhatsApp.",
        )
    page, problems = open_page(browser, width)
    page.goto(f"{live_server}/patient/sign-in?clinic={clinic.slug}")
    page.get_by_label("Mobile number").fill(phone[3:])
    shot(page, f"patient-phone-{width}")
    page.get_by_role("button", name="Send code").click()
    page.wait_for_url("**/patient/sign-in/code")
    assert "We have sent a 6-digit code" in page.get_by_role("status").inner_text()
    shot(page, f"patient-code-{width}")

    inbox, _ = open_page(browser, width)
    inbox.goto(f"{live_server}/dev/inbox")
    code = latest_code(db, cipher, clinic, phone)
    # The inbox lists every clinic's messages; other tests may have sent some "later".
    assert inbox.locator(".otp", has_text=code).count() == 1
    shot(inbox, f"dev-inbox-{width}")
    inbox.context.close()

    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/me")
    assert page.get_by_role("heading", name="Namaste, लक्ष्मी अय्यर").is_visible()
    page.get_by_role("button", name="Read and agree: WhatsApp messages").click()
    assert "appointment reminders" in page.locator(".consent-text").inner_text()  # issue 10
    page.get_by_role("button", name="I agree").click()
    assert "(version 1) is recorded" in page.get_by_role("status").inner_text()
    assert page.get_by_role("link", name="consent-whatsapp-v1.pdf").is_visible()
    shot(page, f"patient-home-{width}")
    assert problems == [], problems
    page.context.close()
