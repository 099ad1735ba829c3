"""A signed-in patient's top menu, on a developer's machine (the "Dev inbox" link shows):
one line at 1280 px, usable at 390 px, and only the open page's own entry marked current.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import WIDTHS, open_page, patient_sign_in, shot
from tests.factories import make_patient, make_tenant, unique_mobile

# The middle of each item of the bar, and the bar's height against its tallest item.
BAR = """() => {
  const items = [...document.querySelectorAll('.site-header nav > ul > li')];
  const middles = items.map(li => {
    const box = li.getBoundingClientRect();
    return box.top + box.height / 2;
  });
  return {spread: Math.max(...middles) - Math.min(...middles),
          tallest: Math.max(...items.map(li => li.getBoundingClientRect().height)),
          height: document.querySelector('.site-header nav').getBoundingClientRect().height};
}"""


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_patients_menu_marks_only_the_open_page_and_fits(
    browser: Any, live_server: str, db: Database, ident: Any, cipher: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sahyadri Family Clinic")
    phone = unique_mobile()
    make_patient(db, ident, clinic, name={"first": "सुनीता", "last": "देशपांडे"}, phone=phone)
    page, problems = open_page(browser, width)
    patient_sign_in(page, live_server, db, cipher, clinic, phone)
    header = page.locator(".site-header")
    assert header.get_by_role("link", name="Dev inbox").count() == 1  # a developer's bar

    page.goto(f"{live_server}/me/appointments")
    shot(page, f"patient-menu-appointments-{width}")
    current = header.locator('[aria-current="page"]')
    assert current.count() == 1, current.all_inner_texts()
    assert current.get_attribute("href") == "/me/appointments"

    page.goto(f"{live_server}/me")
    current = header.locator('[aria-current="page"]')
    assert current.count() == 1 and current.get_attribute("href") == "/me"

    if width == "desktop":
        bar = page.evaluate(BAR)
        assert bar["spread"] <= 2, f"the menu wraps: {bar}"
        assert bar["height"] < 1.5 * bar["tallest"], f"the menu has more than one line: {bar}"
    assert problems == [], problems
    page.context.close()
