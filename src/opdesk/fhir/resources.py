"""Patient, Practitioner and Organization resources from plain, already-decrypted facts.

Pure functions: no database and no keys. The caller opens the encrypted columns, fills a
``*Facts`` and gets back a model that fhir.resources has validated. The models are R4B's:
ABDM's profiles (NRCeS, "FHIR Implementation Guide for ABDM", https://nrces.in/ndhm/fhir/r4/)
are FHIR R4, and the package's default models are R5. fhir.resources checks structure and
datatypes but not codes (it accepts ``gender="bogus"``), so every code is checked here.

What the profiles require (StructureDefinition-Patient, -Practitioner and -Organization,
v6.0.0, as in the guide's FSH sources under input/fsh/profiles/): ``identifier`` 1..*, each
with ``type`` whose coding has system, code and display, and ``value``; ``name.text`` for
Patient and Practitioner; ``name`` and ``identifier.system`` for Organization.

An invalid fact raises ``ValueError`` whose message starts with the field's name
(``abha_number: ...``), so a caller can point at the value to correct.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.contactpoint import ContactPoint
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner

from opdesk import formatting, validation
from opdesk.patients.schemas import Gender, abha_digits

_PROFILES = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/"
PATIENT_PROFILE = _PROFILES + "Patient"
PRACTITIONER_PROFILE = _PROFILES + "Practitioner"
ORGANIZATION_PROFILE = _PROFILES + "Organization"

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NDHM_IDENTIFIER_TYPE = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-identifier-type-code"

# The namespaces of ABHA numbers and HFR facility ids, as the guide's own examples write
# them (Patient-example-01, Organization-example-01). ABDM's domains have since moved to
# abdm.gov.in, but the guide's examples have not, and receivers compare systems literally.
ABHA_SYSTEM = "https://healthid.ndhm.gov.in"
HFR_SYSTEM = "https://facility.ndhm.gov.in"

# OPDesk's own namespaces. A patient number (P-000123) is unique only within its clinic,
# so the clinic's id is part of the system: two clinics' P-000123 stay two identifiers.
OPDESK_IDS = "https://opdesk.in/fhir/sid"
CLINIC_SYSTEM = OPDESK_IDS + "/clinic"


def mrn_system(clinic_id: uuid.UUID) -> str:
    return f"{OPDESK_IDS}/mrn/{clinic_id}"


class IdentifierType(NamedTuple):
    system: str
    code: str
    display: str

    def concept(self) -> CodeableConcept:
        # A fresh model each time: models are mutable and resources must not share parts.
        coding = Coding(system=self.system, code=self.code, display=self.display)
        return CodeableConcept(coding=[coding])


MEDICAL_RECORD = IdentifierType(V2_0203, "MR", "Medical record number")
MEDICAL_LICENSE = IdentifierType(V2_0203, "MD", "Medical License number")
# The type the guide's Organization-example-01 gives an HFR id.
PROVIDER_NUMBER = IdentifierType(V2_0203, "PRN", "Provider number")
ORGANIZATION_ID = IdentifierType(V2_0203, "XX", "Organization identifier")
# The 14-digit ABHA number (formerly "Health ID"). Not the code ABHA of the same code
# system: its definition there is the ABHA *address* (name@abdm), and the guide's examples
# use it only with addresses. Not v2-0203 MR either, though Patient-example-01 does so:
# MR is the clinic's own record number, and two MR identifiers could not be told apart.
HEALTH_ID = IdentifierType(NDHM_IDENTIFIER_TYPE, "HIN", "Health ID issued by NDHM")

# OPDesk's genders (patients.models.GENDERS) as FHIR administrative-gender codes.
FHIR_GENDERS: dict[str, str] = {
    "female": "female",
    "male": "male",
    "other": "other",
    "undisclosed": "unknown",
}


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """An OPDesk patient (``patients.models.Patient``), decrypted."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    # As ``PatientOut.number`` shows it: ``P-000123``.
    number: str
    name_first: str
    name_last: str
    gender: Gender
    # None when only an age was recorded: an estimated date would pass for a real one.
    dob: date | None
    # None for a dependent who shares a guardian's phone.
    phone: str | None
    abha_number: str | None


