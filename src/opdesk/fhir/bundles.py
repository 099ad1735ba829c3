"""ABDM health records as NRCeS document bundles, assembled from already-built resources.

ABDM shares a patient's record as one of its health information types (the ``hiTypes`` of a
consent request: OPConsultation, Prescription, DiagnosticReport, WellnessRecord,
HealthDocumentRecord, Invoice, ...). Each travels as a FHIR document: a Bundle of type
``document`` whose first entry is a Composition profiled for that type, followed by every
resource the Composition reaches. :func:`document` builds one; it is pure: the caller passes
the resources, ids and times (no clock, no random), so the same input gives the same bundle.

Where the rules come from: the ABDM FHIR guide's FSH sources, v6.0.0 profiles in the 6.5.0
build (``input/fsh/profiles/DocumentBundle.fsh``, ``OPConsultRecord.fsh``,
``PrescriptionRecord.fsh``, ``DiagnosticReportRecord.fsh``, ``WellnessRecord.fsh``,
``HealthDocumentRecord.fsh``, ``InvoiceRecord.fsh``), as published at
https://nrces.in/ndhm/fhir/r4/ (the sources read were the copy in the public repository
gauravvaishnav17/abdm-fhir-ig-fsh; the guide's own bundle examples there agree but where
noted at the code). In short:

* DocumentBundle: ``meta.versionId``, ``identifier`` (system and value) and ``timestamp``
  are required and ``type`` is fixed to ``document``. It slices nothing in ``entry``:
  ``fullUrl`` and ``resource`` are all an entry needs.
* The record profiles fix ``Composition.type`` and each section's ``code`` (or, for
  WellnessRecord, its ``title``) and restrict what each section's entries may point at.
  PrescriptionRecord, DiagnosticReportRecord and InvoiceRecord slice ``section.entry`` by
  ``Reference.type`` (closed), so those entries must say what they point at; this module
  sets ``type`` on every section entry, which the others allow.
* OPConsultRecord requires ``Composition.encounter``; the others allow it.

Besides the profiles, this module holds a document to three rules of its own: every
resource claims a profile (``meta.profile``); a Condition is coded in ICD-10 or in words
only, never in another system; and every reference points inside the bundle. Relative
references (``Patient/<id>``, anywhere in any resource) are rewritten to the target
entry's ``urn:uuid:`` fullUrl. A refusal is a ``ValueError`` whose message starts with the
field at fault (``sections: ...``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.composition import Composition, CompositionSection
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel

_STRUCTURES = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/"
DOCUMENT_BUNDLE_PROFILE = _STRUCTURES + "DocumentBundle"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
# Bundle and Composition ids are UUIDs: identifiers as RFC 3986 URNs need no namespace.
URI_SYSTEM = "urn:ietf:rfc:3986"
# Ids that are not UUIDs get a fullUrl derived from their type and id under this namespace.
_FULL_URLS = uuid.UUID("6f1c2d9e-3b7a-4e5f-8a0c-9d4b2e1f7a63")
_RELATIVE = re.compile(
    r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$"
)
COMPOSITION_STATUSES = ("preliminary", "final", "amended", "entered-in-error")


class RecordType(StrEnum):
    """ABDM's health information types, as its consent requests name them."""

    OP_CONSULTATION = "OPConsultation"
    PRESCRIPTION = "Prescription"
    DIAGNOSTIC_REPORT = "DiagnosticReport"
    WELLNESS_RECORD = "WellnessRecord"
    HEALTH_DOCUMENT_RECORD = "HealthDocumentRecord"
    INVOICE = "Invoice"


