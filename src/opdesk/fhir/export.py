"""A patient's record as FHIR: one NRCeS document bundle per care event, and ``$everything``.

:func:`chart` reads everything the clinic hands out about one patient, through each
domain's read functions and :mod:`opdesk.fhir.sources`, inside the caller's transaction
(row-level security keeps it to the clinic), and builds every resource once. From it:

* :func:`bundles_of` makes the ABDM documents (:func:`opdesk.fhir.bundles.document`);
* :func:`searchset` makes the ``Patient/$everything`` answer.

What is handed out follows the release rules of the patient's data export
(``opdesk.privacy.export``), since both hand the record out of the clinic: a visit's
diagnoses once the visit is signed (a draft's are the doctor's working list), issued
prescriptions only, a lab or imaging report once a doctor has reviewed it (its files
with it; before that, the order's tests alone), documents as the patient's portal lists
them. Appointments, visits, vitals, consents and issued invoices are handed out as they
are.

Which documents are made:

* OPConsultation, per signed visit: the visit's Encounter; its diagnoses under "Chief
  complaints" (the one OPConsultRecord section for present problems; the Encounter ranks
  them as its diagnoses too), its vitals under "Physical examination", its orders' tests
  (not cancelled) under "Investigation advice", its current prescriptions' medicines
  under "Medications" and the follow-up appointments booked from it under "Follow up".
* Prescription, per issued prescription that no issued change has replaced (a replaced
  prescription's MedicationRequests would still read ``active``).
* DiagnosticReport, per reviewed lab or imaging order: the report, its files inline.
* WellnessRecord, per signed visit with vitals, sorted into the profile's sections by the
  Observation profile each reading claims.
* HealthDocumentRecord, per document (the newest version of each), but for the report
  files already sent inside their DiagnosticReport.
* Invoice, per issued invoice, with its ChargeItems.

Each bundle holds whatever its resources refer to (the Encounter's Appointment and
diagnoses, an order's tests, another doctor), found among the patient's own resources,
so every reference resolves inside it. Ids are uuid5 values of the source record's id,
and ``timestamp`` is the source record's own time (when the visit was signed, the invoice
last changed...), not the clock: exporting the same records again gives byte-identical
bundles, and a bundle's timestamp moves only when what it shows has changed.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntrySearch, BundleLink
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient as PatientResource
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.resource import Resource
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.billing import queries as billing_queries
from opdesk.billing.models import Invoice, InvoiceStatus
from opdesk.clinical import orders, prescriptions
from opdesk.clinical.models import Order, OrderStatus, Prescription, Visit, VisitStatus
from opdesk.consents.models import Consent
from opdesk.context import Clock, RequestContext, system_context, utc_now
from opdesk.db import Database, new_id
from opdesk.documents import service as documents
from opdesk.documents.models import Document
from opdesk.documents.storage import Storage
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.fhir import billing, clinical, consent, resources, sources
from opdesk.fhir.bundles import RecordType, Section
from opdesk.fhir.bundles import document as document_bundle
from opdesk.fhir.clinical import DocumentFacts
from opdesk.patients import queries as patient_queries
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.scheduling import queries as scheduling_queries
from opdesk.scheduling.models import Appointment, DoctorProfile
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenancy
from opdesk.tenancy.models import Tenant
from opdesk.uow import enter_tenant, transaction

# The namespace of bundle ids: uuid5(EXPORT_IDS, "<RecordType>/<source record id>").
EXPORT_IDS = uuid.UUID("0d6c3f4e-5a2b-4f71-9e88-3c1b7a52d9e4")
# As privacy.export: no patient has this many records of a kind; a listing is capped.
LIMIT = 10_000
# A lab or imaging report is handed out once a doctor has reviewed it.
RELEASED_ORDERS = orders.SEEN_BY_PATIENT
# ``$everything`` lists the patient's own resources as matches and the clinic and its
# doctors, which are no one patient's, as includes.
INCLUDED_TYPES = frozenset({"Organization", "Practitioner"})
PATIENT_NUMBER = re.compile(r"^[Pp]-?0*([0-9]{1,9})$")
EVERYTHING_FILE = "everything.json"


@dataclass
class VisitRecord:
    row: Visit
    encounter: Encounter
    conditions: list[Resource]
    observations: list[Resource]

    @property
    def signed(self) -> bool:
        return self.row.status == VisitStatus.SIGNED


@dataclass
class OrderRecord:
    row: Order
    requests: list[Resource]
    # Only once the order is reviewed, and for a lab or imaging order.
    report: Resource | None
    files: list[uuid.UUID]


@dataclass
class Chart:
    """Everything the clinic hands out about one patient, built as FHIR resources once."""

    clinic: Tenant
    patient_row: Patient
    patient: PatientResource
    organization: Organization
    # The clinic's doctors by profile id (a handful, read once).
    doctors: dict[uuid.UUID, DoctorProfile]
    appointments: list[tuple[Appointment, Resource]] = field(default_factory=list)
    visits: list[VisitRecord] = field(default_factory=list)
    prescriptions: list[tuple[Prescription, list[Resource]]] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    documents: list[tuple[Document, Resource]] = field(default_factory=list)
    consents: list[Resource] = field(default_factory=list)
    invoices: list[tuple[Invoice, Resource, list[Resource]]] = field(default_factory=list)

    def practitioner(self, doctor_id: uuid.UUID) -> Practitioner:
        return resources.practitioner(sources.practitioner_of(self.doctors[doctor_id]))

    def own(self) -> list[Resource]:
        """The patient's resources (the patient compartment), oldest first within a kind."""
        found: list[Resource] = [self.patient]
        found += [r for _, r in self.appointments]
        found += [v.encounter for v in self.visits]
        found += [c for v in self.visits for c in v.conditions]
        found += [o for v in self.visits for o in v.observations]
        found += [m for _, requests in self.prescriptions for m in requests]
        found += [s for o in self.orders for s in o.requests]
        found += [o.report for o in self.orders if o.report is not None]
        found += [r for _, r in self.documents]
        found += self.consents
        found += [i for _, i, _ in self.invoices]
        found += [c for _, _, items in self.invoices for c in items]
        return found

    def resources(self) -> list[Resource]:
        """The patient's resources, then the clinic and every doctor they name."""
        own = self.own()
        named: dict[uuid.UUID, None] = {}
        for r in own:
            for ref in sources.references(r):
                kind, _, id_ = ref.partition("/")
                if kind == "Practitioner":
                    named.setdefault(uuid.UUID(id_))
        return [*own, self.organization, *(self.practitioner(d) for d in named)]

    def index(self) -> dict[str, Resource]:
        return {_key(r): r for r in self.resources()}


