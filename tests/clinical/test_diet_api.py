"""Diet plans through the API: templates, drafts, issuing (then frozen, by the service
and by PostgreSQL), versions that supersede, and the patient's ticks keeping the
adherence summary current.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from opdesk.clinical import diet
from opdesk.clinical.models import DietPlan, MealTick
from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    clinic_session,
    ctx_for,
    events_of,
    make_tenant,
    make_user,
    open_session,
    portal_login,
    unaudited,
)
from tests.factories.clinical_orders import (
    DAL_ROTI,
    make_diet_plan,
    make_diet_template,
    make_visit,
)

API = "/api/v1"


def headers_of(db: Database, ident: Any, tenant: Any, role: str) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


def plan_row(db: Database, tenant: Any, plan_id: Any) -> DietPlan:
    with clinic_session(db, tenant.id) as session:
        row = session.get(DietPlan, (tenant.id, plan_id))
        assert row is not None
        return row


def test_a_plan_from_a_template_is_drafted_changed_and_issued(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Diet Clinic")
    visit = make_visit(db, ident, tenant)
    doctor = headers_of(db, ident, tenant, "doctor")
    library = client.post(f"{API}/diet-templates/standard", headers=doctor)
    assert library.status_code == 200
    names = [t["name"] for t in library.json()]
    assert "Diabetic vegetarian (1,600 kcal)" in names
    template = library.json()[names.index("Diabetic vegetarian (1,600 kcal)")]
    foods = [i["name"] for m in template["schedule"][0]["meals"] for i in m["items"]]
    assert "Idli (इडली)" in foods and "Roti (रोटी)" in foods
    again = client.post(f"{API}/diet-templates/standard", headers=doctor)
    assert len(again.json()) == len(names)  # by name, once

    created = client.post(
        f"{API}/diet-plans",
        json={"visitId": str(visit.visit_id), "templateId": template["id"]},
        headers=doctor,
    )
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["version"] == 1 and plan["issuedAt"] is None
    assert plan["macros"]["calories"] == 1600 and plan["templateId"] == template["id"]

    changed = client.put(
        f"{API}/diet-plans/{plan['id']}",
        json={"macros": {"calories": 1500}, "schedule": DAL_ROTI},
        headers=doctor,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["macros"] == {"calories": 1500}
    assert [d["day"] for d in changed.json()["schedule"]] == [1, 2]

    issued = client.post(f"{API}/diet-plans/{plan['id']}/issue", headers=doctor)
    assert issued.status_code == 200 and issued.json()["issuedAt"] is not None
    assert client.post(f"{API}/diet-plans/{plan['id']}/issue", headers=doctor).status_code == 409


def test_editing_an_issued_plan_is_409_and_changes_nothing(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Frozen Diet Clinic")
    plan = make_diet_plan(db, ident, tenant)
    doctor = headers_of(db, ident, tenant, "doctor")
    before = len(events_of(db, tenant.id))
    response = client.put(
        f"{API}/diet-plans/{plan.id}",
        json={"macros": {"calories": 900}, "schedule": DAL_ROTI[:1]},
        headers=doctor,
    )
    assert response.status_code == 409
    assert "write a new version" in response.json()["detail"]
    assert client.delete(f"{API}/diet-plans/{plan.id}", headers=doctor).status_code == 409
    assert len(events_of(db, tenant.id)) == before
    row = plan_row(db, tenant, plan.id)
    assert row.macros == {"calories": 1600, "protein": 60} and len(row.schedule) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "update diet_plans set macros = '{}'::jsonb where id = :p",
        "update diet_plans set schedule = '[]'::jsonb where id = :p",
        "update diet_plans set issued_at = null where id = :p",
        "delete from diet_plans where id = :p",
    ],
)
def test_the_database_refuses_a_change_to_an_issued_plan(
    db: Database, ident: Any, sql: str
) -> None:
    tenant = make_tenant(db, "Raw Diet Clinic")
    plan = make_diet_plan(db, ident, tenant)
    with pytest.raises(DBAPIError) as refused, clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(text(sql), {"p": plan.id})
    assert getattr(refused.value.orig, "sqlstate", None) == "OD001"
    assert plan_row(db, tenant, plan.id).issued_at is not None


def test_the_database_lets_the_adherence_summary_change(db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Summary Clinic")
    plan = make_diet_plan(db, ident, tenant)
    with clinic_session(db, tenant.id) as session:
        unaudited(session)
        session.execute(
            text(
                "update diet_plans set adherence_summary_completed_days = 1, "
                "adherence_summary_last_updated = now(), updated_at = now() where id = :p"
            ),
            {"p": plan.id},
        )
    assert plan_row(db, tenant, plan.id).adherence_summary_completed_days == 1


def test_the_service_answers_the_databases_refusal_as_409(db: Database, ident: Any) -> None:
    """Even past the service's own check (a stale row), OD001 becomes Conflict."""
    tenant = make_tenant(db, "Stale Diet Clinic")
    plan = make_diet_plan(db, ident, tenant)
    with (
        pytest.raises(Conflict),
        clinic_session(db, tenant.id) as session,
        diet.refusing_frozen(diet.ISSUED),
    ):
        session.execute(text("update diet_plans set macros = '{}' where id = :p"), {"p": plan.id})


