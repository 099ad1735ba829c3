"""Ids the FHIR routes take that no table holds: the clinic's own id (its Organization),
and the ids the builders derive from a parent record and a position (a prescription's
medicine, an order's test, an invoice's line). Each maker returns the id with the ids it
implies (its patient), as the generated route tests take them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from opdesk.clinical import orders, prescriptions, visits, vitals
from opdesk.consents import service as consents
from opdesk.db import Database
from opdesk.documents import service as documents
from opdesk.documents.storage import Storage
from opdesk.fhir import billing as fhir_billing
from opdesk.fhir import clinical
from opdesk.scheduling.models import DoctorProfile
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.billing import draft, issued, line
from tests.factories.clinical_orders import Consult, make_order
from tests.factories.clinical_rx import Setting, doctor_ctx, make_prescription
from tests.factories.clinical_visits import consultation, open_visit, write_note
from tests.factories.clinics import ctx_for


def clinic_ids(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
    return {"clinic_id": tenant.id}


def medication_request_ids(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
    """The first medicine of an issued prescription of a new patient."""
    setting, made = make_prescription(db, ident, tenant)
    return {
        "medication_request_id": clinical.medication_request_id(made.id, 1),
        "prescription_id": made.id,
        "patient_id": setting.patient.id,
    }


def service_request_ids(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
    """The first test of a new lab order."""
    order = make_order(db, ident, tenant)
    return {
        "service_request_id": clinical.service_request_id(order.id, 1),
        "order_id": order.id,
        "patient_id": order.patient_id,
    }


def charge_item_ids(db: Database, ident: Any, tenant: Tenant) -> dict[str, uuid.UUID]:
    """The first line of an issued invoice of a new patient."""
    invoice = issued(db, ident, tenant)
    return {
        "charge_item_id": fhir_billing.charge_item_id(invoice.id, 1),
        "invoice_id": invoice.id,
        "patient_id": invoice.patient_id,
    }


# One maker per kind of id, by the path parameter's name.
MAKERS: dict[str, Callable[[Database, Any, Tenant], dict[str, uuid.UUID]]] = {
    "clinic_id": clinic_ids,
    "medication_request_id": medication_request_ids,
    "service_request_id": service_request_ids,
    "charge_item_id": charge_item_ids,
}


def id_of(name: str) -> Callable[[Database, Any, Tenant], uuid.UUID]:
    """The maker of one kind of id, as ``ID_FACTORIES`` takes it."""
    make = MAKERS[name]
    return lambda db, ident, tenant: make(db, ident, tenant)[name]


# --------------------------------------------------------------------------- a patient's record


@dataclass
class Record:
    """One patient's record with something of every kind the FHIR export reads, and
    what the export must withhold (a draft prescription, an order not yet reviewed, a
    draft invoice). The ids are those of the rows made, to find them in the output.
    """

    tenant: Tenant
    doctor: DoctorProfile
    patient: Any
    appointment_id: uuid.UUID
    follow_up_id: uuid.UUID
    visit_id: uuid.UUID
    diagnosis_id: uuid.UUID
    vitals: dict[str, uuid.UUID]
    prescription_id: uuid.UUID
    draft_prescription_id: uuid.UUID
    reviewed_order_id: uuid.UUID
    reported_order_id: uuid.UUID
    pending_order_id: uuid.UUID
    report_document_ids: list[uuid.UUID]
    unreviewed_document_ids: list[uuid.UUID]
    referral_ids: list[uuid.UUID]  # two versions of one document, oldest first
    consent_id: uuid.UUID
    consent_file_id: uuid.UUID
    invoice_id: uuid.UUID
    draft_invoice_id: uuid.UUID
    files: dict[uuid.UUID, bytes] = field(default_factory=dict)


MEDICINES: list[dict[str, Any]] = [
    {
        "name": "Paracetamol",
        "strength": "650 mg",
        "form": "tablet",
        "route": "oral",
        "dose": "1 tablet",
        "frequency": "1-0-1",
        "durationDays": 3,
        "timing": "after-food",
        "instructions": "बुखार होने पर ही लें",
    },
    {"name": "Cetirizine", "strength": "10 mg", "dose": "1 tablet", "frequency": "at bedtime"},
]


def patient_record(
    db: Database,
    ident: Any,
    tenant: Tenant,
    storage: Storage,
    *,
    first: str = "अमित",
    last: str = "शर्मा",
    referral: bytes = b"%PDF-1.4 referral letter",
) -> Record:
    """A patient (named in Devanagari unless told) seen by a new doctor: a signed visit
    with a diagnosis, vitals (a blood pressure among them), a follow-up booked, an issued
    prescription (and the draft of a change to it), lab orders reviewed, reported and
    just ordered, a referral uploaded twice, a signed consent, an issued and a draft
    invoice. Files go to ``storage`` (the app's, for routes that read them back).
    """
    c = consultation(db, ident, tenant, name={"first": first, "last": last})
    visit = open_visit(db, c)
    ctx = c.ctx()
    with transaction(db, ctx) as session:
        diagnosis = visits.add_diagnosis(
            session,
            ctx,
            ident.cipher,
            visit_id=visit.id,
            code="J06.9",
            text="तीन दिन से बुखार और खांसी",
        )
        readings = vitals.record(
            session,
            ctx,
            ident.cipher,
            visit_id=visit.id,
            readings={
                "pulse": 88,
                "bp-systolic": 128,
                "bp-diastolic": 84,
                "temperature": "100.4",
                "weight": "71.5",
                "blood-sugar-random": 142,
            },
        )
        visits.set_follow_up(session, ctx, visit_id=visit.id, recommended_at=None, interval_days=1)
        follow_up = visits.book_follow_up(session, ctx, visit_id=visit.id)
    write_note(
        db, ident.cipher, c, visit.id, visits.Soap(s="Fever", a="URTI", p="Paracetamol, rest")
    )
    setting = Setting(tenant, c.doctor, c.patient, visit.id)
    _setting, issued_rx = make_prescription(db, ident, tenant, setting=setting, items=MEDICINES)
    doctor = doctor_ctx(tenant, c.doctor)
    with transaction(db, doctor) as session:
        changed = prescriptions.change(session, doctor, ident.cipher, prescription_id=issued_rx.id)
        draft_rx_id = changed.id
    consult = Consult(tenant, visit.id, c.patient, c.doctor)
    reviewed = make_order(
        db, ident, tenant, status="reviewed", visit=consult, abnormal=True, storage=storage
    )
    reported = make_order(
        db,
        ident,
        tenant,
        status="reported",
        visit=consult,
        items=[{"name": "CBC", "code": None, "panel": None}],
        storage=storage,
    )
    pending = make_order(
        db,
        ident,
        tenant,
        visit=consult,
        items=[{"name": "Lipid profile", "code": None, "panel": "Lipids"}],
    )
    with transaction(db, ctx) as session:
        visits.sign(session, ctx, ident.cipher, visit_id=visit.id)

    desk = ctx_for(tenant.id)
    with transaction(db, desk) as session:
        first_copy = documents.upload(
            session,
            desk,
            ident.cipher,
            storage,
            patient_id=c.patient.id,
            category="referral",
            filename="रेफ़रल.pdf",
            data=referral,
            tags=[],
            max_bytes=1024 * 1024,
        )
        second_copy = documents.upload(
            session,
            desk,
            ident.cipher,
            storage,
            patient_id=c.patient.id,
            category="referral",
            filename="रेफ़रल-2.pdf",
            data=referral + b" (signed)",
            tags=[],
            max_bytes=1024 * 1024,
            replaces=first_copy.id,
        )
        text = consents.add_template(
            session, desk, type_="treatment", title="Treatment", body="I agree to be treated."
        )
        agreed = consents.sign(
            session,
            desk,
            ident.cipher,
            storage,
            patient_id=c.patient.id,
            type_="treatment",
            method="in-clinic",
            fonts=Path(mkdtemp()),
            version=text.version,
        )
    billed = issued(
        db,
        ident,
        tenant,
        line("500.00", type="consult", description="परामर्श शुल्क (Consultation)"),
        line("349.99", type="lab", tax_rate="18", description="HbA1c", sac_hsn="999316"),
        patient_id=c.patient.id,
        visit_id=visit.id,
    )
    unbilled = draft(db, ident, tenant, line("200.00"), patient_id=c.patient.id)
    with transaction(db, desk) as session:
        reports = orders.attachments(session, reviewed.id)
        unreviewed = orders.attachments(session, reported.id)
        files = {
            d.id: documents.content(ident.cipher, storage, d)
            for d in [*reports, *unreviewed, first_copy, second_copy]
        }
    return Record(
        tenant=tenant,
        doctor=c.doctor,
        patient=c.patient,
        appointment_id=c.appointment.id,
        follow_up_id=follow_up.id,
        visit_id=visit.id,
        diagnosis_id=diagnosis.id,
        vitals={r.type: r.id for r in readings},
        prescription_id=issued_rx.id,
        draft_prescription_id=draft_rx_id,
        reviewed_order_id=reviewed.id,
        reported_order_id=reported.id,
        pending_order_id=pending.id,
        report_document_ids=[d.id for d in reports],
        unreviewed_document_ids=[d.id for d in unreviewed],
        referral_ids=[first_copy.id, second_copy.id],
        consent_id=agreed.id,
        consent_file_id=agreed.file_id,
        invoice_id=billed.id,
        draft_invoice_id=unbilled.id,
        files=files,
    )