def chart(
    session: Session,
    cipher: FieldCipher,
    ctx: RequestContext,
    patient_id: uuid.UUID,
    *,
    storage: Storage,
) -> Chart:
    """The patient's record as FHIR resources (404 for an unknown or another clinic's id)."""
    row = patients.get(session, patient_id)
    pid = row.id
    clinic = session.get_one(Tenant, row.tenant_id)
    today = patients.today_at_clinic(session, ctx)
    found = Chart(
        clinic=clinic,
        patient_row=row,
        patient=resources.patient(sources.patient_of(cipher, row, today)),
        organization=resources.organization(
            sources.organization_facts(session, cipher, clinic.id, own=clinic.id)
        ),
        doctors={d.id: d for d in session.execute(select(DoctorProfile)).scalars()},
    )
    booked = scheduling_queries.appointments(session, day=None, patient_id=pid, limit=None)
    for a, slot in reversed(booked):  # oldest first
        facts = sources.appointment_of(a, slot, found.doctors[a.doctor_id])
        found.appointments.append((a, clinical.appointment(facts)))

    visits = session.execute(
        select(Visit).where(Visit.patient_id == pid).order_by(Visit.created_at, Visit.id)
    ).scalars()
    for v in visits:
        signed = v.status == VisitStatus.SIGNED
        diagnoses = sources.conditions_of_visit(session, cipher, v.id) if signed else []
        found.visits.append(
            VisitRecord(
                row=v,
                encounter=clinical.encounter(sources.encounter_of(v), diagnoses),
                conditions=[clinical.condition(d) for d in diagnoses],
                observations=list(
                    clinical.vital_signs(sources.vitals_of_visit(session, cipher, v.id))
                ),
            )
        )

    for p in reversed(prescriptions.issued_for(session, [pid])):  # oldest first
        issued = sources.prescription_of(p)
        requests: list[Resource] = [
            clinical.medication_request(issued, item)
            for item in sources.items_of(session, cipher, p)
        ]
        found.prescriptions.append((p, requests))

    files: dict[uuid.UUID, DocumentFacts] = {}

    def file_of(doc: Document) -> DocumentFacts:
        if doc.id not in files:  # read and decrypted once, whichever resource shows it
            files[doc.id] = sources.document_of(cipher, storage, doc)
        return files[doc.id]

    for o in reversed(orders.listing(session, patient_id=pid, limit=LIMIT)):
        released = o.status in RELEASED_ORDERS
        result = orders.result_of(session, cipher, o) if released else None
        ordered = sources.order_of(
            o,
            result.note if result is not None else None,
            sources.reviewer_of(session, o) if released else None,
        )
        report = None
        if result is not None and o.type in clinical.REPORT_PROFILES:
            report = clinical.diagnostic_report(ordered, [file_of(d) for d in result.documents])
        found.orders.append(
            OrderRecord(
                row=o,
                requests=list(clinical.service_requests(ordered)),
                report=report,
                files=[d.id for d in result.documents] if result is not None and report else [],
            )
        )

    # The portal's view: every version, no result file before a doctor's review.
    for doc in reversed(documents.of_patient(session, pid)):  # oldest first
        found.documents.append((doc, clinical.document_reference(file_of(doc))))

    signed_consents = session.execute(
        select(Consent).where(Consent.patient_id == pid).order_by(Consent.signed_at, Consent.id)
    ).scalars()
    found.consents = [consent.consent(sources.consent_of(c)) for c in signed_consents]

    for inv in reversed(billing_queries.invoices(session, patient_id=pid, limit=LIMIT)):
        if inv.status == InvoiceStatus.DRAFT:
            continue  # no number yet, and it may still change
        billed = sources.invoice_of(inv)
        found.invoices.append((inv, billing.invoice(billed), list(billing.charge_items(billed))))
    return found


