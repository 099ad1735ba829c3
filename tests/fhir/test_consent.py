"""Consent output of the consents patients sign: golden files, scopes, states, refusals."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.consent import Consent

from opdesk.consents.models import CONSENT_TYPES
from opdesk.fhir import consent
from opdesk.fhir.consent import ConsentFacts
from tests.fhir.test_resources import AMIT, CLINIC_ID

GOLDEN = Path(__file__).parent / "golden" / "consent"
IST = timezone(timedelta(hours=5, minutes=30))

TREATMENT = ConsentFacts(
    id=uuid.UUID("2c4e6a8b-0d1f-4a3c-9e5b-7d9f1b3d5e01"),
    tenant_id=CLINIC_ID,
    patient_id=AMIT.id,
    type="treatment",
    file_id=uuid.UUID("6e8a0c2e-4f6b-4d8a-8c0e-2a4c6e8a0c02"),
    signed_at=datetime(2026, 5, 4, 10, 15, tzinfo=IST),
    revoked_at=None,
)
WHATSAPP_REVOKED = replace(
    TREATMENT,
    id=uuid.UUID("8a0c2e4f-6b8d-4f1a-ac3e-5c7e9a1c3e03"),
    type="whatsapp",
    revoked_at=datetime(2026, 8, 1, 18, 0, tzinfo=IST),
)
# What a stale row or a hand-filled fact could hold.
NOT_A_TYPE: Any = "email"

CASES: dict[str, Any] = {
    "consent_treatment": lambda: consent.consent(TREATMENT),
    "consent_whatsapp_revoked": lambda: consent.consent(WHATSAPP_REVOKED),
}


def as_json(resource: Consent) -> dict[str, Any]:
    return resource.model_dump(mode="json", exclude_none=True)


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", CASES)
def test_consent_matches_its_golden_file(name: str) -> None:
    assert as_json(CASES[name]()) == golden(name)


@pytest.mark.parametrize("name", CASES)
def test_golden_file_is_a_valid_r4b_consent(name: str) -> None:
    assert as_json(Consent.model_validate(golden(name))) == golden(name)


def codes(concept: Any) -> list[tuple[str, str, str]]:
    return [(c.system, c.code, c.display) for c in concept.coding]


@pytest.mark.parametrize(
    ("type_", "scope"),
    [
        ("treatment", "treatment"),
        ("teleconsultation", "treatment"),
        ("data-processing", "patient-privacy"),
        ("whatsapp", "patient-privacy"),
        ("sms", "patient-privacy"),
    ],
)
def test_each_consent_type_has_its_scope_and_categories(type_: str, scope: str) -> None:
    made = consent.consent(replace(TREATMENT, type=type_))
    ((system, code, _),) = codes(made.scope)
    assert (system, code) == ("http://terminology.hl7.org/CodeSystem/consentscope", scope)
    loinc, own = (codes(category)[0] for category in made.category or [])
    assert loinc == ("http://loinc.org", "59284-0", "Consent Document")
    assert own[:2] == ("https://opdesk.in/fhir/CodeSystem/consent-type", type_)


def test_every_consent_type_is_mapped() -> None:
    for type_ in CONSENT_TYPES:
        assert consent.consent(replace(TREATMENT, type=type_)).status == "active"


def test_signed_is_active_and_revoked_is_inactive_with_the_period_ended() -> None:
    signed = consent.consent(TREATMENT)
    assert signed.status == "active"
    assert signed.provision is not None
    assert signed.provision.period is not None
    assert signed.provision.period.end is None
    revoked = consent.consent(WHATSAPP_REVOKED)
    assert revoked.status == "inactive"
    assert revoked.provision is not None
    assert revoked.provision.period is not None
    assert revoked.provision.period.end == WHATSAPP_REVOKED.revoked_at


def test_consent_names_patient_clinic_signed_copy_and_opt_in() -> None:
    made = consent.consent(TREATMENT)
    assert made.patient is not None
    assert made.patient.reference == f"Patient/{AMIT.id}"
    assert [o.reference for o in made.organization or []] == [f"Organization/{CLINIC_ID}"]
    assert made.sourceReference is not None
    assert made.sourceReference.reference == f"DocumentReference/{TREATMENT.file_id}"
    assert codes(made.policyRule) == [
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "opt-in")
    ]
    assert made.dateTime == TREATMENT.signed_at


def test_consent_claims_no_profile_as_nrces_has_none() -> None:
    assert consent.consent(TREATMENT).meta is None


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (replace(TREATMENT, type=NOT_A_TYPE), "type"),
        (replace(TREATMENT, signed_at=datetime(2026, 5, 4, 10, 15)), "signed_at"),
        (replace(WHATSAPP_REVOKED, revoked_at=datetime(2026, 8, 1, 18, 0)), "revoked_at"),
        (
            replace(WHATSAPP_REVOKED, revoked_at=TREATMENT.signed_at - timedelta(minutes=1)),
            "revoked_at",
        ),
    ],
)
def test_invalid_fact_raises_value_error_naming_the_field(bad: ConsentFacts, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        consent.consent(bad)
