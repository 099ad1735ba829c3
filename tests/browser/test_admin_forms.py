"""The admin's forms in a real browser (issue 10, item 24): day names fully visible in
the weekly hours, visit types ticked, blank rows without a day, consent texts readable
and a new version started from the latest text; at 1280 and 390 px.
"""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest

from opdesk.consents import service as consents
from opdesk.db import Database
from opdesk.scheduling import service
from opdesk.scheduling.service import Opening
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import ctx_for, make_doctor, make_tenant, make_user, set_week

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# For each day list: the room inside the box (less its padding, where the arrow is drawn)
# minus the width of its longest option in the box's own font; negative means cut off.
SPARE_ROOM = """() => [...document.querySelectorAll('select[name^="weekday_"]')].map(s => {
    const style = getComputedStyle(s);
    const pen = document.createElement('canvas').getContext('2d');
    pen.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const widest = Math.max(...[...s.options].map(o => pen.measureText(o.text).width));
    const room = s.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return Math.floor(room - widest);
})"""

VISITS = (
    service.VisitType("consultation", "Consultation", 15),
    service.VisitType("follow-up", "Follow-up", 10),
)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_day_names_are_whole_and_a_row_needs_its_day(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = make_tenant(db, "Narmada Clinic")
    admin = make_user(db, ident, tenant, "admin", name="Meera Kulkarni")
    doctor = make_doctor(db, ident, tenant, name="Dr. Sunil Joshi", visit_types=VISITS)
    set_week(db, tenant, doctor, Opening(2, time(9), time(13), 15))  # Wednesday
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/doctors/{doctor.id}")

    assert page.get_by_label("Day, row 1").evaluate("s => s.selectedOptions[0].text") == (
        "Wednesday"
    )
    spare = page.evaluate(SPARE_ROOM)
    assert len(spare) == 4 and min(spare) >= 0, f"a day name is cut off: {spare}"
    for row in (2, 3, 4):  # blank rows: no day until one is chosen
        assert page.get_by_label(f"Day, row {row}").input_value() == ""
    shot(page, f"admin-doctor-hours-{width}")

    page.get_by_label("From, row 2").fill("17:00")
    page.get_by_label("To, row 2").fill("19:00")
    page.get_by_role("button", name="Save weekly hours").click()
    assert "Day, row 2: choose the day" in page.get_by_role("alert").inner_text()
    shot(page, f"admin-doctor-hours-no-day-{width}")
    page.get_by_label("Day, row 2").select_option("Saturday")
    page.get_by_role("group", name="Visit types, row 2").get_by_label("Follow-up").uncheck()
    page.get_by_role("button", name="Save weekly hours").click()
    assert "Weekly hours saved" in page.get_by_role("status").inner_text()
    assert page.get_by_label("Day, row 2").evaluate("s => s.selectedOptions[0].text") == (
        "Saturday"
    )
    second = page.get_by_role("group", name="Visit types, row 2")
    assert second.get_by_label("Consultation").is_checked()
    assert not second.get_by_label("Follow-up").is_checked()
    assert min(page.evaluate(SPARE_ROOM)) >= 0
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_doctors_visit_types_are_ticked_from_a_list(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = make_tenant(db, "Tapi Clinic")
    admin = make_user(db, ident, tenant, "admin", name="Meera Kulkarni")
    make_user(db, ident, tenant, "doctor", name="Dr. Farhan Shaikh")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/doctors")
    page.get_by_label("Name shown to patients").fill("Dr. Farhan Shaikh")
    page.get_by_label("Specialty").fill("Paediatrics")
    page.get_by_label("Medical registration number").fill("MMC-2015-11873")
    page.get_by_role("checkbox", name="Vaccination").check()
    page.get_by_role("spinbutton", name="Minutes, Vaccination").fill("5")
    shot(page, f"admin-doctors-visit-types-{width}")
    page.get_by_role("button", name="Add profile").click()
    page.wait_for_url("**/admin/doctors/*")
    group = page.get_by_role("group", name="Visit types, row 1")
    assert [group.get_by_label(n).is_checked() for n in ("Consultation", "Vaccination")] == [
        True,
        True,
    ]
    page.goto(f"{live_server}/admin/doctors")
    assert "Vaccination (5 min)" in page.locator("tbody").inner_text()
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_published_consent_texts_are_read_and_a_new_version_starts_from_the_latest(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = make_tenant(db, "Kaveri Clinic")
    admin = make_user(db, ident, tenant, "admin", name="Meera")
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        consents.add_template(
            session,
            ctx,
            type_="whatsapp",
            title="WhatsApp पर सूचना",
            body="मैं सहमति देता/देती हूँ कि क्लिनिक मुझे WhatsApp पर याद दिलाए।\n\n"
            "I agree to appointment reminders on WhatsApp.",
        )
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/admin/consents")
    page.get_by_text("Read version 1 (in force)").click()
    text = page.locator("#type-whatsapp .consent-text")
    assert text.is_visible()
    assert "I agree to appointment reminders" in text.inner_text()
    assert "version 1" in text.inner_text() and "SHA-256" in text.inner_text()
    shot(page, f"admin-consents-read-{width}")
    page.get_by_role("button", name="Write version 2 of WhatsApp messages").click()
    assert "I agree to appointment reminders" in page.locator("#f-body").input_value()
    assert page.get_by_label("Title").input_value() == "WhatsApp पर सूचना"
    shot(page, f"admin-consents-new-version-{width}")
    page.locator("#f-body").fill(
        page.locator("#f-body").input_value() + "\n\nReports may also be sent this way."
    )
    page.get_by_role("button", name="Publish version 2").click()
    assert "Published version 2 of WhatsApp messages." in page.get_by_role("status").inner_text()
    assert problems == [], problems
    page.context.close()