class Section(StrEnum):
    """A Composition section; which ones a record type has is in :data:`RECORDS`."""

    # OPConsultation
    CHIEF_COMPLAINTS = "chief-complaints"
    PHYSICAL_EXAMINATION = "physical-examination"
    ALLERGIES = "allergies"
    MEDICAL_HISTORY = "medical-history"
    FAMILY_HISTORY = "family-history"
    INVESTIGATION_ADVICE = "investigation-advice"
    MEDICATIONS = "medications"
    FOLLOW_UP = "follow-up"
    PROCEDURE = "procedure"
    REFERRAL = "referral"
    # OPConsultation and WellnessRecord
    OTHER_OBSERVATIONS = "other-observations"
    DOCUMENT_REFERENCE = "document-reference"
    # WellnessRecord
    VITAL_SIGNS = "vital-signs"
    BODY_MEASUREMENT = "body-measurement"
    PHYSICAL_ACTIVITY = "physical-activity"
    GENERAL_ASSESSMENT = "general-assessment"
    WOMEN_HEALTH = "women-health"
    LIFESTYLE = "lifestyle"
    # The single section of the other record types
    PRESCRIPTION = "prescription"
    DIAGNOSTIC_REPORT = "diagnostic-report"
    HEALTH_DOCUMENTS = "health-documents"
    INVOICE = "invoice"


class Code(NamedTuple):
    system: str
    code: str
    display: str

    def coding(self) -> Coding:
        return Coding(system=self.system, code=self.code, display=self.display)


def _sct(code: str, display: str) -> Code:
    return Code(SNOMED, code, display)


@dataclass(frozen=True)
class SectionRule:
    title: str
    # The fixed section code (None: the profile fixes the title instead, or nothing).
    code: Code | None
    # The resource types its entries may point at, and how many of one type at most.
    takes: frozenset[str]
    at_most: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordRule:
    profile: str
    # Composition.type: a fixed SNOMED coding, or (WellnessRecord, InvoiceRecord) text only.
    type_code: Code | None
    type_text: str
    sections: Mapping[Section, SectionRule]
    encounter_required: bool = False


def _takes(*types: str) -> frozenset[str]:
    return frozenset(types)


# OPConsultRecord.fsh: sections sliced by code.coding.code, each 0..1 (order: the profile's).
# Two codes differ from older guides and from the guide's own example bundle
# (Bundle-OPConsultNote-example-05), which still uses follow-up 736271009 "Outpatient care
# plan": the v6 profile fixes FollowUp to 390906007 "Follow-up encounter", and adds
# PhysicalExamination, FamilyHistory, Referral and OtherObservations.
_OP_CONSULT = RecordRule(
    profile=_STRUCTURES + "OPConsultRecord",
    type_code=_sct("371530004", "Clinical consultation report"),
    type_text="Clinical consultation report",
    encounter_required=True,  # OPConsultRecord: encounter 1..
    sections={
        Section.CHIEF_COMPLAINTS: SectionRule(
            "Chief complaints", _sct("422843007", "Chief complaint section"), _takes("Condition")
        ),
        Section.PHYSICAL_EXAMINATION: SectionRule(
            "Physical examination",
            _sct("425044008", "Physical exam section"),
            _takes("Observation"),
        ),
        Section.ALLERGIES: SectionRule(
            "Allergies", _sct("722446000", "Allergy record"), _takes("AllergyIntolerance")
        ),
        Section.MEDICAL_HISTORY: SectionRule(
            "Medical history",
            _sct("371529009", "History and physical report"),
            _takes("Condition", "Procedure"),
        ),
        Section.FAMILY_HISTORY: SectionRule(
            "Family history",
            _sct("422432008", "Family history section"),
            _takes("FamilyMemberHistory"),
        ),
        Section.INVESTIGATION_ADVICE: SectionRule(
            "Investigation advice", _sct("721963009", "Order document"), _takes("ServiceRequest")
        ),
        Section.MEDICATIONS: SectionRule(
            "Medications",
            _sct("721912009", "Medication summary document"),
            _takes("MedicationStatement", "MedicationRequest"),
        ),
        Section.FOLLOW_UP: SectionRule(
            "Follow up", _sct("390906007", "Follow-up encounter"), _takes("Appointment")
        ),
        Section.PROCEDURE: SectionRule(
            "Procedure", _sct("371525003", "Clinical procedure report"), _takes("Procedure")
        ),
        Section.REFERRAL: SectionRule(
            "Referral", _sct("306206005", "Referral to service"), _takes("ServiceRequest")
        ),
        Section.OTHER_OBSERVATIONS: SectionRule(
            "Other observations", _sct("404684003", "Clinical finding"), _takes("Observation")
        ),
        Section.DOCUMENT_REFERENCE: SectionRule(
            "Document reference",
            _sct("371530004", "Clinical consultation report"),
            _takes("DocumentReference"),
        ),
    },
)

