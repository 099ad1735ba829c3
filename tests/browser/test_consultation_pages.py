"""The consultation screen in a real browser, at 1280 and 390 px: a patient with a
Hindi name, an allergy, past visits and vitals; the note autosaved by typing, a
diagnosis found by search, then signed. Screenshots; nothing wider than the screen.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from opdesk.clinical import catalogue, visits, vitals
from opdesk.db import Database
from opdesk.scheduling import lifecycle
from opdesk.uow import transaction
from tests.browser.helpers import WIDTHS, open_page, shot, staff_sign_in
from tests.factories import make_tenant
from tests.factories.clinical_visits import consultation, make_service, open_visit, write_note

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_consultation_screen(
    browser: Any, live_server: str, db: Database, ident: Any, width: str
) -> None:
    tenant = make_tenant(db, "Shanti Clinic")
    c = consultation(
        db,
        ident,
        tenant,
        slots=3,
        name={"first": "सुनीता", "last": "शर्मा"},
        allergies=[{"substance": "Penicillin", "reaction": "rash", "severity": "severe"}],
        chronicConditions=["Type 2 diabetes"],
    )
    cipher = ident.cipher
    # an earlier visit, signed, with a diagnosis and vitals
    earlier = open_visit(db, c)
    write_note(db, cipher, c, earlier.id, visits.Soap(s="Fever", a="Viral fever", p="Rest"))
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        visits.add_diagnosis(session, ctx, cipher, visit_id=earlier.id, code="E11.9", text=None)
        vitals.record(
            session,
            ctx,
            cipher,
            visit_id=earlier.id,
            readings={"weight": 68, "height": 158, "bp-systolic": 142, "bp-diastolic": 90},
        )
        visits.sign(session, ctx, cipher, visit_id=earlier.id)
        today = lifecycle.walk_in(
            session, ctx, patient_id=c.patient.id, doctor_id=c.doctor.id, visit_type="consultation"
        )
    make_service(db, tenant, code="CONS", name="Consultation")
    with transaction(db, ctx) as session:
        catalogue.create_service(
            session,
            ctx,
            catalogue.ServiceFields(code="ECG", name="ECG", price=Decimal(300)),
        )
    page, problems = open_page(browser, width)
    staff_sign_in(page, live_server, tenant.slug, c.doctor_user.email or "")
    page.goto(f"{live_server}/my-queue")
    page.get_by_role("link", name="सुनीता शर्मा").click()
    page.wait_for_url(f"**/consult/{today.id}")
    assert page.get_by_role("alert").first.inner_text().startswith("Allergies")
    page.get_by_label("Subjective").fill("बुखार 3 दिन से, Fever and body ache for 3 days")
    page.get_by_label("Assessment").fill("Viral fever")
    page.wait_for_selector("#saved:has-text('Saved')", timeout=10_000)
    page.get_by_label("Find an ICD-10 code").fill("dengue")
    page.wait_for_selector("#icd-results button", timeout=10_000)
    shot(page, f"consult-draft-{width}")
    page.wait_for_load_state("networkidle")
    result = page.get_by_role("button", name="A97.9")
    if width == "phone":
        # A full-page screenshot leaves Chromium's scroll position stale until the next
        # focus moves it (the tap would land 128 px off): start the tap from the top.
        page.evaluate("window.scrollTo(0, 0)")
        result.click()  # a thumb on a phone
    else:
        result.press("Enter")  # by keyboard, as a doctor in a hurry does
    page.wait_for_selector("text=Diagnosis added")
    page.locator("summary", has_text="Record vitals").click()
    page.get_by_label("Weight (kg)").fill("67.5")
    page.get_by_role("button", name="Record vitals").click()
    page.wait_for_selector("text=Vitals recorded")
    page.get_by_label("I have read the note; sign it").check()
    page.get_by_role("button", name="Sign the note").click()
    page.wait_for_selector("text=Visit signed")
    shot(page, f"consult-signed-{width}")
    # the patient's profile leads back to each consultation
    page.goto(f"{live_server}/patients/{c.patient.id}")
    page.locator(f'a[href="/consult/{today.id}"]').first.wait_for()
    shot(page, f"consult-profile-{width}")
    assert problems == []
