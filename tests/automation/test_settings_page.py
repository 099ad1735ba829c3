"""The admin page "Reminders and messages": it shows the clinic's settings with a sentence
saying what each does, saves the whole form audited, shows a bad value beside its field
(named as labelled) with nothing saved, and is the admin's alone.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.scheduling.service import VisitType
from opdesk.tenancy.models import Tenant
from tests.factories import csrf_of, make_doctor, make_user, open_session
from tests.factories.clinics import clinic_session
from tests.factories.web import browser_for

PAGE = "/admin/reminders"
VACCINATION = VisitType(code="vaccination", label="टीकाकरण", minutes=10)
CONSULTATION = VisitType(code="consultation", label="परामर्श", minutes=15)


def signed_in(app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, role)))


@pytest.fixture
def admin(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> TestClient:
    make_doctor(db, ident, tenant, visit_types=(CONSULTATION, VACCINATION))
    return signed_in(app, db, ident, tenant, "admin")


def stored(db: Database, tenant: Tenant) -> dict[str, Any]:
    with clinic_session(db, tenant.id) as session:
        return dict(session.get_one(Tenant, tenant.id).automation_settings)


def settings_events(db: Database, tenant: Tenant) -> int:
    with clinic_session(db, tenant.id) as session:
        rows = session.execute(
            select(AuditEvent.diff).where(
                AuditEvent.entity_collection == "tenants", AuditEvent.action == "update"
            )
        ).scalars()
        return sum("automationSettings" in json.dumps(diff) for diff in rows)


def the_form(**changes: str) -> dict[str, str]:
    """The form as the page first shows it (the defaults), with ``changes``."""
    form = {
        "reminders.24h.on": "on",
        "reminders.24h.hours": "24",
        "reminders.2h.on": "on",
        "reminders.2h.hours": "2",
        "noShowGraceMinutes": "15",
        "quietHours.start": "21:00",
        "quietHours.end": "08:00",
    }
    for code in ("consultation", "vaccination"):
        for key in ("24h", "2h"):
            form[f"visitTypes.{code}.reminders.{key}.on"] = ""
            form[f"visitTypes.{code}.reminders.{key}.hours"] = ""
    form.update(changes)
    return {k: v for k, v in form.items() if v != "<unticked>"}


def post(browser: TestClient, form: dict[str, str]) -> Any:
    token = csrf_of(browser.get(PAGE).text)
    return browser.post(PAGE, data={**form, "csrf_token": token}, follow_redirects=False)


def test_the_page_shows_the_settings_what_each_does_and_the_visit_types_by_name(
    admin: TestClient,
) -> None:
    page = admin.get(PAGE)
    assert page.status_code == 200
    html = page.text
    assert "Patients who have not checked in 15 minutes after their slot ends are marked" in html
    assert "Patients get this reminder 24 hours before their appointment starts" in html
    assert "Patients get this reminder 2 hours before their appointment starts" in html
    assert "From 21:00 to 08:00 (clinic time) reminders and other routine messages wait" in html
    assert "टीकाकरण" in html and "परामर्श" in html
    assert 'name="visitTypes.vaccination.reminders.2h.on"' in html
    assert 'href="/admin/reminders"' in html  # in the admin menu
    assert the_form() == the_form()  # (the helper's defaults match the page's)
    for name, value in the_form().items():
        if name.endswith(".on") and name.startswith("reminders."):
            assert f'name="{name}" value="on"' in html
        elif not name.endswith(".on"):
            assert f'name="{name}"' in html and f'value="{value}"' in html


def test_saving_the_form_changes_the_settings_audited_and_says_so(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    answer = post(
        admin,
        the_form(
            **{
                "reminders.24h.on": "<unticked>",
                "reminders.2h.hours": "3",
                "visitTypes.vaccination.reminders.2h.on": "off",
                "visitTypes.consultation.reminders.24h.hours": "48",
                "noShowGraceMinutes": "40",
                "quietHours.start": "22:30",
                "quietHours.end": "07:00",
            }
        ),
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == PAGE
    assert stored(db, tenant) == {
        "reminders": {"24h": {"on": False, "hours": 24}, "2h": {"on": True, "hours": 3}},
        "visitTypes": {
            "consultation": {"reminders": {"24h": {"hours": 48}}},
            "vaccination": {"reminders": {"2h": {"on": False}}},
        },
        "noShowGraceMinutes": 40,
        "quietHours": {"start": "22:30", "end": "07:00"},
    }
    assert settings_events(db, tenant) == 1
    shown = admin.get(PAGE).text
    assert "Reminder and message settings saved." in shown
    assert "Patients who have not checked in 40 minutes after their slot ends" in shown
    assert "Off: patients do not get this reminder." in shown
    assert "From 22:30 to 07:00 (clinic time)" in shown
    assert '<option value="off" selected>Off</option>' in shown


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"noShowGraceMinutes": "500"},
            "No-show grace period (minutes): enter a whole number of minutes from 0 to 120",
        ),
        (
            {"reminders.24h.hours": "0"},
            "24 h reminder: hours before the visit: enter a whole number of hours from 1 to 72",
        ),
        (
            {"reminders.2h.hours": "two"},
            "2 h reminder: hours before the visit: enter a whole number of hours from 1 to 72",
        ),
        (
            {"visitTypes.vaccination.reminders.24h.hours": "100"},
            "टीकाकरण: 24 h reminder, hours before: enter a whole number of hours from 1 to 72",
        ),
        ({"quietHours.start": "25:00"}, "Quiet hours from: enter a time as HH:MM"),
        (
            {"quietHours.start": "08:00"},
            "Quiet hours until: choose a time other than the start of quiet hours",
        ),
    ],
)
def test_a_bad_value_shows_beside_its_field_by_its_label_and_nothing_is_saved(
    admin: TestClient, db: Database, tenant: Tenant, changes: dict[str, str], message: str
) -> None:
    answer = post(admin, the_form(**{"noShowGraceMinutes": "30", **changes}))
    assert answer.status_code == 422
    html = answer.text
    assert message in html
    assert 'aria-invalid="true"' in html
    for value in changes.values():
        assert f'value="{value}"' in html  # what was typed stays
    assert stored(db, tenant) == {}  # nothing saved, not even the good grace of 30
    assert settings_events(db, tenant) == 0


@pytest.mark.parametrize("role", ["frontdesk", "doctor", "accounts"])
def test_only_an_admin_sees_or_saves_the_page(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str
) -> None:
    staff = signed_in(app, db, ident, tenant, role)
    assert staff.get(PAGE).status_code == 403
    home = staff.get("/app").text
    assert 'href="/admin/reminders"' not in home
    token = csrf_of(home)
    answer = staff.post(
        PAGE,
        data={**the_form(noShowGraceMinutes="5"), "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert stored(db, tenant) == {}
