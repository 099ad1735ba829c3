"""Helpers of the browser tests: pages at two widths, fit checks, screenshots, sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.factories import STAFF_PASSWORD, latest_code

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


def open_page(browser: Any, width: str) -> tuple[Any, list[str]]:
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h}, device_scale_factor=1)
    page = context.new_page()
    problems: list[str] = []

    def on_console(msg: Any) -> None:
        # A page answered with 4xx on purpose (form errors) is logged as a failed load;
        # sub-resources are checked by status below instead.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(msg.text)

    def on_response(response: Any) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return page, problems


def settle(page: Any) -> None:
    """Wait for web fonts (Devanagari, Tamil) so screenshots show the real glyphs."""
    # Text that appears only inside form fields does not always start the font load in
    # headless Chromium before the picture is taken; ask for the faces explicitly.
    page.evaluate(
        """Promise.all([
            document.fonts.load("16px 'Noto Sans Devanagari'", "अ"),
            document.fonts.load("bold 16px 'Noto Sans Devanagari'", "अ"),
            document.fonts.load("16px 'Noto Sans Tamil'", "அ"),
        ]).then(() => document.fonts.ready).then(() => true)"""
    )


def assert_fits(page: Any) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the screen"


def shot(page: Any, name: str) -> None:
    # A click that submits a form may have just started the next page: let it load first.
    page.wait_for_load_state("load")
    assert_fits(page)
    settle(page)
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    except Exception as exc:
        # Chromium on a loaded machine sometimes fails to capture ("Unable to capture
        # screenshot") with the page whole and checked above: the picture is taken again
        # once; anything else, or a second failure, is raised.
        if "Unable to capture screenshot" not in str(exc):
            raise
        settle(page)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def staff_sign_in(page: Any, base: str, clinic: str, email: str) -> None:
    page.goto(f"{base}/sign-in?clinic={clinic}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def patient_sign_in(page: Any, base: str, db: Any, cipher: Any, clinic: Any, phone: str) -> None:
    """Sign a patient in on the clinic's sign-in page with the code the SMS carried."""
    page.goto(f"{base}/patient/sign-in?clinic={clinic.slug}")
    page.get_by_label("Mobile number").fill(phone[3:])
    page.get_by_role("button", name="Send code").click()
    page.wait_for_url("**/patient/sign-in/code")
    page.get_by_label("6-digit code").fill(latest_code(db, cipher, clinic, phone))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/me")