# --------------------------------------------------------------------------- documents


def bundles_of(found: Chart) -> list[tuple[RecordType, Bundle]]:
    """The patient's ABDM documents, by record type, each kind oldest first."""
    maker = _Documents(found)
    made: list[tuple[RecordType, Bundle]] = []
    signed = [v for v in found.visits if v.signed]
    for v in signed:
        made += maker.op_consultation(v)
    for p, requests in maker.current_prescriptions:
        made += maker.prescription(p, requests)
    for o in found.orders:
        made += maker.diagnostic_report(o)
    for v in signed:
        made += maker.wellness(v)
    made += maker.health_documents()
    for inv, invoice, items in found.invoices:
        made += maker.invoice(inv, invoice, items)
    return made


def bundle_id(record: RecordType, source_id: uuid.UUID) -> uuid.UUID:
    """The id of the ``record`` bundle made from the source record ``source_id``."""
    return uuid.uuid5(EXPORT_IDS, f"{record}/{source_id}")


class _Documents:
    """Assembles one chart's documents (what each record type lists, and who wrote it)."""

    def __init__(self, found: Chart) -> None:
        self.chart = found
        self.index = found.index()
        self.zone = ZoneInfo(found.clinic.timezone)
        self.visits = {v.row.id: v for v in found.visits}
        replaced = {p.supersedes for p, _ in found.prescriptions if p.supersedes is not None}
        self.current_prescriptions = [
            (p, requests) for p, requests in found.prescriptions if p.id not in replaced
        ]

    def day(self, moment: datetime) -> str:
        return f"{moment.astimezone(self.zone):%d %b %Y}"

    def op_consultation(self, v: VisitRecord) -> list[tuple[RecordType, Bundle]]:
        assert v.row.soap_locked_at is not None  # signed
        visit_id = v.row.id
        requests = [
            r
            for o in self.chart.orders
            if o.row.visit_id == visit_id and o.row.status != OrderStatus.CANCELLED
            for r in o.requests
        ]
        issued = [(p, m) for p, m in self.current_prescriptions if p.visit_id == visit_id]
        follow_ups = [
            (a, r)
            for a, r in self.chart.appointments
            if a.follow_up_for == v.row.appointment_id and getattr(r, "status", "") != "cancelled"
        ]
        sections = _present(
            {
                Section.CHIEF_COMPLAINTS: v.conditions,
                Section.PHYSICAL_EXAMINATION: v.observations,
                Section.INVESTIGATION_ADVICE: requests,
                Section.MEDICATIONS: [m for _, ms in issued for m in ms],
                Section.FOLLOW_UP: [r for _, r in follow_ups],
            }
        )
        if not sections:
            return []  # a signed note alone: no section of the profile holds it
        moments = [v.row.soap_locked_at]
        moments += [p.issued_at for p, _ in issued if p.issued_at is not None]
        moments += [
            o.row.status_timeline_ordered_at
            for o in self.chart.orders
            if o.row.visit_id == visit_id and o.row.status != OrderStatus.CANCELLED
        ]
        moments += [a.timeline_requested_at for a, _ in follow_ups]
        return self.make(
            RecordType.OP_CONSULTATION,
            visit_id,
            date=v.row.soap_locked_at,
            timestamp=max(moments),
            title=f"OP consultation, {self.day(v.row.soap_locked_at)}",
            authors=[v.row.doctor_id],
            sections=sections,
            encounter=v.encounter,
        )

    def prescription(
        self, p: Prescription, requests: list[Resource]
    ) -> list[tuple[RecordType, Bundle]]:
        if not requests or p.issued_at is None:
            return []
        return self.make(
            RecordType.PRESCRIPTION,
            p.id,
            date=p.issued_at,
            timestamp=p.issued_at,
            title=f"Prescription, {self.day(p.issued_at)}",
            authors=[p.doctor_id],
            sections={Section.PRESCRIPTION: requests},
            encounter=self.encounter_of(p.visit_id),
        )

    def diagnostic_report(self, o: OrderRecord) -> list[tuple[RecordType, Bundle]]:
        reviewed = o.row.status_timeline_reviewed_at
        if o.report is None or reviewed is None:
            return []
        reviewer = self.doctor_of_user(o.row.reviewed_by)
        names = ", ".join(str(item["name"]) for item in o.row.items)
        return self.make(
            RecordType.DIAGNOSTIC_REPORT,
            o.row.id,
            date=reviewed,
            timestamp=reviewed,
            title=f"{'Lab' if o.row.type == 'lab' else 'Imaging'} report: {names}",
            authors=[reviewer or o.row.doctor_id],
            sections={Section.DIAGNOSTIC_REPORT: [o.report]},
            encounter=self.encounter_of(o.row.visit_id),
        )

    def wellness(self, v: VisitRecord) -> list[tuple[RecordType, Bundle]]:
        if not v.observations or v.row.soap_locked_at is None:
            return []
        sorted_into: dict[Section, list[Resource]] = {}
        for reading in v.observations:
            sorted_into.setdefault(_wellness_section(reading), []).append(reading)
        return self.make(
            RecordType.WELLNESS_RECORD,
            v.row.id,
            date=v.row.soap_locked_at,
            timestamp=v.row.soap_locked_at,
            title=f"Vital signs, {self.day(v.row.soap_locked_at)}",
            authors=[v.row.doctor_id],
            sections=sorted_into,
            encounter=v.encounter,
        )

    def health_documents(self) -> list[tuple[RecordType, Bundle]]:
        sent_in_reports = {d for o in self.chart.orders for d in o.files}
        newest: dict[uuid.UUID, tuple[Document, Resource]] = {}
        for doc, reference in self.chart.documents:  # oldest first: the last one stays
            newest[doc.series_id] = (doc, reference)
        made: list[tuple[RecordType, Bundle]] = []
        for doc, reference in sorted(newest.values(), key=lambda d: (d[0].created_at, d[0].id)):
            if doc.id in sent_in_reports:
                continue
            author = self.doctor_for(user_id=doc.created_by, at=doc.created_at)
            if author is None:
                continue  # the patient has seen no doctor here: no one to name as author
            made += self.make(
                RecordType.HEALTH_DOCUMENT_RECORD,
                doc.id,
                date=doc.created_at,
                timestamp=doc.created_at,
                title=f"{clinical.DOCUMENT_TYPE_TEXT[doc.category]}: {doc.filename}",
                authors=[author],
                sections={Section.HEALTH_DOCUMENTS: [reference]},
                encounter=None,
            )
        return made

    def invoice(
        self, inv: Invoice, invoice: Resource, items: list[Resource]
    ) -> list[tuple[RecordType, Bundle]]:
        assert inv.issued_at is not None  # drafts are not in the chart
        author: uuid.UUID | None
        if inv.visit_id is not None and inv.visit_id in self.visits:
            author = self.visits[inv.visit_id].row.doctor_id
        else:
            booked = {a.id: a for a, _ in self.chart.appointments}
            appointment = booked.get(inv.appointment_id) if inv.appointment_id else None
            author = (
                appointment.doctor_id
                if appointment is not None
                else self.doctor_for(user_id=inv.created_by, at=inv.issued_at)
            )
        if author is None:
            return []
        return self.make(
            RecordType.INVOICE,
            inv.id,
            date=inv.issued_at,
            timestamp=max(inv.issued_at, inv.updated_at),
            title=f"Invoice {inv.number}",
            authors=[author],
            sections={Section.INVOICE: [invoice]},
            encounter=self.encounter_of(inv.visit_id),
        )

    def encounter_of(self, visit_id: uuid.UUID | None) -> Encounter | None:
        found = self.visits.get(visit_id) if visit_id is not None else None
        return found.encounter if found is not None else None

    def doctor_for(self, *, user_id: uuid.UUID | None, at: datetime) -> uuid.UUID | None:
        """Who to name as the author of a document no doctor wrote (an upload, a bill
        made at the desk): the uploader if they are a doctor, else the doctor of the
        patient's last visit (or appointment) up to then, else their first one after.
        """
        uploader = self.doctor_of_user(user_id)
        if uploader is not None:
            return uploader
        seen = [(v.row.created_at, v.row.doctor_id) for v in self.chart.visits]
        seen += [(a.timeline_requested_at, a.doctor_id) for a, _ in self.chart.appointments]
        seen.sort(key=lambda s: (s[0], str(s[1])))
        before = [doctor for when, doctor in seen if when <= at]
        if before:
            return before[-1]
        return seen[0][1] if seen else None

    def doctor_of_user(self, user_id: uuid.UUID | None) -> uuid.UUID | None:
        """The doctor profile of a user (orders and documents name users, not profiles)."""
        return next((d.id for d in self.chart.doctors.values() if d.user_id == user_id), None)

    def make(
        self,
        record: RecordType,
        source_id: uuid.UUID,
        *,
        date: datetime,
        timestamp: datetime,
        title: str,
        authors: Sequence[uuid.UUID],
        sections: Mapping[Section, Sequence[Resource]],
        encounter: Encounter | None,
    ) -> list[tuple[RecordType, Bundle]]:
        """One document: the sections' resources, the encounter, and whatever they refer
        to among the patient's resources (supporting), so that every reference resolves.
        """
        writers = [self.chart.practitioner(a) for a in dict.fromkeys(authors)]
        listed = [r for rs in sections.values() for r in rs]
        seeds = [*listed, *([encounter] if encounter is not None else [])]
        named = {_key(r) for r in [self.chart.patient, self.chart.organization, *writers, *seeds]}
        supporting = [r for r in _reached(seeds, self.index) if _key(r) not in named]
        made = bundle_id(record, source_id)
        bundle = document_bundle(
            record,
            bundle_id=made,
            composition_id=uuid.uuid5(made, "composition"),
            timestamp=timestamp,
            date=date,
            title=title,
            patient=self.chart.patient,
            practitioners=writers,
            organization=self.chart.organization,
            sections=sections,
            encounter=encounter,
            supporting=supporting,
        )
        return [(record, bundle)]


