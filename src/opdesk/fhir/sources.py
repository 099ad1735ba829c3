"""The builders' facts, read from the database: one record, decrypted where it must be.

The builders in :mod:`opdesk.fhir.resources`, :mod:`~opdesk.fhir.clinical`,
:mod:`~opdesk.fhir.billing` and :mod:`~opdesk.fhir.consent` are pure; this module is the
one place that loads a row, opens its encrypted columns through the owning domain's own
read functions, and fills the matching ``*Facts``. Every loader reads inside the caller's
transaction, so row-level security limits it to the clinic: an unknown id and another
clinic's id are both :class:`~opdesk.errors.NotFound` (404).

Two kinds of function:

* ``<kind>_of(...)`` turn rows already loaded into facts (the export walks a patient's
  records once and converts each);
* ``<kind>_facts(session, ..., id)`` load one record by id, then convert it.

:func:`resource` answers ``GET /fhir/R4/<Type>/<id>``: it resolves the id, checks what
the id alone cannot (the clinic's own Organization, a readable document category, an
issued invoice) and returns the built R4B model.

Ids the builders derive (a MedicationRequest per prescription item, a ServiceRequest per
ordered test, a ChargeItem per invoice line) are uuid5 values of the parent's id and the
position: they cannot be inverted, so they are resolved by computing the derived id of
each candidate (the clinic's prescription items, order tests or invoice lines), newest
parent first, and stopping at the match. That costs one pass over the clinic's rows of
that kind in the worst case (microseconds each); a derived id that matches nothing is 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.abdm import settings as abdm_settings
from opdesk.billing.models import Invoice, InvoiceStatus
from opdesk.clinical import orders, prescriptions, visits, vitals
from opdesk.clinical.models import (
    Diagnosis,
    Icd10Code,
    Order,
    Prescription,
    PrescriptionItem,
    Visit,
    Vital,
)
from opdesk.consents.models import Consent
from opdesk.context import RequestContext
from opdesk.documents import service as documents
from opdesk.documents.models import Document
from opdesk.documents.storage import Storage
from opdesk.errors import NotFound
from opdesk.fhir import billing, clinical, consent, resources
from opdesk.fhir.billing import InvoiceFacts
from opdesk.fhir.clinical import (
    AppointmentFacts,
    ConditionFacts,
    DocumentFacts,
    EncounterFacts,
    OrderFacts,
    OrderItemFacts,
    PrescriptionFacts,
    PrescriptionItemFacts,
    VitalFacts,
)
from opdesk.fhir.consent import ConsentFacts
from opdesk.fhir.resources import OrganizationFacts, PatientFacts, PractitionerFacts
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment, DoctorProfile, Slot
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant

# How many candidate rows a derived-id lookup fetches at a time.
_SCAN_BATCH = 2000

# --------------------------------------------------------------------------- rows to facts


def patient_of(cipher: FieldCipher, row: Patient, today: date) -> PatientFacts:
    """The patient as the API reads it (``patients.service.read`` opens the columns)."""
    shown = patients.read(cipher, row, today)
    return PatientFacts(
        id=row.id,
        tenant_id=row.tenant_id,
        number=shown.number,
        name_first=shown.name.first,
        name_last=shown.name.last,
        gender=shown.gender,
        dob=shown.dob,
        phone=shown.phone,
        abha_number=shown.abha_number,
    )


def practitioner_of(row: DoctorProfile) -> PractitionerFacts:
    return PractitionerFacts(
        id=row.id, display_name=row.display_name, registration_number=row.registration_number
    )


def appointment_of(row: Appointment, slot: Slot | None, doctor: DoctorProfile) -> AppointmentFacts:
    """The appointment with its slot's times; the visit type as the doctor's profile
    names it (its label, and its length for a walk-in without a slot).
    """
    kind = next((t for t in doctor.visit_types or [] if t.get("code") == row.visit_type), {})
    minutes = kind.get("minutes")
    return AppointmentFacts(
        id=row.id,
        patient_id=row.patient_id,
        doctor_id=row.doctor_id,
        visit_type=str(kind.get("label") or row.visit_type),
        reason=row.reason,
        status=row.status.value,
        timeline_requested_at=row.timeline_requested_at,
        timeline_checked_in_at=row.timeline_checked_in_at,
        timeline_completed_at=row.timeline_completed_at,
        timeline_no_show_at=row.timeline_no_show_at,
        timeline_cancelled_at=row.timeline_cancelled_at,
        starts_at=slot.starts_at if slot is not None else None,
        ends_at=slot.ends_at if slot is not None else None,
        visit_type_minutes=int(minutes) if isinstance(minutes, int) else None,
    )


def encounter_of(row: Visit) -> EncounterFacts:
    return EncounterFacts(
        id=row.id,
        tenant_id=row.tenant_id,
        appointment_id=row.appointment_id,
        patient_id=row.patient_id,
        doctor_id=row.doctor_id,
        status=row.status.value,
        created_at=row.created_at,
        soap_locked_at=row.soap_locked_at,
    )


def condition_of(session: Session, cipher: FieldCipher, row: Diagnosis) -> ConditionFacts:
    """The diagnosis, its text decrypted and its ICD-10 code's WHO description."""
    description = None
    if row.code is not None:
        known = session.get(Icd10Code, row.code)
        description = known.description if known is not None else None
    return ConditionFacts(
        id=row.id,
        visit_id=row.visit_id,
        patient_id=row.patient_id,
        doctor_id=row.doctor_id,
        code=row.code,
        description=description,
        text=visits.diagnosis_text(cipher, row),
        is_primary=row.is_primary,
        position=row.position,
        created_at=row.created_at,
    )


