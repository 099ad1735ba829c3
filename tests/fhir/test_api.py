"""``GET /fhir/R4/<Type>/<id>`` and ``Patient/$everything``: each type as the builders make
it for the record, refusals as OperationOutcomes with the project's statuses, documents
only of the categories a role reads, and ``$everything`` holding the patient's whole
released record, nothing of anyone else's, audited.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.resource import Resource
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.fhir import billing, clinical, consent, resources, sources
from opdesk.security.permissions import ROLES, allowed
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import bearer, clinic_session, ctx_for, make_tenant, make_user, open_session
from tests.factories.fhir import Record, patient_record

FHIR_JSON = "application/fhir+json"


@dataclass
class Clinic:
    amit: Record
    rohit: Record  # another patient of the same clinic
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def clinic(app: FastAPI, db: Database, ident: Any) -> Clinic:
    tenant = make_tenant(db, "FHIR API Clinic")
    storage = app.state.services.storage
    amit = patient_record(db, ident, tenant, storage)
    rohit = patient_record(
        db, ident, tenant, storage, first="Rohit", last="Kulkarni", referral=b"%PDF-1.4 rohit"
    )
    tokens = {
        role: open_session(db, ident, make_user(db, ident, tenant, role))
        for role in ROLES
        if role != "patient"
    }
    return Clinic(amit, rohit, tokens)


@dataclass(frozen=True)
class Read:
    kind: str
    path: str
    action: str
    id_of: Callable[[Record], uuid.UUID]


READS = [
    Read("Patient", "Patient/{}", "patients:read", lambda r: r.patient.id),
    Read("Practitioner", "Practitioner/{}", "clinic:read", lambda r: r.doctor.id),
    Read("Organization", "Organization/{}", "clinic:read", lambda r: r.tenant.id),
    Read("Appointment", "Appointment/{}", "appointments:read", lambda r: r.appointment_id),
    Read("Encounter", "Encounter/{}", "visits:read", lambda r: r.visit_id),
    Read("Condition", "Condition/{}", "visits:read", lambda r: r.diagnosis_id),
    Read("Observation", "Observation/{}", "vitals:read", lambda r: r.vitals["bp-systolic"]),
    Read(
        "MedicationRequest",
        "MedicationRequest/{}",
        "prescriptions:read",
        lambda r: clinical.medication_request_id(r.prescription_id, 1),
    ),
    Read(
        "ServiceRequest",
        "ServiceRequest/{}",
        "orders:read",
        lambda r: clinical.service_request_id(r.reviewed_order_id, 1),
    ),
    Read(
        "DiagnosticReport", "DiagnosticReport/{}", "orders:results", lambda r: r.reviewed_order_id
    ),
    Read(
        "DocumentReference", "DocumentReference/{}", "documents:read", lambda r: r.referral_ids[-1]
    ),
    Read("Consent", "Consent/{}", "patients:read", lambda r: r.consent_id),
    Read("Invoice", "Invoice/{}", "invoices:read", lambda r: r.invoice_id),
    Read(
        "ChargeItem",
        "ChargeItem/{}",
        "invoices:read",
        lambda r: billing.charge_item_id(r.invoice_id, 2),
    ),
]
EVERYTHING = Read("Bundle", "Patient/{}/$everything", "patients:export", lambda r: r.patient.id)


def url(read: Read, record: Record) -> str:
    return "/fhir/R4/" + read.path.format(read.id_of(record))


def staff_holding(action: str, reader: str = "") -> str:
    """A role that may take ``action`` (a clinical reader for documents)."""
    if reader:
        return reader
    return next(
        r for r in ("frontdesk", "doctor", "pharmacy", "accounts", "admin") if allowed(r, action)
    )


def built(db: Database, app: FastAPI, cipher: Any, record: Record, kind: str) -> Resource:
    """What the builders make of the record's ``kind``, from the facts loaded for it."""
    storage = app.state.services.storage
    ctx = ctx_for(record.tenant.id)
    r = record
    with transaction(db, ctx) as session:
        if kind == "Patient":
            return resources.patient(
                sources.patient_facts(session, cipher, r.patient.id, ctx.now().date())
            )
        if kind == "Practitioner":
            return resources.practitioner(sources.practitioner_facts(session, r.doctor.id))
        if kind == "Organization":
            return resources.organization(
                sources.organization_facts(session, cipher, r.tenant.id, own=r.tenant.id)
            )
        if kind == "Appointment":
            return clinical.appointment(sources.appointment_facts(session, r.appointment_id))
        if kind == "Encounter":
            return clinical.encounter(
                sources.encounter_facts(session, r.visit_id),
                [sources.condition_facts(session, cipher, r.diagnosis_id)],
            )
        if kind == "Condition":
            return clinical.condition(sources.condition_facts(session, cipher, r.diagnosis_id))
        if kind == "Observation":
            pair = [
                sources.vital_facts(session, cipher, r.vitals[k])
                for k in ("bp-systolic", "bp-diastolic")
            ]
            (panel,) = clinical.vital_signs(pair)
            return panel
        if kind == "MedicationRequest":
            rx, items = sources.prescription_facts(session, cipher, r.prescription_id)
            return clinical.medication_request(rx, items[0])
        if kind in ("ServiceRequest", "DiagnosticReport"):
            order, files = sources.order_facts(session, cipher, r.reviewed_order_id)
            if kind == "ServiceRequest":
                return clinical.service_requests(order)[0]
            return clinical.diagnostic_report(
                order, [sources.document_of(cipher, storage, d) for d in files]
            )
        if kind == "DocumentReference":
            return clinical.document_reference(
                sources.document_facts(session, cipher, storage, r.referral_ids[-1])
            )
        if kind == "Consent":
            return consent.consent(sources.consent_facts(session, r.consent_id))
        if kind == "Invoice":
            return billing.invoice(sources.invoice_facts(session, r.invoice_id))
        assert kind == "ChargeItem"
        return billing.charge_items(sources.invoice_facts(session, r.invoice_id))[1]