# PrescriptionRecord.fsh: type and its one section both 440545006 "Prescription record";
# entries MedicationRequest (any number) and Binary (at most one), entry.type required.
_PRESCRIPTION = RecordRule(
    profile=_STRUCTURES + "PrescriptionRecord",
    type_code=_sct("440545006", "Prescription record"),
    type_text="Prescription record",
    sections={
        Section.PRESCRIPTION: SectionRule(
            "Prescription",
            _sct("440545006", "Prescription record"),
            _takes("MedicationRequest", "Binary"),
            {"Binary": 1},
        )
    },
)

# DiagnosticReportRecord.fsh: type is SNOMED from ValueSet ndhm-diagnostic-report-type
# (preferred, not fixed), 721981007 "Diagnostic studies report" being its general member;
# the one section's code must be SNOMED with a display but is not fixed either, and this
# module uses the same code. Entries: one DiagnosticReport (Lab or Imaging profile) and one
# DocumentReference at most, entry.type required.
_DIAGNOSTIC_REPORT = RecordRule(
    profile=_STRUCTURES + "DiagnosticReportRecord",
    type_code=_sct("721981007", "Diagnostic studies report"),
    type_text="Diagnostic studies report",
    sections={
        Section.DIAGNOSTIC_REPORT: SectionRule(
            "Diagnostic report",
            _sct("721981007", "Diagnostic studies report"),
            _takes("DiagnosticReport", "DocumentReference"),
            {"DiagnosticReport": 1, "DocumentReference": 1},
        )
    },
)

# WellnessRecord.fsh: type.text fixed to "Wellness Record" (no coding); sections sliced by
# their exact title, none coded. The Observation sections want the guide's Observation
# profiles (ObservationVitalSigns, ...); only the resource type is checked here.
_WELLNESS = RecordRule(
    profile=_STRUCTURES + "WellnessRecord",
    type_code=None,
    type_text="Wellness Record",
    sections={
        Section.VITAL_SIGNS: SectionRule("Vital Signs", None, _takes("Observation")),
        Section.BODY_MEASUREMENT: SectionRule("Body Measurement", None, _takes("Observation")),
        Section.PHYSICAL_ACTIVITY: SectionRule("Physical Activity", None, _takes("Observation")),
        Section.GENERAL_ASSESSMENT: SectionRule("General Assessment", None, _takes("Observation")),
        Section.WOMEN_HEALTH: SectionRule("Women Health", None, _takes("Observation")),
        Section.LIFESTYLE: SectionRule("Lifestyle", None, _takes("Observation")),
        Section.OTHER_OBSERVATIONS: SectionRule(
            "Other Observations", None, _takes("Observation", "Condition")
        ),
        Section.DOCUMENT_REFERENCE: SectionRule(
            "Document Reference", None, _takes("DocumentReference")
        ),
    },
)

# HealthDocumentRecord.fsh: type and its one section both 419891008 "Record artifact";
# entries DocumentReference only.
_HEALTH_DOCUMENT = RecordRule(
    profile=_STRUCTURES + "HealthDocumentRecord",
    type_code=_sct("419891008", "Record artifact"),
    type_text="Record artifact",
    sections={
        Section.HEALTH_DOCUMENTS: SectionRule(
            "Health documents", _sct("419891008", "Record artifact"), _takes("DocumentReference")
        )
    },
)

