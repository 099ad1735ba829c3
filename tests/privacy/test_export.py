"""The patient's data export (DPDP right to access): what the archive holds, that it holds
nothing of anyone else, that it is audited, and who may ask for it.

One patient (Kavita) is given at least one record of every kind the export gathers; a
second patient of the same clinic (Rohit) gets records with values of his own. The
archive of Kavita must hold all of hers and not one byte of his.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from opdesk import models as all_models
from opdesk.audit.models import AuditEvent
from opdesk.clinical import visits, vitals
from opdesk.consents import service as consents
from opdesk.db import Base, Database
from opdesk.documents import service as documents
from opdesk.privacy.export import COVERED, LEFT_OUT
from opdesk.security.permissions import ROLES, allowed
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    bearer,
    browser_for,
    clinic_session,
    csrf_of,
    join,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    portal_login,
)
from tests.factories.abdm import consent_granted, transfer_sent, with_abdm
from tests.factories.billing import draft, issue, line, pay, refund
from tests.factories.clinical_orders import Consult, make_diet_plan, make_order
from tests.factories.clinical_orders import make_visit as draft_visit
from tests.factories.clinical_rx import Setting, doctor_ctx, make_prescription
from tests.factories.clinics import ctx_for
from tests.factories.messages import queue
from tests.factories.web import portal_user_of

PDF_KAVITA = b"%PDF-1.4 Kavita's discharge summary, kept as she gave it \x00\x01\x02"
PDF_ROHIT = b"%PDF-1.4 Rohit-only scan 7f3a91 \xfe\xfd"
ROHIT_NOTE = "Migraine with aura since Diwali, zebra-marker-4411"
ROHIT_PHONE = "+919900112233"


@dataclass
class Person:
    patient: Any
    phone: str
    document_id: uuid.UUID
    visit: Consult


def storage_of(app: FastAPI) -> Any:
    return app.state.services.storage


def signed_consult(db: Database, ident: Any, tenant: Tenant, patient: Any, note: str) -> Consult:
    """A visit of ``patient`` with a note, a diagnosis and a pulse, signed by its doctor."""
    consult = draft_visit(db, ident, tenant, patient=patient)
    ctx = doctor_ctx(tenant, consult.doctor)
    with transaction(db, ctx) as session:
        visits.save_note(
            session,
            ctx,
            ident.cipher,
            visit_id=consult.visit_id,
            soap=visits.Soap(s=note, a="Assessment " + note, p="Rest"),
            explicit=True,
        )
        visits.add_diagnosis(
            session, ctx, ident.cipher, visit_id=consult.visit_id, code="A09", text=None
        )
        vitals.record(session, ctx, ident.cipher, visit_id=consult.visit_id, readings={"pulse": 78})
    return consult


def sign(db: Database, ident: Any, tenant: Tenant, consult: Consult) -> None:
    ctx = doctor_ctx(tenant, consult.doctor)
    with transaction(db, ctx) as session:
        visits.sign(session, ctx, ident.cipher, visit_id=consult.visit_id)


def upload(
    app: FastAPI, db: Database, ident: Any, tenant: Tenant, patient_id: Any, data: bytes, name: str
) -> uuid.UUID:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return documents.upload(
            session,
            ctx,
            ident.cipher,
            storage_of(app),
            patient_id=patient_id,
            category="other",
            filename=name,
            data=data,
            tags=["history"],
            max_bytes=1024 * 1024,
        ).id


def build_kavita(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> Person:
    """Kavita with one of everything: consent, document, appointment (with the visit),
    waitlist entry, signed visit with note/diagnosis/vitals, prescription, diet plan,
    reviewed order with its report file, invoice, payment, refund, message.
    """
    phone = "+919812300001"
    kavita = make_patient(
        db, ident, tenant, name={"first": "Kavita", "last": "Deshmukh"}, phone=phone
    )
    consult = signed_consult(db, ident, tenant, kavita, "Cough for a week, kavita-note-2718")
    setting = Setting(tenant, consult.doctor, kavita, consult.visit_id)
    make_prescription(db, ident, tenant, setting=setting)
    make_diet_plan(db, ident, tenant, visit=consult)
    make_order(db, ident, tenant, status="reviewed", visit=consult, storage=storage_of(app))
    sign(db, ident, tenant, consult)
    facility = with_abdm(db, ident.cipher, tenant).facility_id
    consent_id = consent_granted(db, tenant, facility, kavita.id, consult.visit_id)
    transfer_sent(db, tenant, consent_id, consult.visit_id)
    document_id = upload(app, db, ident, tenant, kavita.id, PDF_KAVITA, "discharge.pdf")
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        text = consents.add_template(
            session, ctx, type_="treatment", title="Treatment", body="I agree to be treated."
        )
        consents.sign(
            session,
            ctx,
            ident.cipher,
            storage_of(app),
            patient_id=kavita.id,
            type_="treatment",
            method="in-clinic",
            fonts=Path(tempfile.mkdtemp()),
            version=text.version,
        )
    join(db, tenant, kavita, consult.doctor.id)
    invoice = issue(db, tenant, draft(db, ident, tenant, line("800.00"), patient_id=kavita.id).id)
    payment = pay(db, tenant, invoice.id, "800.00")
    refund(db, tenant, payment.id, "100.00")
    queue(db, ident.cipher, tenant, recipient=phone, patient_id=kavita.id)
    return Person(kavita, phone, document_id, consult)


def build_rohit(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> Person:
    rohit = make_patient(
        db, ident, tenant, name={"first": "Rohit", "last": "Banerjee"}, phone=ROHIT_PHONE
    )
    consult = signed_consult(db, ident, tenant, rohit, ROHIT_NOTE)
    sign(db, ident, tenant, consult)
    document_id = upload(app, db, ident, tenant, rohit.id, PDF_ROHIT, "rohit-scan.pdf")
    invoice = issue(db, tenant, draft(db, ident, tenant, line("1234.00"), patient_id=rohit.id).id)
    pay(db, tenant, invoice.id, "1234.00")
    return Person(rohit, ROHIT_PHONE, document_id, consult)


@dataclass
class Clinic:
    tenant: Tenant
    kavita: Person
    rohit: Person


@pytest.fixture(scope="module")
def clinic(app: FastAPI, db: Database, ident: Any) -> Clinic:
    tenant = make_tenant(db, "Export Clinic")
    return Clinic(tenant, build_kavita(app, db, ident, tenant), build_rohit(app, db, ident, tenant))


def admin_headers(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def pdf_text(data: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True
    )
    return done.stdout.decode()


@pytest.fixture(scope="module")
def archive(app: FastAPI, db: Database, ident: Any, clinic: Clinic) -> dict[str, bytes]:
    with TestClient(app) as client:
        response = client.get(
            f"/api/v1/patients/{clinic.kavita.patient.id}/export",
            headers=admin_headers(db, ident, clinic.tenant),
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    return unzip(response.content)


def test_the_archive_holds_json_pdf_and_the_documents(archive: dict[str, bytes]) -> None:
    assert "patient.json" in archive
    assert "summary.pdf" in archive
    assert any(name.startswith("documents/") for name in archive)


SECTION_TABLES = {
    "consents": "consents",
    "documents": "documents",
    "appointments": "appointments",
    "waitlist": "waitlist_entries",
    "visits": "visits",
    "prescriptions": "prescriptions",
    "dietPlans": "diet_plans",
    "orders": "orders",
    "invoices": "invoices",
    "payments": "payments",
    "refunds": "payments_refunds",
    "ledger": "ledger_entries",
    "messages": "notifications_outbox",
    "abdmVisits": "abdm_care_contexts",
    "abdmConsents": "abdm_consents",
    "abdmTransfers": "abdm_transfers",
}
# The consents naming the patient (in their artefact), and the transfers under them.
_NAMING = "care_contexts @> jsonb_build_array(jsonb_build_object('patientReference', :p))"


def rows_of(db: Database, tenant_id: uuid.UUID, patient_id: uuid.UUID) -> dict[str, int]:
    """The patient's rows in each table, counted by the owner past the app's code."""
    counts = {}
    with db.owner_engine.connect() as conn:
        for section, table in SECTION_TABLES.items():
            where = {
                "documents": "owner_id = :p",
                "payments_refunds": "payment_id in (select id from payments where patient_id = :p)",
                "abdm_consents": _NAMING,
                "abdm_transfers": f"consent_id in (select consent_id from abdm_consents where"
                f" {_NAMING})",
            }.get(table, "patient_id = :p")
            counts[section] = conn.execute(
                text(f"select count(*) from {table} where tenant_id = :t and {where}"),
                {"t": tenant_id, "p": patient_id},
            ).scalar_one()
    return counts


def test_the_json_counts_equal_the_records_made(
    db: Database, archive: dict[str, bytes], clinic: Clinic
) -> None:
    data = json.loads(archive["patient.json"])
    assert data["patient"]["id"] == str(clinic.kavita.patient.id)
    assert data["patient"]["name"] == {"first": "Kavita", "last": "Deshmukh"}
    assert data["patient"]["phone"] == clinic.kavita.phone  # decrypted, as the app shows it
    # Every kind made at least once, and each count is the patient's rows in the table
    # (the system adds some of its own: the visit's draft bill, booking messages).
    made = rows_of(db, clinic.tenant.id, clinic.kavita.patient.id)
    assert data["counts"] == made
    assert all(n >= 1 for n in made.values()), made
    assert made["documents"] == 3  # the upload, the signed consent copy, the report file
    assert len(data["ledger"]) >= 3  # the charge, the payment and the refund
    assert data["withheld"] == {
        "unsignedVisitNotes": 0,
        "draftPrescriptions": 0,
        "draftDietPlans": 0,
        "unreviewedResults": 0,
    }
    (visit,) = data["visits"]
    assert visit["note"]["s"] == "Cough for a week, kavita-note-2718"
    assert [d["code"] for d in visit["diagnoses"]] == ["A09"]
    assert [(v["type"], v["value"]) for v in visit["vitals"]] == [("pulse", "78")]
    assert data["prescriptions"][0]["items"][0]["name"] == "Paracetamol 650 mg"
    assert data["orders"][0]["resultNote"] == "Sugar is well controlled."
    # money as strings, dates as ISO
    (paid,) = [i for i in data["invoices"] if i["amountPaid"] == "800.00"]
    assert paid["grandTotal"] == "800.00" and paid["amountRefunded"] == "100.00"
    assert data["refunds"][0]["amount"] == "100.00"
    assert datetime.fromisoformat(paid["issuedAt"]).tzinfo is not None


def test_each_document_is_in_the_archive_byte_for_byte(
    app: FastAPI, db: Database, ident: Any, archive: dict[str, bytes], clinic: Clinic
) -> None:
    data = json.loads(archive["patient.json"])
    listed = {d["id"]: d["file"] for d in data["documents"]}
    assert archive[listed[str(clinic.kavita.document_id)]] == PDF_KAVITA
    # every listed file is there, as the download route would give it
    with clinic_session(db, clinic.tenant.id) as session:
        for doc_id, name in listed.items():
            doc = documents.get(session, uuid.UUID(doc_id))
            assert archive[name] == documents.content(ident.cipher, storage_of(app), doc)
    report = data["orders"][0]["reportFiles"]
    assert len(report) == 1 and report[0] in archive


def test_nothing_of_another_patient_is_in_the_archive(
    archive: dict[str, bytes], clinic: Clinic
) -> None:
    rohit = clinic.rohit
    texts = dict(archive)
    texts["summary.pdf (text)"] = pdf_text(archive["summary.pdf"]).encode()
    needles = [
        b"Rohit",
        b"Banerjee",
        ROHIT_PHONE.encode(),
        ROHIT_PHONE[3:].encode(),
        ROHIT_NOTE.encode(),
        b"zebra-marker-4411",
        PDF_ROHIT,
        b"Rohit-only scan",
        str(rohit.patient.id).encode(),
        str(rohit.document_id).encode(),
        str(rohit.visit.visit_id).encode(),
        b"1234.00",
    ]
    found = [(n, name) for name, data in texts.items() for n in needles if n in data]
    assert found == []


def test_the_pdf_opens_and_names_the_patient_and_clinic(archive: dict[str, bytes]) -> None:
    text = pdf_text(archive["summary.pdf"])
    assert "Kavita Deshmukh" in text
    assert "Export Clinic" in text
    assert "kavita-note-2718" in text
    assert "Paracetamol 650 mg" in text


def test_a_hindi_name_draws_in_the_pdf(app: FastAPI, db: Database, ident: Any) -> None:
    tenant = make_tenant(db, "Hindi Clinic")
    patient = make_patient(db, ident, tenant, name={"first": "अमित", "last": "शर्मा"})
    with TestClient(app) as client:
        response = client.get(
            f"/api/v1/patients/{patient.id}/export", headers=admin_headers(db, ident, tenant)
        )
    assert response.status_code == 200
    text = pdf_text(unzip(response.content)["summary.pdf"])
    assert "शर्मा" in text or "शमार्" in text  # pdftotext may list shaped glyphs reordered


def test_one_audit_event_per_export_with_counts_and_no_contents(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    def exports() -> list[AuditEvent]:
        with clinic_session(db, clinic.tenant.id) as session:
            return list(
                session.execute(
                    select(AuditEvent)
                    .where(
                        AuditEvent.entity_collection == "patients",
                        AuditEvent.entity_id == clinic.kavita.patient.id,
                        AuditEvent.to_state == "exported",
                    )
                    .order_by(AuditEvent.seq)
                ).scalars()
            )

    before = len(exports())
    admin = make_user(db, ident, clinic.tenant, "admin")
    with TestClient(app) as client:
        response = client.get(
            f"/api/v1/patients/{clinic.kavita.patient.id}/export",
            headers=bearer(open_session(db, ident, admin)),
        )
    assert response.status_code == 200
    events = exports()
    assert len(events) == before + 1
    event = events[-1]
    assert event.actor_id == admin.id and event.actor_role == "admin"
    counted = event.diff["added"]["export"]
    assert counted["visits"] == 1 and counted["documents"] == 3 and counted["files"] == 3
    assert "Kavita" not in json.dumps(event.diff) and "kavita-note" not in json.dumps(event.diff)


# --------------------------------------------------------------------------- who may


def test_the_patient_downloads_their_own_data_in_the_portal(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    headers = portal_login(db, ident, clinic.tenant, clinic.kavita.patient)
    with TestClient(app) as client:
        own = client.get(f"/api/v1/me/patients/{clinic.kavita.patient.id}/export", headers=headers)
        other = client.get(f"/api/v1/me/patients/{clinic.rohit.patient.id}/export", headers=headers)
        staff_route = client.get(
            f"/api/v1/patients/{clinic.kavita.patient.id}/export", headers=headers
        )
    assert own.status_code == 200
    assert json.loads(unzip(own.content)["patient.json"])["patient"]["name"]["first"] == "Kavita"
    assert other.status_code == 404
    assert staff_route.status_code == 403


def test_the_portal_page_button_downloads_the_archive(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    user = portal_user_of(db, clinic.tenant, clinic.kavita.patient.id)
    with browser_for(app, open_session(db, ident, user)) as browser:
        home = browser.get("/me")
        assert "Download my data" in home.text
        action = f"/me/patients/{clinic.kavita.patient.id}/export"
        assert f'action="{action}"' in home.text
        got = browser.post(action, data={"csrf_token": csrf_of(home.text)})
        assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
        without_token = browser.post(action, data={})
        assert without_token.status_code == 403
        other = browser.post(
            f"/me/patients/{clinic.rohit.patient.id}/export",
            data={"csrf_token": csrf_of(home.text)},
        )
        assert other.status_code == 404


@pytest.mark.parametrize("role", ["frontdesk", "pharmacy", "accounts", "doctor"])
def test_staff_other_than_admins_are_refused(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic, role: str
) -> None:
    headers = bearer(open_session(db, ident, make_user(db, ident, clinic.tenant, role)))
    with TestClient(app) as client:
        response = client.get(
            f"/api/v1/patients/{clinic.kavita.patient.id}/export", headers=headers
        )
    assert response.status_code == 403


def test_another_clinics_admin_gets_404(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic
) -> None:
    elsewhere = make_tenant(db, "Elsewhere Clinic")
    with TestClient(app) as client:
        foreign = client.get(
            f"/api/v1/patients/{clinic.kavita.patient.id}/export",
            headers=admin_headers(db, ident, elsewhere),
        )
        unknown = client.get(
            f"/api/v1/patients/{uuid.uuid4()}/export", headers=admin_headers(db, ident, elsewhere)
        )
    assert foreign.status_code == 404
    assert unknown.status_code == 404


def test_only_admins_hold_the_export() -> None:
    """Visit notes never reach the desk, pharmacy or accounts; the export holds them."""
    assert [r for r in ROLES if allowed(r, "patients:export")] == ["admin"]


@pytest.mark.parametrize("role", ["admin", "frontdesk", "doctor", "pharmacy", "accounts"])
def test_the_staff_page_shows_the_action_exactly_to_roles_that_may(
    app: FastAPI, db: Database, ident: Any, clinic: Clinic, role: str
) -> None:
    """The profile template checks the role itself; this holds it to the table."""
    user = make_user(db, ident, clinic.tenant, role)
    with browser_for(app, open_session(db, ident, user)) as browser:
        page = browser.get(f"/patients/{clinic.kavita.patient.id}")
        assert page.status_code == 200
        shown = "Download the patient&#39;s data" in page.text
        assert shown == allowed(role, "patients:export")
        if shown:
            action = f"/patients/{clinic.kavita.patient.id}/export"
            got = browser.post(action, data={"csrf_token": csrf_of(page.text)})
            assert got.status_code == 200 and got.content[:2] == b"PK"


# --------------------------------------------------------------------------- coverage


def patient_tables() -> set[str]:
    """Tables holding a patient's rows: a ``patient_id`` column, the patients and their
    documents (owned by ``owner_id``), and every table with a foreign key into those.
    """
    all_models.load_all_models()
    tables = Base.metadata.tables
    found = {name for name, t in tables.items() if "patient_id" in t.c} | {
        "patients",
        "documents",
    }
    grew = True
    while grew:
        grew = False
        for name, table in tables.items():
            if name not in found and any(
                fk.referred_table.name in found for fk in table.foreign_key_constraints
            ):
                found.add(name)
                grew = True
    return found


def test_every_table_with_a_patients_rows_is_exported_or_left_out_with_a_reason() -> None:
    tables = patient_tables()
    assert not set(COVERED) & set(LEFT_OUT)
    assert sorted(tables - set(COVERED) - set(LEFT_OUT)) == [], "new table: export it or say why"
    assert sorted((set(COVERED) | set(LEFT_OUT)) - tables) == [], "named tables that do not exist"
    assert all(reason.strip() for reason in LEFT_OUT.values())
    assert {"visits", "prescriptions", "invoices", "payments"} <= set(COVERED)
