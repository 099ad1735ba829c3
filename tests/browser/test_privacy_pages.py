"""The data export's buttons in a real browser: "Download my data" in the portal and
"Download the patient's data" on the staff patient page, at 1280 and 390 px; the click
downloads the ZIP.
"""

from __future__ import annotations

import zipfile
from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import open_page, shot
from tests.factories import make_patient, make_tenant, make_user, open_session
from tests.factories.web import portal_user_of


def as_user(page: Any, base: str, token: str) -> None:
    page.context.add_cookies([{"name": "opdesk_session", "value": token, "url": base}])


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_export_buttons_download_the_archive(
    browser: Any, live_server: str, db: Database, ident: Any, width: str, tmp_path: Any
) -> None:
    clinic = make_tenant(db, "Sahyadri Clinic")
    me = make_patient(db, ident, clinic, name={"first": "Kavita", "last": "देशमुख"})
    make_patient(
        db,
        ident,
        clinic,
        name={"first": "Aarav"},
        phone=None,
        guardianId=str(me.id),
        guardianRelation="son",
        ageYears=8,
        gender="male",
    )

    page, problems = open_page(browser, width)
    as_user(page, live_server, open_session(db, ident, portal_user_of(db, clinic, me.id)))
    page.goto(f"{live_server}/me")
    button = page.get_by_role("button", name="Download my data")
    assert button.is_visible()
    shot(page, f"privacy-portal-{width}")
    with page.expect_download() as info:
        button.click()
    saved = tmp_path / "mine.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        assert {"patient.json", "summary.pdf"} <= set(zf.namelist())

    admin = make_user(db, ident, clinic, "admin")
    staff, more = open_page(browser, width)
    as_user(staff, live_server, open_session(db, ident, admin))
    staff.goto(f"{live_server}/patients/{me.id}")
    action = staff.get_by_role("button", name="Download the patient's data")
    action.scroll_into_view_if_needed()
    shot(staff, f"privacy-staff-{width}")
    with staff.expect_download() as info:
        action.click()
    assert info.value.suggested_filename.endswith(".zip")
    assert problems == [] and more == []
