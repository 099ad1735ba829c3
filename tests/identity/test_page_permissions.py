"""The permission table over the pages, as a browser reaches them: with a cookie session
and the form's CSRF token.

``test_route_permissions.py`` calls every route with a bearer token and random ids. A
browser sends neither: its session is a cookie, its forms carry a CSRF token, and its
pages name real records. So here, for every page route (not ``/api/``) that declares an
action, with a real record of the clinic behind every id in its path:

- every role that lacks the action gets the 403 error page saying so, a visitor who is
  not signed in is sent to sign in (303, ``HX-Redirect`` too), a half-signed-in session
  is sent to finish signing in, and none of them changes anything;
- every role that holds the action is let through (a portal page by the patient whose
  record it names).

A page route with no action of the table fails unless it is listed in ``OPEN_PAGES``,
and every page route must sit in an area of ``AREAS``, which says, independently of the
table, which roles may ever reach it (so "front desk may open an admin page" fails even
when the route's declaration or the table is what changed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.security.permissions import (
    DEV_ONLY,
    PERMISSIONS,
    PUBLIC,
    ROLES,
    SIGNING_IN,
    allowed,
)
from opdesk.tenancy.models import Tenant
from tests.factories import csrf_of, make_tenant, make_user, open_session
from tests.factories.web import (
    Declared,
    SharedRecords,
    cookie_browser,
    declared_routes,
    portal_user_of,
    row_counts,
)

# Page routes that need no permission, each with the pseudo-action it declares. A new
# page route that declares none of the table's actions fails until it is listed here.
OPEN_PAGES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # The outage page's poll: says only whether the database answers again
    # (tests/faults/test_database_outage.py).
    ("GET", "/back"): PUBLIC,
    # A scraper's bearer token (OPDESK_METRICS_TOKEN), not a person's permission:
    # tests/ops/test_metrics.py.
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/find"): PUBLIC,
    ("GET", "/c/{slug}"): PUBLIC,
    ("GET", "/c/{slug}/book"): PUBLIC,
    ("POST", "/c/{slug}/book/hold"): PUBLIC,
    ("GET", "/c/{slug}/book/confirm"): PUBLIC,
    ("GET", "/s/{token}"): PUBLIC,
    ("GET", "/sign-in"): PUBLIC,
    ("POST", "/sign-in"): PUBLIC,
    ("GET", "/set-password"): PUBLIC,
    ("POST", "/set-password"): PUBLIC,
    ("GET", "/patient/sign-in"): PUBLIC,
    ("POST", "/patient/sign-in"): PUBLIC,
    ("GET", "/patient/sign-in/code"): PUBLIC,
    ("POST", "/patient/sign-in/code"): PUBLIC,
    ("POST", "/patient/sign-in/clinic"): PUBLIC,
    ("GET", "/patient/sign-up"): PUBLIC,
    ("POST", "/patient/sign-up"): PUBLIC,
    ("GET", "/sign-in/mfa"): SIGNING_IN,
    ("POST", "/sign-in/mfa"): SIGNING_IN,
    ("GET", "/sign-in/device"): SIGNING_IN,
    ("GET", "/sign-in/device/status"): SIGNING_IN,
    ("POST", "/sign-out"): SIGNING_IN,
    ("GET", "/account/mfa"): SIGNING_IN,
    ("POST", "/account/mfa/start"): SIGNING_IN,
    ("POST", "/account/mfa/confirm"): SIGNING_IN,
    ("GET", "/dev/inbox"): DEV_ONLY,
    # what a pharmacy sees on scanning a prescription's QR
    ("GET", "/rx/verify/{token}"): PUBLIC,
}

# Who may ever reach the pages under each first path segment, written down apart from
# the permission table: a route's action may grant fewer roles, never more.
DESK = frozenset({"frontdesk", "doctor", "pharmacy", "accounts", "admin"})
AREAS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin"}),
    "me": frozenset({"patient"}),
    "c": frozenset({"patient"}),  # a clinic's public pages; confirming a booking
    "my-queue": frozenset({"doctor"}),
    # the consultation; the desk may record vitals on it before the doctor
    "consult": frozenset({"frontdesk", "doctor"}),
    # lab and imaging orders: the desk follows them; results and diet plans are doctors'
    "orders": frozenset({"frontdesk", "doctor", "admin"}),
    "visits": frozenset({"doctor"}),
    "diet-plans": frozenset({"doctor"}),
    "diet-templates": frozenset({"doctor", "admin"}),
    # prescriptions are written by doctors and read by the pharmacy
    "prescriptions": frozenset({"doctor", "pharmacy"}),
    "pharmacy": frozenset({"doctor", "pharmacy"}),
    "patients": DESK,
    "calendar": DESK,
    "queue": DESK,
    "waitlist": DESK,
    "appointments": DESK,
    # invoices, payments and accounts: the desk and the accounts staff; admins read them
    "billing": frozenset({"frontdesk", "accounts", "admin"}),
    # the clinic's figures: accounts and admins; a doctor their own (never the desk)
    "reports": frozenset({"doctor", "accounts", "admin"}),
    "app": frozenset(ROLES),
    "account": frozenset(ROLES),
}


def page_routes(app: FastAPI) -> list[Declared]:
    return [r for r in declared_routes(app) if not r.is_api]


def guarded_pages(app: FastAPI) -> list[Declared]:
    return [r for r in page_routes(app) if r.action in PERMISSIONS]


def holders(action: str) -> list[str]:
    return [role for role in ROLES if allowed(role, action)]


def area_of(path: str) -> str:
    return path.split("/")[1]


def test_every_page_declares_an_action_of_the_table_or_is_listed_open(app: FastAPI) -> None:
    problems = []
    for route in page_routes(app):
        listed = OPEN_PAGES.get((route.method, route.path))
        if route.action in PERMISSIONS:
            if listed is not None:
                problems.append(f"{route}: listed open, yet it declares a permission")
        elif listed != route.action:
            problems.append(f"{route}: declares no permission and is not listed open as such")
    present = {(r.method, r.path) for r in page_routes(app)}
    problems += [f"{m} {p}: listed open but gone" for m, p in OPEN_PAGES if (m, p) not in present]
    assert problems == [], "\n".join(problems)
    assert len(guarded_pages(app)) >= 50


def test_no_page_grants_more_roles_than_its_area_allows(app: FastAPI) -> None:
    problems = []
    for route in guarded_pages(app):
        area = area_of(route.path)
        if area not in AREAS:
            problems.append(f"{route}: say in AREAS who may ever reach /{area} pages")
            continue
        beyond = sorted(set(holders(route.action)) - AREAS[area])
        if beyond:
            problems.append(f"{route}: {', '.join(beyond)} may reach it; /{area} is not theirs")
        if not holders(route.action):
            problems.append(f"{route}: no role holds {route.action}")
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------- the matrix


def sign_in_page(path: str) -> str:
    """Where the app sends a browser that is not signed in: patients' pages (the portal, a
    clinic's booking pages) to the patient sign-in, at that clinic when the path names one.
    """
    if path.startswith("/me"):
        return f"/patient/sign-in?{urlencode({'next': path})}"
    if path.startswith("/c/"):
        return f"/patient/sign-in?{urlencode({'next': path, 'clinic': path.split('/')[2]})}"
    return f"/sign-in?{urlencode({'next': path})}"


@dataclass
class Visitor:
    """A browser with a cookie session (or none) and the CSRF token its pages carry.

    ``sent_to`` is where a page it may not see sends it (by the page's path); without
    it, the page answers 403.
    """

    who: str
    browser: TestClient
    token: str = ""
    sent_to: Callable[[str], str] | None = None

    def call(self, route: Declared, path: str) -> Any:
        if route.method == "GET":
            return self.browser.get(path, follow_redirects=False)
        data = {"csrf_token": self.token} if self.token else {}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}  # as a browser's form
        return self.browser.request(
            route.method, path, data=data, headers=headers, follow_redirects=False
        )

    def refused(self, route: Declared, path: str, response: Any) -> str | None:
        """What is wrong with the answer to a page it may not have, or None."""
        status = response.status_code
        if self.sent_to is not None:
            expected = self.sent_to(path)
            location = response.headers.get("location")
            # htmx is told to load the sign-in page whole, not to swap it into the page.
            if status == 303 and location == expected == response.headers.get("hx-redirect"):
                return None
            return f"expected a 303 to {expected} (and HX-Redirect), got {status} {location}"
        is_page = response.headers.get("content-type", "").startswith("text/html")
        # The page says whom to ask, in plain words (the action code is for the API).
        refusal = "You don&#39;t have access to this page"
        if status == 403 and is_page and refusal in response.text:
            return None
        return f"expected the 403 page refusing {route.action}, got {status}"


def signed_in(
    app: FastAPI, db: Database, ident: Any, user: Any, stack: ExitStack, stage: str = "active"
) -> Visitor:
    browser = stack.enter_context(cookie_browser(app, open_session(db, ident, user, stage)))
    if stage == "active":
        page = browser.get("/account")
        visitor = Visitor(user.role, browser)
    else:
        page = browser.get(STAGE_PAGE[stage])
        visitor = Visitor(f"{user.role} at {stage}", browser, sent_to=lambda _: STAGE_PAGE[stage])
    assert page.status_code == 200, f"{visitor.who} cannot open a page with a token"
    visitor.token = csrf_of(page.text)
    return visitor


STAGE_PAGE = {"mfa": "/sign-in/mfa"}


@dataclass
class Clinic:
    tenant: Tenant
    visitors: dict[str, Visitor]
    anonymous: Visitor
    half_signed_in: Visitor


@pytest.fixture(scope="module")
def clinic(app: FastAPI, db: Database, ident: Any) -> Iterator[Clinic]:
    """One clinic, one user of every role, each signed in once for the whole module;
    an admin half-way through signing in (the code still to give); a visitor.
    """
    tenant = make_tenant(db, "Page Matrix Clinic")
    with ExitStack() as stack:
        visitors = {
            role: signed_in(app, db, ident, make_user(db, ident, tenant, role), stack)
            for role in ROLES
        }
        admin = make_user(db, ident, tenant, "admin")
        half = signed_in(app, db, ident, admin, stack, stage="mfa")
        browser = stack.enter_context(cookie_browser(app, None))
        anonymous = Visitor("anonymous", browser, sent_to=sign_in_page)
        yield Clinic(tenant, visitors, anonymous, half)


def let_through(response: Any) -> str | None:
    status = response.status_code
    location = response.headers.get("location", "")
    if status in (401, 403) or status >= 500:
        return f"got {status}"
    if status == 303 and location.startswith(("/sign-in", "/patient/sign-in", "/account/mfa")):
        return f"sent to {location}"
    return None


def test_every_role_gets_exactly_the_pages_the_table_gives_it(
    app: FastAPI, db: Database, ident: Any, settings: Settings, clinic: Clinic
) -> None:
    """First every refusal, on intact records; then every role that holds the action,
    reading pages before any form acts on the records they share.
    """
    tenant = clinic.tenant
    shared = SharedRecords(db, ident, tenant, settings.data_dir / "files")
    routes = guarded_pages(app)
    problems: list[str] = []
    refused = served = 0
    for route in routes:
        path, _records = shared.fill(route.path)
        lacking = [clinic.visitors[r] for r in ROLES if not allowed(r, route.action)]
        before = row_counts(db, tenant.id)
        for visitor in [*lacking, clinic.anonymous, clinic.half_signed_in]:
            problem = visitor.refused(route, path, visitor.call(route, path))
            refused += 1
            if problem:
                problems.append(f"{route} as {visitor.who}: {problem}")
        if row_counts(db, tenant.id) != before:
            problems.append(f"{route}: refused, yet the database changed")
    with ExitStack() as own:
        owners: dict[Any, Visitor] = {}
        for route in sorted(routes, key=lambda r: r.method != "GET"):
            path, records = shared.fill(route.path)
            for role in holders(route.action):
                visitor = clinic.visitors[role]
                if role == "patient" and records.owner is not None:
                    # A patient reaches their own records only: the records' patient.
                    if records.owner not in owners:
                        owner = portal_user_of(db, tenant, records.owner)
                        owners[records.owner] = signed_in(app, db, ident, owner, own)
                    visitor = owners[records.owner]
                problem = let_through(visitor.call(route, path))
                served += 1
                if problem:
                    problems.append(f"{route} as {role}: expected access, {problem}")
    assert problems == [], "\n".join(problems)
    assert refused > 200 and served > 50
