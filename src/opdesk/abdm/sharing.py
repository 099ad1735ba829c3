"""ABDM M2 for the HIP: care contexts (one per signed visit), discovery, consents, and the
consent-bound push of records to an HIU.

Each gateway call arrives through ``abdm.bridge`` (kept once, answered by a worker rule
here). What leaves the clinic:

* discovery answers name the patient's visits by a display with no clinical detail;
* records leave only under a GRANTED consent that has not expired, only for the care
  contexts, kinds and dates it names (and only those the request asks for within them),
  encrypted with Fidelius for the HIU's key, pushed straight to the HIU, then notified;
* a revoked or expired consent stops every push not yet made, and its transfers refuse.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.abdm import bridge, fidelius, hub, matching, messages, share
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.messages import V3_PATHS, ConsentStatus, DiscoverRequest, HiType
from opdesk.abdm.models import CareContext, ConsentArtefact, Transfer
from opdesk.abdm.settings import Abdm
from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import AfterCommit, Permanent, cipher_of, rule, settings_of
from opdesk.clinical.models import Visit, VisitStatus
from opdesk.config import Settings
from opdesk.context import Clock, RequestContext, system_context
from opdesk.db import Database, new_id
from opdesk.documents.storage import LocalStorage, Storage
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.scheduling.models import DoctorProfile
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.service import today_at_clinic, zone_of
from opdesk.uow import transaction

if TYPE_CHECKING:
    from fhir.resources.R4B.bundle import Bundle

    from opdesk.fhir.bundles import RecordType

DISCOVER_RULE = bridge.DISCOVER_RULE
CONSENT_RULE = bridge.CONSENT_RULE
REQUEST_RULE = bridge.REQUEST_RULE
PUSH_RULE = "abdm.push"


def clinic_of(session: Session, cipher: FieldCipher, ctx: RequestContext) -> Abdm:
    assert ctx.tenant_id is not None
    clinic = abdm_settings.of(session, cipher, ctx.tenant_id)
    if clinic is None or not clinic.enabled:
        raise Permanent("ABDM is switched off for this clinic: the call is not answered")
    return clinic


# --------------------------------------------------------------------------- care contexts


def care_contexts(session: Session, ctx: RequestContext, patient: Patient) -> list[CareContext]:
    """The patient's care contexts, one per signed visit (made on first need), oldest
    first. The display names the day, the doctor and the clinic: nothing clinical."""
    have = {
        c.visit_id: c
        for c in session.scalars(select(CareContext).where(CareContext.patient_id == patient.id))
    }
    signed = session.scalars(
        select(Visit)
        .where(Visit.patient_id == patient.id, Visit.status == VisitStatus.SIGNED)
        .order_by(Visit.created_at, Visit.id)
    )
    clinic = session.get_one(Tenant, patient.tenant_id)
    zone = zone_of(session, patient.tenant_id)
    made = []
    for visit in signed:
        found = have.get(visit.id)
        if found is None:
            doctor = session.get_one(DoctorProfile, (visit.tenant_id, visit.doctor_id))
            found = CareContext(
                tenant_id=visit.tenant_id,
                id=new_id(),
                patient_id=patient.id,
                visit_id=visit.id,
                reference=str(visit.id),
                display=messages.care_context_display(
                    visit.created_at.astimezone(zone).date(), doctor.display_name, clinic.name
                ),
                happened_at=visit.created_at,
                created_at=ctx.now(),
            )
            session.add(found)
            session.flush()
            audit.record(
                ctx,
                entity="abdm_care_contexts",
                entity_id=found.id,
                action="create",
                diff=audit.diff_of({}, {"visit": visit.id, "display": found.display}),
            )
        made.append(found)
    return made


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class _Seeker:
    """A discovery request as matching reads a profile."""

    abha_number: str | None
    mobile: str | None
    year_of_birth: int
    gender: str
    name: str


def discovered(
    session: Session, ctx: RequestContext, cipher: FieldCipher, request: DiscoverRequest
) -> tuple[Patient, list[str]] | None:
    """The one patient of this clinic the request describes, and what matched; None when
    none does or two might (never a guess)."""
    by_address = list(
        session.scalars(
            select(Patient).where(
                Patient.abha_address_hash
                == patients.abha_address_hash(cipher, request.patient_id.lower())
            )
        )
    )
    if len(by_address) == 1:
        return by_address[0], ["ABHA_ADDRESS"]
    number = request.identifier("ABHA_NUMBER", verified_only=True)
    if number:
        digits = number.replace("-", "")
        by_number = list(
            session.scalars(
                select(Patient).where(Patient.abha_hash == patients.abha_hash(cipher, digits))
            )
        )
        if len(by_number) == 1:
            return by_number[0], ["ABHA_NUMBER"]
    mobile = request.identifier("MOBILE", verified_only=True)
    if not mobile:
        return None
    try:
        phone = matching.mobile_e164(mobile)
    except ValueError:
        return None
    found = list(
        session.scalars(
            select(Patient).where(Patient.phone_hash == cipher.blind_index(phone, purpose="phone"))
        )
    )
    seeker = _Seeker(None, phone, request.year_of_birth, request.gender, request.name)
    today = today_at_clinic(session, ctx)
    best = matching.best_match([share.candidate_of(cipher, p, today) for p in found], seeker)
    chosen = next((p for p in found if best and str(p.id) == best.patient_id), None)
    return (chosen, ["MOBILE"]) if chosen else None


@rule(DISCOVER_RULE)
def answer_discovery(session: Session, ctx: RequestContext, event: AutomationEvent) -> AfterCommit:
    """Answer a discovery: the patient's care contexts, or that none matched."""
    cipher, row, request = bridge.received(session, event, messages.parse_discover)
    clinic = clinic_of(session, cipher, ctx)
    request_id = str(row.request_id)
    found = discovered(session, ctx, cipher, request)
    if found is None:
        bridge.finished(ctx, row, "no patient matched")
        answer = messages.on_discover_error(
            request_id=request_id,
            transaction_id=request.transaction_id,
            code="ABDM-1010",
            message="No patient found with the given details",
        )
        return bridge.answer_later(clinic, V3_PATHS.on_discover, answer)
    patient, matched_by = found
    every = care_contexts(session, ctx, patient)
    # Discovery offers what the patient can still link; linked visits are theirs already.
    contexts = [c for c in every if c.linked_at is None]
    bridge.finished(ctx, row, f"matched by {', '.join(matched_by)}: {len(contexts)} visits")
    if not contexts:
        answer = messages.on_discover_error(
            request_id=request_id,
            transaction_id=request.transaction_id,
            code="ABDM-1011",
            message="All visits of the patient here are already linked"
            if every
            else "The patient has no records at this facility yet",
        )
        return bridge.answer_later(clinic, V3_PATHS.on_discover, answer)
    answer = messages.on_discover(
        request_id=request_id,
        transaction_id=request.transaction_id,
        patient_reference=str(patient.id),
        patient_display=patient.display_number,
        care_contexts=[
            messages.CareContext(c.reference, c.display, HiType.OP_CONSULTATION) for c in contexts
        ],
        matched_by=matched_by,
    )
    return bridge.answer_later(clinic, V3_PATHS.on_discover, answer)


