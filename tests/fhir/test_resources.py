"""FHIR output of patients, doctors and clinics: golden files and the profiles' rules.

No database: the functions take plain facts. A golden file changes only on purpose; after
such a change, read the diff against the NRCeS profile before committing it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.resource import Resource

from opdesk.fhir import resources
from opdesk.fhir.resources import OrganizationFacts, PatientFacts, PractitionerFacts

GOLDEN = Path(__file__).parent / "golden"
CLINIC_ID = uuid.UUID("7e1f3a52-9c4d-4b8e-a6f0-5d2c1b9e8a70")

# Check digits valid: ABHA numbers quoted in ABDM's developer documentation
# (see patients.schemas.luhn_valid).
AMIT = PatientFacts(
    id=uuid.UUID("0b5c8f2e-6a1d-4c3e-9f7a-2d4b6e8a1c01"),
    tenant_id=CLINIC_ID,
    number="P-000123",
    name_first="अमित",
    name_last="शर्मा",
    gender="male",
    dob=date(1985, 3, 14),
    phone="98220 43210",
    abha_number="91-7561-4088-8857",
)
# A child on her mother's phone, age only, no ABHA, gender not given.
PRIYA = PatientFacts(
    id=uuid.UUID("3c9d1e7a-2b4f-4a6c-8e0d-9f1a2b3c4d02"),
    tenant_id=CLINIC_ID,
    number="P-000124",
    name_first="प्रिया",
    name_last="",
    gender="undisclosed",
    dob=None,
    phone=None,
    abha_number=None,
)
DR_RAO = PractitionerFacts(
    id=uuid.UUID("5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c03"),
    display_name="डॉ. सुनीता राव (Dr. Sunita Rao)",
    registration_number="MMC 2009/04/1234",
)
CLINIC = OrganizationFacts(
    id=CLINIC_ID,
    name="आरोग्य क्लिनिक, पुणे",
    phone="020 2553 1234",
    email="Desk@Arogya-Clinic.in",
    hfr_id="IN2710004770",
)
NEW_CLINIC = replace(CLINIC, hfr_id=None, email=None)
# What a stale row or a hand-filled fact could hold, whatever the type says.
NOT_A_GENDER: Any = "f"

CASES: dict[str, Any] = {
    "patient_with_abha": lambda: resources.patient(AMIT),
    "patient_without_abha": lambda: resources.patient(PRIYA),
    "practitioner": lambda: resources.practitioner(DR_RAO),
    "organization_with_hfr": lambda: resources.organization(CLINIC),
    "organization_without_hfr": lambda: resources.organization(NEW_CLINIC),
}


def as_json(resource: Resource) -> dict[str, Any]:
    return resource.model_dump(mode="json", exclude_none=True)


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", CASES)
def test_resource_matches_its_golden_file(name: str) -> None:
    assert as_json(CASES[name]()) == golden(name)


@pytest.mark.parametrize("name", CASES)
def test_golden_file_is_a_valid_r4b_resource(name: str) -> None:
    # Guards the golden files themselves: hand edits must still parse as R4B.
    resource = CASES[name]()
    assert as_json(type(resource).model_validate(golden(name))) == golden(name)


@pytest.mark.parametrize(
    ("build", "profile"),
    [
        (lambda: resources.patient(AMIT), "Patient"),
        (lambda: resources.practitioner(DR_RAO), "Practitioner"),
        (lambda: resources.organization(CLINIC), "Organization"),
    ],
)
def test_each_resource_claims_its_nrces_profile(build: Any, profile: str) -> None:
    assert build().meta.profile == [f"https://nrces.in/ndhm/fhir/r4/StructureDefinition/{profile}"]


def type_of(ident: Identifier) -> tuple[str | None, str | None]:
    assert ident.type is not None
    assert ident.type.coding is not None
    (coding,) = ident.type.coding
    return coding.system, coding.code


def identifiers(
    resource: Patient | Practitioner | Organization,
) -> dict[str | None, tuple[str | None, ...]]:
    """Each identifier's type (code system, code) and value, by the identifier's system."""
    assert resource.identifier is not None
    return {ident.system: (*type_of(ident), ident.value) for ident in resource.identifier}


def test_patient_ids_are_the_clinics_mrn_and_the_abha_number() -> None:
    assert identifiers(resources.patient(AMIT)) == {
        f"https://opdesk.in/fhir/sid/mrn/{CLINIC_ID}": (
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "MR",
            "P-000123",
        ),
        "https://healthid.ndhm.gov.in": (
            "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-identifier-type-code",
            "HIN",
            "91-7561-4088-8857",
        ),
    }


def test_patient_without_abha_has_only_the_mrn() -> None:
    assert list(identifiers(resources.patient(PRIYA))) == [
        f"https://opdesk.in/fhir/sid/mrn/{CLINIC_ID}"
    ]


def test_the_same_patient_number_in_two_clinics_is_two_identifiers() -> None:
    other = replace(AMIT, tenant_id=uuid.UUID("00000000-0000-4000-8000-000000000001"))
    assert (
        identifiers(resources.patient(AMIT)).keys() != identifiers(resources.patient(other)).keys()
    )


@pytest.mark.parametrize("typed", ["91756140888857", "91 7561 4088 8857", "91-7561-4088-8857"])
def test_abha_number_is_sent_hyphenated_however_it_was_typed(typed: str) -> None:
    sent = identifiers(resources.patient(replace(AMIT, abha_number=typed)))
    assert sent["https://healthid.ndhm.gov.in"][-1] == "91-7561-4088-8857"


@pytest.mark.parametrize(
    ("gender", "fhir"),
    [("female", "female"), ("male", "male"), ("other", "other"), ("undisclosed", "unknown")],
)
def test_gender_maps_to_administrative_gender(gender: Any, fhir: str) -> None:
    assert resources.patient(replace(AMIT, gender=gender)).gender == fhir


def test_practitioner_is_identified_by_registration_number_as_medical_licence() -> None:
    (ident,) = resources.practitioner(DR_RAO).identifier or []
    assert type_of(ident) == ("http://terminology.hl7.org/CodeSystem/v2-0203", "MD")
    assert ident.value == "MMC 2009/04/1234"


def test_organization_ids_are_hfr_when_registered_and_always_opdesks() -> None:
    assert identifiers(resources.organization(CLINIC)) == {
        "https://facility.ndhm.gov.in": (
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "PRN",
            "IN2710004770",
        ),
        "https://opdesk.in/fhir/sid/clinic": (
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "XX",
            str(CLINIC_ID),
        ),
    }
    assert list(identifiers(resources.organization(NEW_CLINIC))) == [
        "https://opdesk.in/fhir/sid/clinic"
    ]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: resources.patient(replace(AMIT, abha_number="91-7561-4088-885")), "abha_number"),
        (lambda: resources.patient(replace(AMIT, abha_number="9175614088885700")), "abha_number"),
        (lambda: resources.patient(replace(AMIT, abha_number="91-7561-4088-8858")), "abha_number"),
        (lambda: resources.patient(replace(AMIT, phone="12345")), "phone"),
        (lambda: resources.patient(replace(AMIT, name_first="  ")), "name_first"),
        (lambda: resources.patient(replace(AMIT, number="")), "number"),
        (lambda: resources.patient(replace(AMIT, gender=NOT_A_GENDER)), "gender"),
        (
            lambda: resources.practitioner(replace(DR_RAO, registration_number="")),
            "registration_number",
        ),
        (lambda: resources.practitioner(replace(DR_RAO, display_name=" ")), "display_name"),
        (lambda: resources.organization(replace(CLINIC, hfr_id="IN 2710")), "hfr_id"),
        (lambda: resources.organization(replace(CLINIC, email="desk@")), "email"),
        (lambda: resources.organization(replace(CLINIC, name="")), "name"),
    ],
)
def test_invalid_fact_raises_value_error_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        build()