def _present(sections: Mapping[Section, list[Resource]]) -> dict[Section, list[Resource]]:
    return {name: listed for name, listed in sections.items() if listed}


def _wellness_section(reading: Resource) -> Section:
    profiles = reading.meta.profile if reading.meta is not None else None
    if profiles and clinical.VITAL_SIGNS_PROFILE in profiles:
        return Section.VITAL_SIGNS
    if profiles and clinical.BODY_MEASUREMENT_PROFILE in profiles:
        return Section.BODY_MEASUREMENT
    return Section.OTHER_OBSERVATIONS  # the random blood sugar, a point-of-care test


def _key(r: Resource) -> str:
    return f"{r.get_resource_type()}/{r.id}"


def _reached(seeds: Iterable[Resource], index: Mapping[str, Resource]) -> list[Resource]:
    """Every resource of ``index`` that ``seeds`` refer to, directly or through others,
    in the order first reached.
    """
    reached: dict[str, Resource] = {}
    todo = list(seeds)
    while todo:
        for ref in sources.references(todo.pop(0)):
            target = index.get(ref)
            if target is not None and ref not in reached:
                reached[ref] = target
                todo.append(target)
    return list(reached.values())


# --------------------------------------------------------------------------- $everything


def searchset(found: Chart, *, base_url: str, at: datetime) -> Bundle:
    """``Patient/$everything``'s answer: a searchset (R4's OperationDefinition
    Patient-everything returns one), the patient's resources as ``match`` entries and the
    clinic and its doctors as ``include``, each at its address on this server, the
    references left relative as the read routes give them.
    """
    base = f"{base_url.rstrip('/')}/fhir/R4"
    listed = found.resources()
    entries = [
        BundleEntry(
            fullUrl=f"{base}/{_key(r)}",
            resource=r,
            search=BundleEntrySearch(
                mode="include" if r.get_resource_type() in INCLUDED_TYPES else "match"
            ),
        )
        for r in listed
    ]
    return Bundle(
        id=str(new_id()),
        meta=Meta(lastUpdated=at),
        type="searchset",
        timestamp=at,
        total=sum(1 for r in listed if r.get_resource_type() not in INCLUDED_TYPES),
        link=[BundleLink(relation="self", url=f"{base}/Patient/{found.patient.id}/$everything")],
        entry=entries,
    )


