"""The admin's doctor forms (issue 10, item 24): visit types are ticked from a list, not
typed as codes; a blank hours row has no day and is left out; a row with times needs
its day chosen.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from opdesk.db import Database
from opdesk.scheduling import service
from opdesk.scheduling.models import DoctorProfile
from opdesk.tenancy.models import Tenant
from tests.factories import (
    browser_for,
    clinic_session,
    csrf_of,
    make_doctor,
    make_user,
    open_session,
)

FOLLOW_UP = service.VisitType("follow-up", "Follow-up", 10)
CONSULT = service.VisitType("consultation", "Consultation", 15)


def admin_browser(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> Any:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, "admin")))


def hours_of(db: Database, tenant: Tenant, doctor: DoctorProfile) -> list[tuple[Any, ...]]:
    with clinic_session(db, tenant.id) as session:
        return [
            (t.weekday, t.start_time.strftime("%H:%M"), t.end_time.strftime("%H:%M"), t.visit_types)
            for t in service.templates_of(session, doctor.id)
        ]


def row(i: int, **fields: Any) -> dict[str, Any]:
    return {f"{name}_{i}": value for name, value in fields.items()}


def test_the_hours_rows_offer_the_doctors_visit_types_to_tick(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant, visit_types=(CONSULT, FOLLOW_UP))
    url = f"/admin/doctors/{doctor.id}"
    with admin_browser(app, db, ident, tenant) as browser:
        page = browser.get(url)
        assert not re.search(r'<input name="visit_types_\d+"', page.text), "no typed codes"
        assert (
            '<input type="checkbox" name="visit_types_0" value="follow-up" checked> Follow-up'
            in (page.text)
        )
        saved = browser.post(
            f"{url}/hours",
            data={
                "csrf_token": csrf_of(page.text),
                "rows": "1",
                **row(0, weekday="2", start_time="17:00", end_time="19:00", slot_minutes="15"),
                "visit_types_0": ["consultation", "follow-up"],
            },
        )
        assert "Weekly hours saved" in saved.text
        assert hours_of(db, tenant, doctor) == [
            (2, "17:00", "19:00", ["consultation", "follow-up"])
        ]
        only = browser.post(
            f"{url}/hours",
            data={
                "csrf_token": csrf_of(saved.text),
                "rows": "1",
                **row(0, weekday="2", start_time="17:00", end_time="19:00", slot_minutes="15"),
                "visit_types_0": "follow-up",
            },
        )
        assert "Weekly hours saved" in only.text
        assert 'name="visit_types_0" value="consultation">' in only.text  # shown unticked
        assert hours_of(db, tenant, doctor) == [(2, "17:00", "19:00", ["follow-up"])]


def test_a_row_with_no_visit_type_ticked_or_an_unknown_one_is_refused(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    url = f"/admin/doctors/{doctor.id}"
    with admin_browser(app, db, ident, tenant) as browser:
        token = csrf_of(browser.get(url).text)
        base = {
            "csrf_token": token,
            "rows": "1",
            **row(0, weekday="0", start_time="09:00", end_time="11:00", slot_minutes="15"),
        }
        none = browser.post(f"{url}/hours", data=base)
        assert none.status_code == 422
        assert "Visit types, row 1: tick at least one." in none.text
        unknown = browser.post(f"{url}/hours", data={**base, "visit_types_0": "surgery"})
        assert unknown.status_code == 422
        assert "Visit types, row 1: tick the doctor&#39;s visit types only." in unknown.text
    assert hours_of(db, tenant, doctor) == []


def test_blank_rows_have_no_day_chosen_and_are_left_out(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    url = f"/admin/doctors/{doctor.id}"
    with admin_browser(app, db, ident, tenant) as browser:
        page = browser.get(url)
        days = re.findall(r'<select name="weekday_\d+".*?</select>', page.text)
        assert len(days) == 3
        for select in days:
            assert '<option value="" selected>Choose…</option>' in select
            assert "selected>Monday" not in select
        saved = browser.post(
            f"{url}/hours",
            data={
                "csrf_token": csrf_of(page.text),
                "rows": "3",
                # a blank first row (slot minutes and ticks left as the page drew them)
                **row(0, weekday="", start_time="", end_time="", slot_minutes="15"),
                "visit_types_0": "consultation",
                **row(1, weekday="4", start_time="10:00", end_time="12:00", slot_minutes="15"),
                "visit_types_1": "consultation",
                **row(2, weekday="", start_time="", end_time="", slot_minutes="15"),
            },
        )
        assert "Weekly hours saved" in saved.text
    assert hours_of(db, tenant, doctor) == [(4, "10:00", "12:00", ["consultation"])]


def test_a_row_with_times_but_no_day_is_refused_naming_its_row_and_kept_as_typed(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    url = f"/admin/doctors/{doctor.id}"
    with admin_browser(app, db, ident, tenant) as browser:
        form = {
            "csrf_token": csrf_of(browser.get(url).text),
            "rows": "3",
            **row(0, weekday="0", start_time="09:00", end_time="11:00", slot_minutes="15"),
            "visit_types_0": "consultation",
            **row(2, weekday="", start_time="17:00", end_time="19:00", slot_minutes="15"),
            "visit_types_2": "consultation",
        }
        refused = browser.post(f"{url}/hours", data=form)
        assert refused.status_code == 422
        assert "Day, row 3: choose the day." in refused.text
        assert 'name="start_time_2" value="17:00"' in refused.text, "kept in its own row"
        assert hours_of(db, tenant, doctor) == []
        saved = browser.post(f"{url}/hours", data={**form, "weekday_2": "5"})
        assert "Weekly hours saved" in saved.text
    assert hours_of(db, tenant, doctor) == [
        (0, "09:00", "11:00", ["consultation"]),
        (5, "17:00", "19:00", ["consultation"]),
    ]


def test_an_overlap_names_the_form_rows_even_after_a_blank_row(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    doctor = make_doctor(db, ident, tenant)
    url = f"/admin/doctors/{doctor.id}"
    with admin_browser(app, db, ident, tenant) as browser:
        refused = browser.post(
            f"{url}/hours",
            data={
                "csrf_token": csrf_of(browser.get(url).text),
                "rows": "3",
                **row(1, weekday="1", start_time="09:00", end_time="11:00", slot_minutes="15"),
                "visit_types_1": "consultation",
                **row(2, weekday="1", start_time="10:00", end_time="12:00", slot_minutes="15"),
                "visit_types_2": "consultation",
            },
        )
    assert refused.status_code == 422
    assert "overlaps row 2 on the same day" in refused.text
    assert "template" not in refused.text.split('role="alert"')[1].split("</div>")[0]


def test_a_doctors_visit_types_are_ticked_from_a_list_with_their_minutes(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor", name="Dr. Kavita Rao")
    with admin_browser(app, db, ident, tenant) as browser:
        page = browser.get("/admin/doctors")
        assert 'name="visit_types"' not in page.text, "no codes to type"
        assert 'name="visit_follow-up" value="on" checked' in page.text
        fields = {
            "csrf_token": csrf_of(page.text),
            "user_id": str(user.id),
            "display_name": "Dr. Kavita Rao",
            "specialty": "Dermatology",
            "registration_number": "KMC-2019-2231",
        }
        none = browser.post("/admin/doctors", data=fields)
        assert "Visit types: tick at least one" in none.text
        done = browser.post(
            "/admin/doctors",
            data={
                **fields,
                "visit_consultation": "on",
                "minutes_consultation": "20",
                "visit_procedure": "on",
                "minutes_procedure": "45",
                "other_label": "Skin biopsy review",
                "other_minutes": "10",
            },
        )
        assert "Profile added" in done.text
    with clinic_session(db, tenant.id) as session:
        (doctor,) = service.doctors(session, include_inactive=True)
        assert doctor.visit_types == [
            {"code": "consultation", "label": "Consultation", "minutes": 20},
            {"code": "procedure", "label": "Procedure", "minutes": 45},
            {"code": "skin-biopsy-review", "label": "Skin biopsy review", "minutes": 10},
        ]


def test_visit_minutes_out_of_range_are_refused_naming_the_visit_type(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant
) -> None:
    user = make_user(db, ident, tenant, "doctor")
    with admin_browser(app, db, ident, tenant) as browser:
        page = browser.get("/admin/doctors")
        refused = browser.post(
            "/admin/doctors",
            data={
                "csrf_token": csrf_of(page.text),
                "user_id": str(user.id),
                "display_name": "Dr. Ramesh Iyer",
                "specialty": "ENT",
                "registration_number": "TNMC-2001-1190",
                "visit_follow-up": "on",
                "minutes_follow-up": "0",
            },
        )
        assert "Minutes, Follow-up: enter 1 to 240 minutes" in refused.text
    with clinic_session(db, tenant.id) as session:
        assert service.doctors(session, include_inactive=True) == []
