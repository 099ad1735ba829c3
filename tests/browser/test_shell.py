"""The pages in a real browser at desktop and phone width; screenshots go to screenshots/."""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.db import Database
from tests.browser.helpers import SCREENSHOTS, WIDTHS, assert_fits, open_page, settle
from tests.factories import make_tenant

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_front_door_and_form_errors(browser: Any, live_server: str, width: str) -> None:
    page, problems = open_page(browser, width)
    page.goto(live_server + "/")
    assert page.get_by_role("heading", name="Find your clinic").is_visible()
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load"
    assert_fits(page)
    SCREENSHOTS.mkdir(exist_ok=True)
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / f"home-{width}.png"), full_page=True)

    page.get_by_label("Clinic code").fill("no-such-clinic")
    page.get_by_role("button", name="Open clinic page").click()
    error = page.locator("#f-code-error")
    assert error.is_visible()
    assert "No clinic uses this code" in error.inner_text()
    assert page.get_by_label("Clinic code").get_attribute("aria-invalid") == "true"
    assert_fits(page)
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / f"form-error-{width}.png"), full_page=True)
    assert problems == [], problems
    page.context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_clinic_landing_with_flash(
    browser: Any, live_server: str, db: Database, width: str
) -> None:
    tenant = make_tenant(
        db,
        "Sunrise Family Clinic — सूर्योदय",
        phone="+912025531234",
        gstin="27AAPFU0939F1ZV",
        address={
            "line1": "14, Shivaji Nagar Main Road",
            "city": "Pune",
            "state": "Maharashtra",
            "pincode": "411005",
        },
    )
    page, problems = open_page(browser, width)
    page.goto(live_server + "/")
    page.get_by_label("Clinic code").fill(tenant.slug)
    page.get_by_role("button", name="Open clinic page").click()
    page.wait_for_url(f"**/c/{tenant.slug}")
    assert page.get_by_role("status").inner_text() == f"Welcome to {tenant.name}."
    assert page.get_by_role("heading", level=1).inner_text() == tenant.name
    assert_fits(page)
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / f"clinic-{width}.png"), full_page=True)
    assert problems == [], problems
    page.context.close()


def test_not_found_page(browser: Any, live_server: str) -> None:
    page, _ = open_page(browser, "phone")
    response = page.goto(live_server + "/c/no-such-clinic")
    assert response.status == 404
    assert page.get_by_role("heading", name="Record not found").is_visible()
    assert_fits(page)
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / "not-found-phone.png"), full_page=True)
    page.context.close()


def test_api_docs_render_under_the_strict_policy(browser: Any, live_server: str) -> None:
    page, problems = open_page(browser, "desktop")
    page.goto(live_server + "/api/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15000)
    assert page.locator(".opblock").count() >= 3
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / "api-docs-desktop.png"))
    assert problems == [], problems
    page.context.close()