@dataclass(frozen=True, slots=True)
class PractitionerFacts:
    """A doctor (``scheduling.models.DoctorProfile``)."""

    id: uuid.UUID
    display_name: str
    registration_number: str


@dataclass(frozen=True, slots=True)
class OrganizationFacts:
    """A clinic (``tenancy.models.Tenant``); ``email`` and ``hfr_id`` have no column yet."""

    id: uuid.UUID
    name: str
    phone: str | None
    email: str | None
    hfr_id: str | None


def patient(p: PatientFacts) -> Patient:
    identifiers = [_identifier(MEDICAL_RECORD, mrn_system(p.tenant_id), _text("number", p.number))]
    if p.abha_number is not None:
        identifiers.append(_identifier(HEALTH_ID, ABHA_SYSTEM, _abha(p.abha_number)))
    return Patient(
        id=str(p.id),
        meta=Meta(profile=[PATIENT_PROFILE]),
        identifier=identifiers,
        name=[_person_name(p.name_first, p.name_last)],
        gender=_checked("gender", _fhir_gender, p.gender),
        birthDate=p.dob,
        telecom=_telecom(phone=p.phone, email=None, use="mobile"),
    )


def practitioner(d: PractitionerFacts) -> Practitioner:
    # No identifier system: a registration number is issued by one of several medical
    # councils (NMC or a state's), which OPDesk does not record. https://doctor.ndhm.gov.in,
    # which the guide's Practitioner-example-01 uses, is the namespace of HPR ids instead.
    registration = Identifier(
        type=MEDICAL_LICENSE.concept(),
        value=_text("registration_number", d.registration_number),
    )
    return Practitioner(
        id=str(d.id),
        meta=Meta(profile=[PRACTITIONER_PROFILE]),
        identifier=[registration],
        name=[HumanName(text=_text("display_name", d.display_name))],
    )


def organization(c: OrganizationFacts) -> Organization:
    # The profile wants at least one identifier, and a clinic not yet in HFR has only ours.
    identifiers = [_identifier(ORGANIZATION_ID, CLINIC_SYSTEM, str(c.id))]
    if c.hfr_id is not None:
        identifiers.insert(
            0, _identifier(PROVIDER_NUMBER, HFR_SYSTEM, _checked("hfr_id", _hfr_id, c.hfr_id))
        )
    return Organization(
        id=str(c.id),
        meta=Meta(profile=[ORGANIZATION_PROFILE]),
        identifier=identifiers,
        name=_text("name", c.name),
        telecom=_telecom(phone=c.phone, email=c.email, use="work"),
    )


def _identifier(kind: IdentifierType, system: str, value: str) -> Identifier:
    return Identifier(type=kind.concept(), system=system, value=value)


def _person_name(first: str, last: str) -> HumanName:
    given = _text("name_first", first)
    family = last.strip()
    # text is what the profile requires; given and family help receivers that sort by
    # surname. Written as the clinic wrote them, in whatever script (अमित शर्मा).
    return HumanName(text=f"{given} {family}".strip(), given=[given], family=family or None)


def _telecom(*, phone: str | None, email: str | None, use: str) -> list[ContactPoint] | None:
    points = []
    if phone is not None:
        value = _checked("phone", validation.phone_e164, phone)
        points.append(ContactPoint(system="phone", value=value, use=use))
    if email is not None:
        value = _checked("email", validation.email, email)
        points.append(ContactPoint(system="email", value=value, use=use))
    return points or None


def _abha(text: str) -> str:
    # Hyphenated as on the ABHA card and in the guide's examples (22-7225-4829-5255).
    return formatting.abha_number(_checked("abha_number", abha_digits, text))


def _fhir_gender(value: str) -> str:
    if value not in FHIR_GENDERS:
        raise ValueError(f"one of {', '.join(FHIR_GENDERS)}, not {value!r}")
    return FHIR_GENDERS[value]


def _hfr_id(value: str) -> str:
    # HFR ids look like IN2710004770; no published rule for them was found, so only what
    # any id must be is checked, and the value is otherwise passed on as issued.
    facility = value.strip().upper()
    if not (facility.isascii() and facility.isalnum()):
        raise ValueError("letters and digits only, as HFR issued it, e.g. IN2710004770")
    return facility


def _text(field: str, value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{field}: must not be empty")
    return stripped


def _checked(field: str, check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from exc
