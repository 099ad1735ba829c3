"""The reports dashboard in a real browser, at both widths: the clinic's view for the
accounts office (a doctor's name in Hindi among the doctors), a doctor's own view, the
period switch and a CSV download. Screenshots of each.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from opdesk.db import Database
from opdesk.identity.models import User
from opdesk.scheduling.models import DoctorProfile
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, settle, shot, staff_sign_in
from tests.factories import ctx_for, make_user, unaudited
from tests.factories.reports import KnownClinic, build_days, known_clinic

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
HINDI_DOCTOR = "डॉ. बाला अय्यर"
HINDI_DRAWN = f"""() => document.fonts.check("16px 'Noto Sans Devanagari'", "{HINDI_DOCTOR}")"""


def a_clinic_with_a_past_week(db: Database, ident: Any) -> KnownClinic:
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Kolkata")).date()
    day = today - timedelta(days=4)
    known = known_clinic(db, ident, day)
    with transaction(db, ctx_for(known.tenant.id)) as session:
        unaudited(session)
        session.execute(
            update(DoctorProfile)
            .where(DoctorProfile.id == known.b)
            .values(display_name=HINDI_DOCTOR)
        )
    build_days(db, known.tenant, day - timedelta(days=30), today - timedelta(days=1))
    return known


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_accounts_office_reads_the_clinics_week(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = a_clinic_with_a_past_week(db, ident)
    accounts = make_user(db, ident, clinic.tenant, "accounts", name="Meera Joshi")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.tenant.slug, accounts.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/reports?days=7")
    assert page.get_by_role("heading", name="Reports", exact=True).is_visible()
    doctors = page.locator("#doctors-h").locator("xpath=ancestor::section")
    assert doctors.get_by_text(HINDI_DOCTOR).is_visible()
    settle(page)
    assert page.evaluate(HINDI_DRAWN)
    assert page.locator("svg[role=img]").count() >= 8
    shot(page, f"reports-clinic-{width}")

    page.get_by_role("link", name="90 days").click()
    page.wait_for_url("**/reports?days=90")
    page.get_by_role("heading", name="The last 90 days").wait_for()
    with page.expect_download() as download:
        page.locator("a.export").first.click()
    assert download.value.suggested_filename.startswith("days-")
    shot(page, f"reports-clinic-90-days-{width}")
    assert problems == []
    page.context.close()


def test_a_doctor_reads_their_own_figures(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic = a_clinic_with_a_past_week(db, ident)
    with transaction(db, ctx_for(clinic.tenant.id)) as session:
        profile = session.get_one(DoctorProfile, (clinic.tenant.id, clinic.a))
        email = session.get_one(User, (clinic.tenant.id, profile.user_id)).email
    page, problems = open_page(browser, "phone")
    staff_sign_in(page, live_server, clinic.tenant.slug, email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/reports/mine?days=7")
    assert page.get_by_role("heading", name="My figures").is_visible()
    assert page.get_by_text("₹").count() == 0
    assert page.get_by_text(HINDI_DOCTOR).count() == 0
    shot(page, "reports-doctor-phone")
    assert problems == []
    page.context.close()