# --------------------------------------------------------------------------- consents


def record_consent(
    session: Session, ctx: RequestContext, notice: messages.ConsentNotification
) -> ConsentArtefact:
    """Keep the artefact (a grant) or its new status (revoked, expired, denied). A consent
    that ends refuses the transfers it had not finished."""
    assert ctx.tenant_id is not None
    row = session.scalar(
        select(ConsentArtefact)
        .where(ConsentArtefact.consent_id == notice.consent_id)
        .with_for_update()
    )
    before = {"status": row.status} if row else {}
    if row is None:
        row = ConsentArtefact(
            tenant_id=ctx.tenant_id,
            id=new_id(),
            consent_id=notice.consent_id,
            received_at=ctx.now(),
        )
        session.add(row)
    row.status = notice.status.value
    row.updated_at = ctx.now()
    granted = notice.artefact
    if granted is not None:
        row.abha_address = granted.patient_id
        row.hi_types = [t.value for t in granted.hi_types]
        row.care_contexts = [
            {
                "patientReference": c.patient_reference,
                "careContextReference": c.care_context_reference,
            }
            for c in granted.care_contexts
        ]
        row.date_from, row.date_to = granted.date_range.start, granted.date_range.end
        row.data_erase_at = granted.data_erase_at
    session.flush()
    if notice.status is not ConsentStatus.GRANTED:
        _refuse_open_transfers(session, ctx, notice.consent_id, f"consent {notice.status.value}")
        _erase_hiu_keys(session, notice.consent_id)
    audit.record(
        ctx,
        entity="abdm_consents",
        entity_id=row.id,
        action="create" if not before else "state-transition",
        from_state=before.get("status"),
        to_state=row.status,
        diff=audit.diff_of(before, {"status": row.status, "hiTypes": row.hi_types}),
    )
    return row


