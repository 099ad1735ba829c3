"""What the desk sees in a real browser while PostgreSQL restarts: a page opened meanwhile
says OPDesk is restarting and loads again by itself; a search typed meanwhile leaves the
page alone with a line on top that clears itself; a form sent meanwhile says whether it
was saved and that what was typed is still behind Back. Screenshots at 1280 and 390 px.

Like ``tests/faults/test_database_outage.py``, these tests stop and start a PostgreSQL
server of their own (the embedded one) and serve an app on it, so the rest of the suite
never sees the outage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database, EmbeddedServer
from opdesk.identity.service import Identity
from opdesk.security.crypto import StaticKeyring
from tests.browser.conftest import serving_app
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_patient, make_tenant, make_user
from tests.factories.serve import own_database_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("faults")]

# The page and the line ask every 3 s whether OPDesk is back; after a restart the first
# request may still meet a dead pooled connection. 15 s is ample.
BACK_WITHIN_MS = 15_000


@dataclass
class Outage:
    server: EmbeddedServer
    db: Database
    app: FastAPI
    ident: Identity
    base: str
    halted: bool = False

    @contextmanager
    def restarting(self) -> Iterator[None]:
        """PostgreSQL stopped for the block, and started again whatever happens in it."""
        self.server.halt()
        self.halted = True
        try:
            yield
        finally:
            self.resume()

    def resume(self) -> None:
        if self.halted:
            self.server.resume()
            self.halted = False


@pytest.fixture(scope="module")
def outage(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, keyring: StaticKeyring
) -> Iterator[Outage]:
    """A PostgreSQL server of these tests' own, migrated, and OPDesk served on it by a
    live uvicorn in a thread."""
    folder = tmp_path_factory.mktemp("outage-pages")
    with own_database_server(folder, "opdesk_outage_pages") as (server, db):
        app = create_app(settings, database=db, keyring=keyring)
        with serving_app(app) as base:
            state = Outage(server, db, app, app.state.services.identity, base)
            try:
                yield state
            finally:
                state.resume()


def signed_in_desks(browser: Any, outage: Outage, clinic: Any) -> dict[str, tuple[Any, list[str]]]:
    """A front desk signed in at each width (desktop, phone)."""
    desk = make_user(outage.db, outage.ident, clinic, "frontdesk", name="Ravi Patil")
    pages = {}
    for width in WIDTHS:
        page, problems = open_page(browser, width)
        staff_sign_in(page, outage.base, clinic.slug, desk.email or "")
        page.wait_for_url("**/app")
        pages[width] = (page, problems)
    return pages


def unexpected(problems: list[str]) -> list[str]:
    """The browser's complaints other than the 503s the outage answers on purpose: to
    the "is OPDesk back?" polls and to the search typed meanwhile."""
    expected = re.compile(r"503 http://127\.0\.0\.1:\d+/(back|patients/results)\?")
    return [p for p in problems if not expected.match(p)]


def wait_for_text(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
        arg=[selector, text],
        timeout=BACK_WITHIN_MS,
    )


def test_a_page_opened_while_opdesk_restarts_loads_again_by_itself(
    browser: Any, outage: Outage
) -> None:
    db, ident = outage.db, outage.ident
    clinic = make_tenant(db, "Sahyadri Clinic")
    patient = make_patient(
        db, ident, clinic, name={"first": "सुनीता", "last": "Deshmukh"}, city="Satara"
    )
    desks = signed_in_desks(browser, outage, clinic)
    for page, _ in desks.values():
        page.goto(f"{outage.base}/patients")
        assert page.locator("h1").inner_text() == "Patients"

    with outage.restarting():
        for width, (page, _) in desks.items():
            answer = page.goto(f"{outage.base}/patients/{patient.id}")
            assert answer is not None and answer.status == 503
            assert page.locator("h1").inner_text() == "OPDesk is restarting"
            said = page.locator("article.error-page").inner_text()
            assert "This page will load again by itself as soon as OPDesk is back." in said
            assert "database" not in said and "503" not in said
            assert "Traceback" not in page.content()
            # No links in the bar: nothing there suggests she was signed out.
            assert page.locator("header .nav-links a").count() == 0
            shot(page, f"outage-page-{width}")
        # Still down a poll later: the page keeps waiting, and does not reload into an error.
        time.sleep(3.5)
        for page, _ in desks.values():
            assert page.locator("h1").inner_text() == "OPDesk is restarting"

    # Back: no click; each page reloads itself into the patient's profile.
    for width, (page, problems) in desks.items():
        wait_for_text(page, "h1", "सुनीता Deshmukh")
        assert page.url == f"{outage.base}/patients/{patient.id}"
        assert "OPDesk is restarting" not in page.content()
        assert "Satara" in page.locator(".page-head").inner_text()
        shot(page, f"outage-page-back-{width}")
        assert unexpected(problems) == [], problems
        page.context.close()


def test_a_search_typed_while_opdesk_restarts_keeps_the_page_and_shows_a_line(
    browser: Any, outage: Outage
) -> None:
    db, ident = outage.db, outage.ident
    clinic = make_tenant(db, "Krishna Clinic")
    for first, last in (("सुनीता", "Deshmukh"), ("Sunita", "Deshmukh"), ("Arjun", "Deshmukh")):
        make_patient(db, ident, clinic, name={"first": first, "last": last})
    desks = signed_in_desks(browser, outage, clinic)
    for page, _ in desks.values():
        page.goto(f"{outage.base}/patients")
        page.get_by_label("Find a patient").fill("Deshmukh")
        page.wait_for_selector('#results .patient-list[data-q="Deshmukh"]')
        assert page.inner_text("#outage").strip() == ""

    with outage.restarting():
        for width, (page, _) in desks.items():
            box = page.get_by_label("Find a patient")
            box.fill("सुनीता")
            wait_for_text(page, "#outage", "OPDesk")
            line = page.locator("#outage").inner_text()
            assert "restarting" in line
            assert "database" not in line
            assert "What you typed is still on this page" in line
            assert "goes away by itself" in line
            # The page stayed: its heading, what was typed, and the earlier results.
            assert page.url == f"{outage.base}/patients"
            assert page.locator("h1").inner_text() == "Patients"
            assert box.input_value() == "सुनीता"
            assert page.locator('#results .patient-list[data-q="Deshmukh"]').count() == 1
            assert "सुनीता Deshmukh" in page.locator("#results").inner_text()
            # The line is at the top of the page, above the heading.
            line_box = page.locator("#outage").bounding_box()
            head_box = page.locator("h1").bounding_box()
            assert line_box is not None and head_box is not None
            assert line_box["y"] < head_box["y"]
            shot(page, f"outage-search-line-{width}")

    # Back: the line clears itself, the page and the typed text are as they were, and
    # the search refused during the outage runs again: the list answers what is typed.
    for width, (page, problems) in desks.items():
        page.wait_for_function(
            "() => document.querySelector('#outage').innerText.trim() === ''",
            timeout=BACK_WITHIN_MS,
        )
        assert page.get_by_label("Find a patient").input_value() == "सुनीता"
        assert page.url == f"{outage.base}/patients"
        page.wait_for_selector('#results .patient-list[data-q="सुनीता"]', timeout=BACK_WITHIN_MS)
        shot(page, f"outage-search-back-{width}")
        # Searching works again.
        page.get_by_label("Find a patient").fill("Arjun")
        page.wait_for_selector('#results .patient-list[data-q="Arjun"]')
        assert "Arjun Deshmukh" in page.locator("#results").inner_text()
        assert unexpected(problems) == [], problems
        page.context.close()


def test_a_form_sent_while_opdesk_restarts_says_whether_it_was_saved(
    browser: Any, outage: Outage
) -> None:
    db, ident = outage.db, outage.ident
    clinic = make_tenant(db, "Godavari Clinic")
    patient = make_patient(
        db, ident, clinic, name={"first": "सुनीता", "last": "Deshmukh"}, city="Satara"
    )
    desks = signed_in_desks(browser, outage, clinic)
    typed = {"desktop": "Wai", "phone": "वाई"}
    for width, (page, _) in desks.items():
        page.goto(f"{outage.base}/patients/{patient.id}/edit")
        page.get_by_label("City / village").fill(typed[width])

    with outage.restarting():
        for width, (page, _) in desks.items():
            with page.expect_navigation():
                page.get_by_role("button", name="Save").click()
            assert page.locator("h1").inner_text() == "OPDesk is restarting"
            said = page.locator("article.error-page").inner_text()
            assert "Nothing was saved" in said or "may or may not have been saved" in said
            assert "What you typed is still in the form" in said
            assert "Back" in said
            assert "Waiting for OPDesk to come back" in said
            shot(page, f"outage-form-{width}")

    for width, (page, problems) in desks.items():
        # Back: the page says so, without a click.
        wait_for_text(page, "article.error-page h1", "OPDesk is back")
        said = page.inner_text("article.error-page")
        assert "OPDesk is restarting" not in said
        assert "then send it again" in said
        shot(page, f"outage-form-back-{width}")
        # The browser's Back returns to the form with what was typed still in it.
        page.go_back()
        page.wait_for_url(f"**/patients/{patient.id}/edit")
        city = page.get_by_label("City / village")
        assert city.input_value() == typed[width], "Chromium did not restore the form"
        assert "सुनीता" in page.locator("h1").inner_text()
        with page.expect_navigation():
            page.get_by_role("button", name="Save").click()
        page.wait_for_url(f"**/patients/{patient.id}")
        assert typed[width] in page.locator(".page-head").inner_text()
        assert unexpected(problems) == [], problems
        page.context.close()
