"""The consultation screen: reached from "My queue", the note autosaved and signed,
refusals on a signed visit, who may open it, and free text shown escaped.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from opdesk.clinical.models import Visit
from opdesk.db import Database
from opdesk.scheduling import lifecycle
from opdesk.uow import transaction
from tests.factories import clinic_session, csrf_of, make_user, open_session
from tests.factories.clinical_visits import Consultation, consultation, make_service
from tests.factories.web import cookie_browser, htmx_csrf_of

HINDI: dict[str, Any] = {"name": {"first": "सुनीता", "last": "शर्मा"}}
SCRIPT = "<script>alert('x')</script>"


def doctor_browser(app: FastAPI, db: Database, ident: Any, c: Consultation) -> Any:
    return cookie_browser(app, open_session(db, ident, c.doctor_user))


def visit_of(db: Database, c: Consultation) -> Visit | None:
    with clinic_session(db, c.tenant.id) as session:
        return session.execute(
            select(Visit).where(Visit.appointment_id == c.appointment.id)
        ).scalar_one_or_none()


def test_the_consultation_opens_the_visit_and_shows_the_patient(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(
        db,
        ident,
        allergies=[{"substance": "Penicillin " + SCRIPT, "reaction": "rash", "severity": "severe"}],
        **HINDI,
    )
    assert visit_of(db, c) is None
    with doctor_browser(app, db, ident, c) as browser:
        page = browser.get(f"/consult/{c.appointment.id}")
    assert page.status_code == 200, page.text
    assert "सुनीता शर्मा" in page.text
    assert 'class="allergy-banner" role="alert"' in page.text
    assert SCRIPT not in page.text and "&lt;script&gt;" in page.text
    assert 'data-region="prescriptions"' in page.text and 'data-region="orders"' in page.text
    assert visit_of(db, c) is not None


def test_autosave_signing_and_a_signed_note_refusing_changes(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    url = f"/consult/{c.appointment.id}"
    with doctor_browser(app, db, ident, c) as browser:
        page = browser.get(url)
        token, header = csrf_of(page.text), htmx_csrf_of(page.text)
        note = {f"soap.{p}": f"{p} {SCRIPT}" for p in "soap"}
        saved = browser.put(
            f"{url}/soap", data=note, headers={"X-CSRF-Token": header, "HX-Request": "true"}
        )
        assert saved.status_code == 200 and "Saved" in saved.text and "version 1" in saved.text
        unconfirmed = browser.post(f"{url}/sign", data={**note, "csrf_token": token})
        assert "tick the box" in unconfirmed.text
        assert visit_of(db, c).status == "draft"  # type: ignore[union-attr]
        signed = browser.post(f"{url}/sign", data={**note, "confirm": "yes", "csrf_token": token})
        assert signed.status_code == 200 and "Visit signed" in signed.text
        assert SCRIPT not in signed.text and "&lt;script&gt;" in signed.text
        assert 'name="soap.s"' not in signed.text  # no editor on a signed visit
        # a stale tab keeps typing: refused, and nothing changes
        late = browser.put(
            f"{url}/soap",
            data={"soap.s": "changed"},
            headers={"X-CSRF-Token": header, "HX-Request": "true"},
        )
        assert late.status_code == 409 and "addendum" in late.text
        again = browser.post(f"{url}/save", data={"soap.s": "changed", "csrf_token": token})
        assert "cannot change" in again.text
        added = browser.post(f"{url}/addenda", data={"text": SCRIPT, "csrf_token": token})
        assert "Addendum signed" in added.text and SCRIPT not in added.text
    visit = visit_of(db, c)
    assert visit is not None and visit.status == "signed" and visit.soap_signed_version == 1


def test_diagnoses_vitals_services_and_follow_up_from_the_page(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    make_service(db, c.tenant, code="ECG", name="ECG")
    url = f"/consult/{c.appointment.id}"
    with doctor_browser(app, db, ident, c) as browser:
        token = csrf_of(browser.get(url).text)
        found = browser.get(f"{url}/icd", params={"q": "typhoid"}, headers={"HX-Request": "true"})
        assert "A01.0" in found.text
        page = browser.post(f"{url}/diagnoses", data={"code": "A01.0", "csrf_token": token})
        assert "Diagnosis added" in page.text and "Primary" in page.text
        bad = browser.post(f"{url}/diagnoses", data={"code": "ZZZ.9", "csrf_token": token})
        assert "not a WHO ICD-10 code" in bad.text
        high = browser.post(f"{url}/vitals", data={"temperature": "120", "csrf_token": token})
        assert "between 90.0 and 110.0 °F" in high.text
        ok = browser.post(
            f"{url}/vitals", data={"weight": "64", "height": "160", "csrf_token": token}
        )
        assert "Vitals recorded" in ok.text and "25.0" in ok.text  # BMI
        service = browser.get(url).text.split('<option value="')[1].split('"')[0]
        added = browser.post(
            f"{url}/services", data={"serviceId": service, "quantity": "1", "csrf_token": token}
        )
        assert "Service added" in added.text
        follow = browser.post(f"{url}/follow-up", data={"intervalDays": "abc", "csrf_token": token})
        assert "whole number of days" in follow.text


def test_the_desk_cannot_open_the_consultation_and_another_clinic_finds_nothing(
    app: FastAPI, db: Database, ident: Any
) -> None:
    c = consultation(db, ident)
    desk = make_user(db, ident, c.tenant, "frontdesk")
    with cookie_browser(app, open_session(db, ident, desk)) as browser:
        assert browser.get(f"/consult/{c.appointment.id}").status_code == 403
    other = consultation(db, ident)
    with doctor_browser(app, db, ident, other) as browser:
        assert browser.get(f"/consult/{c.appointment.id}").status_code == 404
        assert browser.get(f"/consult/{uuid.uuid4()}").status_code == 404
    assert visit_of(db, c) is None


def test_names_in_my_queue_lead_to_the_consultation(app: FastAPI, db: Database, ident: Any) -> None:
    """A walk-in has an appointment too: the doctor opens it from the queue in one click."""
    c = consultation(db, ident, **HINDI)
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        walked_in = lifecycle.walk_in(
            session, ctx, patient_id=c.patient.id, doctor_id=c.doctor.id, visit_type="consultation"
        )
    with doctor_browser(app, db, ident, c) as browser:
        queue = browser.get("/my-queue")
        assert f'href="/consult/{walked_in.id}"' in queue.text
        assert "सुनीता शर्मा" in queue.text
        assert browser.get(f"/consult/{walked_in.id}").status_code == 200
