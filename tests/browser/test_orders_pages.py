"""Orders and diet plans in a real browser: the desk's order list (collected, report
attached), the doctor's review queue and review, the patient's results and diet plan
with ticking (Hindi food names), at 1280 and 390 px.
"""

from __future__ import annotations

from typing import Any

import pytest

from opdesk.config import Settings
from opdesk.db import Database
from opdesk.documents.storage import LocalStorage
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_tenant, make_user, portal_login
from tests.factories.clinical_orders import make_diet_plan, make_order, make_visit

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

XSS = "<script>alert(1)</script>"


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_desk_records_collection_and_attaches_the_report(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Sahyadri Diagnostics Clinic")
    desk = make_user(db, ident, clinic, "frontdesk", name="Ravi Patil")
    visit = make_visit(db, ident, clinic, name={"first": "सुनीता", "last": "Deshmukh"})
    order = make_order(
        db,
        ident,
        clinic,
        visit=visit,
        items=[{"name": "HbA1c", "code": "4548-4", "panel": "Diabetes"}, {"name": XSS}],
    )
    make_order(db, ident, clinic, status="collected")
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, desk.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/orders")
    row = page.locator(f"#order-{order.id}")
    assert XSS in row.inner_text()  # shown as text, never run
    assert "Abnormal" not in page.content() and "review" not in row.inner_text().lower()
    shot(page, f"orders-desk-list-{width}")

    row.get_by_role("button", name="Sample collected").click()
    assert "Recorded: sample collected." in page.get_by_role("status").inner_text()
    page.locator(f"#order-{order.id}").get_by_role("button", name="Attach report").click()
    page.wait_for_url(f"**/orders/{order.id}/report")
    page.locator("#report-file").set_input_files(
        {"name": "hba1c.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"}
    )
    page.get_by_label("The lab marked values as abnormal").check()
    shot(page, f"orders-attach-report-{width}")
    page.get_by_role("button", name="Attach report").click()
    page.wait_for_url("**/orders")
    assert "Report attached" in page.get_by_role("status").inner_text()
    assert "Report in" in page.locator(f"#order-{order.id}").inner_text()
    assert problems == []


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_doctor_reviews_abnormal_results_first(
    browser: Any,
    live_server: str,
    db: Database,
    ident: Any,
    settings: Settings,
    width: str,
) -> None:
    clinic = make_tenant(db, "Nashik Care Clinic")
    doctor = make_user(db, ident, clinic, "doctor", name="Dr. Meera Kulkarni")
    store = LocalStorage(settings.data_dir / "files")
    make_order(db, ident, clinic, status="reported", abnormal=False, storage=store)
    abnormal = make_order(
        db,
        ident,
        clinic,
        status="reported",
        abnormal=True,
        storage=store,
        items=[{"name": "Serum creatinine"}, {"name": XSS}],
    )
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, doctor.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/orders/review")
    rows = page.locator("table.review-queue tbody tr")
    assert rows.count() == 2
    assert "Abnormal" in rows.nth(0).inner_text() and "Serum creatinine" in rows.nth(0).inner_text()
    assert XSS in rows.nth(0).inner_text()
    shot(page, f"orders-review-queue-{width}")

    rows.nth(0).get_by_role("button", name="Review").click()
    page.wait_for_url(f"**/orders/{abnormal.id}/review")
    assert page.get_by_role("link", name="report.pdf").is_visible()
    page.get_by_label("Note for the patient").fill(f"Repeat in a month {XSS}")
    shot(page, f"orders-review-{width}")
    page.get_by_role("button", name="Mark reviewed and tell the patient").click()
    page.wait_for_url("**/orders/review")
    assert "Reviewed." in page.get_by_role("status").inner_text()
    assert page.locator("table.review-queue tbody tr").count() == 1
    assert problems == []


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_patient_ticks_meals_and_sees_reviewed_results(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Pune Wellness Clinic")
    visit = make_visit(db, ident, clinic, name={"first": "लक्ष्मी", "last": "अय्यर"})
    schedule = [
        {
            "day": 1,
            "meals": [
                {
                    "label": "नाश्ता (Breakfast)",
                    "items": [
                        {"name": "इडली (Idli)", "qty": 3, "unit": "pieces"},
                        {"name": "सांभर (Sambar)", "qty": 1, "unit": "bowl"},
                    ],
                },
                {
                    "label": "Lunch",
                    "items": [
                        {"name": "रोटी (Roti)", "qty": 2, "unit": "pieces"},
                        {"name": "दाल (Dal)", "qty": 1, "unit": "bowl"},
                        {"name": f"सब्ज़ी {XSS}", "qty": 1, "unit": "bowl"},
                    ],
                },
            ],
        }
    ]
    make_diet_plan(db, ident, clinic, visit=visit, schedule=schedule)
    make_order(db, ident, clinic, visit=visit, status="reviewed", abnormal=False)
    make_order(
        db, ident, clinic, visit=visit, status="reported", items=[{"name": "Thyroid profile"}]
    )
    token = portal_login(db, ident, clinic, visit.patient)["Authorization"].removeprefix("Bearer ")
    page, problems = open_page(browser, width)
    page.context.add_cookies([{"name": "opdesk_session", "value": token, "url": live_server}])
    page.goto(f"{live_server}/me/diet")
    assert "0 of 1 day fully followed" in page.content()
    assert f"सब्ज़ी {XSS}" in page.locator(".meal-card").nth(1).inner_text()
    page.get_by_role("button", name="I had नाश्ता (breakfast)").click()
    assert "Ticked." in page.get_by_role("status").inner_text()
    assert "✓ Done" in page.locator(".meal-card").nth(0).inner_text()
    shot(page, f"diet-ticking-{width}")
    page.get_by_role("button", name="I had lunch").click()
    assert "1 of 1 day fully followed" in page.content()

    page.goto(f"{live_server}/me/results")
    text = page.locator("main").inner_text()
    assert "HbA1c" in text and "Sugar is well controlled." in text
    assert "Thyroid profile" not in text  # reported, not yet reviewed
    shot(page, f"results-mine-{width}")
    assert problems == []


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_doctor_edits_and_prints_a_diet_plan(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    clinic = make_tenant(db, "Kolhapur Diet Clinic")
    doctor = make_user(db, ident, clinic, "doctor", name="Dr. Meera Kulkarni")
    plan = make_diet_plan(db, ident, clinic, issued=False)
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, clinic.slug, doctor.email or "")
    page.wait_for_url("**/app")
    page.goto(f"{live_server}/diet-plans/{plan.id}")
    assert "Idli (इडली)" in page.locator("#schedule").input_value()
    shot(page, f"diet-plan-draft-{width}")
    page.goto(f"{live_server}/diet-plans/{plan.id}/print")
    assert page.locator("tbody tr").count() == 6
    shot(page, f"diet-plan-print-{width}")
    assert problems == []