def test_a_new_version_supersedes_the_issued_plan_once(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Versions Clinic")
    plan = make_diet_plan(db, ident, tenant)
    doctor = headers_of(db, ident, tenant, "doctor")
    draft = make_diet_plan(db, ident, tenant, issued=False)
    assert client.post(f"{API}/diet-plans/{draft.id}/versions", headers=doctor).status_code == 409

    second = client.post(f"{API}/diet-plans/{plan.id}/versions", headers=doctor)
    assert second.status_code == 201, second.text
    body = second.json()
    assert body["version"] == 2 and body["supersedes"] == str(plan.id)
    assert body["issuedAt"] is None and body["schedule"][0]["meals"][0]["label"] == "Breakfast"
    again = client.post(f"{API}/diet-plans/{plan.id}/versions", headers=doctor)
    assert again.status_code == 409 and "newer version" in again.json()["detail"]


def test_two_new_versions_at_once_one_wins_the_other_is_409(db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Race Diet Clinic")
    plan = make_diet_plan(db, ident, tenant)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def revise() -> None:
        ctx = ctx_for(tenant.id)
        try:
            with transaction(db, ctx) as session:
                diet.get(session, plan.id)
                barrier.wait()
                diet.revise(session, ctx, plan_id=plan.id)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("409")

    threads = [threading.Thread(target=revise) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409", "ok"]
    with clinic_session(db, tenant.id) as session:
        versions = session.execute(select(DietPlan).where(DietPlan.supersedes == plan.id)).all()
    assert len(versions) == 1


def test_ticking_meals_keeps_the_summary_current(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Tick Clinic")
    visit = make_visit(db, ident, tenant)
    plan = make_diet_plan(db, ident, tenant, visit=visit)
    me = portal_login(db, ident, tenant, visit.patient)
    (mine,) = client.get(f"{API}/me/diet-plans", headers=me).json()
    assert mine["id"] == str(plan.id)
    assert mine["adherenceSummary"] == {"completedDays": 0, "lastUpdated": None}

    def tick(day: int, meal: str, done: bool = True) -> Any:
        return client.put(
            f"{API}/me/diet-plans/{plan.id}/ticks",
            json={"day": day, "meal": meal, "done": done},
            headers=me,
        )

    first = tick(1, "Breakfast")
    assert first.status_code == 200, first.text
    assert first.json()["adherenceSummary"]["completedDays"] == 0
    assert first.json()["adherenceSummary"]["lastUpdated"] is not None
    assert first.json()["schedule"][0]["meals"][0]["done"] is True
    assert tick(1, "Lunch").json()["adherenceSummary"]["completedDays"] == 1
    assert tick(2, "Breakfast").json()["adherenceSummary"]["completedDays"] == 1
    assert tick(2, "Lunch").json()["adherenceSummary"]["completedDays"] == 2
    assert tick(1, "Lunch", done=False).json()["adherenceSummary"]["completedDays"] == 1
    row = plan_row(db, tenant, plan.id)
    assert row.adherence_summary_completed_days == 1
    with clinic_session(db, tenant.id) as session:
        ticks = session.execute(select(MealTick).where(MealTick.diet_plan_id == plan.id)).scalars()
        assert {(t.day, t.meal): t.done for t in ticks} == {
            (1, "Breakfast"): True,
            (1, "Lunch"): False,
            (2, "Breakfast"): True,
            (2, "Lunch"): True,
        }

    unknown = tick(1, "Dinner")
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [{"field": "meal", "reason": "is not a meal of day 1"}]
    assert tick(9, "Lunch").status_code == 422


def test_a_draft_or_another_familys_plan_cannot_be_ticked(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Scope Diet Clinic")
    visit = make_visit(db, ident, tenant)
    draft = make_diet_plan(db, ident, tenant, visit=visit, issued=False)
    theirs = make_diet_plan(db, ident, tenant)
    me = portal_login(db, ident, tenant, visit.patient)
    assert client.get(f"{API}/me/diet-plans", headers=me).json() == []
    for plan in (draft, theirs):
        response = client.put(
            f"{API}/me/diet-plans/{plan.id}/ticks",
            json={"day": 1, "meal": "Lunch", "done": True},
            headers=me,
        )
        assert response.status_code == 404
    other = make_tenant(db, "Other Diet Clinic")
    doctor_b = headers_of(db, ident, other, "doctor")
    assert client.get(f"{API}/diet-plans/{theirs.id}", headers=doctor_b).status_code == 404
    assert (
        client.post(f"{API}/diet-plans/{theirs.id}/versions", headers=doctor_b).status_code == 404
    )


def test_the_patient_sees_the_newest_issued_version_only(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Newest Clinic")
    visit = make_visit(db, ident, tenant)
    first = make_diet_plan(db, ident, tenant, visit=visit)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        second = diet.revise(session, ctx, plan_id=first.id)
    me = portal_login(db, ident, tenant, visit.patient)
    assert [p["id"] for p in client.get(f"{API}/me/diet-plans", headers=me).json()] == [
        str(first.id)
    ]  # the new version is a draft yet
    with transaction(db, ctx) as session:
        diet.issue(session, ctx, plan_id=second.id)
    assert [p["id"] for p in client.get(f"{API}/me/diet-plans", headers=me).json()] == [
        str(second.id)
    ]


def test_bad_schedules_and_macros_name_the_place(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Bad Diet Clinic")
    visit = make_visit(db, ident, tenant)
    doctor = headers_of(db, ident, tenant, "doctor")
    twice = [
        {
            "day": 1,
            "meals": [
                {"label": "Lunch", "items": [{"name": "Dal", "qty": 1, "unit": "bowl"}]},
                {"label": "lunch", "items": [{"name": "Rice", "qty": 1, "unit": "cup"}]},
            ],
        }
    ]
    response = client.post(
        f"{API}/diet-plans",
        json={"visitId": str(visit.visit_id), "schedule": twice, "macros": {"calories": 99999}},
        headers=doctor,
    )
    assert response.status_code == 422
    fields = {e["field"]: e["reason"] for e in response.json()["errors"]}
    assert fields == {"macros.calories": "Calories (kcal): a number 0 to 6000"}
    response = client.post(
        f"{API}/diet-plans",
        json={"visitId": str(visit.visit_id), "schedule": twice},
        headers=doctor,
    )
    assert response.json()["errors"] == [
        {"field": "schedule[1].meals[2].label", "reason": "Day 1: lunch appears twice"}
    ]
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(DietPlan)).first() is None


@pytest.mark.parametrize("key", ["¹", "٣", "2"])
def test_a_macro_named_by_a_digit_of_any_script_is_refused_by_name(
    client: TestClient, db: Database, ident: Any, key: str
) -> None:
    # "¹".isdigit() is True but int("¹") fails: the error's field path once took it for a
    # list index and answered 500 (found by the OpenAPI fuzz test).
    tenant = make_tenant(db, "Digit Diet Clinic")
    admin = headers_of(db, ident, tenant, "admin")
    response = client.post(
        f"{API}/diet-templates",
        json={"name": "Light", "schedule": [], "macros": {key: None}},
        headers=admin,
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == f"macros.{key}"
    assert "is not one of" in error["reason"]


def test_templates_are_the_clinics_own(client: TestClient, db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Library Clinic")
    template = make_diet_template(db, tenant, "Renal")
    admin = headers_of(db, ident, tenant, "admin")
    dup = client.post(
        f"{API}/diet-templates",
        json={"name": "renal", "schedule": DAL_ROTI},
        headers=admin,
    )
    assert dup.status_code == 409
    renamed = client.put(
        f"{API}/diet-templates/{template.id}",
        json={"name": "Renal (low potassium)", "macros": {"protein": 40}, "schedule": DAL_ROTI},
        headers=admin,
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renal (low potassium)"
    desk = headers_of(db, ident, tenant, "frontdesk")
    assert client.get(f"{API}/diet-templates", headers=desk).status_code == 403
    other = make_tenant(db, "Other Library Clinic")
    admin_b = headers_of(db, ident, other, "admin")
    assert client.delete(f"{API}/diet-templates/{template.id}", headers=admin_b).status_code == 404
    assert client.delete(f"{API}/diet-templates/{template.id}", headers=admin).status_code == 204
