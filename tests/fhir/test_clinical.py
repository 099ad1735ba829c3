"""FHIR output of the clinical record: golden files, the codes each resource carries, and
the facts each builder refuses.

No database: the builders take plain facts. A golden file changes only on purpose; after
such a change, read the diff against the NRCeS profile before committing it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

from opdesk.clinical import prescriptions
from opdesk.clinical.models import VITAL_TYPES
from opdesk.clinical.vitals import KINDS
from opdesk.documents.models import CATEGORIES
from opdesk.fhir import clinical
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
from opdesk.patients.schemas import luhn_valid
from opdesk.scheduling.models import AppointmentStatus

GOLDEN = Path(__file__).parent / "golden" / "clinical"
IST = timezone(timedelta(hours=5, minutes=30))
PROFILES = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

# The clinic, patient and doctor of tests/fhir/test_resources.py.
CLINIC_ID = uuid.UUID("7e1f3a52-9c4d-4b8e-a6f0-5d2c1b9e8a70")
PATIENT_ID = uuid.UUID("0b5c8f2e-6a1d-4c3e-9f7a-2d4b6e8a1c01")
DOCTOR_ID = uuid.UUID("5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c03")
OTHER_PATIENT_ID = uuid.UUID("3c9d1e7a-2b4f-4a6c-8e0d-9f1a2b3c4d02")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=IST)


def ids(n: int) -> uuid.UUID:
    return uuid.UUID(f"c1a0e000-0000-4000-8000-{n:012d}")


# Amit booked on the 10th for the 12th ("fever and cough for three days").
APPOINTMENT = AppointmentFacts(
    id=ids(1),
    patient_id=PATIENT_ID,
    doctor_id=DOCTOR_ID,
    visit_type="consultation",
    reason="तीन दिन से बुखार और खांसी",
    status="completed",
    timeline_requested_at=at(10, 18, 5),
    timeline_checked_in_at=at(12, 10, 2),
    timeline_completed_at=at(12, 10, 41),
    timeline_no_show_at=None,
    timeline_cancelled_at=None,
    starts_at=at(12, 10, 15),
    ends_at=at(12, 10, 30),
)
WALK_IN = replace(
    APPOINTMENT,
    id=ids(2),
    reason=None,
    status="checked-in",
    timeline_requested_at=at(12, 11, 5),
    timeline_checked_in_at=at(12, 11, 5),
    timeline_completed_at=None,
    starts_at=None,
    ends_at=None,
    visit_type_minutes=15,
)
VISIT = EncounterFacts(
    id=ids(10),
    tenant_id=CLINIC_ID,
    appointment_id=APPOINTMENT.id,
    patient_id=PATIENT_ID,
    doctor_id=DOCTOR_ID,
    status="signed",
    created_at=at(12, 10, 16),
    soap_locked_at=at(12, 10, 41),
)
DIAGNOSIS = ConditionFacts(
    id=ids(20),
    visit_id=VISIT.id,
    patient_id=PATIENT_ID,
    doctor_id=DOCTOR_ID,
    code="J06.9",
    description="Acute upper respiratory infection, unspecified",
    text="ऊपरी श्वसन संक्रमण (वायरल)",
    is_primary=True,
    position=1,
    created_at=at(12, 10, 25),
)
# Written as words only, no code chosen.
TEXT_ONLY = replace(
    DIAGNOSIS,
    id=ids(21),
    code=None,
    description=None,
    text="मौसमी एलर्जी?",
    is_primary=False,
    position=2,
)


def vital(n: int, kind: str, value: str) -> VitalFacts:
    return VitalFacts(
        id=ids(30 + n),
        visit_id=VISIT.id,
        patient_id=PATIENT_ID,
        type=kind,
        value=Decimal(value),
        unit=KINDS[kind].unit,
        collected_at=at(12, 10, 10),
    )


SYSTOLIC = vital(1, "bp-systolic", "128")
DIASTOLIC = vital(2, "bp-diastolic", "84")
PULSE = vital(3, "pulse", "88")
TEMPERATURE = vital(4, "temperature", "100.4")
SPO2 = vital(5, "spo2", "97")
WEIGHT = vital(6, "weight", "72.5")
HEIGHT = vital(7, "height", "168.0")
SUGAR = vital(8, "blood-sugar-random", "142")
READINGS = (SYSTOLIC, DIASTOLIC, PULSE, TEMPERATURE, SPO2, WEIGHT, HEIGHT, SUGAR)

PRESCRIPTION = PrescriptionFacts(
    id=ids(40),
    visit_id=VISIT.id,
    patient_id=PATIENT_ID,
    doctor_id=DOCTOR_ID,
    issued_at=at(12, 10, 40),
    created_at=at(12, 10, 32),
)
PARACETAMOL = PrescriptionItemFacts(
    position=1,
    name="Paracetamol",
    strength="650 mg",
    form="tablet",
    route="oral",
    dose="1 tablet",
    frequency="1-0-1",
    duration_days=5,
    timing="after-food",
    instructions="बुखार 100°F से ऊपर हो तभी लें",
    generic_allowed=True,
    refill_remaining=0,
    refill_interval_days=None,
)
INHALER = replace(
    PARACETAMOL,
    position=2,
    name="Salbutamol",
    strength="100 mcg",
    form="inhaler",
    route="inhaled",
    dose="2 puffs",
    frequency="sos",
    duration_days=None,
    timing=None,
    instructions=None,
    generic_allowed=False,
    refill_remaining=2,
    refill_interval_days=30,
)

REPORT_BYTES = b"%PDF-1.4\n% CBC report of 2025-03-12\n"
CBC_REPORT = DocumentFacts(
    id=ids(60),
    owner_id=PATIENT_ID,
    category="lab-report",
    mime="application/pdf",
    size=len(REPORT_BYTES),
    checksum=hashlib.sha256(REPORT_BYTES).hexdigest(),
    filename="सीबीसी रिपोर्ट 12-03-2025.pdf",
    created_at=at(13, 9),
    data=REPORT_BYTES,
)
SHARED_REFERRAL = replace(
    CBC_REPORT,
    id=ids(61),
    category="referral",
    filename="referral-letter.pdf",
    data=None,
    url="https://clinic.opdesk.in/s/Xy7Qp2",
)
ORDER = OrderFacts(
    id=ids(50),
    visit_id=VISIT.id,
    patient_id=PATIENT_ID,
    doctor_id=DOCTOR_ID,
    type="lab",
    items=(OrderItemFacts(name="Complete blood count", code="58410-2", panel="CBC"),),
    status="reviewed",
    status_timeline_ordered_at=at(12, 10, 35),
    status_timeline_collected_at=at(12, 11, 30),
    status_timeline_reported_at=at(13, 9),
    abnormal_flag=True,
    notes="WBC थोड़ा बढ़ा है; 5 दिन बाद दोबारा जाँच",
    reviewer_doctor_id=DOCTOR_ID,
)
TWO_TESTS = replace(
    ORDER,
    items=(
        ORDER.items[0],
        OrderItemFacts(name="C-reactive protein", code="CRP-01", panel=None),
    ),
)
X_RAY = replace(
    ORDER,
    type="imaging",
    items=(OrderItemFacts(name="Chest X-ray PA view", code="36643-5", panel=None),),
    abnormal_flag=False,
    notes=None,
)


def only(items: Sequence[Any] | None) -> Any:
    """The one element of a list (of resources, codings...)."""
    assert items is not None
    (item,) = items
    return item


def observation_of(kind: str) -> Observation:
    found: list[Observation] = clinical.vital_signs(READINGS)
    code = {
        "blood-pressure": "85354-9",
        "pulse": "8867-4",
        "temperature": "8310-5",
        "spo2": "2708-6",
        "weight": "29463-7",
        "height": "8302-2",
        "blood-sugar-random": "2339-0",
    }[kind]
    (observation,) = [o for o in found if codes(o.code)[0][1] == code]
    return observation


# Each golden file and how it is made.
CASES: dict[str, Callable[[], Resource]] = {
    "appointment": lambda: clinical.appointment(APPOINTMENT),
    "appointment_walk_in": lambda: clinical.appointment(WALK_IN),
    "encounter": lambda: clinical.encounter(VISIT, [TEXT_ONLY, DIAGNOSIS]),
    "condition": lambda: clinical.condition(DIAGNOSIS),
    "condition_text_only": lambda: clinical.condition(TEXT_ONLY),
    "observation_blood_pressure": lambda: observation_of("blood-pressure"),
    "observation_body_weight": lambda: observation_of("weight"),
    "observation_blood_sugar": lambda: observation_of("blood-sugar-random"),
    "medication_request": lambda: clinical.medication_request(PRESCRIPTION, PARACETAMOL),
    "medication_request_as_needed": lambda: clinical.medication_request(PRESCRIPTION, INHALER),
    "service_request": lambda: only(clinical.service_requests(ORDER)),
    "diagnostic_report": lambda: clinical.diagnostic_report(ORDER, [CBC_REPORT]),
    "document_reference": lambda: clinical.document_reference(CBC_REPORT),
}


def every_output() -> list[Resource]:
    """One of everything each builder makes from the facts above."""
    return [
        *(build() for build in CASES.values()),
        *clinical.vital_signs(READINGS),
        *clinical.service_requests(TWO_TESTS),
        clinical.diagnostic_report(TWO_TESTS),
        clinical.diagnostic_report(X_RAY),
        clinical.document_reference(SHARED_REFERRAL),
        clinical.condition(TEXT_ONLY),
    ]


def as_json(resource: Resource) -> dict[str, Any]:
    return resource.model_dump(mode="json", exclude_none=True)


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return data


def codes(concept: CodeableConcept | None) -> list[tuple[str | None, str | None, str | None]]:
    assert concept is not None
    return [(c.system, c.code, c.display) for c in concept.coding or []]


def reference(ref: Any) -> str:
    assert ref is not None
    return str(ref.reference)


# --------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("name", CASES)
def test_resource_matches_its_golden_file(name: str) -> None:
    assert as_json(CASES[name]()) == golden(name)


@pytest.mark.parametrize("name", CASES)
def test_golden_file_is_a_valid_r4b_resource(name: str) -> None:
    resource = CASES[name]()
    assert as_json(type(resource).model_validate(golden(name))) == golden(name)


def test_every_golden_file_has_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(CASES)


@pytest.mark.parametrize("resource", every_output(), ids=lambda r: r.get_resource_type())
def test_every_output_survives_a_json_round_trip(resource: Resource) -> None:
    again = type(resource).model_validate(json.loads(resource.model_dump_json()))
    assert again == resource
    assert as_json(again) == as_json(resource)


@pytest.mark.parametrize(
    ("build", "text"),
    [
        (lambda: clinical.appointment(APPOINTMENT), "तीन दिन से बुखार और खांसी"),
        (lambda: clinical.condition(DIAGNOSIS), "ऊपरी श्वसन संक्रमण (वायरल)"),
        (lambda: clinical.condition(TEXT_ONLY), "मौसमी एलर्जी?"),
        (lambda: clinical.medication_request(PRESCRIPTION, PARACETAMOL), "बुखार 100°F से ऊपर"),
        (lambda: clinical.diagnostic_report(ORDER), "WBC थोड़ा बढ़ा है; 5 दिन बाद दोबारा जाँच"),
        (lambda: clinical.document_reference(CBC_REPORT), "सीबीसी रिपोर्ट 12-03-2025.pdf"),
    ],
)
def test_devanagari_survives_as_written(build: Callable[[], Resource], text: str) -> None:
    resource = build()
    sent = resource.model_dump_json()
    assert text in sent  # as UTF-8, not escaped
    assert text in json.dumps(
        as_json(type(resource).model_validate(json.loads(sent))), ensure_ascii=False
    )


@pytest.mark.parametrize(
    ("build", "profile"),
    [
        (lambda: clinical.appointment(APPOINTMENT), "Appointment"),
        (lambda: clinical.encounter(VISIT), "Encounter"),
        (lambda: clinical.condition(DIAGNOSIS), "Condition"),
        (lambda: observation_of("blood-pressure"), "ObservationVitalSigns"),
        (lambda: observation_of("pulse"), "ObservationVitalSigns"),
        (lambda: observation_of("temperature"), "ObservationVitalSigns"),
        (lambda: observation_of("spo2"), "ObservationVitalSigns"),
        (lambda: observation_of("weight"), "ObservationBodyMeasurement"),
        (lambda: observation_of("height"), "ObservationBodyMeasurement"),
        (lambda: observation_of("blood-sugar-random"), "Observation"),
        (lambda: clinical.medication_request(PRESCRIPTION, PARACETAMOL), "MedicationRequest"),
        (lambda: only(clinical.service_requests(ORDER)), "ServiceRequest"),
        (lambda: clinical.diagnostic_report(ORDER), "DiagnosticReportLab"),
        (lambda: clinical.diagnostic_report(X_RAY), "DiagnosticReportImaging"),
        (lambda: clinical.document_reference(CBC_REPORT), "DocumentReference"),
    ],
)
def test_each_resource_claims_its_nrces_profile(
    build: Callable[[], Resource], profile: str
) -> None:
    meta = build().meta
    assert meta is not None
    assert meta.profile == [PROFILES + profile]


# --------------------------------------------------------------------------- appointment


@pytest.mark.parametrize(
    ("status", "fhir"),
    [
        ("requested", "pending"),
        ("confirmed", "booked"),
        ("checked-in", "checked-in"),
        ("in-consult", "checked-in"),
        ("completed", "fulfilled"),
        ("no-show", "noshow"),
        ("cancelled", "cancelled"),
    ],
)
def test_appointment_status_maps_to_fhir(status: str, fhir: str) -> None:
    assert clinical.appointment(replace(APPOINTMENT, status=status)).status == fhir


def test_every_opdesk_appointment_status_is_mapped() -> None:
    assert set(clinical.APPOINTMENT_STATUSES) | {"refunded"} == {s.value for s in AppointmentStatus}


@pytest.mark.parametrize(
    ("before", "fhir"),
    [
        ({"timeline_completed_at": at(12, 10, 41)}, "fulfilled"),
        ({"timeline_completed_at": None, "timeline_no_show_at": at(12, 11)}, "noshow"),
        ({"timeline_completed_at": None, "timeline_cancelled_at": at(11, 9)}, "cancelled"),
        # Missed, then cancelled by the desk: the later of the two stands.
        (
            {
                "timeline_completed_at": None,
                "timeline_no_show_at": at(12, 11),
                "timeline_cancelled_at": at(12, 12),
            },
            "cancelled",
        ),
    ],
)
def test_a_refunded_appointment_is_what_it_was_before_the_refund(
    before: dict[str, Any], fhir: str
) -> None:
    refunded = replace(APPOINTMENT, status="refunded", **before)
    assert clinical.appointment(refunded).status == fhir


def test_appointment_has_its_slot_times_and_both_participants() -> None:
    appointment = clinical.appointment(APPOINTMENT)
    assert (appointment.start, appointment.end) == (at(12, 10, 15), at(12, 10, 30))
    assert [(reference(p.actor), p.status) for p in appointment.participant] == [
        (f"Patient/{PATIENT_ID}", "accepted"),
        (f"Practitioner/{DOCTOR_ID}", "accepted"),
    ]
    assert appointment.reasonCode is not None
    assert appointment.reasonCode[0].text == "तीन दिन से बुखार और खांसी"
    assert appointment.reasonCode[0].coding is None


def test_a_requested_appointment_waits_for_the_clinic() -> None:
    appointment = clinical.appointment(replace(APPOINTMENT, status="requested"))
    assert [p.status for p in appointment.participant] == ["accepted", "needs-action"]


def test_a_walk_in_runs_from_check_in_for_its_visit_types_length() -> None:
    appointment = clinical.appointment(WALK_IN)
    assert (appointment.start, appointment.end) == (at(12, 11, 5), at(12, 11, 20))


# --------------------------------------------------------------------------- encounter


def test_encounter_is_an_ambulatory_visit_of_the_appointment() -> None:
    visit = clinical.encounter(VISIT)
    assert visit.class_fhir is not None
    assert (visit.class_fhir.system, visit.class_fhir.code, visit.class_fhir.display) == (
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "AMB",
        "ambulatory",
    )
    assert visit.status == "finished"
    assert reference(visit.subject) == f"Patient/{PATIENT_ID}"
    assert [reference(a) for a in visit.appointment or []] == [f"Appointment/{APPOINTMENT.id}"]
    assert reference(visit.serviceProvider) == f"Organization/{CLINIC_ID}"
    assert visit.period is not None
    assert (visit.period.start, visit.period.end) == (at(12, 10, 16), at(12, 10, 41))


def test_a_draft_visit_is_in_progress_with_no_end() -> None:
    visit = clinical.encounter(replace(VISIT, status="draft", soap_locked_at=None))
    assert visit.status == "in-progress"
    assert visit.period is not None
    assert visit.period.end is None


def test_encounter_ranks_the_primary_diagnosis_first() -> None:
    visit = clinical.encounter(VISIT, [TEXT_ONLY, DIAGNOSIS])
    assert [(reference(d.condition), d.rank) for d in visit.diagnosis or []] == [
        (f"Condition/{DIAGNOSIS.id}", 1),
        (f"Condition/{TEXT_ONLY.id}", 2),
    ]


# --------------------------------------------------------------------------- condition


def test_condition_is_coded_in_icd_10_only_with_the_doctors_words_as_text() -> None:
    found = clinical.condition(DIAGNOSIS)
    assert codes(found.code) == [
        (
            "http://hl7.org/fhir/sid/icd-10",
            "J06.9",
            "Acute upper respiratory infection, unspecified",
        )
    ]
    assert found.code is not None
    assert found.code.text == "ऊपरी श्वसन संक्रमण (वायरल)"
    assert codes(only(found.category)) == [
        (
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "encounter-diagnosis",
            "Encounter Diagnosis",
        )
    ]
    assert reference(found.encounter) == f"Encounter/{VISIT.id}"
    assert reference(found.subject) == f"Patient/{PATIENT_ID}"
    assert reference(found.recorder) == f"Practitioner/{DOCTOR_ID}"


def test_a_coded_diagnosis_without_words_is_its_icd_description() -> None:
    found = clinical.condition(replace(DIAGNOSIS, text=None))
    assert found.code is not None
    assert found.code.text == "Acute upper respiratory infection, unspecified"


def test_a_diagnosis_in_words_only_has_text_and_no_coding() -> None:
    found = clinical.condition(TEXT_ONLY)
    assert found.code is not None
    assert (found.code.coding, found.code.text) == (None, "मौसमी एलर्जी?")


@pytest.mark.parametrize("code", ["E11", "E11.9", "S72.00", "M54.56", "U07.1", "j06.9", " A09 "])
def test_icd_10_codes_of_every_shape_are_accepted(code: str) -> None:
    found = clinical.condition(replace(DIAGNOSIS, code=code))
    assert codes(found.code)[0][1] == code.strip().upper()


@pytest.mark.parametrize("code", ["", "E1", "E119", "11.9", "EE1.9", "E11.", "E11.12345", "E11-9"])
def test_text_that_is_not_an_icd_10_code_is_refused(code: str) -> None:
    with pytest.raises(ValueError, match=r"^code: "):
        clinical.condition(replace(DIAGNOSIS, code=code))


# --------------------------------------------------------------------------- vitals


def test_blood_pressure_is_one_panel_with_systolic_and_diastolic_components() -> None:
    panel = observation_of("blood-pressure")
    assert panel.id == str(SYSTOLIC.id)
    assert codes(panel.code) == [
        (LOINC, "85354-9", "Blood pressure panel with all children optional")
    ]
    assert panel.valueQuantity is None
    parts = [
        (codes(c.code), c.valueQuantity.value, c.valueQuantity.system, c.valueQuantity.code)
        for c in panel.component or []
        if c.valueQuantity is not None
    ]
    assert parts == [
        ([(LOINC, "8480-6", "Systolic blood pressure")], Decimal(128), UCUM, "mm[Hg]"),
        ([(LOINC, "8462-4", "Diastolic blood pressure")], Decimal(84), UCUM, "mm[Hg]"),
    ]


def test_a_systolic_reading_alone_is_a_panel_of_one() -> None:
    (panel,) = clinical.vital_signs([SYSTOLIC])
    assert [codes(c.code)[0][1] for c in panel.component or []] == ["8480-6"]


def test_pressures_taken_at_different_times_are_two_panels() -> None:
    later = replace(DIASTOLIC, collected_at=at(12, 10, 30))
    assert len(clinical.vital_signs([SYSTOLIC, later])) == 2


@pytest.mark.parametrize(
    ("kind", "loinc", "ucum", "category"),
    [
        ("pulse", ["8867-4"], "/min", "vital-signs"),
        ("temperature", ["8310-5"], "[degF]", "vital-signs"),
        ("spo2", ["2708-6", "59408-5"], "%", "vital-signs"),
        ("weight", ["29463-7"], "kg", "vital-signs"),
        ("height", ["8302-2"], "cm", "vital-signs"),
        ("blood-sugar-random", ["2339-0"], "mg/dL", "laboratory"),
    ],
)
def test_each_vital_has_its_loinc_code_ucum_unit_and_category(
    kind: str, loinc: list[str], ucum: str, category: str
) -> None:
    observation = observation_of(kind)
    assert [(system, code) for system, code, _ in codes(observation.code)] == [
        (LOINC, c) for c in loinc
    ]
    assert observation.valueQuantity is not None
    assert (observation.valueQuantity.system, observation.valueQuantity.code) == (UCUM, ucum)
    assert observation.valueQuantity.unit == KINDS[kind].unit
    assert [codes(c)[0][1] for c in observation.category or []] == [category]
    assert observation.status == "final"
    assert reference(observation.encounter) == f"Encounter/{VISIT.id}"
    assert observation.effectiveDateTime == at(12, 10, 10)


def test_every_vital_opdesk_records_becomes_an_observation() -> None:
    assert set(clinical.VITALS) | set(clinical.BP_PARTS) == set(VITAL_TYPES)
    assert len(clinical.vital_signs(READINGS)) == len(VITAL_TYPES) - 1


def loinc_codes() -> list[str]:
    found = [c.code for v in clinical.VITALS.values() for c in v.codes]
    found += [clinical.BLOOD_PRESSURE.code, clinical.SYSTOLIC.code, clinical.DIASTOLIC.code]
    found += [t.code for t in clinical.DOCUMENT_TYPES.values() if t is not None]
    return found


@pytest.mark.parametrize("code", loinc_codes())
def test_every_loinc_code_used_has_a_right_check_digit(code: str) -> None:
    assert luhn_valid(code.replace("-", ""))


# --------------------------------------------------------------------------- prescriptions


def dosage(item: PrescriptionItemFacts) -> Any:
    found: MedicationRequest = clinical.medication_request(PRESCRIPTION, item)
    return only(found.dosageInstruction)


def test_medication_request_carries_the_medicine_as_text_and_the_dose_in_words() -> None:
    request = clinical.medication_request(PRESCRIPTION, PARACETAMOL)
    assert request.id == str(clinical.medication_request_id(PRESCRIPTION.id, 1))
    assert (request.status, request.intent) == ("active", "order")
    assert request.medicationCodeableConcept is not None
    assert request.medicationCodeableConcept.text == "Paracetamol 650 mg tablet"
    assert request.medicationCodeableConcept.coding is None
    assert request.authoredOn == at(12, 10, 40)
    assert reference(request.requester) == f"Practitioner/{DOCTOR_ID}"
    assert reference(request.encounter) == f"Encounter/{VISIT.id}"
    assert request.groupIdentifier is not None
    assert request.groupIdentifier.value == str(PRESCRIPTION.id)
    given = dosage(PARACETAMOL)
    assert given.text == (
        "1 tablet · 1-0-1 (1 in the morning, 1 at night) · after food · oral · for 5 days"
    )
    assert given.patientInstruction == "बुखार 100°F से ऊपर हो तभी लें"
    assert codes(given.route) == [(SNOMED, "26643006", "Oral route")]
    repeat = given.timing.repeat
    assert (repeat.frequency, repeat.period, repeat.periodUnit, repeat.when) == (2, 1, "d", ["PC"])
    assert (repeat.boundsDuration.value, repeat.boundsDuration.code) == (5, "d")


def test_a_draft_prescription_is_a_draft_authored_when_written() -> None:
    request = clinical.medication_request(replace(PRESCRIPTION, issued_at=None), PARACETAMOL)
    assert (request.status, request.authoredOn) == ("draft", at(12, 10, 32))


def test_items_of_one_prescription_have_distinct_stable_ids() -> None:
    first = clinical.medication_request(PRESCRIPTION, PARACETAMOL).id
    second = clinical.medication_request(PRESCRIPTION, INHALER).id
    assert first != second
    assert first == clinical.medication_request(PRESCRIPTION, PARACETAMOL).id


@pytest.mark.parametrize(
    ("frequency", "repeat"),
    [
        ("1-0-1", (2, 1, "d", None)),
        ("1 - 1 - 1", (3, 1, "d", None)),
        ("0-0-½", (1, 1, "d", None)),
        ("1-1-1-1", (4, 1, "d", None)),
        ("OD", (1, 1, "d", None)),
        ("bd", (2, 1, "d", None)),
        ("TDS", (3, 1, "d", None)),
        ("qid", (4, 1, "d", None)),
        ("weekly", (1, 1, "wk", None)),
        ("every 8 hours", (1, 8, "h", None)),
        ("every 2 days", (1, 2, "d", None)),
        ("stat", (None, None, None, 1)),
    ],
)
def test_frequency_becomes_a_timing(
    frequency: str, repeat: tuple[int | None, int | None, str | None, int | None]
) -> None:
    item = replace(PARACETAMOL, frequency=frequency, timing=None, duration_days=None)
    found = dosage(item).timing.repeat
    assert (found.frequency, found.period, found.periodUnit, found.count) == repeat


def test_as_needed_is_said_as_needed_with_no_schedule() -> None:
    given = dosage(INHALER)
    assert given.asNeededBoolean is True
    assert given.timing is None
    assert codes(given.route) == [(SNOMED, "447694001", "Respiratory tract route")]
    request = clinical.medication_request(PRESCRIPTION, INHALER)
    assert request.substitution is not None
    assert request.substitution.allowedBoolean is False
    assert request.dispenseRequest is not None
    assert request.dispenseRequest.numberOfRepeatsAllowed == 2
    assert request.dispenseRequest.dispenseInterval is not None
    assert request.dispenseRequest.dispenseInterval.value == 30


@pytest.mark.parametrize(
    ("timing", "when"),
    [("before-food", ["AC"]), ("after-food", ["PC"]), ("with-food", ["C"]), ("bedtime", ["HS"])],
)
def test_meal_timings_are_event_codes(timing: str, when: list[str]) -> None:
    assert dosage(replace(PARACETAMOL, timing=timing)).timing.repeat.when == when


def test_a_timing_without_a_code_stays_in_words() -> None:
    empty = dosage(replace(PARACETAMOL, timing="empty-stomach"))
    assert empty.timing.repeat.when is None
    assert "on an empty stomach" in empty.text
    own = dosage(replace(PARACETAMOL, timing="नाश्ते के बाद"))
    assert [i.text for i in own.additionalInstruction] == ["नाश्ते के बाद"]


@pytest.mark.parametrize("route", ["injection", "other"])
def test_routes_snomed_cannot_name_are_text_only(route: str) -> None:
    found = dosage(replace(PARACETAMOL, route=route)).route
    assert (found.coding, found.text) == (None, route)


def test_every_route_and_word_of_prescriptions_is_understood() -> None:
    assert tuple(clinical.ROUTES) == prescriptions.ROUTES
    assert set(clinical.WHEN) == set(prescriptions.TIMINGS)
    for word in prescriptions.WORDS:
        dosage(replace(PARACETAMOL, frequency=word))


# --------------------------------------------------------------------------- orders


def test_each_test_of_an_order_is_a_service_request_of_the_visit() -> None:
    requests = clinical.service_requests(TWO_TESTS)
    assert [r.id for r in requests] == [
        str(clinical.service_request_id(ORDER.id, 1)),
        str(clinical.service_request_id(ORDER.id, 2)),
    ]
    for request, name in zip(requests, ["Complete blood count", "C-reactive protein"], strict=True):
        assert (request.status, request.intent) == ("completed", "order")
        assert request.code is not None
        assert (request.code.coding, request.code.text) == (None, name)
        assert codes(only(request.category)) == [(SNOMED, "108252007", "Laboratory procedure")]
        assert request.requisition is not None
        assert request.requisition.value == str(ORDER.id)
        assert reference(request.requester) == f"Practitioner/{DOCTOR_ID}"
        assert reference(request.encounter) == f"Encounter/{VISIT.id}"
        assert request.authoredOn == at(12, 10, 35)


@pytest.mark.parametrize(
    ("status", "requested", "reported"),
    [
        ("ordered", "active", "registered"),
        ("collected", "active", "registered"),
        ("reported", "completed", "preliminary"),
        ("reviewed", "completed", "final"),
        ("patient-notified", "completed", "final"),
        ("cancelled", "revoked", "cancelled"),
    ],
)
def test_order_status_maps_to_request_and_report_status(
    status: str, requested: str, reported: str
) -> None:
    order = replace(ORDER, status=status)
    assert only(clinical.service_requests(order)).status == requested
    assert clinical.diagnostic_report(order).status == reported


@pytest.mark.parametrize(
    ("kind", "code"),
    [("imaging", ("363679005", "Imaging")), ("procedure", ("387713003", "Surgical procedure"))],
)
def test_service_request_category_follows_the_order_type(kind: str, code: tuple[str, str]) -> None:
    request = only(clinical.service_requests(replace(ORDER, type=kind)))
    assert codes(only(request.category)) == [(SNOMED, *code)]


def test_lab_report_is_based_on_the_order_and_concludes_as_the_doctor_wrote() -> None:
    report = clinical.diagnostic_report(ORDER, [CBC_REPORT])
    assert report.id == str(ORDER.id)
    assert [reference(r) for r in report.basedOn or []] == [
        f"ServiceRequest/{clinical.service_request_id(ORDER.id, 1)}"
    ]
    assert codes(report.code) == [(LOINC, "58410-2", "Complete blood count")]
    assert report.conclusion == "WBC थोड़ा बढ़ा है; 5 दिन बाद दोबारा जाँच"
    assert codes(only(report.conclusionCode)) == [(SNOMED, "263654008", "Abnormal")]
    assert [reference(r) for r in report.resultsInterpreter or []] == [f"Practitioner/{DOCTOR_ID}"]
    assert (report.effectiveDateTime, report.issued) == (at(12, 11, 30), at(13, 9))
    assert report.result is None
    (form,) = as_json(report)["presentedForm"]
    assert base64.b64decode(form["data"]) == REPORT_BYTES
    assert form["contentType"] == "application/pdf"


def test_a_report_on_several_tests_or_an_image_is_named_in_words() -> None:
    several = clinical.diagnostic_report(TWO_TESTS)
    assert codes(several.code) == []
    assert several.code.text == "Complete blood count, C-reactive protein"
    assert len(several.basedOn or []) == 2
    image = clinical.diagnostic_report(X_RAY)
    assert (codes(image.code), image.code.text) == ([], "Chest X-ray PA view")
    assert codes(only(image.conclusionCode)) == [(SNOMED, "17621005", "Normal")]


def test_a_code_of_the_clinics_own_is_not_sent_as_loinc() -> None:
    own = replace(ORDER, items=(OrderItemFacts("Complete blood count", "CBC-01", "CBC"),))
    assert codes(clinical.diagnostic_report(own).code) == []


# --------------------------------------------------------------------------- documents


def test_document_reference_carries_the_file_itself() -> None:
    document = clinical.document_reference(CBC_REPORT)
    assert document.status == "current"
    assert codes(document.type) == [(LOINC, "11502-2", "Laboratory report")]
    assert reference(document.subject) == f"Patient/{PATIENT_ID}"
    # As sent: the model keeps base64Binary decoded, the JSON has it in base64.
    attachment = only(as_json(document)["content"])["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert attachment["title"] == "सीबीसी रिपोर्ट 12-03-2025.pdf"
    assert base64.b64decode(attachment["data"], validate=True) == REPORT_BYTES
    assert "url" not in attachment
    assert attachment["size"] == len(REPORT_BYTES)
    sha1 = hashlib.sha1(REPORT_BYTES, usedforsecurity=False).digest()
    assert base64.b64decode(attachment["hash"], validate=True) == sha1


def test_document_reference_may_point_at_the_file_instead() -> None:
    attachment = only(clinical.document_reference(SHARED_REFERRAL).content).attachment
    assert (attachment.url, attachment.data, attachment.hash) == (
        "https://clinic.opdesk.in/s/Xy7Qp2",
        None,
        None,
    )


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_document_category_has_a_type(category: str) -> None:
    found = clinical.document_reference(replace(CBC_REPORT, category=category)).type
    assert found is not None
    assert found.text


# --------------------------------------------------------------------------- refusals

NOT_A_NUMBER: Any = 72.5


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: clinical.appointment(replace(APPOINTMENT, status="booked")), "status"),
        (
            lambda: clinical.appointment(
                replace(APPOINTMENT, status="refunded", timeline_completed_at=None)
            ),
            "status",
        ),
        (lambda: clinical.appointment(replace(APPOINTMENT, visit_type=" ")), "visit_type"),
        (lambda: clinical.appointment(replace(APPOINTMENT, ends_at=None)), "ends_at"),
        (lambda: clinical.appointment(replace(APPOINTMENT, starts_at=None)), "starts_at"),
        (lambda: clinical.appointment(replace(APPOINTMENT, ends_at=at(12, 10))), "ends_at"),
        (
            lambda: clinical.appointment(replace(WALK_IN, visit_type_minutes=None)),
            "visit_type_minutes",
        ),
        (lambda: clinical.appointment(replace(WALK_IN, timeline_checked_in_at=None)), "starts_at"),
        (lambda: clinical.encounter(replace(VISIT, status="closed")), "status"),
        (lambda: clinical.encounter(replace(VISIT, soap_locked_at=None)), "soap_locked_at"),
        (lambda: clinical.encounter(replace(VISIT, status="draft")), "soap_locked_at"),
        (
            lambda: clinical.encounter(VISIT, [replace(DIAGNOSIS, visit_id=ids(99))]),
            "diagnoses",
        ),
        (
            lambda: clinical.encounter(VISIT, [DIAGNOSIS, replace(TEXT_ONLY, is_primary=True)]),
            "diagnoses",
        ),
        (lambda: clinical.condition(replace(DIAGNOSIS, code="diabetes")), "code"),
        (lambda: clinical.condition(replace(DIAGNOSIS, description=None)), "description"),
        (lambda: clinical.condition(replace(DIAGNOSIS, description=" ")), "description"),
        (lambda: clinical.condition(replace(TEXT_ONLY, text="  ")), "text"),
        (lambda: clinical.vital_signs([replace(PULSE, type="heart-rate")]), "type"),
        (lambda: clinical.vital_signs([replace(TEMPERATURE, unit="Cel")]), "unit"),
        (lambda: clinical.vital_signs([replace(SYSTOLIC, unit="kPa")]), "unit"),
        (lambda: clinical.vital_signs([replace(WEIGHT, value=Decimal("NaN"))]), "value"),
        (lambda: clinical.vital_signs([replace(WEIGHT, value=NOT_A_NUMBER)]), "value"),
        (lambda: clinical.vital_signs([SYSTOLIC, replace(SYSTOLIC, id=ids(39))]), "type"),
        (
            lambda: clinical.medication_request(PRESCRIPTION, replace(PARACETAMOL, name=" ")),
            "name",
        ),
        (
            lambda: clinical.medication_request(PRESCRIPTION, replace(PARACETAMOL, route="rectal")),
            "route",
        ),
        (
            lambda: clinical.medication_request(
                PRESCRIPTION, replace(PARACETAMOL, frequency="now and then")
            ),
            "frequency",
        ),
        (
            lambda: clinical.medication_request(
                PRESCRIPTION, replace(PARACETAMOL, frequency="0-0-0")
            ),
            "frequency",
        ),
        (
            lambda: clinical.medication_request(
                PRESCRIPTION, replace(PARACETAMOL, duration_days=0)
            ),
            "duration_days",
        ),
        (
            lambda: clinical.medication_request(
                PRESCRIPTION, replace(INHALER, refill_interval_days=400)
            ),
            "refill_interval_days",
        ),
        (
            lambda: clinical.medication_request(
                PRESCRIPTION, replace(INHALER, refill_remaining=-1)
            ),
            "refill_remaining",
        ),
        (lambda: clinical.service_requests(replace(ORDER, type="referral")), "type"),
        (lambda: clinical.service_requests(replace(ORDER, status="sent")), "status"),
        (lambda: clinical.service_requests(replace(ORDER, items=())), "items"),
        (
            lambda: clinical.service_requests(
                replace(ORDER, items=(OrderItemFacts(" ", None, None),))
            ),
            r"items\[1\]\.name",
        ),
        (lambda: clinical.diagnostic_report(replace(ORDER, type="procedure")), "type"),
        (lambda: clinical.diagnostic_report(replace(ORDER, status="done")), "status"),
        (
            lambda: clinical.diagnostic_report(
                replace(ORDER, items=(OrderItemFacts("Complete blood count", "58410-3", None),))
            ),
            r"items\[1\]\.code",
        ),
        (
            lambda: clinical.diagnostic_report(
                ORDER, [replace(CBC_REPORT, owner_id=OTHER_PATIENT_ID)]
            ),
            "reports",
        ),
        (lambda: clinical.document_reference(replace(CBC_REPORT, category="x-ray")), "category"),
        (lambda: clinical.document_reference(replace(CBC_REPORT, mime="text/html")), "mime"),
        (lambda: clinical.document_reference(replace(CBC_REPORT, filename=" ")), "filename"),
        (lambda: clinical.document_reference(replace(CBC_REPORT, data=None)), "data"),
        (
            lambda: clinical.document_reference(replace(CBC_REPORT, url="https://x.in/r.pdf")),
            "data",
        ),
        (lambda: clinical.document_reference(replace(CBC_REPORT, size=1)), "data"),
        (lambda: clinical.document_reference(replace(CBC_REPORT, checksum="0" * 64)), "data"),
        (
            lambda: clinical.document_reference(replace(SHARED_REFERRAL, url="http://x.in/r")),
            "url",
        ),
        (lambda: clinical.document_reference(replace(SHARED_REFERRAL, url="/s/Xy7Qp2")), "url"),
    ],
)
def test_invalid_fact_raises_value_error_naming_the_field(
    build: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        build()


NAIVE = datetime(2025, 3, 12, 10, 15)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: clinical.appointment(replace(APPOINTMENT, starts_at=NAIVE)), "starts_at"),
        (
            lambda: clinical.appointment(replace(APPOINTMENT, timeline_requested_at=NAIVE)),
            "timeline_requested_at",
        ),
        (
            lambda: clinical.appointment(replace(WALK_IN, timeline_checked_in_at=NAIVE)),
            "timeline_checked_in_at",
        ),
        (
            lambda: clinical.appointment(
                replace(APPOINTMENT, status="refunded", timeline_completed_at=NAIVE)
            ),
            "timeline_completed_at",
        ),
        (lambda: clinical.encounter(replace(VISIT, created_at=NAIVE)), "created_at"),
        (lambda: clinical.encounter(replace(VISIT, soap_locked_at=NAIVE)), "soap_locked_at"),
        (lambda: clinical.condition(replace(DIAGNOSIS, created_at=NAIVE)), "created_at"),
        (lambda: clinical.vital_signs([replace(PULSE, collected_at=NAIVE)]), "collected_at"),
        (lambda: clinical.vital_signs([replace(SYSTOLIC, collected_at=NAIVE)]), "collected_at"),
        (
            lambda: clinical.medication_request(
                replace(PRESCRIPTION, issued_at=NAIVE), PARACETAMOL
            ),
            "issued_at",
        ),
        (
            lambda: clinical.service_requests(replace(ORDER, status_timeline_ordered_at=NAIVE)),
            "status_timeline_ordered_at",
        ),
        (
            lambda: clinical.diagnostic_report(replace(ORDER, status_timeline_reported_at=NAIVE)),
            "status_timeline_reported_at",
        ),
        (
            lambda: clinical.document_reference(replace(CBC_REPORT, created_at=NAIVE)),
            "created_at",
        ),
    ],
)
def test_a_time_without_its_zone_is_refused(build: Callable[[], object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must carry its time zone"):
        build()
