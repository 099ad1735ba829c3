"""The consultation screen's prescription, orders and diet-plan regions: this visit's
ones with where they stand, what the patient already has from earlier visits, the
buttons that start each, and "Repeat last prescription" in one click.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from fastapi import FastAPI
from sqlalchemy import select

from opdesk.clinical import diet, orders, prescriptions, visits, vitals
from opdesk.clinical.models import Prescription
from opdesk.clinical.prescriptions import ItemIn
from opdesk.db import Database
from opdesk.documents.storage import LocalStorage
from opdesk.formatting import day_name
from opdesk.scheduling import booking
from opdesk.uow import transaction
from tests.factories import book, clinic_session, csrf_of, ctx_for, make_user, open_session
from tests.factories.clinical_orders import DAL_ROTI, PDF
from tests.factories.clinical_visits import Consultation, consultation, open_visit
from tests.factories.web import cookie_browser

SCRIPT = "<script>alert('x')</script>"


def _earlier_visit_with_everything(db: Database, ident: Any, c: Consultation) -> None:
    """The first appointment's visit: an issued prescription, a lab order whose report is
    in and not reviewed, and an issued diet plan.
    """
    earlier = open_visit(db, c)
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        rx = prescriptions.start(session, ctx, visit_id=earlier.id)
        prescriptions.set_items(
            session,
            ctx,
            ident.cipher,
            prescription_id=rx.id,
            items=[
                ItemIn.model_validate(
                    {"name": "Metformin 500 mg " + SCRIPT, "dose": "1 tablet", "frequency": "1-0-1"}
                )
            ],
        )
        prescriptions.issue(
            session, ctx, ident.cipher, prescription_id=rx.id, base_url="https://x.example"
        )
        order = orders.place(
            session, ctx, visit_id=earlier.id, type_="lab", items=[{"name": "HbA1c"}]
        )
        orders.record_collected(session, ctx, order_id=order.id)
        orders.attach_report(
            session,
            ctx,
            ident.cipher,
            LocalStorage(Path(mkdtemp())),
            order_id=order.id,
            filename="report.pdf",
            data=PDF,
            abnormal=None,
            max_bytes=1024 * 1024,
        )
        plan = diet.create(
            session, ctx, visit_id=earlier.id, macros={"calories": 1600}, schedule=DAL_ROTI
        )
        diet.issue(session, ctx, plan_id=plan.id)


def _today(db: Database, c: Consultation) -> Any:
    return book(db, c.tenant, c.slots[1], c.patient)


def _page(app: FastAPI, db: Database, ident: Any, c: Consultation, appointment: Any) -> Any:
    with cookie_browser(app, open_session(db, ident, c.doctor_user)) as browser:
        return browser.get(f"/consult/{appointment.id}")


def _region(html: str, name: str) -> str:
    found = re.search(rf'data-region="{name}">(.*?)</section>', html, re.S)
    assert found, f"no {name} region"
    return found.group(1)


def test_a_first_visit_offers_to_start_each_and_shows_nothing_earlier(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    page = _page(app, db, ident, c, c.appointment)
    assert page.status_code == 200, page.text
    rx = _region(page.text, "prescriptions")
    assert "Write a prescription" in rx and "Repeat last prescription" not in rx
    assert "Last prescription" not in rx
    assert "Order tests" in _region(page.text, "orders")
    assert "for review" not in _region(page.text, "orders")
    assert "Write a diet plan" in _region(page.text, "diet-plan")
    assert "No diet plan." in _region(page.text, "diet-plan")


def test_a_return_visit_shows_the_last_prescription_results_waiting_and_the_plan_in_force(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident, slots=2)
    _earlier_visit_with_everything(db, ident, c)
    page = _page(app, db, ident, c, _today(db, c))
    assert page.status_code == 200, page.text
    rx = _region(page.text, "prescriptions")
    assert "Last prescription," in rx
    assert "Metformin 500 mg" in rx and "1 in the morning, 1 at night" in rx
    assert SCRIPT not in page.text and "&lt;script&gt;" in rx
    assert "Repeat last prescription" in rx
    # the earlier order is not this visit's, but its report waits for the doctor
    assert "No lab, imaging or procedure orders for this visit." in _region(page.text, "orders")
    assert "1 earlier result waits for review" in _region(page.text, "orders")
    assert "In force from an earlier visit: version 1" in _region(page.text, "diet-plan")


def test_this_visits_draft_and_issued_prescriptions_order_and_plan_are_listed(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    visit = open_visit(db, c)
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        draft = prescriptions.start(session, ctx, visit_id=visit.id)
        prescriptions.set_items(
            session,
            ctx,
            ident.cipher,
            prescription_id=draft.id,
            items=[ItemIn.model_validate({"name": "Paracetamol 650 mg", "frequency": "SOS"})],
        )
        orders.place(session, ctx, visit_id=visit.id, type_="lab", items=[{"name": "CBC"}])
        diet.create(session, ctx, visit_id=visit.id, macros={}, schedule=DAL_ROTI)
    page = _page(app, db, ident, c, c.appointment)
    rx = _region(page.text, "prescriptions")
    assert "Draft, not issued" in rx and "Paracetamol 650 mg" in rx and "only when needed" in rx
    assert f'href="/prescriptions/{draft.id}"' in rx and "Continue writing" in rx
    # one draft at a time: no second "Write" button while it is open
    assert "Write a prescription" not in rx and "Write another" not in rx
    ordered = _region(page.text, "orders")
    assert "CBC" in ordered and "Ordered" in ordered
    plan = _region(page.text, "diet-plan")
    assert "Draft, not issued" in plan and "Write a diet plan" not in plan

    with transaction(db, ctx) as session:
        prescriptions.issue(
            session, ctx, ident.cipher, prescription_id=draft.id, base_url="https://x.example"
        )
    rx = _region(_page(app, db, ident, c, c.appointment).text, "prescriptions")
    assert "Issued" in rx and f"/prescriptions/{draft.id}/pdf" in rx
    assert "Write another prescription" in rx


def test_repeat_last_prescription_is_one_click_into_a_draft(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident, slots=2)
    _earlier_visit_with_everything(db, ident, c)
    today = _today(db, c)
    with cookie_browser(app, open_session(db, ident, c.doctor_user)) as browser:
        page = browser.get(f"/consult/{today.id}")
        answer = browser.post(
            f"/consult/{today.id}/prescription/repeat-last",
            data={"csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        builder = browser.get(answer.headers["location"])
    assert "Metformin 500 mg" in builder.text
    with clinic_session(db, c.tenant.id) as session:
        drafts = session.execute(
            select(Prescription).where(
                Prescription.patient_id == c.patient.id, Prescription.issued_at.is_(None)
            )
        ).scalars()
        (draft,) = list(drafts)
        assert answer.headers["location"] == f"/prescriptions/{draft.id}"
        items = prescriptions.items_of(session, ident.cipher, draft)
    assert [i.frequency for i in items] == ["1-0-1"]


def test_repeat_last_without_an_earlier_prescription_says_so_and_writes_nothing(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    with cookie_browser(app, open_session(db, ident, c.doctor_user)) as browser:
        page = browser.get(f"/consult/{c.appointment.id}")
        answer = browser.post(
            f"/consult/{c.appointment.id}/prescription/repeat-last",
            data={"csrf_token": csrf_of(page.text)},
        )
    assert "no issued prescription to repeat" in answer.text
    with clinic_session(db, c.tenant.id) as session:
        count = session.execute(
            select(Prescription).where(Prescription.patient_id == c.patient.id)
        ).all()
    assert count == []


def test_the_desk_may_not_repeat_a_prescription(app: FastAPI, db: Database, ident: Any) -> None:
    c = consultation(db, ident)
    desk = make_user(db, ident, c.tenant, "frontdesk")
    with cookie_browser(app, open_session(db, ident, desk)) as browser:
        home = browser.get("/")
        answer = browser.post(
            f"/consult/{c.appointment.id}/prescription/repeat-last",
            data={"csrf_token": csrf_of(home.text)},
        )
    assert answer.status_code == 403


def test_vitals_not_taken_today_carry_their_date_and_the_reason_for_the_visit_shows(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident, slots=2)
    earlier = open_visit(db, c)
    months_ago = datetime.now(UTC) - timedelta(days=120)
    ctx = c.ctx()
    ctx.clock = lambda: months_ago
    with transaction(db, ctx) as session:
        vitals.record(
            session, ctx, ident.cipher, visit_id=earlier.id, readings={"temperature": 101.6}
        )
    desk = ctx_for(c.tenant.id)
    with transaction(db, desk) as session:
        today = booking.book(
            session,
            desk,
            booking.BookingRequest(
                slot_id=c.slots[1].id,
                patient_id=c.patient.id,
                visit_type="consultation",
                channel="phone",
                reason="BP review " + SCRIPT,
            ),
        )
    page = _page(app, db, ident, c, today)
    taken = months_ago.astimezone(ZoneInfo("Asia/Kolkata")).date()
    assert f'101.6 °F</strong> <small class="muted">on {day_name(taken)} {taken.year}' in page.text
    assert "Reason for visit:</strong> BP review &lt;script&gt;" in page.text

    # taken and shown on one frozen instant: never split by the clinic's midnight
    with time_machine.travel(datetime.now(UTC), tick=False):
        ctx = c.ctx()
        with transaction(db, ctx) as session:
            visit = visits.open_visit(session, ctx, appointment_id=today.id)
            vitals.record(
                session, ctx, ident.cipher, visit_id=visit.id, readings={"temperature": 98.4}
            )
        page = _page(app, db, ident, c, today)
    assert '98.4 °F</strong> <small class="muted">· earlier 101.6' in page.text


def test_the_doctor_reaches_a_past_consultation_from_the_patients_profile_and_the_desk_not(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident, slots=2)
    open_visit(db, c)  # the first appointment's consultation
    later = book(db, c.tenant, c.slots[1], c.patient)  # none yet
    with cookie_browser(app, open_session(db, ident, c.doctor_user)) as browser:
        profile = browser.get(f"/patients/{c.patient.id}")
    assert profile.status_code == 200, profile.text
    assert f'href="/consult/{c.appointment.id}"' in profile.text
    assert f'href="/consult/{later.id}"' not in profile.text
    desk = make_user(db, ident, c.tenant, "frontdesk")
    with cookie_browser(app, open_session(db, ident, desk)) as browser:
        seen_by_desk = browser.get(f"/patients/{c.patient.id}")
    assert seen_by_desk.status_code == 200
    assert "/consult/" not in seen_by_desk.text
