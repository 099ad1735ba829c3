"""The diet plan pages: a doctor starts a plan from a template, edits the draft in the
line editor, issues it, is refused an edit after issue, prints it; the patient's page.
Free text is shown escaped everywhere.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.clinical.models import DietPlan
from opdesk.db import Database
from tests.factories import bearer, clinic_session, make_tenant, make_user, open_session
from tests.factories.clinical_orders import make_diet_plan, make_diet_template, make_visit

XSS = "<script>alert(1)</script>"


def doctor_of(db: Database, ident: Any, tenant: Any) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "doctor")))


def test_a_doctor_starts_edits_issues_and_prints_a_plan(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Diet Pages Clinic")
    visit = make_visit(db, ident, tenant)
    template = make_diet_template(db, tenant, "Diabetic")
    doctor = doctor_of(db, ident, tenant)
    form = client.get(f"/visits/{visit.visit_id}/diet/new", headers=doctor)
    assert form.status_code == 200 and "Diabetic" in form.text
    started = client.post(
        f"/visits/{visit.visit_id}/diet",
        data={"template_id": str(template.id)},
        headers=doctor,
        follow_redirects=False,
    )
    assert started.status_code == 303
    plan_url = started.headers["location"]
    page = client.get(plan_url, headers=doctor)
    assert "1 | Breakfast | Idli (इडली) | 3 | pieces" in page.text

    bad = client.post(
        plan_url,
        data={"schedule": "1 | Lunch | Dal\n", "macros.calories": "1500"},
        headers=doctor,
    )
    assert bad.status_code == 422
    assert "line 1: write Day | Meal | Food | Qty | Unit" in bad.text

    saved = client.post(
        plan_url,
        data={
            "schedule": f"1 | Lunch | Roti (रोटी) | 2 | pieces\n1 | Lunch | {XSS} | 1 | bowl\n"
            "2 | Dinner | Khichdi (खिचड़ी) | 1 | bowl",
            "macros.calories": "1500",
            "macros.protein": "",
        },
        headers=doctor,
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    plan_id = plan_url.rsplit("/", 1)[1]
    with clinic_session(db, tenant.id) as session:
        row = session.execute(select(DietPlan).where(DietPlan.id == plan_id)).scalar_one()
        assert row.macros == {"calories": 1500}
        assert [d["day"] for d in row.schedule] == [1, 2]
        assert row.schedule[0]["meals"][0]["items"][1]["name"] == XSS

    issued = client.post(f"{plan_url}/issue", headers=doctor, follow_redirects=False)
    assert issued.status_code == 303
    after = client.post(
        plan_url,
        data={"schedule": "1 | Lunch | Rice | 1 | cup", "macros.calories": ""},
        headers=doctor,
    )
    assert after.status_code == 409 and "write a new version" in after.text
    printed = client.get(f"{plan_url}/print", headers=doctor)
    assert printed.status_code == 200
    assert XSS not in printed.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in printed.text
    assert "Khichdi (खिचड़ी)" in printed.text


def test_the_patients_diet_page_escapes_food_names(
    client: TestClient, db: Database, ident: Any
) -> None:
    from tests.factories import portal_login

    tenant = make_tenant(db, "Escape Diet Clinic")
    visit = make_visit(db, ident, tenant)
    schedule = [{"day": 1, "meals": [{"label": XSS, "items": [{"name": XSS, "qty": 1}]}]}]
    make_diet_plan(db, ident, tenant, visit=visit, schedule=schedule)
    me = portal_login(db, ident, tenant, visit.patient)
    page = client.get("/me/diet", headers=me)
    assert page.status_code == 200
    assert XSS not in page.text and "&lt;script&gt;" in page.text


def test_an_empty_save_of_an_issued_plan_is_refused_on_the_page(
    client: TestClient, db: Database, ident: Any
) -> None:
    """A form posted without a schedule field is answered with the reason, not a 500."""
    tenant = make_tenant(db, "Empty Save Clinic")
    plan = make_diet_plan(db, ident, tenant)
    response = client.post(
        f"/diet-plans/{plan.id}", data={"macros.calories": ""}, headers=doctor_of(db, ident, tenant)
    )
    assert response.status_code == 422
    assert "add at least one day with a meal" in response.text
