"""Every message a person sees on a page names the field as the form labels it and says
what to do: no pydantic wording, no API field names, no action codes, no UUID parsing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from jinja2 import ChoiceLoader, DictLoader
from pydantic import BaseModel, Field, ValidationError

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity.service import Identity
from opdesk.security.crypto import StaticKeyring
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import DbSession
from opdesk.web.pages import attempt, render
from opdesk.web.templating import field_label, form_errors, humanize, page_labels
from tests.factories import bearer, csrf_of, make_doctor, make_user, open_session
from tests.factories.web import browser_for

FORM_PAGE = """{% extends "base.html" %}{% block content %}
{% from "forms.html" import field, error_summary %}
<form method="post" action="/_test/waitlist">
  {{ error_summary(errors) }}
  <label for="wait-from_date">From <input id="wait-from_date" name="from_date" type="date"></label>
  <label for="wait-until_date">Until <span aria-hidden="true" class="req">*</span>
    <input id="wait-until_date" name="until_date" type="date"></label>
  {{ field("name.first", "First name", errors, values, required=True) }}
</form>{% endblock %}"""


def form_router() -> APIRouter:
    router = APIRouter()

    @router.get("/_test/waitlist")
    def page(request: Request) -> Response:
        return render(request, "test/form.html")

    @router.post("/_test/waitlist")
    def join(request: Request, session: DbSession) -> Response:
        def refused() -> None:
            raise InvalidInput([FieldError("untilDate", "must be on or after fromDate")])

        return attempt(request, session, refused, done="/_test/waitlist", message="Added.")

    @router.post("/_test/name")
    def named(request: Request, first: Annotated[str, Form(min_length=1)]) -> Response:
        class Person(BaseModel):
            first: str = Field(min_length=1)

        try:
            Person(first=first.strip())
        except ValidationError as exc:
            errors = {f"name.{k}": v for k, v in form_errors(exc).items()}
            return render(request, "test/form.html", 422, errors=errors)
        return render(request, "test/form.html")

    return router


@pytest.fixture(scope="module")
def form_app(settings: Settings, db: Database, keyring: StaticKeyring) -> FastAPI:
    app = create_app(settings, database=db, keyring=keyring)
    app.include_router(form_router())
    env = app.state.services.pages.env
    env.loader = ChoiceLoader([DictLoader({"test/form.html": FORM_PAGE}), env.loader])
    return app


@pytest.fixture
def browser(form_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(form_app) as client:
        yield client


CODE_SPEAK = (
    "String should have",
    "Input should be",
    "untilDate",
    "fromDate",
    "templates.0",
    "may not do",
    "users:read",
    "path.patient_id",
    "valid UUID",
    "Not Found",
)


def assert_plain(html: str) -> None:
    for words in CODE_SPEAK:
        assert words not in html, words


def test_a_refused_form_names_its_fields_as_the_page_labels_them(browser: TestClient) -> None:
    page = browser.post("/_test/waitlist")
    assert page.status_code == 200  # back on the form after the redirect
    assert "Until: must be on or after “From”." in page.text
    assert_plain(page.text)


def test_an_empty_required_field_says_fill_it_in_under_its_label(browser: TestClient) -> None:
    page = browser.post("/_test/name", data={"first": "   "})
    assert page.status_code == 422
    assert "First name: fill this in" in page.text  # the summary at the top
    assert 'class="field-error">Fill this in</small>' in page.text  # under the field
    assert_plain(page.text)


def test_a_page_form_the_server_cannot_read_gets_a_page_in_plain_words(
    browser: TestClient,
) -> None:
    page = browser.post("/_test/name", data={"first": ""})
    assert page.status_code == 422
    assert "Please check what you entered" in page.text
    assert "First: fill this in" in page.text
    assert_plain(page.text)


def test_pydantic_wording_is_replaced_with_what_to_do() -> None:
    class Typed(BaseModel):
        name: str = Field(min_length=1)
        code: str = Field(min_length=6, max_length=6)
        age: int = Field(ge=0, le=125)
        kind: str = Field(pattern="^[a-z]+$")

    with pytest.raises(ValidationError) as caught:
        Typed(name="", code="12", age=300, kind="X!")
    assert form_errors(caught.value) == {
        "name": "fill this in",
        "code": "enter at least 6 characters",
        "age": "enter 125 or less",
        "kind": "check the format: some characters are not allowed here",
    }


def test_labels_are_read_from_the_page_and_api_names_matched_to_them() -> None:
    labels = page_labels(
        '<label for="a">Mobile number <span aria-hidden="true">*</span>'
        '<input id="a" name="phone"><small>is required</small></label>'
        '<label>Doctor <select name="doctor_id"><option>Dr. A</option></select></label>'
        '<input name="end_time_0" aria-label="To, row 1">'
    )
    assert labels["phone"] == "Mobile number"
    assert labels["doctor_id"] == "Doctor"
    assert field_label("templates.0.endTime", labels) == "To, row 1"
    assert field_label("doctorId", labels) == "Doctor"
    # With no form to ask, the name in words.
    assert humanize("untilDate") == "Until date"
    assert humanize("templates.1.visitTypes") == "Visit types, row 2"
    assert humanize("path.patient_id") == "Patient"


def test_a_role_without_access_gets_a_page_that_says_whom_to_ask(
    app: FastAPI, db: Database, ident: Identity, tenant: Tenant
) -> None:
    doctor = make_user(db, ident, tenant, "doctor")
    token = open_session(db, ident, doctor)
    with browser_for(app, token) as browser:
        page = browser.get("/admin/users")
        assert page.status_code == 403
        assert "You don&#39;t have access to this page" in page.text
        assert "ask your clinic&#39;s admin" in page.text
        assert_plain(page.text)
        # The API keeps the precise action, in a field of its own.
        api = browser.get("/api/v1/users", headers=bearer(token))
        assert api.status_code == 403
        assert api.json()["action"] == "users:read"


def test_a_malformed_id_in_a_page_address_is_a_record_not_found_page(
    app: FastAPI, db: Database, ident: Identity, tenant: Tenant
) -> None:
    desk = make_user(db, ident, tenant, "frontdesk")
    with browser_for(app, open_session(db, ident, desk)) as browser:
        page = browser.get("/patients/not-a-uuid")
        assert page.status_code == 404
        assert "Record not found" in page.text
        assert_plain(page.text)
        # The API still names the parameter and the reason.
        api = browser.get("/api/v1/patients/not-a-uuid")
        assert api.status_code == 422
        assert api.json()["errors"][0]["field"] == "path.patient_id"


def test_an_unknown_address_is_a_page_not_found_page(client: TestClient) -> None:
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert "Page not found" in page.text
    assert "There is no page at this address" in page.text
    assert_plain(page.text)


def test_doctor_hours_name_the_row_and_column_as_the_table_labels_them(
    app: FastAPI, db: Database, ident: Identity, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    admin = make_user(db, ident, tenant, "admin")
    with browser_for(app, open_session(db, ident, admin)) as browser:
        url = f"/admin/doctors/{doctor.id}"
        token = csrf_of(browser.get(url).text)
        page = browser.post(
            f"{url}/hours",
            data={
                "csrf_token": token,
                "rows": "1",
                "weekday_0": "0",
                "start_time_0": "13:00",
                "end_time_0": "09:00",
                "slot_minutes_0": "15",
                "buffer_before_0": "0",
                "buffer_after_0": "0",
                "visit_types_0": doctor.visit_types[0]["code"],
            },
        )
        assert "To, row 1: must be after the start time." in page.text
        assert_plain(page.text)