def _erase_hiu_keys(session: Session, consent_id: str) -> None:
    """An ended consent's transfers drop the HIU's key material (the clinic keeps none
    of the HIU's data; what was sent, when, and why not stays on each transfer)."""
    session.execute(
        update(Transfer).where(Transfer.consent_id == consent_id).values(key_material={})
    )


def consent_of(session: Session, consent_id: str) -> ConsentArtefact:
    """A kept consent by its artefact id, or ``Permanent`` (a rule's data is gone)."""
    found = session.scalar(select(ConsentArtefact).where(ConsentArtefact.consent_id == consent_id))
    if found is None:
        raise Permanent(f"no consent {consent_id} here")
    return found


def _refuse_open_transfers(
    session: Session, ctx: RequestContext, consent_id: str, why: str
) -> None:
    open_ones = session.scalars(
        select(Transfer)
        .where(Transfer.consent_id == consent_id, Transfer.status == "requested")
        .with_for_update()
    )
    for transfer in open_ones:
        transfer.status, transfer.error, transfer.finished_at = "refused", why, ctx.now()
        audit.record(
            ctx,
            entity="abdm_transfers",
            entity_id=transfer.id,
            action="state-transition",
            from_state="requested",
            to_state="refused",
            diff={"added": {"error": why}, "updated": {}, "removed": {}},
        )


@rule(CONSENT_RULE)
def answer_consent(session: Session, ctx: RequestContext, event: AutomationEvent) -> AfterCommit:
    """Record a consent notification and acknowledge it (for every status)."""
    cipher, row, notice = bridge.received(session, event, messages.parse_consent_notify)
    clinic = clinic_of(session, cipher, ctx)
    record_consent(session, ctx, notice)
    bridge.finished(ctx, row, f"consent {notice.consent_id} {notice.status.value}")
    ack = messages.consent_on_notify(request_id=str(row.request_id), consent_id=notice.consent_id)
    return bridge.answer_later(clinic, V3_PATHS.consent_on_notify, ack)


# --------------------------------------------------------------------------- requests


class Refused(Exception):
    """A health-information request the HIP answers with an error, and why."""


def usable(consent: ConsentArtefact | None, now: datetime) -> ConsentArtefact:
    """The consent, if records may leave under it now; otherwise ``Refused`` says why."""
    if consent is None:
        raise Refused("no such consent at this facility")
    if consent.status != ConsentStatus.GRANTED.value:
        raise Refused(f"the consent is {consent.status.lower()}")
    if consent.data_erase_at is not None and consent.data_erase_at <= now:
        raise Refused("the consent has expired")
    return consent


def asked_range(
    consent: ConsentArtefact, request: messages.HealthInformationRequest
) -> messages.DateRange:
    """The dates asked for, within the consent's (a request may not reach beyond it)."""
    assert consent.date_from is not None
    assert consent.date_to is not None
    allowed = messages.DateRange(consent.date_from, consent.date_to)
    inside = allowed.overlap(request.date_range)
    if inside is None:
        raise Refused("the requested dates are outside those of the consent")
    return inside


@rule(REQUEST_RULE)
def answer_request(session: Session, ctx: RequestContext, event: AutomationEvent) -> AfterCommit:
    """Accept a health-information request (and schedule the push) or refuse it."""
    assert ctx.tenant_id is not None
    cipher = cipher_of(session)
    # The body itself, not only what the parser reads: its key material is kept as sent.
    row, body = bridge.body_of(session, cipher, event.entity_ref_id)
    clinic = clinic_of(session, cipher, ctx)
    request = messages.parse_health_information_request(body)
    request_id = str(row.request_id)
    consent = session.scalar(
        select(ConsentArtefact).where(ConsentArtefact.consent_id == request.consent_id)
    )
    try:
        window = asked_range(usable(consent, ctx.now()), request)
    except Refused as exc:
        bridge.finished(ctx, row, f"refused: {exc}")
        refusal = messages.hip_on_request_error(
            request_id=request_id, code="ABDM-1032", message=str(exc).capitalize()
        )
        return bridge.answer_later(clinic, V3_PATHS.health_information_on_request, refusal)
    transfer = Transfer(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        consent_id=request.consent_id,
        transaction_id=request.transaction_id,
        request_id=row.request_id,
        status="requested",
        date_from=window.start,
        date_to=window.end,
        data_push_url=request.data_push_url,
        key_material=body["hiRequest"]["keyMaterial"],
        requested_at=ctx.now(),
    )
    session.add(transfer)
    session.flush()
    audit.record(
        ctx,
        entity="abdm_transfers",
        entity_id=transfer.id,
        action="create",
        to_state="requested",
        diff=audit.diff_of(
            {}, {"consent": request.consent_id, "from": window.start, "to": window.end}
        ),
    )
    automation.schedule(
        session,
        ctx,
        rule=PUSH_RULE,
        entity_type="abdm_transfers",
        entity_id=transfer.id,
        when=ctx.now(),
        dedupe_key=f"abdm-push:{transfer.id}",
    )
    bridge.finished(ctx, row, f"accepted: transfer {request.transaction_id}")
    ack = messages.hip_on_request(request_id=request_id, transaction_id=request.transaction_id)
    return bridge.answer_later(clinic, V3_PATHS.health_information_on_request, ack)


