"""The demo clinic's consultations (issue 12, item 11): signed visits with notes,
prescriptions, diet plans and lab orders, and one patient with a long history, made once
and left alone by a second ``opdesk demo``.

The demo is made once for this module in a database of its own (the demo clinic's code
is fixed, so it cannot share the tests' database), run twice.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opdesk.app import create_app
from opdesk.clinical import diet, orders, prescriptions, visits, vitals
from opdesk.clinical.demo import LONG_HISTORY_PHONE, SURESH
from opdesk.clinical.models import (
    Order,
    OrderAttachment,
    OrderStatus,
    Prescription,
    Visit,
    VisitStatus,
)
from opdesk.config import Settings
from opdesk.db import Database, drop_database, ensure_database
from opdesk.identity.models import User
from opdesk.identity.service import Identity
from opdesk.notifications.models import OutboxMessage
from opdesk.patients import service as patient_records
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment
from opdesk.security.crypto import StaticKeyring
from tests.factories.clinical_demo import run_demo
from tests.factories.clinics import clinic_session, clinic_today
from tests.factories.people import open_session
from tests.factories.web import cookie_browser, row_counts


@dataclass
class Demo:
    database: Database
    app: FastAPI
    ident: Identity
    tenant_id: uuid.UUID
    signed_first: int
    signed_again: int
    counts_first: dict[str, int]
    counts_again: dict[str, int]

    def session(self) -> AbstractContextManager[Session]:
        return clinic_session(self.database, self.tenant_id)

    def suresh(self, session: Session) -> Patient:
        digest = self.ident.cipher.blind_index(LONG_HISTORY_PHONE, purpose="phone")
        return session.execute(
            select(Patient)
            .where(Patient.phone_hash == digest, Patient.guardian_id.is_(None))
            .order_by(Patient.number)
            .limit(1)
        ).scalar_one()


@pytest.fixture(scope="module")
def demo(
    pg: Any,
    template_name: str,
    settings: Settings,
    keyring: StaticKeyring,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Demo]:
    name = f"opdesk_t_demo_{secrets.token_hex(4)}"
    ensure_database(pg.server_url, name, template=template_name)
    database: Database = pg.database(name)
    app = create_app(settings, database=database, keyring=keyring)
    ident: Identity = app.state.services.identity
    data_dir: Path = tmp_path_factory.mktemp("demo-clinic")
    tenant_id, signed_first = run_demo(database, ident, data_dir)
    counts_first = row_counts(database, tenant_id)
    again_id, signed_again = run_demo(database, ident, data_dir)
    assert again_id == tenant_id
    counts_again = row_counts(database, tenant_id)
    yield Demo(
        database,
        app,
        ident,
        tenant_id,
        signed_first,
        signed_again,
        counts_first,
        counts_again,
    )
    database.dispose()
    drop_database(pg.server_url, name)


# --------------------------------------------------------------------------- idempotent


def test_a_second_demo_run_adds_nothing_and_writes_no_audit_event(demo: Demo) -> None:
    assert demo.signed_first >= len(SURESH) + 2
    assert demo.signed_again == 0
    assert demo.counts_again == demo.counts_first  # every table, and the audit chain's head
    for table in ("visits", "prescriptions", "orders", "diet_plans", "diet_plans_adherence"):
        assert demo.counts_first[table] > 0, table


def test_every_demo_visit_but_todays_open_one_is_signed_with_a_note(demo: Demo) -> None:
    cipher = demo.ident.cipher
    with demo.session() as session:
        rows = list(session.execute(select(Visit)).scalars())
        drafts = [v for v in rows if v.status == VisitStatus.DRAFT]
        signed = [v for v in rows if v.status == VisitStatus.SIGNED]
        notes = [visits.signed_note(session, cipher, v) for v in signed]
        suresh = demo.suresh(session)
    assert len(signed) == demo.signed_first
    assert [d.patient_id for d in drafts] == [suresh.id]  # only his visit of today is open
    assert all(n is not None and n.s and n.a and n.p for n in notes)
    assert all(v.signed_by is not None and v.soap_locked_at is not None for v in signed)


# --------------------------------------------------------------------------- the long history


def test_the_long_history_spans_two_years_of_signed_diabetes_and_bp_visits(demo: Demo) -> None:
    cipher = demo.ident.cipher
    with demo.session() as session:
        suresh = demo.suresh(session)
        rows = list(
            session.execute(
                select(Visit).where(Visit.patient_id == suresh.id).order_by(Visit.created_at)
            ).scalars()
        )
        signed = [v for v in rows if v.status == VisitStatus.SIGNED]
        codes = {
            d.code for v in signed for d in visits.diagnoses(session, v.id) if d.code is not None
        }
        first_note = visits.signed_note(session, cipher, signed[0])
        trend = vitals.trend(session, cipher, suresh.id, per_type=20)
        record = patient_records.read(cipher, suresh, clinic_today())
    assert record.age_years >= 50  # a man in his fifties, as the history says
    assert {"Type 2 diabetes", "Hypertension"} <= set(record.chronic_conditions)
    assert len(signed) >= 12
    assert signed[-1].created_at - signed[0].created_at > timedelta(days=600)
    assert {"E11.9", "I10"} <= codes
    assert first_note is not None and "diabetes" in first_note.a.lower()
    # the blood pressure falls over the two years: a trend worth showing
    systolic = [r.value for r in trend["bp-systolic"]]
    assert len(systolic) >= 12
    assert systolic[0] > systolic[-1]
    assert len(trend["weight"]) >= 10


def test_the_long_history_prescriptions_are_issued_repeated_changed_and_all_verify(
    demo: Demo,
) -> None:
    cipher = demo.ident.cipher
    with demo.session() as session:
        suresh = demo.suresh(session)
        issued = prescriptions.issued_for(session, [suresh.id])
        checks = [
            prescriptions.check(session, cipher, p, (p.signed_hash or "")[:32]) for p in issued
        ]
        drafts = session.execute(
            select(func.count())
            .select_from(Prescription)
            .where(Prescription.patient_id == suresh.id, Prescription.issued_at.is_(None))
        ).scalar_one()
        first = [i.name for i in prescriptions.items_of(session, cipher, issued[-1])]
        latest = [i.name for i in prescriptions.items_of(session, cipher, issued[0])]
    assert len(issued) >= 12 and drafts == 0
    assert {c.status for c in checks} == {"valid", "superseded"}
    superseded = [c for c in checks if c.status == "superseded"]
    assert len(superseded) == 1
    assert superseded[0].superseded_by is not None
    assert superseded[0].superseded_by.version == 2
    assert all(p.qr_data and "/rx/verify/" in p.qr_data for p in issued)
    assert "Metformin" in first and "Amlodipine" in first
    assert "Glimepiride" in latest and "Telmisartan" in latest  # changed over the years


def test_the_long_history_diet_plan_has_three_versions_and_ticked_days(demo: Demo) -> None:
    with demo.session() as session:
        suresh = demo.suresh(session)
        plans = sorted(diet.of_patient(session, suresh.id), key=lambda p: p.version)
        (current,) = diet.current_for(session, [suresh.id])
        ticks = diet.ticks(session, current.id)
    assert [p.version for p in plans] == [1, 2, 3]
    assert all(p.issued_at is not None for p in plans)
    assert plans[1].supersedes == plans[0].id and plans[2].supersedes == plans[1].id
    assert current.id == plans[2].id
    foods = {i["name"] for d in current.schedule for m in d["meals"] for i in m["items"]}
    assert {"Idli (इडली)", "Roti (रोटी)", "Dal (दाल)"} <= foods
    assert current.adherence_summary_completed_days == 2
    assert current.adherence_summary_completed_days == diet.completed_days(current, ticks)
    assert any(t for t in ticks.values()) and len(ticks) < sum(
        len(d["meals"]) for d in current.schedule
    )
    assert plans[1].adherence_summary_completed_days == 2


def test_the_long_history_lab_orders_are_reported_and_reviewed_one_abnormal(demo: Demo) -> None:
    cipher = demo.ident.cipher
    with demo.session() as session:
        suresh = demo.suresh(session)
        rows = list(
            session.execute(
                select(Order)
                .where(Order.patient_id == suresh.id)
                .order_by(Order.status_timeline_ordered_at)
            ).scalars()
        )
        attached = {a.order_id for a in session.execute(select(OrderAttachment)).scalars().all()}
        results = [orders.result_of(session, cipher, o) for o in rows]
        seen_by_him = orders.reviewed_for_patients(session, cipher, [suresh.id])
        told = session.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.template == "lab-result")
        ).scalar_one()
    assert len(rows) >= 4
    assert all(o.status in (OrderStatus.REVIEWED, OrderStatus.NOTIFIED) for o in rows)
    assert all(o.status_timeline_reviewed_at and o.reviewed_by for o in rows)
    assert all(
        o.status_timeline_reported_at is not None
        and o.status_timeline_reviewed_at is not None
        and o.status_timeline_reported_at < o.status_timeline_reviewed_at
        for o in rows
    )
    assert all(o.id in attached for o in rows)
    assert [o.abnormal_flag for o in rows].count(True) == 1
    assert rows[0].abnormal_flag is True  # the first panel: HbA1c 8.9 %
    assert all(r.note for r in results)
    assert len(seen_by_him) == len(rows)
    assert told == sum(1 for o in rows if o.status == OrderStatus.NOTIFIED)


def test_other_demo_patients_have_orders_the_desk_is_still_following(demo: Demo) -> None:
    with demo.session() as session:
        suresh = demo.suresh(session)
        open_orders = list(
            session.execute(
                select(Order).where(
                    Order.patient_id != suresh.id,
                    Order.status.in_((OrderStatus.ORDERED, OrderStatus.COLLECTED)),
                )
            ).scalars()
        )
    assert {o.type for o in open_orders} == {"lab", "imaging"}


def test_every_demo_case_fits_the_age_of_its_patient(demo: Demo) -> None:
    """A child seen today gets the child's fever and a syrup, never an adult's tablets."""
    cipher = demo.ident.cipher
    with demo.session() as session:
        rows = session.execute(
            select(Prescription, Patient)
            .join(Patient, Patient.id == Prescription.patient_id)
            .where(Prescription.issued_at.is_not(None))
        ).all()
        given = [
            (patient_records.age_of(patient, clinic_today())[0], item.form)
            for p, patient in rows
            for item in prescriptions.items_of(session, cipher, p)
        ]
    assert given
    assert [(age, form) for age, form in given if age < 14 and form != "oral liquid"] == []


# --------------------------------------------------------------------------- the pages


def _todays_appointment(demo: Demo) -> uuid.UUID:
    with demo.session() as session:
        suresh = demo.suresh(session)
        draft = session.execute(
            select(Visit).where(Visit.patient_id == suresh.id, Visit.status == VisitStatus.DRAFT)
        ).scalar_one()
        return draft.appointment_id


def _login(demo: Demo, user: User) -> str:
    return open_session(demo.database, demo.ident, user)


def test_the_doctor_opens_todays_consultation_with_the_history(demo: Demo) -> None:
    appointment_id = _todays_appointment(demo)
    with demo.session() as session:
        doctor = session.execute(
            select(User).where(User.email == "doctor@sunrise-clinic.example")
        ).scalar_one()
        appointment = session.get_one(Appointment, (demo.tenant_id, appointment_id))
        assert appointment.status == "checked-in" and appointment.token_number is not None
    with cookie_browser(demo.app, _login(demo, doctor)) as browser:
        shown = browser.get(f"/consult/{appointment_id}")
        queue = browser.get("/my-queue")
    assert shown.status_code == 200, shown.text[-2000:]
    page = shown.text
    assert "Suresh" in page and "Jadhav" in page
    assert "Past visits" in page
    assert page.count("E11.9") >= 10  # the past visits listed, each with its diagnosis
    assert "128 mmHg" in page  # today's blood pressure, taken by the desk
    assert "earlier" in page  # with the earlier readings beside it
    assert "BMI" in page
    assert queue.status_code == 200
    assert f"/consult/{appointment_id}" in queue.text


def test_the_patient_sees_the_demo_prescriptions_diet_and_results_in_the_portal(
    demo: Demo,
) -> None:
    with demo.session() as session:
        suresh = demo.suresh(session)
        login = session.execute(
            select(User).where(User.role == "patient", User.phone_hash == suresh.phone_hash)
        ).scalar_one()
    with cookie_browser(demo.app, _login(demo, login)) as browser:
        rx = browser.get("/me/prescriptions")
        plan = browser.get("/me/diet")
        results = browser.get("/me/results")
    assert rx.status_code == 200, rx.text[-2000:]
    # the newest three in full, the others folded into a list with their PDFs
    assert rx.text.count("Download PDF") == 3
    folded = rx.text.split("Older prescriptions (", 1)[1]
    assert int(folded.split(")", 1)[0]) >= 12 and folded.count('/pdf">PDF</a>') >= 12
    assert "Metformin" in rx.text and "(replaced)" in folded
    assert plan.status_code == 200, plan.text[-2000:]
    assert "Idli" in plan.text and "✓ Done" in plan.text
    assert "2 of 3 days fully followed" in plan.text
    assert results.status_code == 200, results.text[-2000:]
    assert "HbA1c" in results.text