def everything(
    session: Session,
    cipher: FieldCipher,
    ctx: RequestContext,
    patient_id: uuid.UUID,
    *,
    storage: Storage,
    base_url: str,
) -> Bundle:
    """Every resource of the patient as one searchset, audited (one event, counts only)."""
    found = chart(session, cipher, ctx, patient_id, storage=storage)
    answer = searchset(found, base_url=base_url, at=ctx.now())
    record_export(ctx, found, answer, [])
    return answer


def patient_bundles(
    session: Session,
    cipher: FieldCipher,
    ctx: RequestContext,
    patient_id: uuid.UUID,
    *,
    storage: Storage,
) -> list[tuple[RecordType, Bundle]]:
    """The patient's NRCeS document bundles (not audited: the caller that hands them out
    records it, as :func:`export_to_folder` does).
    """
    return bundles_of(chart(session, cipher, ctx, patient_id, storage=storage))


def record_export(
    ctx: RequestContext,
    found: Chart,
    answer: Bundle,
    made: Sequence[tuple[RecordType, Bundle]],
) -> None:
    """One audit event: what kinds were handed out and how many, never their contents."""
    kinds = Counter(e.resource.get_resource_type() for e in answer.entry or [] if e.resource)
    added: dict[str, object] = {"resources": dict(sorted(kinds.items()))}
    if made:
        added["bundles"] = dict(sorted(Counter(str(r) for r, _ in made).items()))
    audit.record(
        ctx,
        entity="patients",
        entity_id=found.patient_row.id,
        action="state-transition",
        to_state="exported",
        diff={"added": {"fhir": added}, "updated": {}, "removed": {}},
    )