def vital_of(cipher: FieldCipher, row: Vital) -> VitalFacts:
    return VitalFacts(
        id=row.id,
        visit_id=row.visit_id,
        patient_id=row.patient_id,
        type=row.type,
        value=vitals.value_of(cipher, row),
        unit=row.unit,
        collected_at=row.collected_at,
    )


def prescription_of(row: Prescription) -> PrescriptionFacts:
    return PrescriptionFacts(
        id=row.id,
        visit_id=row.visit_id,
        patient_id=row.patient_id,
        doctor_id=row.doctor_id,
        issued_at=row.issued_at,
        created_at=row.created_at,
    )


def item_of(view: prescriptions.ItemView) -> PrescriptionItemFacts:
    return PrescriptionItemFacts(
        position=view.position,
        name=view.name,
        strength=view.strength,
        form=view.form,
        route=view.route,
        dose=view.dose,
        frequency=view.frequency,
        duration_days=view.duration_days,
        timing=view.timing,
        instructions=view.instructions,
        generic_allowed=view.generic_allowed,
        refill_remaining=view.refill_remaining,
        refill_interval_days=view.refill_interval_days,
    )


def items_of(
    session: Session, cipher: FieldCipher, row: Prescription
) -> list[PrescriptionItemFacts]:
    """The prescription's medicines in order, their names decrypted."""
    return [item_of(view) for view in prescriptions.items_of(session, cipher, row)]


def order_of(row: Order, note: str | None, reviewer: DoctorProfile | None) -> OrderFacts:
    """The order; ``note`` is its decrypted review note, ``reviewer`` the profile of the
    doctor who reviewed it (``Order.reviewed_by`` is a user id).
    """
    return OrderFacts(
        id=row.id,
        visit_id=row.visit_id,
        patient_id=row.patient_id,
        doctor_id=row.doctor_id,
        type=row.type,
        items=tuple(
            OrderItemFacts(name=str(i["name"]), code=i.get("code"), panel=i.get("panel"))
            for i in row.items
        ),
        status=row.status.value,
        status_timeline_ordered_at=row.status_timeline_ordered_at,
        status_timeline_collected_at=row.status_timeline_collected_at,
        status_timeline_reported_at=row.status_timeline_reported_at,
        abnormal_flag=row.abnormal_flag,
        notes=note,
        reviewer_doctor_id=reviewer.id if reviewer is not None else None,
    )


def document_of(cipher: FieldCipher, storage: Storage, row: Document) -> DocumentFacts:
    """The document version with its file, decrypted from storage and sent whole: the
    NRCeS DocumentReference profile wants ``attachment.data``, and a link would expire.
    """
    return DocumentFacts(
        id=row.id,
        owner_id=row.owner_id,
        category=row.category,
        mime=row.mime,
        size=row.size,
        checksum=row.checksum,
        filename=row.filename,
        created_at=row.created_at,
        data=documents.content(cipher, storage, row),
    )


