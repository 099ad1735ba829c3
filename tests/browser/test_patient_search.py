"""The desk's patient search in a real browser: part of a phone, misspelt names, names in
another script, masked phones, and Enter opening the only patient found.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_patient, make_tenant, make_user

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def search_for(page: Any, typed: str) -> list[str]:
    page.get_by_label("Find a patient").fill(typed)
    page.wait_for_selector(f'#results .patient-list[data-q="{typed}"]')
    return [n.strip() for n in page.locator("#results .patient-link strong").all_inner_texts()]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_search_finds_by_phone_digits_spelling_and_script_and_enter_opens(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Shivneri Clinic")
    desk = make_user(db, ident, clinic, "frontdesk", name="Ravi Patil")
    mother = make_patient(
        db, ident, clinic, name={"first": "Kavita", "last": "Zende"}, phone="+919822043210"
    )
    make_patient(
        db,
        ident,
        clinic,
        name={"first": "Kiran", "last": "Zende"},
        phone=None,
        ageYears=9,
        guardianId=str(mother.id),
        guardianRelation="son",
    )
    for first, last in (
        ("Suresh", "Patil"),
        ("Ramesh", "Jadhav"),
        ("Suresh", "Yadav"),
        ("Suresh", "Jadhav"),
        ("Naresh", "Jadhav"),
        ("अमित", "शर्मा"),
        ("Amit", "Sharma"),
    ):
        make_patient(db, ident, clinic, name={"first": first, "last": last})
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/patients")
    shot(page, f"patient-search-start-{width}")

    assert search_for(page, "43210") == ["Kavita Zende", "Kiran Zende"]
    assert page.locator("#results .masked-phone").all_inner_texts() == ["••••• •3210"] * 2
    shot(page, f"patient-search-phone-digits-{width}")

    found = search_for(page, "Sursh Jadav")
    assert found[0] == "Suresh Jadhav", found
    shot(page, f"patient-search-misspelt-{width}")

    assert search_for(page, "Amit Sharma") == ["Amit Sharma", "अमित शर्मा"]
    shot(page, f"patient-search-scripts-{width}")

    assert search_for(page, "kavita") == ["Kavita Zende"]
    page.get_by_label("Find a patient").press("Enter")
    page.wait_for_url(f"**/patients/{mother.id}")

    # Enter straight after typing, before the live results arrive, opens the patient too.
    page.goto(f"{live_server}/patients")
    page.get_by_label("Find a patient").fill("kavita z")
    page.get_by_label("Find a patient").press("Enter")
    page.wait_for_url(f"**/patients/{mother.id}")

    # More than one found: Enter keeps the list.
    page.goto(f"{live_server}/patients")
    search_for(page, "zende")
    page.get_by_label("Find a patient").press("Enter")
    page.wait_for_timeout(500)
    assert page.url.endswith("/patients")
    assert problems == []