@pytest.mark.parametrize("read", READS, ids=lambda r: r.kind)
def test_each_type_read_by_a_role_that_may_is_what_the_builder_makes(
    app: FastAPI, db: Database, cipher: Any, client: TestClient, clinic: Clinic, read: Read
) -> None:
    role = staff_holding(read.action, "doctor" if read.kind == "DocumentReference" else "")
    response = client.get(url(read, clinic.amit), headers=bearer(clinic.tokens[role]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_JSON
    assert response.headers["cache-control"] == "no-store"
    expected = built(db, app, cipher, clinic.amit, read.kind)
    assert response.json() == expected.model_dump(mode="json", exclude_none=True)


def test_names_in_devanagari_travel_as_written(client: TestClient, clinic: Clinic) -> None:
    patient = client.get(
        f"/fhir/R4/Patient/{clinic.amit.patient.id}", headers=bearer(clinic.tokens["frontdesk"])
    )
    assert '"text":"अमित शर्मा"' in patient.text  # UTF-8 as is, not \u escapes
    condition = client.get(
        f"/fhir/R4/Condition/{clinic.amit.diagnosis_id}", headers=bearer(clinic.tokens["doctor"])
    )
    assert "तीन दिन से बुखार और खांसी" in condition.text


def is_outcome(response: Any, status: int, code: str) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"] == FHIR_JSON
        and body["resourceType"] == "OperationOutcome"
        and [i["code"] for i in body["issue"]] == [code]
    )


def test_every_type_of_another_clinic_is_not_found(
    db: Database, ident: Any, client: TestClient, clinic: Clinic, other_tenant: Tenant
) -> None:
    """Tenant B's staff, each holding the route's action, name tenant A's records."""
    tokens: dict[str, str] = {}
    wrong = []
    for read in [*READS, EVERYTHING]:
        role = staff_holding(read.action)
        if role not in tokens:
            tokens[role] = open_session(db, ident, make_user(db, ident, other_tenant, role))
        response = client.get(url(read, clinic.amit), headers=bearer(tokens[role]))
        if not is_outcome(response, 404, "not-found"):
            wrong.append(f"{read.kind}: {response.status_code} {response.text[:200]}")
    assert wrong == []


def test_a_role_without_the_action_is_refused_and_a_visitor_must_sign_in(
    client: TestClient, clinic: Clinic
) -> None:
    wrong = []
    for read in [*READS, EVERYTHING]:
        lacking = [r for r in clinic.tokens if not allowed(r, read.action)]
        for role in lacking:
            response = client.get(url(read, clinic.amit), headers=bearer(clinic.tokens[role]))
            if not is_outcome(response, 403, "forbidden"):
                wrong.append(f"{read.kind} as {role}: {response.status_code}")
        anonymous = client.get(url(read, clinic.amit))
        if not is_outcome(anonymous, 401, "login") or "www-authenticate" not in anonymous.headers:
            wrong.append(f"{read.kind} anonymous: {anonymous.status_code}")
    assert wrong == []
    assert len({r for read in READS for r in clinic.tokens if not allowed(r, read.action)}) >= 4


def test_a_malformed_id_is_invalid_and_names_the_parameter(
    client: TestClient, clinic: Clinic
) -> None:
    response = client.get("/fhir/R4/Encounter/visit-1", headers=bearer(clinic.tokens["doctor"]))
    assert is_outcome(response, 422, "invalid")
    (issue,) = response.json()["issue"]
    assert issue["expression"] == ["path.visit_id"]
    assert issue["diagnostics"].startswith("path.visit_id: ")


def test_a_document_of_a_category_the_role_may_not_read_is_not_found(
    client: TestClient, clinic: Clinic
) -> None:
    referral = f"/fhir/R4/DocumentReference/{clinic.amit.referral_ids[-1]}"
    (report_file,) = clinic.amit.report_document_ids
    report = f"/fhir/R4/DocumentReference/{report_file}"
    # A referral is clinical: the pharmacy and accounts hold documents:read, not its category.
    for role in ("pharmacy", "accounts"):
        answer = client.get(referral, headers=bearer(clinic.tokens[role]))
        assert is_outcome(answer, 404, "not-found"), role
    assert client.get(referral, headers=bearer(clinic.tokens["frontdesk"])).status_code == 200
    # A lab's result file is a result: only a role that reads results (a doctor) sees it.
    for role in ("frontdesk", "admin"):
        assert is_outcome(client.get(report, headers=bearer(clinic.tokens[role])), 404, "not-found")
    assert client.get(report, headers=bearer(clinic.tokens["doctor"])).status_code == 200


def released(record: Record) -> set[str]:
    """Every resource of the record that the clinic hands out, as ``Type/id``."""
    r = record
    mine = {
        f"Patient/{r.patient.id}",
        f"Appointment/{r.appointment_id}",
        f"Appointment/{r.follow_up_id}",
        f"Encounter/{r.visit_id}",
        f"Condition/{r.diagnosis_id}",
        # a blood pressure is one panel, under the systolic reading's id
        *(f"Observation/{id_}" for kind, id_ in r.vitals.items() if kind != "bp-diastolic"),
        *(
            f"MedicationRequest/{clinical.medication_request_id(r.prescription_id, n)}"
            for n in (1, 2)
        ),
        *(
            f"ServiceRequest/{clinical.service_request_id(o, 1)}"
            for o in (r.reviewed_order_id, r.reported_order_id, r.pending_order_id)
        ),
        f"DiagnosticReport/{r.reviewed_order_id}",
        *(f"DocumentReference/{d}" for d in [*r.report_document_ids, *r.referral_ids]),
        f"DocumentReference/{r.consent_file_id}",
        f"Consent/{r.consent_id}",
        f"Invoice/{r.invoice_id}",
        *(f"ChargeItem/{billing.charge_item_id(r.invoice_id, n)}" for n in (1, 2)),
    }
    return mine | {f"Organization/{r.tenant.id}", f"Practitioner/{r.doctor.id}"}


def withheld(record: Record) -> set[str]:
    r = record
    return {
        f"MedicationRequest/{clinical.medication_request_id(r.draft_prescription_id, 1)}",
        f"DiagnosticReport/{r.reported_order_id}",
        f"DiagnosticReport/{r.pending_order_id}",
        *(f"DocumentReference/{d}" for d in r.unreviewed_document_ids),
        f"Invoice/{r.draft_invoice_id}",
    }


def test_everything_holds_the_patients_released_record_and_nothing_of_anyone_else(
    client: TestClient, clinic: Clinic
) -> None:
    amit, rohit = clinic.amit, clinic.rohit
    response = client.get(
        f"/fhir/R4/Patient/{amit.patient.id}/$everything", headers=bearer(clinic.tokens["admin"])
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_JSON
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    entries = bundle["entry"]
    listed = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]
    assert len(listed) == len(set(listed))
    assert set(listed) == released(amit)
    assert not set(listed) & withheld(amit)
    assert entries[0]["resource"]["resourceType"] == "Patient"
    assert bundle["total"] == sum(1 for e in entries if e["search"]["mode"] == "match")
    for entry in entries:
        kind, id_ = entry["resource"]["resourceType"], entry["resource"]["id"]
        assert entry["fullUrl"].endswith(f"/fhir/R4/{kind}/{id_}")
        mode = "include" if kind in ("Organization", "Practitioner") else "match"
        assert entry["search"]["mode"] == mode
    text = json.dumps(bundle, ensure_ascii=False)
    assert str(rohit.patient.id) not in text and "Rohit" not in text
    assert not set(listed) & released(rohit) - {f"Organization/{amit.tenant.id}"}


def test_each_everything_is_audited_with_counts_and_no_contents(
    db: Database, client: TestClient, clinic: Clinic
) -> None:
    def exported() -> list[AuditEvent]:
        with clinic_session(db, clinic.amit.tenant.id) as session:
            return list(
                session.execute(
                    select(AuditEvent)
                    .where(
                        AuditEvent.entity_collection == "patients",
                        AuditEvent.entity_id == clinic.amit.patient.id,
                        AuditEvent.to_state == "exported",
                    )
                    .order_by(AuditEvent.seq)
                ).scalars()
            )

    before = len(exported())
    response = client.get(
        f"/fhir/R4/Patient/{clinic.amit.patient.id}/$everything",
        headers=bearer(clinic.tokens["admin"]),
    )
    assert response.status_code == 200
    events = exported()
    assert len(events) == before + 1
    event = events[-1]
    assert event.actor_role == "admin"
    counted = event.diff["added"]["fhir"]["resources"]
    assert counted["Observation"] == 5 and counted["DocumentReference"] == 4
    assert "अमित" not in json.dumps(event.diff, ensure_ascii=False)
    refused = client.get(
        f"/fhir/R4/Patient/{clinic.amit.patient.id}/$everything",
        headers=bearer(clinic.tokens["doctor"]),
    )
    assert refused.status_code == 403
    assert len(exported()) == before + 1