def consent_of(row: Consent) -> ConsentFacts:
    return ConsentFacts(
        id=row.id,
        tenant_id=row.tenant_id,
        patient_id=row.patient_id,
        type=row.type,
        file_id=row.file_id,
        signed_at=row.signed_at,
        revoked_at=row.revoked_at,
    )


def invoice_of(row: Invoice) -> InvoiceFacts:
    """An issued invoice; its stored lines are read back as facts (amounts as Decimals)."""
    return InvoiceFacts(
        id=row.id,
        tenant_id=row.tenant_id,
        patient_id=row.patient_id,
        visit_id=row.visit_id,
        number=row.number,
        status=row.status,
        issued_at=row.issued_at,
        inter_state=row.inter_state,
        lines=tuple(
            billing.line_facts(item, f"lines[{i}]") for i, item in enumerate(row.line_items)
        ),
        subtotal=row.subtotal,
        discount_total=row.discount_total,
        tax_total=row.tax_total,
        cgst_total=row.cgst_total,
        sgst_total=row.sgst_total,
        igst_total=row.igst_total,
        grand_total=row.grand_total,
    )


# --------------------------------------------------------------------------- by id


def patient_facts(
    session: Session, cipher: FieldCipher, patient_id: uuid.UUID, today: date
) -> PatientFacts:
    return patient_of(cipher, patients.get(session, patient_id), today)


def practitioner_facts(session: Session, doctor_id: uuid.UUID) -> PractitionerFacts:
    return practitioner_of(records.by_id(session, DoctorProfile, doctor_id))


def organization_facts(
    session: Session, cipher: FieldCipher, clinic_id: uuid.UUID, *, own: uuid.UUID | None
) -> OrganizationFacts:
    """The clinic, which must be ``own`` (the caller's): every clinic's row is readable
    (public booking pages list them), so the scope is checked here, not by the database.
    """
    if own is None or clinic_id != own:
        raise NotFound(f"no organization with id {clinic_id}")
    clinic = records.by_id(session, Tenant, clinic_id)
    on_abdm = abdm_settings.of(session, cipher, clinic_id)
    return OrganizationFacts(
        id=clinic.id,
        name=clinic.name,
        phone=clinic.phone,
        email=None,  # the clinic keeps no email address
        hfr_id=on_abdm.facility_id if on_abdm is not None else None,
    )


def appointment_facts(session: Session, appointment_id: uuid.UUID) -> AppointmentFacts:
    row = records.by_id(session, Appointment, appointment_id)
    slot = records.by_id(session, Slot, row.slot_id) if row.slot_id is not None else None
    return appointment_of(row, slot, records.by_id(session, DoctorProfile, row.doctor_id))


def encounter_facts(session: Session, visit_id: uuid.UUID) -> EncounterFacts:
    return encounter_of(records.by_id(session, Visit, visit_id))


def condition_facts(
    session: Session, cipher: FieldCipher, diagnosis_id: uuid.UUID
) -> ConditionFacts:
    return condition_of(session, cipher, records.by_id(session, Diagnosis, diagnosis_id))


def conditions_of_visit(
    session: Session, cipher: FieldCipher, visit_id: uuid.UUID
) -> list[ConditionFacts]:
    return [condition_of(session, cipher, d) for d in visits.diagnoses(session, visit_id)]


def vital_facts(session: Session, cipher: FieldCipher, vital_id: uuid.UUID) -> VitalFacts:
    return vital_of(cipher, records.by_id(session, Vital, vital_id))


def vitals_of_visit(session: Session, cipher: FieldCipher, visit_id: uuid.UUID) -> list[VitalFacts]:
    rows = session.execute(
        select(Vital).where(Vital.visit_id == visit_id).order_by(Vital.collected_at, Vital.type)
    ).scalars()
    return [vital_of(cipher, row) for row in rows]


def prescription_facts(
    session: Session, cipher: FieldCipher, prescription_id: uuid.UUID
) -> tuple[PrescriptionFacts, list[PrescriptionItemFacts]]:
    row = prescriptions.get(session, prescription_id)
    return prescription_of(row), items_of(session, cipher, row)


def reviewer_of(session: Session, row: Order) -> DoctorProfile | None:
    if row.reviewed_by is None:
        return None
    return session.execute(
        select(DoctorProfile).where(DoctorProfile.user_id == row.reviewed_by)
    ).scalar_one_or_none()


