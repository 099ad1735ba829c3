"""Consent resources from the consents patients sign at the clinic (``consents.models``).

Pure, as in ``resources``: the caller fills a :class:`ConsentFacts` from a ``consents`` row.

No NRCeS profile: the ABDM guide (v6.x, input/fsh/profiles/) profiles no Consent resource,
since ABDM's own consent artefacts (HIU access to records) travel as gateway JSON, not as
FHIR. The resource therefore claims no profile and follows R4B's Consent alone: ``status``,
``scope``, ``category`` 1..* and, by invariant ppc-1, a ``policyRule`` (or ``policy``);
ppc-2 and ppc-5 want ``patient`` for privacy and treatment consents, which every one has.

What each OPDesk consent type becomes (``consents.models.CONSENT_TYPES``):

* treatment, teleconsultation: scope ``treatment`` (consent to be treated, here or by video);
* data-processing (the DPDP Act's consent), whatsapp, sms: scope ``patient-privacy``, the
  consentscope code for agreeing to collect, use or share information.

Both carry the LOINC document category and OPDesk's own type, so a receiver that knows only
FHIR sees a consent document and one that knows OPDesk sees which. A signed consent is
``active``; a revoked one ``inactive`` (R4B consent-state-codes), its provision's period
ending when it was revoked.

An invalid fact raises ``ValueError`` whose message starts with the field's name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.consent import Consent, ConsentProvision
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference

from opdesk.consents.models import CONSENT_TYPES, consent_label

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# OPDesk's consent types, as codes of its own (they are OPDesk's, not a standard's).
OPDESK_CONSENT_TYPES = "https://opdesk.in/fhir/CodeSystem/consent-type"
# A consent's id is a UUID: unique without a namespace of OPDesk's (RFC 3986 URNs).
URI_SYSTEM = "urn:ietf:rfc:3986"

TREATMENT = ("treatment", "Treatment")
PRIVACY = ("patient-privacy", "Privacy Consent")
SCOPES: dict[str, tuple[str, str]] = {
    "treatment": TREATMENT,
    "teleconsultation": TREATMENT,
    "data-processing": PRIVACY,
    "whatsapp": PRIVACY,
    "sms": PRIVACY,
}
assert set(SCOPES) == set(CONSENT_TYPES)

# LOINC 59284-0, in R4B's consent-category value set. The display is LOINC's own name for
# it ("Consent Document"); the value set's page shows "Patient Consent" for the same code.
CONSENT_DOCUMENT = ("59284-0", "Consent Document")
# The patient opted in to what the text describes (v3-ActCode OPTIN).
OPT_IN = ("OPTIN", "opt-in")


@dataclass(frozen=True, slots=True)
class ConsentFacts:
    """A patient's agreement to one consent text (``consents.models.Consent``)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    patient_id: uuid.UUID
    type: str
    # The signed copy kept among the patient's documents (``documents``), if the caller
    # exports those as DocumentReferences with the same id.
    file_id: uuid.UUID
    signed_at: datetime
    revoked_at: datetime | None


def consent(c: ConsentFacts) -> Consent:
    if c.type not in SCOPES:
        raise ValueError(f"type: one of {', '.join(SCOPES)}, not {c.type!r}")
    _aware("signed_at", c.signed_at)
    if c.revoked_at is not None:
        _aware("revoked_at", c.revoked_at)
        if c.revoked_at < c.signed_at:
            raise ValueError("revoked_at: before the consent was signed")
    scope_code, scope_display = SCOPES[c.type]
    patient = f"Patient/{c.patient_id}"
    return Consent(
        id=str(c.id),
        identifier=[Identifier(system=URI_SYSTEM, value=f"urn:uuid:{c.id}")],
        status="active" if c.revoked_at is None else "inactive",
        scope=_concept(CONSENT_SCOPE, scope_code, scope_display),
        category=[
            _concept(LOINC, *CONSENT_DOCUMENT),
            _concept(OPDESK_CONSENT_TYPES, c.type, consent_label(c.type)),
        ],
        patient=Reference(reference=patient),
        dateTime=c.signed_at,
        # The patient agreed (a guardian signing for a child is not told apart in OPDesk).
        performer=[Reference(reference=patient)],
        organization=[Reference(reference=f"Organization/{c.tenant_id}")],
        sourceReference=Reference(
            reference=f"DocumentReference/{c.file_id}", display="Signed copy"
        ),
        policyRule=_concept(V3_ACT_CODE, *OPT_IN),
        provision=ConsentProvision(
            type="permit", period=Period(start=c.signed_at, end=c.revoked_at)
        ),
    )


def _concept(system: str, code: str, display: str) -> CodeableConcept:
    return CodeableConcept(coding=[Coding(system=system, code=code, display=display)])


def _aware(field: str, moment: datetime) -> None:
    if moment.utcoffset() is None:
        raise ValueError(f"{field}: a time with its UTC offset")
