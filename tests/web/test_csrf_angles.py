"""CSRF from the angles a browser takes: a page's own form, an htmx request, another
site's page, the patient portal, and the API called with the session cookie.

``tests/identity/test_staff_sign_in.py`` shows the check once, on one admin form. Here:

- real forms (registering a patient, booking from the calendar, cancelling in the
  portal) posted without the token, with a wrong one, or with the token of another
  session are refused with 403 and write nothing; the same form with the session's own
  token goes through;
- htmx sends the token in the ``X-CSRF-Token`` header the page gives it; a missing or
  wrong header is refused, the right one accepted;
- a request whose ``Origin`` or ``Referer`` names another site is refused even with the
  right token, and so is signing in (or asking for a code, or holding a slot) from there;
- generated from the route table: every state-changing route, page or API, refuses a
  cookie session that does not send its token, writes nothing, and lets the same
  session through with it; so a new route that skips the check fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment
from opdesk.security.permissions import PERMISSIONS, ROLES, allowed
from opdesk.tenancy.models import Tenant
from tests.factories import (
    STAFF_PASSWORD,
    book,
    clinic_session,
    clinic_with_slots,
    csrf_of,
    free,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    patients,
    unique_mobile,
)
from tests.factories.web import (
    Declared,
    Records,
    SharedRecords,
    cookie_browser,
    declared_routes,
    htmx_csrf_of,
    portal_user_of,
    row_counts,
)

EXPIRED = "the form expired or came from elsewhere"
CROSS_SITE = "cross-site request refused"
EVIL = "https://evil.example"
# What a browser sends with a form, even one whose only field is the token.
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Browser:
    """A browser signed in with a cookie, and the token its pages carry."""

    client: TestClient
    token: str


def sign_in(app: FastAPI, db: Database, ident: Any, user: Any, stack: ExitStack) -> Browser:
    client = stack.enter_context(cookie_browser(app, open_session(db, ident, user)))
    page = client.get("/account")
    assert page.status_code == 200
    return Browser(client, csrf_of(page.text))


@dataclass
class Clinic:
    tenant: Tenant
    slots: list[Any]
    users: dict[str, Any]
    stack: ExitStack


@pytest.fixture(scope="module")
def clinic(db: Database, ident: Any) -> Iterator[Clinic]:
    """One clinic with a doctor's free slots, a user of every role, and a second front
    desk (a colleague whose token is valid, just not for someone else's session).
    """
    tenant, _doctor, slots = clinic_with_slots(db, ident, 8, make_tenant(db, "Token Clinic"))
    users = {role: make_user(db, ident, tenant, role) for role in ROLES}
    users["frontdesk 2"] = make_user(db, ident, tenant, "frontdesk")
    with ExitStack() as stack:
        yield Clinic(tenant, slots, users, stack)


def is_refused(response: Any, reason: str = EXPIRED) -> bool:
    return response.status_code == 403 and reason.lower() in response.text.lower()


def appointments_on(db: Database, tenant: Tenant, slot: Any) -> list[Appointment]:
    with clinic_session(db, tenant.id) as session:
        return list(
            session.execute(select(Appointment).where(Appointment.slot_id == slot.id)).scalars()
        )


def patients_with_first_name(db: Database, tenant: Tenant, first: str) -> int:
    with clinic_session(db, tenant.id) as session:
        found = session.execute(
            select(func.count()).select_from(Patient).where(Patient.name_first == first)
        )
        return int(found.scalar_one())


def wrong_tokens(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic, user: Any
) -> dict[str, str | None]:
    """Every token but the right one: none, garbage, and the (valid) tokens of the same
    user's other session and of a colleague's session.
    """
    stack = clinic.stack
    return {
        "no token": None,
        "an empty token": "",
        "a made-up token": "0" * 40,
        "the same user's other session's token": sign_in(app, db, ident, user, stack).token,
        "a colleague's token": sign_in(app, db, ident, clinic.users["frontdesk 2"], stack).token,
    }


def with_token(form: dict[str, str], token: str | None) -> dict[str, str]:
    return form if token is None else {**form, "csrf_token": token}


# --------------------------------------------------------------------------- page forms


def test_registering_a_patient_needs_this_sessions_token_and_writes_nothing_without(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    tenant, desk = clinic.tenant, clinic.users["frontdesk"]
    with ExitStack() as stack:
        browser = sign_in(app, db, ident, desk, stack)
        page = browser.client.get("/patients/new")
        assert page.status_code == 200
        form = {
            "name.first": "Meenakshi",
            "name.last": "Iyer",
            "phone": unique_mobile(),
            "age_years": "34",
            "gender": "female",
            "city": "Madurai",
        }
        wrong = wrong_tokens(app, db, ident, clinic, desk)
        before = row_counts(db, tenant.id)
        for what, token in wrong.items():
            refused = browser.client.post(
                "/patients/new", data=with_token(form, token), follow_redirects=False
            )
            assert is_refused(refused), f"{what}: {refused.status_code}"
            assert refused.headers["content-type"].startswith("text/html")
        assert row_counts(db, tenant.id) == before
        assert patients_with_first_name(db, tenant, "Meenakshi") == 0

        done = browser.client.post(
            "/patients/new", data=with_token(form, csrf_of(page.text)), follow_redirects=False
        )
        assert done.status_code == 303 and done.headers["location"].startswith("/patients/")
        assert patients_with_first_name(db, tenant, "Meenakshi") == 1


def test_booking_from_the_calendar_needs_this_sessions_token_and_books_nothing_without(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    tenant, desk, slot = clinic.tenant, clinic.users["frontdesk"], clinic.slots[0]
    (patient,) = patients(db, ident, tenant, 1)
    with ExitStack() as stack:
        browser = sign_in(app, db, ident, desk, stack)
        dialog = browser.client.get(f"/calendar/book?slot={slot.id}")
        assert dialog.status_code == 200
        form = {
            "slot_id": str(slot.id),
            "patient_id": str(patient.id),
            "visit_type": "consultation",
            "channel": "phone",
        }
        wrong = wrong_tokens(app, db, ident, clinic, desk)
        before = row_counts(db, tenant.id)
        for what, token in wrong.items():
            refused = browser.client.post(
                "/calendar/book", data=with_token(form, token), follow_redirects=False
            )
            assert is_refused(refused), f"{what}: {refused.status_code}"
        assert row_counts(db, tenant.id) == before
        assert appointments_on(db, tenant, slot) == []

        booked = browser.client.post(
            "/calendar/book", data=with_token(form, csrf_of(dialog.text)), follow_redirects=False
        )
        assert booked.status_code == 303
        assert [a.patient_id for a in appointments_on(db, tenant, slot)] == [patient.id]


def test_the_patient_portal_forms_need_this_sessions_token(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    tenant = clinic.tenant
    mine, theirs = patients(db, ident, tenant, 2)
    appointment = book(db, tenant, clinic.slots[1], mine)
    me = portal_user_of(db, tenant, mine.id)
    url = f"/me/appointments/{appointment.id}/cancel"
    with ExitStack() as stack:
        browser = sign_in(app, db, ident, me, stack)
        page = browser.client.get("/me/appointments")
        assert page.status_code == 200 and url in page.text
        bad = {
            "no token": None,
            "a made-up token": "f" * 40,
            "my other session's token": sign_in(app, db, ident, me, stack).token,
            "another patient's token": sign_in(
                app, db, ident, portal_user_of(db, tenant, theirs.id), stack
            ).token,
            "a staff member's token": sign_in(app, db, ident, clinic.users["admin"], stack).token,
        }
        before = row_counts(db, tenant.id)
        for what, token in bad.items():
            refused = browser.client.post(
                url, data=with_token({}, token), headers=FORM, follow_redirects=False
            )
            assert is_refused(refused), f"{what}: {refused.status_code}"
        assert row_counts(db, tenant.id) == before
        assert appointments_on(db, tenant, clinic.slots[1])[0].status == "confirmed"

        done = browser.client.post(url, data={"csrf_token": csrf_of(page.text), "confirmed": "yes"})
        assert done.status_code == 200 and "Your appointment is cancelled." in done.text
        assert appointments_on(db, tenant, clinic.slots[1])[0].status == "cancelled"


# --------------------------------------------------------------------------- htmx


def test_an_htmx_request_is_accepted_with_the_header_the_page_gives_and_refused_without(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    tenant, desk = clinic.tenant, clinic.users["frontdesk"]
    (patient,) = patients(db, ident, tenant, 1)
    appointment = book(db, tenant, clinic.slots[2], patient)
    url = f"/appointments/{appointment.id}/move"
    form = {"to": "checked-in", "back": "queue"}  # htmx sends the fields, the header the token
    with ExitStack() as stack:
        browser = sign_in(app, db, ident, desk, stack)
        page = browser.client.get("/queue")
        header = htmx_csrf_of(page.text)
        assert header == csrf_of(page.text)

        def move(token: str | None) -> Any:
            headers = {"HX-Request": "true"}
            if token is not None:
                headers["X-CSRF-Token"] = token
            return browser.client.post(url, data=form, headers=headers, follow_redirects=False)

        wrong = wrong_tokens(app, db, ident, clinic, desk)
        before = row_counts(db, tenant.id)
        for what, token in wrong.items():
            refused = move(token)
            assert is_refused(refused), f"{what}: {refused.status_code}"
        assert row_counts(db, tenant.id) == before
        assert appointments_on(db, tenant, clinic.slots[2])[0].status == "confirmed"

        moved = move(header)
        assert moved.status_code == 303
        assert moved.headers["HX-Redirect"] == moved.headers["location"]
        assert appointments_on(db, tenant, clinic.slots[2])[0].status == "checked-in"


def test_the_api_with_the_session_cookie_needs_the_header_and_a_bearer_token_does_not(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    tenant, desk = clinic.tenant, clinic.users["frontdesk"]

    def body(first: str) -> dict[str, Any]:
        return {
            "name": {"first": first},
            "phone": unique_mobile(),
            "ageYears": 40,
            "gender": "male",
        }

    with ExitStack() as stack:
        browser = sign_in(app, db, ident, desk, stack)
        wrong = wrong_tokens(app, db, ident, clinic, desk)
        before = row_counts(db, tenant.id)
        for what, token in wrong.items():
            headers = {} if token is None else {"X-CSRF-Token": token}
            refused = browser.client.post(
                "/api/v1/patients", json=body("Venkatesh"), headers=headers
            )
            assert is_refused(refused), f"{what}: {refused.status_code}"
            assert refused.headers["content-type"] == "application/problem+json"
        assert row_counts(db, tenant.id) == before

        made = browser.client.post(
            "/api/v1/patients", json=body("Venkatesh"), headers={"X-CSRF-Token": browser.token}
        )
        assert made.status_code == 201, made.text
        bearer_only = stack.enter_context(TestClient(app))
        made = bearer_only.post(
            "/api/v1/patients",
            json=body("Venkatesh"),
            headers={"Authorization": f"Bearer {open_session(db, ident, desk)}"},
        )
        assert made.status_code == 201, made.text
    assert patients_with_first_name(db, tenant, "Venkatesh") == 2


# --------------------------------------------------------------------------- other sites


def test_a_form_posted_from_another_site_is_refused_even_with_the_right_token(
    app: FastAPI, db: Database, ident: Any, settings: Settings, clinic: Clinic
) -> None:
    tenant, desk = clinic.tenant, clinic.users["frontdesk"]
    with ExitStack() as stack:
        browser = sign_in(app, db, ident, desk, stack)

        def register(first: str, headers: dict[str, str]) -> Any:
            form = {
                "name.first": first,
                "phone": unique_mobile(),
                "age_years": "50",
                "gender": "male",
                "csrf_token": browser.token,
            }
            return browser.client.post(
                "/patients/new", data=form, headers=headers, follow_redirects=False
            )

        before = row_counts(db, tenant.id)
        for headers in (
            {"Origin": EVIL},
            {"Origin": "null"},  # a sandboxed frame or a data: page
            {"Origin": "http://testserver.evil.example"},
            {"Referer": f"{EVIL}/prize"},
            {"Origin": EVIL, "Referer": "http://testserver/patients/new"},
        ):
            refused = register("Outsider", headers)
            assert is_refused(refused, CROSS_SITE), f"{headers}: {refused.status_code}"
        api = browser.client.post(
            "/api/v1/patients",
            json={"name": {"first": "Outsider"}, "ageYears": 5, "gender": "male"},
            headers={"X-CSRF-Token": browser.token, "Origin": EVIL},
        )
        assert is_refused(api, CROSS_SITE)
        assert row_counts(db, tenant.id) == before

        # This site, by the address the request came to or the one the clinic is served at.
        for headers in (
            {"Origin": "http://testserver"},
            {"Referer": "http://testserver/patients/new"},
            {"Origin": settings.base_url},
            {},
        ):
            assert register("Insider", headers).status_code == 303, headers
    assert patients_with_first_name(db, tenant, "Insider") == 4
    assert patients_with_first_name(db, tenant, "Outsider") == 0


def test_signing_in_asking_for_a_code_or_holding_a_slot_from_another_site_is_refused(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    """No session yet, so no token: the origin is what keeps another site from signing
    a browser in to its own account, texting codes or holding every slot.
    """
    tenant, admin = clinic.tenant, clinic.users["admin"]
    phone = unique_mobile()
    make_patient(db, ident, tenant, phone=phone)
    slot = clinic.slots[3]
    posts = [
        ("/sign-in", {"clinic": tenant.slug, "email": admin.email, "password": STAFF_PASSWORD}),
        ("/patient/sign-in", {"phone": phone}),
        (f"/c/{tenant.slug}/book/hold", {"slot_id": str(slot.id)}),
    ]
    with ExitStack() as stack:
        anonymous = stack.enter_context(cookie_browser(app, None))
        before = row_counts(db, tenant.id)
        for url, form in posts:
            for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/"}):
                refused = anonymous.post(url, data=form, headers=headers, follow_redirects=False)
                assert is_refused(refused, CROSS_SITE), f"{url} {headers}: {refused.status_code}"
                assert "set-cookie" not in refused.headers
        assert row_counts(db, tenant.id) == before
        assert slot.id in {s.id for s in free(db, tenant, slot)}

        signed = anonymous.post(
            "/sign-in", data=posts[0][1], headers={"Origin": "http://testserver"}
        )
        assert signed.status_code == 200 and signed.url.path == "/app"


# --------------------------------------------------------------------------- every route


def actor_for(route: Declared) -> str:
    """A role that may take the route, so only the token can be why it is refused."""
    if route.action not in PERMISSIONS:
        return "admin"  # public and sign-in steps: anyone signed in
    return next(r for r in ("admin", "frontdesk", "doctor", *ROLES) if allowed(r, route.action))


def send(
    client: TestClient,
    route: Declared,
    path: str,
    token: str | None,
    *,
    htmx: bool = False,
    origin: str | None = None,
) -> Any:
    """The route called as its own client would: a page with a form (the token in it),
    the API with JSON (the token in the header). ``htmx`` sends the form with the token
    in the header instead, as htmx does; ``origin`` names the site the request came from.
    """
    headers = {"Origin": origin} if origin else {}
    if route.is_api or htmx:
        headers |= {"X-CSRF-Token": token} if token is not None else {}
    if route.is_api:
        return client.request(route.method, path, json={}, headers=headers)
    headers |= FORM | ({"HX-Request": "true"} if htmx else {})
    form = {"csrf_token": token} if token is not None and not htmx else {}
    return client.request(route.method, path, data=form, headers=headers, follow_redirects=False)


def unsafe_routes(app: FastAPI) -> list[Declared]:
    return [r for r in declared_routes(app) if r.unsafe]


def test_every_state_changing_route_refuses_a_cookie_session_without_its_token(
    app: FastAPI, db: Database, ident: Any, settings: Settings, clinic: Clinic
) -> None:
    """Each route is asked with real records of the clinic behind its ids, by a role
    that may take it (a portal route by the patient whose record it is), so the token
    is the only thing wrong; then, once every route has refused, each is asked again
    with the token and is not refused.
    """
    tenant = clinic.tenant
    shared = SharedRecords(db, ident, tenant, settings.data_dir / "files")
    stranger = sign_in(app, db, ident, clinic.users["admin"], clinic.stack).token
    browsers: dict[Any, Browser] = {}  # one session per user, while it lasts
    problems: list[str] = []
    routes = unsafe_routes(app)
    with ExitStack() as stack:

        def user_of(route: Declared, records: Records) -> Any:
            if route.action == "portal:self" and records.owner is not None:
                return portal_user_of(db, tenant, records.owner)
            return clinic.users[actor_for(route)]

        def browser_of(user: Any) -> Browser:
            if user.id not in browsers:
                browsers[user.id] = sign_in(app, db, ident, user, stack)
            return browsers[user.id]

        for route in routes:
            path, records = shared.fill(route.path)
            browser = browser_of(user_of(route, records))
            before = row_counts(db, tenant.id)
            attempts = {
                "no token": send(browser.client, route, path, None),
                "another session's token": send(browser.client, route, path, stranger),
            }
            if not route.is_api:
                attempts["htmx with another session's header"] = send(
                    browser.client, route, path, stranger, htmx=True
                )
            for what, response in attempts.items():
                if not is_refused(response):
                    problems.append(f"{route} with {what}: {response.status_code}")
            cross = send(browser.client, route, path, browser.token, origin=EVIL)
            if not is_refused(cross, CROSS_SITE):
                problems.append(f"{route} from another site: {cross.status_code}")
            if row_counts(db, tenant.id) != before:
                problems.append(f"{route}: refused, yet the database changed")

        # The same requests with the session's own token are not refused: the token was
        # the reason. (They may act: a later route may find its record consumed.)
        for route in routes:
            path, records = shared.fill(route.path)
            user = user_of(route, records)
            browser = browser_of(user)
            with_its_token = send(browser.client, route, path, browser.token)
            if with_its_token.status_code == 403 or with_its_token.status_code >= 500:
                problems.append(f"{route} with its token: {with_its_token.status_code}")
            if route.action not in PERMISSIONS or route.action == "account:self":
                del browsers[user.id]  # it may have signed out
    assert problems == [], "\n".join(problems)
    assert len(routes) >= 90, "pages and API alike"