# --------------------------------------------------------------------------- to a folder


def find_patient(session: Session, given: str) -> Patient:
    """The clinic's patient named by its number (``P-000123``, ``p123``) or its id."""
    text = given.strip()
    try:
        return patients.get(session, uuid.UUID(text))
    except ValueError:
        pass
    number = PATIENT_NUMBER.match(text)
    if number is None:
        raise InvalidInput(
            [FieldError("patient", "give a patient number such as P-000123, or a patient id")]
        )
    found = patient_queries.by_number(session, int(number.group(1)))
    if not found:
        raise NotFound(f"no patient numbered {text} in this clinic")
    return found[0]


@dataclass(frozen=True)
class Exported:
    patient_number: str
    files: list[Path]


def export_to_folder(
    db: Database,
    cipher: FieldCipher,
    storage: Storage,
    *,
    clinic: str,
    patient: str,
    out: Path,
    base_url: str,
    clock: Clock = utc_now,
) -> Exported:
    """``opdesk fhir export``: the patient's bundles as ``<RecordType>-<bundle id>.json``
    and ``everything.json`` in ``out``. The records are read and the export audited in
    one transaction; the files are written once it has committed.
    """
    ctx = system_context(None, clock=clock)
    with transaction(db, ctx) as session:
        found_clinic = tenancy.find_by_slug(session, clinic)
        if found_clinic is None:
            raise NotFound(f"no clinic with the code {clinic!r}")
        enter_tenant(session, ctx, found_clinic.id)
        row = find_patient(session, patient)
        found = chart(session, cipher, ctx, row.id, storage=storage)
        made = bundles_of(found)
        answer = searchset(found, base_url=base_url, at=ctx.now())
        record_export(ctx, found, answer, made)
        number = row.display_number
    written = [
        _write_private(out / f"{record}-{bundle.id}.json", _json(bundle)) for record, bundle in made
    ]
    written.append(_write_private(out / EVERYTHING_FILE, _json(answer)))
    return Exported(number, written)


def _json(bundle: Bundle) -> bytes:
    return (bundle.model_dump_json(exclude_none=True, indent=2) + "\n").encode("utf-8")


def _write_private(path: Path, data: bytes) -> Path:
    """A file only its owner may read: it holds a patient's health record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path