# InvoiceRecord.fsh: type.text fixed to "Invoice Record" (no coding); one uncoded section
# whose entries are exactly one Invoice (entry 1.., closed slice Invoice 0..1), entry.type
# required. The ChargeItems its lines point at go in as supporting resources.
_INVOICE = RecordRule(
    profile=_STRUCTURES + "InvoiceRecord",
    type_code=None,
    type_text="Invoice Record",
    sections={Section.INVOICE: SectionRule("Invoice", None, _takes("Invoice"), {"Invoice": 1})},
)

RECORDS: Mapping[RecordType, RecordRule] = {
    RecordType.OP_CONSULTATION: _OP_CONSULT,
    RecordType.PRESCRIPTION: _PRESCRIPTION,
    RecordType.DIAGNOSTIC_REPORT: _DIAGNOSTIC_REPORT,
    RecordType.WELLNESS_RECORD: _WELLNESS,
    RecordType.HEALTH_DOCUMENT_RECORD: _HEALTH_DOCUMENT,
    RecordType.INVOICE: _INVOICE,
}


def document(
    record: RecordType,
    *,
    bundle_id: uuid.UUID,
    composition_id: uuid.UUID,
    timestamp: datetime,
    date: datetime,
    title: str,
    patient: Patient,
    practitioners: Sequence[Practitioner],
    organization: Organization,
    sections: Mapping[Section, Sequence[Resource]],
    encounter: Encounter | None = None,
    supporting: Sequence[Resource] = (),
    status: str = "final",
) -> Bundle:
    """A document bundle of ``record``'s kind.

    ``sections`` maps each section to the resources it lists, in order; ``supporting`` are
    resources the document needs that no section lists (an Invoice's ChargeItems, a
    DiagnosticReport's Observations and Specimen): each must be reached by a reference from
    the Composition or from a resource it reaches. ``timestamp`` is when the bundle was
    made (``Bundle.timestamp`` and ``meta.lastUpdated``), ``date`` when the record was
    written (``Composition.date``); both carry a UTC offset. The caller's resources are
    copied, never changed.
    """
    rule = RECORDS[record]
    _aware("timestamp", timestamp)
    _aware("date", date)
    if status not in COMPOSITION_STATUSES:
        raise ValueError(f"status: one of {', '.join(COMPOSITION_STATUSES)}, not {status!r}")
    if not title.strip():
        raise ValueError("title: must not be empty")
    _is("patient", patient, "Patient")
    _is("organization", organization, "Organization")
    if not practitioners:
        raise ValueError("practitioners: a document has at least one author")
    for i, author in enumerate(practitioners):
        _is(f"practitioners[{i}]", author, "Practitioner")
    if encounter is not None:
        _is("encounter", encounter, "Encounter")
    elif rule.encounter_required:
        raise ValueError(f"encounter: required in {record} records (the visit's Encounter)")
    listed = _sections(record, rule, sections)

    composition = Composition(
        id=str(composition_id),
        meta=Meta(profile=[rule.profile]),
        identifier=Identifier(system=URI_SYSTEM, value=f"urn:uuid:{composition_id}"),
        status=status,
        type=CodeableConcept(
            coding=None if rule.type_code is None else [rule.type_code.coding()],
            text=rule.type_text,
        ),
        subject=_reference(patient),
        encounter=None if encounter is None else _reference(encounter),
        date=date,
        author=[_reference(p) for p in practitioners],
        title=title.strip(),
        custodian=_reference(organization),
        section=[
            CompositionSection(
                title=rule.sections[name].title,
                code=_section_code(rule.sections[name]),
                entry=[_reference(r, typed=True) for r in resources],
            )
            for name, resources in listed
        ],
    )
    everything: list[Resource] = [composition, patient, *practitioners, organization]
    if encounter is not None:
        everything.append(encounter)
    everything += [r for _, resources in listed for r in resources]
    everything += supporting

    entries = _unique(everything)
    for resource in entries:
        _claims_a_profile(resource)
        _icd10_only(resource)
    full_urls = {_key(r): _full_url(r) for r in entries}
    _distinct(full_urls)
    copies = [_pointing_inside(r, full_urls) for r in entries]
    _all_reached(copies, full_urls)
    return Bundle(
        id=str(bundle_id),
        meta=Meta(versionId="1", lastUpdated=timestamp, profile=[DOCUMENT_BUNDLE_PROFILE]),
        identifier=Identifier(system=URI_SYSTEM, value=f"urn:uuid:{bundle_id}"),
        type="document",
        timestamp=timestamp,
        entry=[BundleEntry(fullUrl=full_urls[_key(r)], resource=r) for r in copies],
    )