def order_facts(
    session: Session, cipher: FieldCipher, order_id: uuid.UUID
) -> tuple[OrderFacts, list[Document]]:
    """The order and its report files (its attachments, oldest first)."""
    row = orders.get(session, order_id)
    result = orders.result_of(session, cipher, row)
    return order_of(row, result.note, reviewer_of(session, row)), list(result.documents)


def document_facts(
    session: Session, cipher: FieldCipher, storage: Storage, document_id: uuid.UUID
) -> DocumentFacts:
    """The document with its file. Whether the caller may read its category is the
    caller's to check (:func:`resource` does, with ``documents.get_readable``).
    """
    return document_of(cipher, storage, documents.get(session, document_id))


def consent_facts(session: Session, consent_id: uuid.UUID) -> ConsentFacts:
    return consent_of(records.by_id(session, Consent, consent_id))


def invoice_facts(session: Session, invoice_id: uuid.UUID) -> InvoiceFacts:
    """An issued invoice. A draft has no number and may still change: it is not sent
    (the Invoice profile wants an identifier), so a draft's id is 404 here.
    """
    row = records.by_id(session, Invoice, invoice_id)
    if row.status == InvoiceStatus.DRAFT:
        raise NotFound(f"no invoice with id {invoice_id}")
    return invoice_of(row)


# --------------------------------------------------------------------------- derived ids


def _first_match(
    session: Session,
    candidates: Select[uuid.UUID, int],
    derive: Callable[[uuid.UUID, int], uuid.UUID],
    wanted: uuid.UUID,
    *,
    counts: bool,
) -> tuple[uuid.UUID, int] | None:
    """The (parent id, position) whose derived id is ``wanted``. ``candidates`` yields a
    parent id with a position (``counts=False``) or with its number of children, each of
    positions 1..n being a candidate (``counts=True``).
    """
    result = session.execute(candidates.execution_options(yield_per=_SCAN_BATCH))
    try:
        for parent_id, number in result:
            positions: Iterable[int] = range(1, number + 1) if counts else (number,)
            for position in positions:
                if derive(parent_id, position) == wanted:
                    return parent_id, position
    finally:
        result.close()
    return None


def medication_request_source(
    session: Session, medication_request_id: uuid.UUID
) -> tuple[Prescription, int]:
    """The prescription and item position a MedicationRequest id was derived from."""
    found = _first_match(
        session,
        select(PrescriptionItem.prescription_id, PrescriptionItem.position).order_by(
            PrescriptionItem.prescription_id.desc(), PrescriptionItem.position
        ),
        clinical.medication_request_id,
        medication_request_id,
        counts=False,
    )
    if found is None:
        raise NotFound(f"no medication request with id {medication_request_id}")
    return prescriptions.get(session, found[0]), found[1]


def service_request_source(session: Session, service_request_id: uuid.UUID) -> tuple[Order, int]:
    """The order and test number (from 1) a ServiceRequest id was derived from."""
    found = _first_match(
        session,
        select(Order.id, func.jsonb_array_length(Order.items)).order_by(Order.id.desc()),
        clinical.service_request_id,
        service_request_id,
        counts=True,
    )
    if found is None:
        raise NotFound(f"no service request with id {service_request_id}")
    return orders.get(session, found[0]), found[1]


def charge_item_source(session: Session, charge_item_id: uuid.UUID) -> tuple[Invoice, int]:
    """The issued invoice and line number (from 1) a ChargeItem id was derived from."""
    found = _first_match(
        session,
        select(Invoice.id, func.jsonb_array_length(Invoice.line_items))
        .where(Invoice.status != InvoiceStatus.DRAFT)
        .order_by(Invoice.id.desc()),
        billing.charge_item_id,
        charge_item_id,
        counts=True,
    )
    if found is None:
        raise NotFound(f"no charge item with id {charge_item_id}")
    return records.by_id(session, Invoice, found[0]), found[1]


# --------------------------------------------------------------------------- one resource


@dataclass(frozen=True)
class Reader:
    """What reading one resource needs besides its id."""

    session: Session
    cipher: FieldCipher
    ctx: RequestContext
    storage: Storage


def _patient(r: Reader, id_: uuid.UUID) -> Resource:
    today = patients.today_at_clinic(r.session, r.ctx)
    return resources.patient(patient_facts(r.session, r.cipher, id_, today))


def _practitioner(r: Reader, id_: uuid.UUID) -> Resource:
    return resources.practitioner(practitioner_facts(r.session, id_))


