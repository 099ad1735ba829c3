"""Tables on a phone, and the staff menu on a laptop (issue 10, items 21 and 24).

At 390 px the waitlist, users, devices and sign-in tables become one card per row: nothing
is wider than the screen, and every button and link in a row lies inside the screen and is
at least 44 px tall (WCAG 2.5.8 asks 24, a thumb needs 44). At 1280 px the staff menu is one
line, the admin pages folded into one "Admin" menu. Screenshots of each page at both widths.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from opdesk.db import Database
from opdesk.identity.models import Device
from opdesk.identity.service import staff_sign_in as sign_in_service
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, assert_fits, open_page, shot, staff_sign_in
from tests.factories import (
    STAFF_PASSWORD,
    book,
    cancel,
    clinic_with_slots,
    ctx_for,
    join,
    make_tenant,
    make_user,
    patients,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PHONE_WIDTH = WIDTHS["phone"][0]
THUMB = 44

# Each row's buttons and links: where they are and how tall.
ROW_TARGETS = """() => [...document.querySelectorAll('main table tbody tr')].flatMap((row, i) =>
  [...row.querySelectorAll('a, button, summary, [role=button]')].map(el => {
    const box = el.getBoundingClientRect();
    return {row: i, text: el.textContent.trim().replace(/\\s+/g, ' '),
            left: box.left, right: box.right, height: box.height,
            shown: box.width > 0 && getComputedStyle(el).visibility !== 'hidden'};
  }))"""


def a_busy_clinic(db: Database, ident: Any) -> tuple[Any, Any, Any]:
    """An admin; a doctor whose one slot was cancelled and is offered to the first of two
    waiting patients (Book it, Declined, Remove); a chemist's new phone waiting for approval
    (Approve, Revoke).
    """
    clinic = make_tenant(db, "Sahyadri Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    _, doctor, slots = clinic_with_slots(db, ident, 1, clinic)
    people = patients(db, ident, clinic, 3, name={"first": "लक्ष्मी", "last": "Venkataraman"})
    booked = book(db, clinic, slots[0], people[0])
    join(db, clinic, people[1], doctor.id)
    join(db, clinic, people[2], doctor.id)
    cancel(db, ident, clinic, booked.id)
    chemist = make_user(
        db,
        ident,
        clinic,
        "pharmacy",
        name="Sameer Deshpande",
        email="sameer.deshpande.pharmacy@example.in",
        device_approval_required=True,
    )
    ctx = ctx_for(clinic.id)
    with transaction(db, ctx) as session:
        sign_in_service(
            session,
            ctx,
            ident,
            clinic=clinic.slug,
            email=chemist.email or "",
            password=STAFF_PASSWORD,
            device_token=None,
            device_label="Mozilla/5.0 (Linux; Android 14; moto g54) Chrome/131.0 Mobile",
        )
        assert session.execute(select(Device).where(Device.user_id == chemist.id)).scalar()
    return clinic, admin, chemist


def row_targets(page: Any) -> list[dict[str, Any]]:
    return [t for t in page.evaluate(ROW_TARGETS) if t["shown"]]


def test_tables_become_cards_with_whole_thumb_sized_buttons_on_a_phone(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic, admin, chemist = a_busy_clinic(db, ident)
    page, problems = open_page(browser, "phone")
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    pages = {
        "waitlist": ("/waitlist", {"Book it", "Declined", "Remove"}),
        "admin-users": ("/admin/users", {"Meera Kulkarni", "Sameer Deshpande"}),
        "admin-devices": ("/admin/devices", {"Approve", "Revoke", "Sameer Deshpande"}),
        "admin-user": (f"/admin/users/{chemist.id}", {"Approve", "Revoke"}),
        "sign-in-log": ("/admin/sign-ins", set()),
    }
    for name, (path, expected) in pages.items():
        page.goto(live_server + path)
        assert_fits(page)
        targets = row_targets(page)
        assert expected <= {t["text"] for t in targets}, (path, targets)
        for t in targets:
            where = f"{path}: row {t['row']} {t['text']!r}"
            assert t["left"] >= 0 and t["right"] <= PHONE_WIDTH, f"{where} is cut off: {t}"
            assert t["height"] >= THUMB, f"{where} is {t['height']:.0f}px tall"
        # One card per row: no column headers above, each cell names its column.
        head = page.locator("main table thead").first.bounding_box()
        assert head is not None and head["height"] <= 1, head
        if path == "/waitlist":
            assert page.locator("td[data-label='Doctor']").first.is_visible()
        shot(page, f"phone-table-{name}-phone")

    # The Remove button of a waiting patient still opens its confirmation on a phone.
    page.goto(live_server + "/waitlist")
    page.get_by_role("button", name="Remove").last.click()
    page.get_by_role("dialog").wait_for()
    assert "waitlist" in page.get_by_role("dialog").inner_text().lower()
    assert problems == [], problems
    page.context.close()


def test_the_same_tables_stay_tables_on_a_laptop(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic, admin, chemist = a_busy_clinic(db, ident)
    page, problems = open_page(browser, "desktop")
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    for name, path in (
        ("waitlist", "/waitlist"),
        ("admin-users", "/admin/users"),
        ("admin-devices", "/admin/devices"),
        ("admin-user", f"/admin/users/{chemist.id}"),
        ("sign-in-log", "/admin/sign-ins"),
    ):
        page.goto(live_server + path)
        head = page.locator("main table thead").first.bounding_box()
        assert head is not None and head["height"] > 20, (path, head)
        shot(page, f"phone-table-{name}-desktop")
    assert problems == [], problems
    page.context.close()


ONE_LINE = """() => {
  const items = [...document.querySelectorAll('.site-header nav > ul > li')];
  const middles = items.map(li => {
    const box = li.getBoundingClientRect();
    return box.top + box.height / 2;
  });
  return {count: items.length, spread: Math.max(...middles) - Math.min(...middles),
          tallest: Math.max(...items.map(li => li.getBoundingClientRect().height)),
          height: document.querySelector('.site-header nav').getBoundingClientRect().height};
}"""


@pytest.mark.parametrize("role", ["admin", "frontdesk", "doctor"])
def test_the_staff_menu_is_one_line_at_1280(
    browser: Any, live_server: str, db: Database, ident: Any, role: str
) -> None:
    clinic = make_tenant(db, "Sahyadri Family Clinic")
    user = make_user(db, ident, clinic, role, name="Meera Kulkarni")
    page, problems = open_page(browser, "desktop")
    staff_sign_in(page, live_server, clinic.slug, user.email or "")
    page.wait_for_url("**/app")
    line = page.evaluate(ONE_LINE)
    assert line["spread"] <= 2, f"the menu wraps: {line}"
    assert line["height"] < 1.5 * line["tallest"], f"the menu has more than one line: {line}"
    if role != "admin":
        # The desk's links all show; a doctor's clinical pages fold into one menu.
        menus = page.locator(".site-header summary").all_inner_texts()
        assert menus == ({"doctor": ["Clinical"]}.get(role, [])), menus
        assert problems == [], problems
        page.context.close()
        return

    # The admin pages sit in one menu; the open page marks it.
    menu = page.locator(".site-header details")
    assert not page.locator(".site-header").get_by_role("link", name="Users").is_visible()
    menu.get_by_text("Admin").click()
    menu.get_by_role("link", name="Devices").click()
    page.wait_for_url("**/admin/devices")
    assert page.locator(".site-header summary.is-current").inner_text() == "Admin"
    assert page.locator('.site-header a[aria-current="page"]').get_attribute("href") == (
        "/admin/devices"
    )
    shot(page, "staff-menu-admin-desktop")
    page.locator(".site-header summary").click()
    shot(page, "staff-menu-open-desktop")
    assert problems == [], problems
    page.context.close()


def test_the_admin_menu_opens_inside_a_phone_screen(
    browser: Any, live_server: str, db: Database, ident: Any
) -> None:
    clinic = make_tenant(db, "Sahyadri Family Clinic")
    admin = make_user(db, ident, clinic, "admin", name="Meera Kulkarni")
    page, problems = open_page(browser, "phone")
    staff_sign_in(page, live_server, clinic.slug, admin.email or "")
    page.wait_for_url("**/app")
    page.locator(".site-header summary").click()
    links = page.locator(".site-header details a")
    assert links.count() >= 5
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE_WIDTH
        assert box["height"] >= THUMB, (links.nth(i).inner_text(), box)
    shot(page, "staff-menu-open-phone")
    assert problems == [], problems
    page.context.close()