def every_reference_resolves(bundle: Bundle) -> list[str]:
    """The literal references in ``bundle`` that name no entry's fullUrl (empty: all do).

    A reference inside a resource to one of its contained resources (``#id``) counts as
    resolved; a relative one (``Patient/1``) does not, since a document's entries are
    named by ``urn:uuid:`` fullUrls that relative references cannot reach.
    """
    full_urls = {entry.fullUrl for entry in bundle.entry or []}
    return [
        target
        for ref in _references(bundle)
        if (target := ref.reference) is not None
        and not target.startswith("#")
        and target not in full_urls
    ]


def _sections(
    record: RecordType, rule: RecordRule, sections: Mapping[Section, Sequence[Resource]]
) -> list[tuple[Section, Sequence[Resource]]]:
    """The sections asked for, checked against the profile and put in its order."""
    if not sections:
        raise ValueError(f"sections: {record} records have at least one section")
    for name, resources in sections.items():
        if name not in rule.sections:
            allowed = ", ".join(rule.sections)
            raise ValueError(f"sections: {name} is not a section of {record} ({allowed})")
        section = rule.sections[name]
        if not resources:
            raise ValueError(f"sections: {name} lists no resources")
        counts: dict[str, int] = {}
        for resource in resources:
            kind = _resource_type(f"sections: {name}", resource)
            if kind not in section.takes:
                takes = " or ".join(sorted(section.takes))
                raise ValueError(f"sections: {name} lists {takes}, not {kind}")
            counts[kind] = counts.get(kind, 0) + 1
        for kind, most in section.at_most.items():
            if counts.get(kind, 0) > most:
                raise ValueError(f"sections: {name} lists at most {most} {kind}")
    return [(name, sections[name]) for name in rule.sections if name in sections]


def _section_code(section: SectionRule) -> CodeableConcept | None:
    return None if section.code is None else CodeableConcept(coding=[section.code.coding()])


def _reference(resource: Resource, *, typed: bool = False) -> Reference:
    kind = resource.get_resource_type()
    return Reference(reference=f"{kind}/{resource.id}", type=kind if typed else None)


def _is(field_name: str, resource: Resource, kind: str) -> None:
    if _resource_type(field_name, resource) != kind:
        raise ValueError(f"{field_name}: a {kind}, not a {resource.get_resource_type()}")


def _resource_type(field_name: str, resource: Any) -> str:
    if not isinstance(resource, Resource):
        raise ValueError(f"{field_name}: an R4B resource (fhir.resources.R4B), not {resource!r}")
    kind: str = resource.get_resource_type()
    if not resource.id:
        raise ValueError(f"{field_name}: the {kind} has no id; references need one")
    return kind


def _key(resource: Resource) -> tuple[str, str]:
    return resource.get_resource_type(), str(resource.id)


def _unique(resources: Sequence[Resource]) -> list[Resource]:
    """Each resource once (a Condition may be both a complaint and a diagnosis); two
    different resources of one type and id are refused.
    """
    seen: dict[tuple[str, str], Resource] = {}
    for resource in resources:
        key = _key(resource)
        if key not in seen:
            seen[key] = resource
        elif seen[key] is not resource and _json(seen[key]) != _json(resource):
            raise ValueError(f"id: two different {key[0]} resources have the id {key[1]}")
    return list(seen.values())