def _organization(r: Reader, id_: uuid.UUID) -> Resource:
    return resources.organization(organization_facts(r.session, r.cipher, id_, own=r.ctx.tenant_id))


def _appointment(r: Reader, id_: uuid.UUID) -> Resource:
    return clinical.appointment(appointment_facts(r.session, id_))


def _encounter(r: Reader, id_: uuid.UUID) -> Resource:
    visit = encounter_facts(r.session, id_)
    return clinical.encounter(visit, conditions_of_visit(r.session, r.cipher, visit.id))


def _condition(r: Reader, id_: uuid.UUID) -> Resource:
    return clinical.condition(condition_facts(r.session, r.cipher, id_))


def _observation(r: Reader, id_: uuid.UUID) -> Resource:
    """The reading's Observation. The two halves of a blood pressure taken together are
    one panel with the systolic reading's id, as ``clinical.vital_signs`` pairs them; the
    diastolic reading's own id then names no resource.
    """
    reading = vital_facts(r.session, r.cipher, id_)
    built = clinical.vital_signs(vitals_of_visit(r.session, r.cipher, reading.visit_id))
    found = next((o for o in built if o.id == str(id_)), None)
    if found is None:
        raise NotFound(f"no observation with id {id_} (it is part of a blood pressure panel)")
    return found


def _medication_request(r: Reader, id_: uuid.UUID) -> Resource:
    row, position = medication_request_source(r.session, id_)
    item = next(i for i in items_of(r.session, r.cipher, row) if i.position == position)
    return clinical.medication_request(prescription_of(row), item)


def _service_request(r: Reader, id_: uuid.UUID) -> Resource:
    row, n = service_request_source(r.session, id_)
    facts, _files = order_facts(r.session, r.cipher, row.id)
    return clinical.service_requests(facts)[n - 1]


def _diagnostic_report(r: Reader, id_: uuid.UUID) -> Resource:
    """The report on a lab or imaging order (a procedure order has none: 404), with the
    report files the order holds.
    """
    facts, files = order_facts(r.session, r.cipher, id_)
    if facts.type not in clinical.REPORT_PROFILES:
        raise NotFound(f"no diagnostic report with id {id_} (a {facts.type} order has none)")
    reports = [document_of(r.cipher, r.storage, doc) for doc in files]
    return clinical.diagnostic_report(facts, reports)


def _document_reference(r: Reader, id_: uuid.UUID) -> Resource:
    """A document of a category the caller's role reads (any other is 404, as the
    documents API answers), its file inline.
    """
    row = documents.get_readable(r.session, id_, r.ctx.role)
    return clinical.document_reference(document_of(r.cipher, r.storage, row))


def _consent(r: Reader, id_: uuid.UUID) -> Resource:
    return consent.consent(consent_facts(r.session, id_))


def _invoice(r: Reader, id_: uuid.UUID) -> Resource:
    return billing.invoice(invoice_facts(r.session, id_))


def _charge_item(r: Reader, id_: uuid.UUID) -> Resource:
    row, n = charge_item_source(r.session, id_)
    return billing.charge_items(invoice_of(row))[n - 1]


READERS: dict[str, Callable[[Reader, uuid.UUID], Resource]] = {
    "Patient": _patient,
    "Practitioner": _practitioner,
    "Organization": _organization,
    "Appointment": _appointment,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication_request,
    "ServiceRequest": _service_request,
    "DiagnosticReport": _diagnostic_report,
    "DocumentReference": _document_reference,
    "Consent": _consent,
    "Invoice": _invoice,
    "ChargeItem": _charge_item,
}
TYPES: Sequence[str] = tuple(READERS)


def resource(
    session: Session,
    cipher: FieldCipher,
    ctx: RequestContext,
    type_name: str,
    id_: uuid.UUID,
    *,
    storage: Storage,
) -> Resource:
    """The ``type_name`` resource with id ``id_``, as ``GET /fhir/R4/<Type>/<id>`` answers."""
    read = READERS.get(type_name)
    if read is None:
        raise NotFound(f"OPDesk has no {type_name} resources")
    return read(Reader(session, cipher, ctx, storage), id_)


def references(model: Any) -> Iterator[str]:
    """Every literal reference (``Patient/<id>``) inside a built model, at any depth."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Reference) and item.reference is not None:
                yield item.reference
            if isinstance(item, BaseModel):
                yield from references(item)
