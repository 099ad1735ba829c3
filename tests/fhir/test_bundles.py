"""NRCeS document bundles: one golden file per record type, the profiles' fixed codes, and
the assembler's own rules (every resource profiled, references inside, ICD-10 Conditions).

Patient, Practitioner and Organization come from ``resources``; the clinical resources are
plain R4B models, as another module (or a test) would hand them over. The expected codes
below are written out from the NRCeS profiles, not read from ``bundles``: a changed code
in the module must fail here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.patient import Patient as R5Patient
from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.composition import Composition
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.invoice import Invoice
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as R4BPatient
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.servicerequest import ServiceRequest

from opdesk.fhir import billing, bundles, resources
from opdesk.fhir.bundles import RecordType, Section
from tests.fhir.test_billing import PAID, VISIT_ID
from tests.fhir.test_resources import AMIT, CLINIC, DR_RAO

GOLDEN = Path(__file__).parent / "golden" / "bundles"
NRCES = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
IST = timezone(timedelta(hours=5, minutes=30))
MADE_AT = datetime(2026, 5, 4, 12, 0, tzinfo=IST)
WRITTEN_AT = datetime(2026, 5, 4, 11, 20, tzinfo=IST)

PATIENT = resources.patient(AMIT)
DOCTOR = resources.practitioner(DR_RAO)
ORGANIZATION = resources.organization(CLINIC)
P = f"Patient/{AMIT.id}"
DR = f"Practitioner/{DR_RAO.id}"
VISIT = f"Encounter/{VISIT_ID}"


def profile(name: str) -> dict[str, Any]:
    return {"profile": [NRCES + name]}


def uid(n: int) -> str:
    """A fixed id per test resource: goldens must not change from run to run."""
    return str(uuid.UUID(int=0xA11CE << 64 | n))


ENCOUNTER = Encounter.model_validate(
    {
        "resourceType": "Encounter",
        "id": str(VISIT_ID),
        "meta": profile("Encounter"),
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "subject": {"reference": P},
        "period": {"start": "2026-05-04T11:00:00+05:30", "end": "2026-05-04T11:20:00+05:30"},
    }
)
FEVER = Condition.model_validate(
    {
        "resourceType": "Condition",
        "id": uid(1),
        "meta": profile("Condition"),
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [{"system": ICD10, "code": "R50.9", "display": "Fever, unspecified"}],
            "text": "तीन दिन से बुखार",
        },
        "subject": {"reference": P},
        "encounter": {"reference": VISIT},
    }
)
DIABETES = Condition.model_validate(
    {
        "resourceType": "Condition",
        "id": uid(2),
        "meta": profile("Condition"),
        "code": {
            "coding": [
                {
                    "system": ICD10,
                    "code": "E11.9",
                    "display": "Type 2 diabetes mellitus without complications",
                }
            ]
        },
        "subject": {"reference": P},
    }
)
NO_KNOWN_ALLERGY = AllergyIntolerance.model_validate(
    {
        "resourceType": "AllergyIntolerance",
        "id": uid(3),
        "meta": profile("AllergyIntolerance"),
        "code": {
            "coding": [{"system": SNOMED, "code": "716186003", "display": "No known allergy"}]
        },
        "patient": {"reference": P},
        "recorder": {"reference": DR},
    }
)
PARACETAMOL = MedicationRequest.model_validate(
    {
        "resourceType": "MedicationRequest",
        "id": uid(4),
        "meta": profile("MedicationRequest"),
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Paracetamol 650 mg tablet"},
        "subject": {"reference": P},
        "encounter": {"reference": VISIT},
        "authoredOn": "2026-05-04T11:15:00+05:30",
        "requester": {"reference": DR},
        "reasonReference": [{"reference": f"Condition/{FEVER.id}"}],
        "dosageInstruction": [{"text": "दिन में तीन बार, खाने के बाद, पाँच दिन"}],
    }
)
CBC_ORDER = ServiceRequest.model_validate(
    {
        "resourceType": "ServiceRequest",
        "id": uid(5),
        "meta": profile("ServiceRequest"),
        "status": "active",
        "intent": "order",
        "code": {
            "coding": [{"system": SNOMED, "code": "26604007", "display": "Complete blood count"}]
        },
        "subject": {"reference": P},
        "encounter": {"reference": VISIT},
        "requester": {"reference": DR},
    }
)
FOLLOW_UP_VISIT = Appointment.model_validate(
    {
        "resourceType": "Appointment",
        "id": uid(6),
        "meta": profile("Appointment"),
        "status": "booked",
        "description": "बुखार की जाँच के लिए फिर से आएँ",
        "start": "2026-05-11T10:00:00+05:30",
        "end": "2026-05-11T10:15:00+05:30",
        "basedOn": [{"reference": f"ServiceRequest/{CBC_ORDER.id}"}],
        "participant": [
            {"actor": {"reference": P}, "status": "accepted"},
            {"actor": {"reference": DR}, "status": "accepted"},
        ],
    }
)
PRESCRIPTION_PDF = Binary.model_validate(
    {
        "resourceType": "Binary",
        "id": uid(7),
        "meta": profile("Binary"),
        "contentType": "application/pdf",
        "data": "JVBERi0xLjQK",
    }
)
HAEMOGLOBIN = Observation.model_validate(
    {
        "resourceType": "Observation",
        "id": uid(8),
        "meta": profile("Observation"),
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "718-7",
                    "display": "Hemoglobin [Mass/volume] in Blood",
                }
            ]
        },
        "subject": {"reference": P},
        "valueQuantity": {
            "value": 13.2,
            "unit": "g/dL",
            "system": "http://unitsofmeasure.org",
            "code": "g/dL",
        },
    }
)
CBC_REPORT = DiagnosticReport.model_validate(
    {
        "resourceType": "DiagnosticReport",
        "id": uid(9),
        "meta": profile("DiagnosticReportLab"),
        "basedOn": [{"reference": f"ServiceRequest/{CBC_ORDER.id}"}],
        "status": "final",
        "code": {
            "coding": [{"system": SNOMED, "code": "26604007", "display": "Complete blood count"}]
        },
        "subject": {"reference": P},
        "issued": "2026-05-05T09:00:00+05:30",
        "performer": [{"reference": f"Organization/{CLINIC.id}"}],
        "resultsInterpreter": [{"reference": DR}],
        "result": [{"reference": f"Observation/{HAEMOGLOBIN.id}"}],
        "conclusion": "सामान्य",
    }
)
REPORT_PDF = DocumentReference.model_validate(
    {
        "resourceType": "DocumentReference",
        "id": uid(10),
        "meta": profile("DocumentReference"),
        "status": "current",
        "type": {
            "coding": [{"system": SNOMED, "code": "4241000179101", "display": "Laboratory report"}]
        },
        "subject": {"reference": P},
        "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}}],
    }
)
PULSE = Observation.model_validate(
    {
        "resourceType": "Observation",
        "id": uid(11),
        "meta": profile("ObservationVitalSigns"),
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": P},
        "effectiveDateTime": "2026-05-04T07:00:00+05:30",
        "valueQuantity": {
            "value": 72,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
)
WEIGHT = Observation.model_validate(
    {
        "resourceType": "Observation",
        "id": uid(12),
        "meta": profile("ObservationBodyMeasurement"),
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]
        },
        "subject": {"reference": P},
        "effectiveDateTime": "2026-05-04T07:00:00+05:30",
        "valueQuantity": {
            "value": 68.5,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
)
OLD_DISCHARGE_SUMMARY = DocumentReference.model_validate(
    {
        "resourceType": "DocumentReference",
        "id": uid(13),
        "meta": profile("DocumentReference"),
        "status": "current",
        "type": {
            "coding": [{"system": SNOMED, "code": "373942005", "display": "Discharge summary"}]
        },
        "subject": {"reference": P},
        "description": "पुराना डिस्चार्ज सारांश (2019)",
        "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}}],
    }
)
INVOICE = billing.invoice(PAID)
CHARGE_ITEMS = billing.charge_items(PAID)


def build(
    record: RecordType,
    sections: Mapping[Section, Sequence[Resource]],
    **changes: Any,
) -> Bundle:
    arguments: dict[str, Any] = {
        "bundle_id": uuid.UUID(int=0xB0 << 64 | list(RecordType).index(record)),
        "composition_id": uuid.UUID(int=0xC0 << 64 | list(RecordType).index(record)),
        "timestamp": MADE_AT,
        "date": WRITTEN_AT,
        "title": TITLES[record],
        "patient": PATIENT,
        "practitioners": [DOCTOR],
        "organization": ORGANIZATION,
        "encounter": ENCOUNTER,
        "sections": sections,
    }
    return bundles.document(record, **{**arguments, **changes})


TITLES = {
    RecordType.OP_CONSULTATION: "ओपीडी परामर्श (OP consultation)",
    RecordType.PRESCRIPTION: "Prescription",
    RecordType.DIAGNOSTIC_REPORT: "Complete blood count",
    RecordType.WELLNESS_RECORD: "Wellness Record",
    RecordType.HEALTH_DOCUMENT_RECORD: "Old records",
    RecordType.INVOICE: "Invoice OPD/26-27/000123",
}

CASES: dict[RecordType, Any] = {
    RecordType.OP_CONSULTATION: lambda: build(
        RecordType.OP_CONSULTATION,
        {
            Section.CHIEF_COMPLAINTS: [FEVER],
            Section.ALLERGIES: [NO_KNOWN_ALLERGY],
            Section.MEDICAL_HISTORY: [DIABETES],
            Section.INVESTIGATION_ADVICE: [CBC_ORDER],
            Section.MEDICATIONS: [PARACETAMOL],
            Section.FOLLOW_UP: [FOLLOW_UP_VISIT],
        },
    ),
    RecordType.PRESCRIPTION: lambda: build(
        RecordType.PRESCRIPTION,
        {Section.PRESCRIPTION: [PARACETAMOL, PRESCRIPTION_PDF]},
        supporting=[FEVER],
    ),
    RecordType.DIAGNOSTIC_REPORT: lambda: build(
        RecordType.DIAGNOSTIC_REPORT,
        {Section.DIAGNOSTIC_REPORT: [CBC_REPORT, REPORT_PDF]},
        supporting=[CBC_ORDER, HAEMOGLOBIN],
    ),
    RecordType.WELLNESS_RECORD: lambda: build(
        RecordType.WELLNESS_RECORD,
        {Section.VITAL_SIGNS: [PULSE], Section.BODY_MEASUREMENT: [WEIGHT]},
        encounter=None,
    ),
    RecordType.HEALTH_DOCUMENT_RECORD: lambda: build(
        RecordType.HEALTH_DOCUMENT_RECORD,
        {Section.HEALTH_DOCUMENTS: [OLD_DISCHARGE_SUMMARY]},
        encounter=None,
    ),
    RecordType.INVOICE: lambda: build(
        RecordType.INVOICE, {Section.INVOICE: [INVOICE]}, supporting=CHARGE_ITEMS
    ),
}

# From the NRCeS profiles (input/fsh/profiles/<Record>.fsh): Composition.type, then each
# section as (title, SNOMED code, display) in the order the bundles above list them.
EXPECTED: dict[RecordType, tuple[str, tuple[str, str] | None, str, list[tuple[str, Any, Any]]]] = {
    RecordType.OP_CONSULTATION: (
        "OPConsultRecord",
        ("371530004", "Clinical consultation report"),
        "Clinical consultation report",
        [
            ("Chief complaints", "422843007", "Chief complaint section"),
            ("Allergies", "722446000", "Allergy record"),
            ("Medical history", "371529009", "History and physical report"),
            ("Investigation advice", "721963009", "Order document"),
            ("Medications", "721912009", "Medication summary document"),
            ("Follow up", "390906007", "Follow-up encounter"),
        ],
    ),
    RecordType.PRESCRIPTION: (
        "PrescriptionRecord",
        ("440545006", "Prescription record"),
        "Prescription record",
        [("Prescription", "440545006", "Prescription record")],
    ),
    RecordType.DIAGNOSTIC_REPORT: (
        "DiagnosticReportRecord",
        ("721981007", "Diagnostic studies report"),
        "Diagnostic studies report",
        [("Diagnostic report", "721981007", "Diagnostic studies report")],
    ),
    RecordType.WELLNESS_RECORD: (
        "WellnessRecord",
        None,
        "Wellness Record",
        [("Vital Signs", None, None), ("Body Measurement", None, None)],
    ),
    RecordType.HEALTH_DOCUMENT_RECORD: (
        "HealthDocumentRecord",
        ("419891008", "Record artifact"),
        "Record artifact",
        [("Health documents", "419891008", "Record artifact")],
    ),
    RecordType.INVOICE: ("InvoiceRecord", None, "Invoice Record", [("Invoice", None, None)]),
}


def as_json(bundle: Bundle) -> dict[str, Any]:
    return bundle.model_dump(mode="json", exclude_none=True)


def golden(record: RecordType) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{record}.json").read_text(encoding="utf-8"))
    return data


def resources_of(bundle: Bundle) -> list[Resource]:
    return [entry.resource for entry in bundle.entry or [] if entry.resource is not None]


def composition_of(bundle: Bundle) -> Composition:
    first = resources_of(bundle)[0]
    assert isinstance(first, Composition)
    return first


@pytest.mark.parametrize("record", CASES)
def test_bundle_matches_its_golden_file(record: RecordType) -> None:
    assert as_json(CASES[record]()) == golden(record)


@pytest.mark.parametrize("record", CASES)
def test_golden_file_is_a_valid_r4b_bundle(record: RecordType) -> None:
    assert as_json(Bundle.model_validate(golden(record))) == golden(record)


def test_every_record_type_has_a_case() -> None:
    assert set(CASES) == set(RecordType) == set(bundles.RECORDS)


@pytest.mark.parametrize("record", CASES)
def test_bundle_is_a_profiled_document_with_identifier_and_times(record: RecordType) -> None:
    bundle = CASES[record]()
    assert bundle.type == "document"
    assert bundle.meta is not None
    assert bundle.meta.profile == [NRCES + "DocumentBundle"]
    assert bundle.meta.versionId == "1"
    assert bundle.meta.lastUpdated == MADE_AT
    assert bundle.timestamp == MADE_AT
    assert bundle.identifier is not None
    assert bundle.identifier.system == "urn:ietf:rfc:3986"
    assert bundle.identifier.value == f"urn:uuid:{bundle.id}"


@pytest.mark.parametrize("record", CASES)
def test_composition_comes_first_with_its_profile_type_and_context(record: RecordType) -> None:
    bundle = CASES[record]()
    composition = composition_of(bundle)
    profile_name, coded, text, _ = EXPECTED[record]
    assert composition.meta is not None
    assert composition.meta.profile == [NRCES + profile_name]
    assert composition.type is not None
    assert composition.type.text == text
    codings = [(c.system, c.code, c.display) for c in composition.type.coding or []]
    assert codings == ([] if coded is None else [(SNOMED, *coded)])
    urls = {
        type(r).__name__: e.fullUrl
        for e, r in zip(bundle.entry or [], resources_of(bundle), strict=True)
    }
    assert composition.subject is not None
    assert composition.subject.reference == urls["Patient"]
    assert [a.reference for a in composition.author or []] == [urls["Practitioner"]]
    assert composition.custodian is not None
    assert composition.custodian.reference == urls["Organization"]
    assert composition.date == WRITTEN_AT
    assert composition.title == TITLES[record]
    assert composition.status == "final"


@pytest.mark.parametrize("record", CASES)
def test_sections_carry_the_profiles_titles_codes_and_displays(record: RecordType) -> None:
    composition = composition_of(CASES[record]())
    found = []
    for section in composition.section or []:
        codings = section.code.coding if section.code is not None else None
        if codings:
            ((system, code, display),) = [(c.system, c.code, c.display) for c in codings]
            assert system == SNOMED
            found.append((section.title, code, display))
        else:
            found.append((section.title, None, None))
    assert found == EXPECTED[record][3]


@pytest.mark.parametrize("record", CASES)
def test_section_entries_name_their_type_and_point_at_entries(record: RecordType) -> None:
    bundle = CASES[record]()
    by_url = {e.fullUrl: r for e, r in zip(bundle.entry or [], resources_of(bundle), strict=True)}
    for section in composition_of(bundle).section or []:
        for entry in section.entry or []:
            target = by_url[entry.reference]
            assert entry.type == target.get_resource_type()


@pytest.mark.parametrize("record", CASES)
def test_every_reference_resolves_to_a_urn_uuid_entry(record: RecordType) -> None:
    bundle = CASES[record]()
    assert bundles.every_reference_resolves(bundle) == []
    urls = [entry.fullUrl for entry in bundle.entry or []]
    assert len(set(urls)) == len(urls)
    assert all(url and url.startswith("urn:uuid:") for url in urls)
    text = json.dumps(as_json(bundle))
    assert '"reference": "urn:uuid:' in text
    for kind in ("Patient/", "Practitioner/", "Encounter/", "Condition/", "ChargeItem/"):
        assert f'"reference": "{kind}' not in text


@pytest.mark.parametrize("record", CASES)
def test_every_resource_claims_a_profile(record: RecordType) -> None:
    for resource in resources_of(CASES[record]()):
        assert resource.meta is not None
        assert resource.meta.profile


@pytest.mark.parametrize("record", CASES)
def test_conditions_are_coded_in_icd10_only(record: RecordType) -> None:
    for resource in resources_of(CASES[record]()):
        if isinstance(resource, Condition):
            assert resource.code is not None
            assert {c.system for c in resource.code.coding or []} == {ICD10}


def test_entries_come_in_document_order() -> None:
    bundle = CASES[RecordType.OP_CONSULTATION]()
    assert [r.get_resource_type() for r in resources_of(bundle)] == [
        "Composition",
        "Patient",
        "Practitioner",
        "Organization",
        "Encounter",
        "Condition",
        "AllergyIntolerance",
        "Condition",
        "ServiceRequest",
        "MedicationRequest",
        "Appointment",
    ]


def test_sections_follow_the_profiles_order_whatever_the_callers() -> None:
    backwards = build(
        RecordType.OP_CONSULTATION,
        {Section.MEDICATIONS: [PARACETAMOL], Section.CHIEF_COMPLAINTS: [FEVER]},
    )
    titles = [s.title for s in composition_of(backwards).section or []]
    assert titles == ["Chief complaints", "Medications"]


def test_op_consultation_names_its_encounter() -> None:
    bundle = CASES[RecordType.OP_CONSULTATION]()
    composition = composition_of(bundle)
    assert composition.encounter is not None
    (encounter_entry,) = [e for e in bundle.entry or [] if isinstance(e.resource, Encounter)]
    assert composition.encounter.reference == encounter_entry.fullUrl


def test_invoice_bundle_carries_the_charge_items_its_lines_point_at() -> None:
    bundle = CASES[RecordType.INVOICE]()
    items = {
        e.fullUrl for e in bundle.entry or [] if e.resource.get_resource_type() == "ChargeItem"
    }
    assert len(items) == 3
    (invoice,) = [r for r in resources_of(bundle) if isinstance(r, Invoice)]
    pointed = {
        line.chargeItemReference.reference
        for line in invoice.lineItem or []
        if line.chargeItemReference is not None
    }
    assert pointed == items


def test_a_resource_listed_twice_is_included_once() -> None:
    bundle = build(
        RecordType.OP_CONSULTATION,
        {Section.CHIEF_COMPLAINTS: [FEVER], Section.MEDICAL_HISTORY: [FEVER, DIABETES]},
    )
    conditions = [r for r in resources_of(bundle) if isinstance(r, Condition)]
    assert [c.id for c in conditions] == [FEVER.id, DIABETES.id]


def test_a_non_uuid_id_gets_a_stable_urn_uuid() -> None:
    named = FEVER.model_copy(update={"id": "fever-1"})
    first = build(RecordType.OP_CONSULTATION, {Section.CHIEF_COMPLAINTS: [named]})
    again = build(RecordType.OP_CONSULTATION, {Section.CHIEF_COMPLAINTS: [named]})
    (url,) = [e.fullUrl for e in first.entry or [] if isinstance(e.resource, Condition)]
    assert url is not None
    assert str(uuid.UUID(url.removeprefix("urn:uuid:"))) == url.removeprefix("urn:uuid:")
    assert as_json(first) == as_json(again)


def test_the_callers_resources_are_not_changed() -> None:
    before = PARACETAMOL.model_dump(mode="json")
    CASES[RecordType.PRESCRIPTION]()
    assert PARACETAMOL.model_dump(mode="json") == before
    assert PARACETAMOL.subject is not None
    assert PARACETAMOL.subject.reference == P


def test_devanagari_survives() -> None:
    text = json.dumps(as_json(CASES[RecordType.OP_CONSULTATION]()), ensure_ascii=False)
    for words in ("अमित", "शर्मा", "तीन दिन से बुखार", "दिन में तीन बार", "ओपीडी परामर्श"):
        assert words in text
    assert "आरोग्य क्लिनिक, पुणे" in text


def test_every_reference_resolves_reports_what_does_not() -> None:
    bundle = CASES[RecordType.PRESCRIPTION]()
    data = as_json(bundle)
    data["entry"][1]["resource"]["generalPractitioner"] = [{"reference": "Practitioner/x"}]
    data["entry"][2]["resource"]["identifier"][0]["assigner"] = {"reference": "urn:uuid:0"}
    broken = Bundle.model_validate(data)
    assert bundles.every_reference_resolves(broken) == ["Practitioner/x", "urn:uuid:0"]


def other(resource: Resource, **changes: Any) -> Any:
    return resource.model_copy(update=changes, deep=True)


CODED_IN_SNOMED = Condition.model_validate(
    {
        **FEVER.model_dump(mode="json", exclude_none=True),
        "code": {"coding": [{"system": SNOMED, "code": "386661006", "display": "Fever"}]},
    }
)


@pytest.mark.parametrize(
    ("record", "sections", "changes", "message"),
    [
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [CODED_IN_SNOMED]},
            {},
            rf"^code: Condition/{FEVER.id} is coded in {SNOMED}, not {ICD10}",
            id="condition-in-snomed",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [other(FEVER, code=None)]},
            {},
            rf"^code: Condition/{FEVER.id} has none",
            id="condition-uncoded",
        ),
        pytest.param(
            RecordType.WELLNESS_RECORD,
            {
                Section.OTHER_OBSERVATIONS: [
                    Condition.model_validate(
                        {
                            **DIABETES.model_dump(mode="json", exclude_none=True),
                            "code": {"coding": [{"system": ICD10, "code": "E11.9"}]},
                        }
                    )
                ]
            },
            {},
            r"^code: Condition/.*ICD-10 coding needs a code and a display",
            id="icd10-without-display",
        ),
        pytest.param(
            RecordType.PRESCRIPTION,
            {Section.PRESCRIPTION: [other(PARACETAMOL, meta=None)]},
            {"supporting": [FEVER]},
            rf"^meta\.profile: MedicationRequest/{PARACETAMOL.id} claims no profile",
            id="no-profile",
        ),
        pytest.param(
            RecordType.PRESCRIPTION,
            {Section.PRESCRIPTION: [PARACETAMOL]},
            {},
            rf"^reference: Condition/{FEVER.id} \(in MedicationRequest/{PARACETAMOL.id}\) "
            "is not in the bundle",
            id="reference-outside",
        ),
        pytest.param(
            RecordType.DIAGNOSTIC_REPORT,
            {Section.DIAGNOSTIC_REPORT: [CBC_REPORT]},
            {"supporting": [CBC_ORDER]},
            rf"^reference: Observation/{HAEMOGLOBIN.id} \(in DiagnosticReport/",
            id="nested-result-outside",
        ),
        pytest.param(
            RecordType.HEALTH_DOCUMENT_RECORD,
            {Section.HEALTH_DOCUMENTS: [OLD_DISCHARGE_SUMMARY]},
            {"encounter": None, "supporting": [other(REPORT_PDF, subject=None)]},
            rf"^supporting: DocumentReference/{REPORT_PDF.id} is not referenced",
            id="supporting-unreached",
        ),
        pytest.param(
            RecordType.PRESCRIPTION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {},
            r"^sections: chief-complaints is not a section of Prescription",
            id="section-of-another-record",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.ALLERGIES: [FEVER]},
            {},
            r"^sections: allergies lists AllergyIntolerance, not Condition",
            id="wrong-resource-in-section",
        ),
        pytest.param(
            RecordType.PRESCRIPTION,
            {Section.PRESCRIPTION: [PRESCRIPTION_PDF, other(PRESCRIPTION_PDF, id=uid(99))]},
            {},
            r"^sections: prescription lists at most 1 Binary",
            id="two-binaries",
        ),
        pytest.param(
            RecordType.INVOICE,
            {Section.INVOICE: [INVOICE, other(INVOICE, id=uid(98))]},
            {"supporting": CHARGE_ITEMS},
            r"^sections: invoice lists at most 1 Invoice",
            id="two-invoices",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: []},
            {},
            r"^sections: chief-complaints lists no resources",
            id="empty-section",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {},
            {},
            r"^sections: OPConsultation records have at least one section",
            id="no-sections",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [other(FEVER, encounter=None)]},
            {"encounter": None},
            r"^encounter: required in OPConsultation records",
            id="op-consult-without-encounter",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER, other(FEVER, subject=None)]},
            {},
            rf"^id: two different Condition resources have the id {FEVER.id}",
            id="same-id-two-resources",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [other(FEVER, id=None)]},
            {},
            r"^sections: chief-complaints: the Condition has no id",
            id="resource-without-id",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"patient": R5Patient.model_validate(PATIENT.model_dump(mode="json"))},
            r"^patient: an R4B resource",
            id="r5-model",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"patient": DOCTOR},
            r"^patient: a Patient, not a Practitioner",
            id="practitioner-as-patient",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"practitioners": []},
            r"^practitioners: a document has at least one author",
            id="no-author",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"timestamp": datetime(2026, 5, 4, 12, 0)},
            r"^timestamp: a time with its UTC offset",
            id="naive-timestamp",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"date": datetime(2026, 5, 4, 12, 0)},
            r"^date: a time with its UTC offset",
            id="naive-date",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"status": "draft"},
            r"^status: one of preliminary, final, amended, entered-in-error",
            id="bad-status",
        ),
        pytest.param(
            RecordType.OP_CONSULTATION,
            {Section.CHIEF_COMPLAINTS: [FEVER]},
            {"title": "  "},
            r"^title: must not be empty",
            id="no-title",
        ),
    ],
)
def test_refusals_name_the_field_at_fault(
    record: RecordType,
    sections: Mapping[Section, Sequence[Resource]],
    changes: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        build(record, sections, **changes)


def test_two_resources_with_one_uuid_cannot_share_a_full_url() -> None:
    twin = other(DIABETES, id=str(VISIT_ID))
    with pytest.raises(ValueError, match=rf"^id: Encounter/{VISIT_ID} and Condition/{VISIT_ID} "):
        build(RecordType.OP_CONSULTATION, {Section.MEDICAL_HISTORY: [twin]})


def test_a_diagnosis_in_words_only_is_not_coded_in_another_system() -> None:
    in_words = other(FEVER, code=CodeableConcept(text="तीन दिन से बुखार"))
    bundle = build(RecordType.OP_CONSULTATION, {Section.CHIEF_COMPLAINTS: [in_words]})
    (condition,) = [r for r in resources_of(bundle) if isinstance(r, Condition)]
    assert condition.code is not None
    assert condition.code.coding is None


def test_an_encounter_for_another_visit_is_a_reference_outside() -> None:
    elsewhere = other(ENCOUNTER, id=uid(97))
    with pytest.raises(ValueError, match=rf"^reference: {VISIT} \(in Condition/{FEVER.id}\)"):
        build(RecordType.OP_CONSULTATION, {Section.CHIEF_COMPLAINTS: [FEVER]}, encounter=elsewhere)


def test_the_same_input_gives_the_same_bundle() -> None:
    for record, make in CASES.items():
        assert as_json(make()) == as_json(make()), record


def test_a_utc_timestamp_is_kept_as_given() -> None:
    at = datetime(2026, 5, 4, 6, 30, tzinfo=UTC)
    bundle = build(RecordType.OP_CONSULTATION, {Section.CHIEF_COMPLAINTS: [FEVER]}, timestamp=at)
    assert bundle.timestamp == at


def test_the_builders_give_r4b_models() -> None:
    # Guards the fixtures: the builders' output is R4B, not the package's default R5.
    assert isinstance(PATIENT, R4BPatient)