def consented_contexts(
    session: Session, ctx: RequestContext, consent: ConsentArtefact
) -> list[CareContext]:
    """The care contexts the consent names that this clinic has (made for the patients it
    names if no discovery made them yet), oldest first."""
    named = {c["careContextReference"] for c in consent.care_contexts}
    for reference in {c["patientReference"] for c in consent.care_contexts}:
        try:
            patient = session.get(Patient, (ctx.tenant_id, uuid.UUID(reference)))
        except ValueError:
            continue
        if patient is not None:
            care_contexts(session, ctx, patient)
    rows = session.scalars(
        select(CareContext)
        .where(CareContext.reference.in_(named))
        .order_by(CareContext.happened_at, CareContext.id)
    )
    return list(rows)


def _types(consent: ConsentArtefact) -> set[str]:
    return set(consent.hi_types)


def record_pushed(
    session: Session, ctx: RequestContext, transfer: Transfer, sent: Sequence[tuple[str, int]]
) -> None:
    transfer.status, transfer.finished_at = "sent", ctx.now()
    transfer.sent = [{"careContextReference": ref, "records": n} for ref, n in sent]
    audit.record(
        ctx,
        entity="abdm_transfers",
        entity_id=transfer.id,
        action="state-transition",
        from_state="requested",
        to_state="sent",
        diff={"added": {"sent": transfer.sent}, "updated": {}, "removed": {}},
    )


# --------------------------------------------------------------------------- the push


@dataclass(frozen=True)
class Package:
    """What one transfer sends: the encrypted entries, and each care context's outcome."""

    entries: list[dict[str, str]]
    outcomes: list[messages.TransferOutcome]
    counts: list[tuple[str, int]]


def _visit_of(bundle: Bundle) -> uuid.UUID | None:
    composition = bundle.entry[0].resource  # type: ignore[index]
    encounter = getattr(composition, "encounter", None)
    if encounter is None or not encounter.reference:
        return None
    return uuid.UUID(encounter.reference.removeprefix("urn:uuid:"))


def _dated_within(bundle: Bundle, window: messages.DateRange) -> bool:
    composition = bundle.entry[0].resource  # type: ignore[index]
    written = getattr(composition, "date", None)
    return written is not None and messages.in_consent_range(written, window)


def documents_for(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    consent: ConsentArtefact,
    window: messages.DateRange,
) -> list[tuple[CareContext, list[tuple[RecordType, Bundle]]]]:
    """Per consented care context, its documents of the consented kinds dated in ``window``
    (none for a visit outside it; a report reviewed after its last day stays home)."""
    # Imported here: the FHIR builders read the clinical modules, which schedule work
    # through the rules that import this module.
    from opdesk.fhir import export

    contexts = consented_contexts(session, ctx, consent)
    kinds = _types(consent)
    charts: dict[uuid.UUID, list[tuple[RecordType, Bundle]]] = {}
    found: list[tuple[CareContext, list[tuple[RecordType, Bundle]]]] = []
    for context in contexts:
        if not messages.in_consent_range(context.happened_at, window):
            found.append((context, []))
            continue
        if context.patient_id not in charts:
            chart = export.chart(session, cipher, ctx, context.patient_id, storage=storage)
            charts[context.patient_id] = export.bundles_of(chart)
        mine = [
            (kind, bundle)
            for kind, bundle in charts[context.patient_id]
            if kind.value in kinds
            and _visit_of(bundle) == context.visit_id
            and _dated_within(bundle, window)
        ]
        found.append((context, mine))
    return found


def package(
    documents: list[tuple[CareContext, list[tuple[RecordType, Bundle]]]],
    request: messages.HealthInformationRequest,
    sender: fidelius.KeyMaterial,
) -> Package:
    entries, outcomes, counts = [], [], []
    for context, bundles in documents:
        for _kind, bundle in bundles:
            text = bundle.model_dump_json(exclude_none=True)
            entries.append(
                messages.encrypt_entry(
                    context.reference, text, sender=sender, receiver=request.receiver
                )
            )
        why = "" if bundles else "no records of the consented kinds in the consented dates"
        outcomes.append(messages.TransferOutcome(context.reference, bool(bundles), why))
        counts.append((context.reference, len(bundles)))
    return Package(entries, outcomes, counts)