def _full_url(resource: Resource) -> str:
    kind, id_ = _key(resource)
    try:
        return f"urn:uuid:{uuid.UUID(id_)}"
    except ValueError:
        return f"urn:uuid:{uuid.uuid5(_FULL_URLS, f'{kind}/{id_}')}"


def _distinct(full_urls: Mapping[tuple[str, str], str]) -> None:
    """Two entries of different types may share a UUID id; they cannot share a fullUrl."""
    owners: dict[str, str] = {}
    for (kind, id_), url in full_urls.items():
        if url in owners:
            raise ValueError(f"id: {owners[url]} and {kind}/{id_} would share the fullUrl {url}")
        owners[url] = f"{kind}/{id_}"


def _claims_a_profile(resource: Resource) -> None:
    if resource.meta is None or not resource.meta.profile:
        kind, id_ = _key(resource)
        raise ValueError(f"meta.profile: {kind}/{id_} claims no profile")


def _icd10_only(resource: Resource) -> None:
    """Conditions are coded in ICD-10 alone (the entry's and any it contains).

    A diagnosis written in words only (``code.text``, no coding) passes: it is coded in
    nothing else. A Condition without ``code`` does not (NRCeS Condition: code 1..1).
    """
    contained = getattr(resource, "contained", None) or []
    for condition in [resource, *contained]:
        if condition.get_resource_type() != "Condition":
            continue
        where = f"Condition/{condition.id}"
        if condition.code is None:
            raise ValueError(f"code: {where} has none (NRCeS Condition: code 1..1)")
        for coding in condition.code.coding or []:
            if coding.system != ICD10:
                raise ValueError(f"code: {where} is coded in {coding.system}, not {ICD10}")
            if not coding.code or not coding.display:
                # NRCeS's Condition profile: an ICD-10 coding has code and display.
                raise ValueError(f"code: {where}'s ICD-10 coding needs a code and a display")


def _pointing_inside(resource: Resource, full_urls: Mapping[tuple[str, str], str]) -> Resource:
    """A copy of ``resource`` whose references all name entries of the bundle."""
    copy = resource.model_copy(deep=True)
    known = set(full_urls.values())
    owner = "/".join(_key(resource))
    for ref in _references(copy):
        target = ref.reference
        if target is None or target.startswith("#") or target in known:
            continue
        match = _RELATIVE.match(target)
        key = None if match is None else (match.group(1), match.group(2))
        if key is None or key not in full_urls:
            raise ValueError(f"reference: {target} (in {owner}) is not in the bundle")
        ref.reference = full_urls[key]
    return copy


def _all_reached(resources: Sequence[Resource], full_urls: Mapping[tuple[str, str], str]) -> None:
    """Every entry is reached from the Composition (the first), directly or through others."""
    by_url = {full_urls[_key(r)]: r for r in resources}
    start = full_urls[_key(resources[0])]
    reached = {start}
    todo = [start]
    while todo:
        for ref in _references(by_url[todo.pop()]):
            if ref.reference in by_url and ref.reference not in reached:
                reached.add(ref.reference)
                todo.append(ref.reference)
    for resource in resources:
        if full_urls[_key(resource)] not in reached:
            kind, id_ = _key(resource)
            raise ValueError(f"supporting: {kind}/{id_} is not referenced from the document")


def _references(model: BaseModel) -> Iterator[Reference]:
    """Every Reference in ``model``, at any depth (contained resources included)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Reference):
                yield item
            if isinstance(item, BaseModel):
                yield from _references(item)


def _json(resource: Resource) -> Any:
    return resource.model_dump(mode="json", exclude_none=True)


def _aware(field_name: str, moment: datetime) -> None:
    if moment.utcoffset() is None:
        raise ValueError(f"{field_name}: a time with its UTC offset")
