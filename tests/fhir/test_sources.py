"""The builders' facts read from the database: what a patient's record holds comes back
decrypted and whole, derived ids resolve to their parent, and anything of another clinic,
or an id that names nothing, is NotFound.

The record is made through the services (``tests/factories/fhir.py``); the values checked
here are the ones it was made with, not ones read back through the module under test.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from opdesk.clinical import orders
from opdesk.db import Database
from opdesk.errors import NotFound
from opdesk.fhir import billing, clinical, sources
from opdesk.patients.schemas import luhn_valid
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import ctx_for, make_patient, make_tenant
from tests.factories.clinical_orders import make_visit
from tests.factories.fhir import Record, patient_record


@pytest.fixture(scope="module")
def record(app: FastAPI, db: Database, ident: Any) -> Record:
    tenant = make_tenant(db, "Sources Clinic")
    return patient_record(db, ident, tenant, app.state.services.storage)


@pytest.fixture(scope="module")
def elsewhere(db: Database) -> Tenant:
    return make_tenant(db, "Elsewhere Clinic")


def reading(db: Database, tenant: Tenant, role: str = "doctor") -> Any:
    """A transaction of ``tenant`` as a member of staff with ``role``."""
    return transaction(db, ctx_for(tenant.id, role=role))


def read(
    app: FastAPI,
    db: Database,
    ident: Any,
    tenant: Tenant,
    kind: str,
    id_: uuid.UUID,
    role: str = "doctor",
) -> dict[str, Any]:
    ctx = ctx_for(tenant.id, role=role)
    with transaction(db, ctx) as session:
        found = sources.resource(
            session, ident.cipher, ctx, kind, id_, storage=app.state.services.storage
        )
    assert found.get_resource_type() == kind
    assert found.id == str(id_)
    dumped: dict[str, Any] = found.model_dump(mode="json", exclude_none=True)
    return dumped


def valid_abha() -> str:
    body = "".join(secrets.choice("0123456789") for _ in range(13))
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    return body + check


def test_a_patient_comes_back_decrypted_with_the_name_as_written(
    db: Database, ident: Any, cipher: Any
) -> None:
    tenant = make_tenant(db, "Naam Clinic")
    abha = valid_abha()
    patient = make_patient(
        db,
        ident,
        tenant,
        name={"first": "अमित", "last": "शर्मा"},
        phone="+919822043210",
        gender="male",
        dob="1988-04-12",
        ageYears=None,
        abhaNumber=abha,
    )
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        facts = sources.patient_facts(session, cipher, patient.id, ctx.now().date())
    assert (facts.name_first, facts.name_last) == ("अमित", "शर्मा")
    assert facts.number == patient.display_number
    assert facts.phone == "+919822043210"
    assert facts.gender == "male" and str(facts.dob) == "1988-04-12"
    assert facts.abha_number is not None
    assert facts.abha_number.replace("-", "") == abha
    assert facts.tenant_id == tenant.id


def test_the_visit_comes_back_with_its_diagnosis_and_readings(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    condition = read(app, db, ident, record.tenant, "Condition", record.diagnosis_id)
    coding = condition["code"]["coding"][0]
    assert (coding["system"], coding["code"]) == (clinical.ICD_10, "J06.9")
    assert "upper respiratory" in coding["display"].lower()  # WHO's words, from icd10_codes
    assert condition["code"]["text"] == "तीन दिन से बुखार और खांसी"

    encounter = read(app, db, ident, record.tenant, "Encounter", record.visit_id)
    assert encounter["status"] == "finished"
    assert encounter["diagnosis"] == [
        {"condition": {"reference": f"Condition/{record.diagnosis_id}"}, "rank": 1}
    ]
    assert encounter["appointment"] == [{"reference": f"Appointment/{record.appointment_id}"}]

    pressure = read(app, db, ident, record.tenant, "Observation", record.vitals["bp-systolic"])
    values = [c["valueQuantity"]["value"] for c in pressure["component"]]
    assert values == [128, 84]
    weight = read(app, db, ident, record.tenant, "Observation", record.vitals["weight"])
    assert weight["valueQuantity"]["value"] == 71.5


def test_a_blood_pressures_diastolic_half_names_no_resource_of_its_own(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    with pytest.raises(NotFound):
        read(app, db, ident, record.tenant, "Observation", record.vitals["bp-diastolic"])


def test_each_medicine_is_found_by_its_derived_id(
    app: FastAPI, db: Database, ident: Any, cipher: Any, record: Record
) -> None:
    second = clinical.medication_request_id(record.prescription_id, 2)
    with reading(db, record.tenant) as session:
        row, position = sources.medication_request_source(session, second)
        assert (row.id, position) == (record.prescription_id, 2)
    first = read(
        app,
        db,
        ident,
        record.tenant,
        "MedicationRequest",
        clinical.medication_request_id(record.prescription_id, 1),
    )
    assert first["medicationCodeableConcept"]["text"] == "Paracetamol 650 mg tablet"
    assert first["dosageInstruction"][0]["patientInstruction"] == "बुखार होने पर ही लें"
    assert first["groupIdentifier"]["value"] == str(record.prescription_id)
    assert first["status"] == "active"


def test_each_test_of_an_order_and_each_invoice_line_is_found_by_its_derived_id(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    test = clinical.service_request_id(record.pending_order_id, 1)
    with reading(db, record.tenant) as session:
        order, n = sources.service_request_source(session, test)
        assert (order.id, n) == (record.pending_order_id, 1)
        invoice, line = sources.charge_item_source(
            session, billing.charge_item_id(record.invoice_id, 2)
        )
        assert (invoice.id, line) == (record.invoice_id, 2)
    asked = read(app, db, ident, record.tenant, "ServiceRequest", test)
    assert asked["code"]["text"] == "Lipid profile"
    assert asked["status"] == "active"
    charged = read(
        app, db, ident, record.tenant, "ChargeItem", billing.charge_item_id(record.invoice_id, 1)
    )
    assert charged["productCodeableConcept"]["text"] == "परामर्श शुल्क (Consultation)"


def test_a_derived_id_that_names_nothing_is_not_found(db: Database, record: Record) -> None:
    with reading(db, record.tenant) as session:
        for resolve, wanted in (
            (
                sources.medication_request_source,
                clinical.medication_request_id(record.prescription_id, 3),
            ),
            (
                sources.service_request_source,
                clinical.service_request_id(record.pending_order_id, 2),
            ),
            (sources.charge_item_source, billing.charge_item_id(record.invoice_id, 3)),
            (sources.charge_item_source, billing.charge_item_id(record.draft_invoice_id, 1)),
            (sources.medication_request_source, uuid.uuid4()),
        ):
            with pytest.raises(NotFound):
                resolve(session, wanted)


def test_the_report_carries_the_labs_file_and_the_doctors_review(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    report = read(app, db, ident, record.tenant, "DiagnosticReport", record.reviewed_order_id)
    assert report["status"] == "final"
    assert report["conclusion"] == "Sugar is well controlled."
    assert report["conclusionCode"][0]["coding"][0]["display"] == "Abnormal"
    (form,) = report["presentedForm"]
    (file_id,) = record.report_document_ids
    assert base64.b64decode(form["data"]) == record.files[file_id]


def test_a_document_comes_with_its_file_decrypted(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    newest = record.referral_ids[-1]
    found = read(app, db, ident, record.tenant, "DocumentReference", newest)
    attachment = found["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == record.files[newest]
    assert attachment["title"] == "रेफ़रल-2.pdf"
    assert found["type"]["coding"][0]["code"] == "57133-1"  # LOINC referral note


def test_the_consent_and_the_invoice_come_back_as_recorded(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    agreed = read(app, db, ident, record.tenant, "Consent", record.consent_id)
    assert agreed["status"] == "active"
    assert agreed["sourceReference"]["reference"] == f"DocumentReference/{record.consent_file_id}"
    invoice = read(app, db, ident, record.tenant, "Invoice", record.invoice_id)
    # 500 (exempt) + 349.99 with 18% GST (31.50 + 31.50): the totals the bill printed.
    assert Decimal(str(invoice["totalGross"]["value"])) == Decimal("912.99")
    assert invoice["totalGross"]["currency"] == "INR"


def test_a_draft_invoice_and_a_procedure_report_are_not_found(
    app: FastAPI, db: Database, ident: Any, record: Record
) -> None:
    with pytest.raises(NotFound):
        read(app, db, ident, record.tenant, "Invoice", record.draft_invoice_id)
    visit = make_visit(db, ident, record.tenant)
    ctx = ctx_for(record.tenant.id)
    with transaction(db, ctx) as session:
        dressing = orders.place(
            session, ctx, visit_id=visit.visit_id, type_="procedure", items=[{"name": "Dressing"}]
        )
    with pytest.raises(NotFound, match="procedure"):
        read(app, db, ident, record.tenant, "DiagnosticReport", dressing.id)


def test_only_the_clinics_own_organization_is_found(
    app: FastAPI, db: Database, ident: Any, record: Record, elsewhere: Tenant
) -> None:
    own = read(app, db, ident, record.tenant, "Organization", record.tenant.id)
    assert own["name"] == record.tenant.name
    with pytest.raises(NotFound):
        read(app, db, ident, record.tenant, "Organization", elsewhere.id)


def ids_of(record: Record) -> Iterator[tuple[str, uuid.UUID]]:
    yield "Patient", record.patient.id
    yield "Practitioner", record.doctor.id
    yield "Appointment", record.appointment_id
    yield "Encounter", record.visit_id
    yield "Condition", record.diagnosis_id
    yield "Observation", record.vitals["pulse"]
    yield "MedicationRequest", clinical.medication_request_id(record.prescription_id, 1)
    yield "ServiceRequest", clinical.service_request_id(record.reviewed_order_id, 1)
    yield "DiagnosticReport", record.reviewed_order_id
    yield "DocumentReference", record.referral_ids[-1]
    yield "Consent", record.consent_id
    yield "Invoice", record.invoice_id
    yield "ChargeItem", billing.charge_item_id(record.invoice_id, 1)
    yield "Organization", record.tenant.id


def test_every_type_is_read_in_the_clinic_and_not_found_from_another(
    app: FastAPI, db: Database, ident: Any, record: Record, elsewhere: Tenant
) -> None:
    kinds = [kind for kind, _ in ids_of(record)]
    assert sorted(kinds) == sorted(sources.TYPES)
    for kind, id_ in ids_of(record):
        read(app, db, ident, record.tenant, kind, id_)
        with pytest.raises(NotFound):
            read(app, db, ident, elsewhere, kind, id_)


def test_a_type_opdesk_does_not_make_is_not_found(
    db: Database, cipher: Any, record: Record
) -> None:
    ctx = ctx_for(record.tenant.id)
    with transaction(db, ctx) as session, pytest.raises(NotFound, match="AllergyIntolerance"):
        sources.resource(
            session, cipher, ctx, "AllergyIntolerance", uuid.uuid4(), storage=_nowhere()
        )


def _nowhere() -> Any:
    class Nowhere:
        def get(self, key: str) -> bytes:
            raise AssertionError("nothing is read for a type that does not exist")

    return Nowhere()


def test_facts_match_what_the_builders_are_given(
    db: Database, cipher: Any, record: Record, app: FastAPI
) -> None:
    """The per-record loaders and the resource readers agree (the API uses the second)."""
    storage = app.state.services.storage
    ctx = ctx_for(record.tenant.id, role="doctor")
    with transaction(db, ctx) as session:
        _check_same(session, cipher, ctx, storage, record)


def _check_same(session: Session, cipher: Any, ctx: Any, storage: Any, record: Record) -> None:
    def same(kind: str, id_: uuid.UUID, built: Any) -> None:
        got = sources.resource(session, cipher, ctx, kind, id_, storage=storage)
        assert got.model_dump(mode="json") == built.model_dump(mode="json"), kind

    same(
        "Appointment",
        record.follow_up_id,
        clinical.appointment(sources.appointment_facts(session, record.follow_up_id)),
    )
    rx, items = sources.prescription_facts(session, cipher, record.prescription_id)
    assert [i.name for i in items] == ["Paracetamol", "Cetirizine"]
    same(
        "MedicationRequest",
        clinical.medication_request_id(rx.id, 2),
        clinical.medication_request(rx, items[1]),
    )
    order, files = sources.order_facts(session, cipher, record.reviewed_order_id)
    assert order.notes == "Sugar is well controlled." and order.abnormal_flag is True
    same(
        "DiagnosticReport",
        order.id,
        clinical.diagnostic_report(order, [sources.document_of(cipher, storage, d) for d in files]),
    )
    same(
        "Invoice",
        record.invoice_id,
        billing.invoice(sources.invoice_facts(session, record.invoice_id)),
    )