def _pusher(
    clinic: Abdm,
    tenant_id: uuid.UUID,
    transfer_id: uuid.UUID,
    url: str,
    body: dict[str, Any],
    notice: dict[str, Any],
    counts: list[tuple[str, int]],
    clock: Clock,
) -> AfterCommit:
    def push(db: Database, _cipher: FieldCipher, settings: Settings) -> None:
        verify: ssl.SSLContext | bool = True
        if settings.abdm_push_ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.abdm_push_ca_file))
        answer = httpx.post(
            url,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            timeout=settings.abdm_timeout_seconds,
            verify=verify,
        )
        answer.raise_for_status()
        hub.link_for(settings, clinic).gateway.post(
            V3_PATHS.health_information_notify, notice, headers={"X-HIP-ID": clinic.facility_id}
        )
        ctx = system_context(tenant_id, clock=clock)  # the worker's clock
        with transaction(db, ctx) as session:
            transfer = session.scalar(
                select(Transfer).where(Transfer.id == transfer_id).with_for_update()
            )
            if transfer is not None and transfer.status == "requested":
                record_pushed(session, ctx, transfer, counts)

    return push


@rule(PUSH_RULE)
def push_records(
    session: Session, ctx: RequestContext, event: AutomationEvent
) -> AfterCommit | None:
    """Send what the transfer's consent allows, encrypted for the HIU, then notify. A
    consent revoked or expired since the request stops it: nothing is sent."""
    cipher = cipher_of(session)
    transfer = session.scalar(
        select(Transfer).where(Transfer.id == event.entity_ref_id).with_for_update()
    )
    if transfer is None:
        raise Permanent("no such transfer")
    if transfer.status != "requested":
        return None  # refused when its consent ended, or already sent
    clinic = clinic_of(session, cipher, ctx)
    consent = session.scalar(
        select(ConsentArtefact).where(ConsentArtefact.consent_id == transfer.consent_id)
    )
    try:
        usable(consent, ctx.now())
    except Refused as exc:
        _refuse_open_transfers(session, ctx, transfer.consent_id, str(exc))
        return None
    assert consent is not None
    _row, body = bridge.body_of(session, cipher, transfer.request_id)
    request = messages.parse_health_information_request(body)
    window = messages.DateRange(transfer.date_from, transfer.date_to)
    storage = LocalStorage(settings_of(session).data_dir / "files")
    found = documents_for(session, ctx, cipher, storage, consent, window)
    sender = fidelius.generate()
    packed = package(found, request, sender)
    pushed = messages.data_push(
        transaction_id=transfer.transaction_id,
        entries=packed.entries,
        sender=sender,
        key_expiry=request.receiver_key_expiry,
    )
    notice = messages.health_information_notify(
        consent_id=transfer.consent_id,
        transaction_id=transfer.transaction_id,
        hip_id=clinic.facility_id,
        outcomes=packed.outcomes,
        done_at=ctx.now(),
    )
    assert ctx.tenant_id is not None
    return _pusher(
        clinic,
        ctx.tenant_id,
        transfer.id,
        transfer.data_push_url,
        pushed,
        notice,
        packed.counts,
        ctx.clock,
    )


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class PatientAbdm:
    """What ABDM knows of one patient here: their visits as care contexts, the consents
    naming them, and what was sent under each (dates and kinds, never content)."""

    care_contexts: list[CareContext]
    consents: list[ConsentArtefact]
    transfers: list[Transfer]


def of_patient(session: Session, patient_id: uuid.UUID) -> PatientAbdm:
    contexts = list(
        session.scalars(
            select(CareContext)
            .where(CareContext.patient_id == patient_id)
            .order_by(CareContext.happened_at.desc())
        )
    )
    consents = list(
        session.scalars(
            select(ConsentArtefact)
            .where(ConsentArtefact.care_contexts.contains([{"patientReference": str(patient_id)}]))
            .order_by(ConsentArtefact.received_at.desc())
        )
    )
    ids = [c.consent_id for c in consents]
    transfers = (
        list(
            session.scalars(
                select(Transfer)
                .where(Transfer.consent_id.in_(ids))
                .order_by(Transfer.requested_at.desc())
            )
        )
        if ids
        else []
    )
    return PatientAbdm(contexts, consents, transfers)
