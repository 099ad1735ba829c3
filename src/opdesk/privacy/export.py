"""The patient's data export (the DPDP Act's right of access).

:func:`export` gathers everything the clinic holds about one patient, through each
domain's own read functions, inside the request's transaction (so under the clinic's
row-level security), and writes one audit event. :func:`archive` packs it as one ZIP:
``patient.json`` (camelCase like the API, ISO dates, money as strings), ``summary.pdf``
and ``documents/<file name>`` for each document.

The same archive is made whoever asks (the patient in the portal, or an admin on their
behalf), and it follows the clinic's release rules that the portal follows: a note the
doctor has not signed, a prescription or diet plan not issued, and a result no doctor
has reviewed are not handed out yet; ``withheld`` counts them, so the patient knows
they exist and can ask again once they are final.

Only the one patient asked for: a family member is a separate patient with their own
export. Every table that holds a patient's rows is named in :data:`COVERED` or, with
the reason, in :data:`LEFT_OUT`; ``tests/privacy`` fails when a new one is neither.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.abdm import sharing
from opdesk.billing import ledger, payments
from opdesk.billing import queries as billing_queries
from opdesk.clinical import catalogue, diet, orders, prescriptions, visits, vitals
from opdesk.clinical.models import OrderStatus, Visit, VisitStatus
from opdesk.consents.models import Consent, consent_label
from opdesk.context import RequestContext
from opdesk.documents import service as documents
from opdesk.documents.models import Document
from opdesk.documents.storage import Storage
from opdesk.notifications.models import OutboxMessage
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.privacy import summary_pdf
from opdesk.scheduling import queries as scheduling_queries
from opdesk.scheduling.models import DoctorProfile, WaitlistEntry
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant

FORMAT = "opdesk-patient-export/1"
# Enough for any one patient's history; a patient past these would be cut short, so the
# gatherer refuses to pretend (see ``_all``).
LIMIT = 10_000

# Every table holding a patient's rows (a ``patient_id`` column, or a child of such a
# table) and where it goes in the archive.
COVERED: dict[str, str] = {
    "patients": "patient (the profile, encrypted fields opened)",
    "consents": "consents (every one given, withdrawn ones too)",
    "documents": "documents (every version, the files themselves under documents/)",
    "appointments": "appointments",
    "waitlist_entries": "waitlist",
    "visits": "visits (status, doctor, follow-up)",
    "visits_soap_versions": "visits[].note (the signed version)",
    "visits_addenda": "visits[].addenda",
    "visits_diagnoses": "visits[].diagnoses",
    "visits_vitals": "visits[].vitals",
    "visits_services": "visits[].services",
    "prescriptions": "prescriptions (issued)",
    "prescriptions_items": "prescriptions[].items",
    "diet_plans": "dietPlans (issued)",
    "diet_plans_adherence": "dietPlans[].ticks",
    "orders": "orders",
    "orders_attachments": "orders[].reportFiles (the files are in documents)",
    "invoices": "invoices",
    "payments": "payments",
    "payments_refunds": "refunds",
    "ledger_entries": "ledger",
    # The consents and transfers naming the patient's visits go with them (abdmConsents,
    # abdmTransfers); those tables name the patient only inside the consent.
    "abdm_care_contexts": "abdmVisits (each visit's name for ABDM; linked to the ABHA or not)",
    "notifications_outbox": "messages (channel, kind, status and times; not the text)",
}
LEFT_OUT: dict[str, str] = {
    "patient_phone_keys": "keyed hashes of parts of the phone number, for the desk's "
    "search; they say nothing the profile's phone does not",
    "waitlist_locks": "a freed slot held for a waitlisted patient for minutes; the "
    "waitlist entry's status says what came of it",
    "documents_share_links": "links staff made to send a file to someone; each holds only "
    "a secret token's hash and dates, and the file itself is in documents/",
    "abdm_share_tokens": "the queue number a Scan & Share scan gave, valid 30 minutes; what "
    "the scan registered is in the profile",
    "abdm_link_tokens": "the key ABDM gave the clinic to link your visits to your ABHA; a "
    "secret between the clinic and ABDM, and which visits are linked is in abdmVisits",
    "abdm_link_requests": "your requests from your ABHA app to link visits, each holding a "
    "one-time code's keyed hash; which visits they linked is in abdmVisits",
}


@dataclass(frozen=True)
class ExportFile:
    name: str  # inside the archive, e.g. "documents/report.pdf"
    data: bytes


@dataclass
class PatientExport:
    """What :func:`gather` found: the JSON document and the files that go with it."""

    data: dict[str, Any]
    files: list[ExportFile] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.data["counts"]
        return counts


def plain(value: Any) -> Any:
    """JSON values as the API writes them: ISO dates, money and ids as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # money is NUMERIC(12,2): "500.00"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return plain(value.value)
    return value


def _all(rows: Sequence[Any], what: str) -> list[Any]:
    if len(rows) >= LIMIT:
        raise RuntimeError(f"{what}: more than {LIMIT} rows for one patient")
    return list(rows)


def unique_names(docs: Sequence[Document]) -> dict[uuid.UUID, str]:
    """``documents/<file name>`` for each document; a name met again gets " (2)", " (3)"."""
    taken: set[str] = set()
    names: dict[uuid.UUID, str] = {}
    for doc in docs:
        path = PurePosixPath(doc.filename or "document")
        stem, suffix = path.stem or "document", path.suffix
        name, n = f"{stem}{suffix}", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem} ({n}){suffix}"
        taken.add(name.lower())
        names[doc.id] = f"documents/{name}"
    return names


def _clinic(tenant: Tenant) -> dict[str, Any]:
    address = ", ".join(
        part
        for part in (
            tenant.address_line1,
            tenant.address_line2,
            tenant.address_city,
            tenant.address_state,
            tenant.address_pincode,
        )
        if part
    )
    return {
        "name": tenant.name,
        "address": address or None,
        "phone": tenant.phone,
        "timeZone": tenant.timezone,
    }


def gather(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    *,
    patient: Patient,
) -> PatientExport:
    """Everything the clinic holds about ``patient`` (and nothing of anyone else)."""
    pid = patient.id
    tenant = session.get_one(Tenant, patient.tenant_id)
    today = patients.today_at_clinic(session, ctx)
    doctors = {
        d.id: d.display_name
        for d in session.execute(select(DoctorProfile)).scalars()  # the clinic's, under RLS
    }
    withheld = {
        "unsignedVisitNotes": 0,
        "draftPrescriptions": 0,
        "draftDietPlans": 0,
        "unreviewedResults": 0,
    }

    profile = patients.read(cipher, patient, today).model_dump(mode="json", by_alias=True)

    consent_rows = _all(
        session.execute(
            select(Consent).where(Consent.patient_id == pid).order_by(Consent.signed_at)
        )
        .scalars()
        .all(),
        "consents",
    )
    consents = [
        {
            "id": c.id,
            "type": c.type,
            "label": consent_label(c.type),
            "version": c.version,
            "method": c.method,
            "signedAt": c.signed_at,
            "revokedAt": c.revoked_at,
            "textHash": c.text_hash,
            "signedCopy": c.file_id,
        }
        for c in consent_rows
    ]

    # The portal's view of the files: every version, no result file before its review.
    docs = _all(documents.of_patient(session, pid), "documents")
    names = unique_names(docs)
    files = [ExportFile(names[d.id], documents.content(cipher, storage, d)) for d in docs]
    document_list = [
        {
            "id": d.id,
            "file": names[d.id],
            "filename": d.filename,
            "category": d.category,
            "version": d.version,
            "mime": d.mime,
            "size": d.size,
            "sha256": d.checksum,
            "tags": list(d.tags or []),
            "createdAt": d.created_at,
        }
        for d in docs
    ]

    appointments = [
        {
            "id": a.id,
            "doctor": doctors.get(a.doctor_id),
            "visitType": a.visit_type,
            "status": a.status,
            "channel": a.channel,
            "reason": a.reason,
            "startsAt": slot.starts_at if slot is not None else None,
            "queueDate": a.queue_date,
            "tokenNumber": a.token_number,
            "requestedAt": a.timeline_requested_at,
            "confirmedAt": a.timeline_confirmed_at,
            "checkedInAt": a.timeline_checked_in_at,
            "completedAt": a.timeline_completed_at,
            "noShowAt": a.timeline_no_show_at,
            "cancelledAt": a.timeline_cancelled_at,
        }
        for a, slot in _all(
            scheduling_queries.appointments(session, day=None, patient_id=pid, limit=None),
            "appointments",
        )
    ]
    waitlist = [
        {
            "id": w.id,
            "doctor": doctors.get(w.doctor_id),
            "visitType": w.visit_type,
            "from": w.from_date,
            "until": w.until_date,
            "status": w.status,
            "createdAt": w.created_at,
        }
        for w in session.execute(
            select(WaitlistEntry)
            .where(WaitlistEntry.patient_id == pid)
            .order_by(WaitlistEntry.created_at)
        ).scalars()
    ]

    visit_list = []
    visit_rows = session.execute(
        select(Visit).where(Visit.patient_id == pid).order_by(Visit.created_at)
    ).scalars()
    for v in visit_rows:
        signed = v.status == VisitStatus.SIGNED
        note = visits.signed_note(session, cipher, v) if signed else None
        if not signed:
            withheld["unsignedVisitNotes"] += 1
        visit_list.append(
            {
                "id": v.id,
                "appointmentId": v.appointment_id,
                "doctor": doctors.get(v.doctor_id),
                "status": v.status,
                "createdAt": v.created_at,
                "signedAt": v.soap_locked_at if signed else None,
                "note": note.as_dict() if note is not None else None,
                "addenda": [
                    {"text": text, "createdAt": row.created_at}
                    for row, text in visits.addenda(session, cipher, v)
                ],
                # A draft's diagnoses are the doctor's working list: given once signed.
                "diagnoses": [
                    {
                        "code": d.code,
                        "text": visits.diagnosis_text(cipher, d),
                        "primary": d.is_primary,
                    }
                    for d in (visits.diagnoses(session, v.id) if signed else [])
                ],
                "vitals": [
                    {
                        "type": r.type,
                        "value": r.value,
                        "unit": r.unit,
                        "collectedAt": r.collected_at,
                    }
                    for r in vitals.of_visit(session, cipher, v)
                ],
                "services": [
                    {"code": s.code, "description": s.description, "quantity": s.quantity}
                    for s in catalogue.services_of(session, v.id)
                ],
                "followUpOn": visits.follow_up_day(v),
            }
        )

    issued = prescriptions.issued_for(session, [pid])
    withheld["draftPrescriptions"] = _count_drafts(session, pid)
    prescription_list = [
        {
            "id": p.id,
            "visitId": p.visit_id,
            "doctor": doctors.get(p.doctor_id),
            "version": p.version,
            "supersedes": p.supersedes,
            "issuedAt": p.issued_at,
            "items": [
                {
                    "name": i.name,
                    "strength": i.strength,
                    "form": i.form,
                    "route": i.route,
                    "dose": i.dose,
                    "frequency": i.frequency,
                    "durationDays": i.duration_days,
                    "timing": i.timing,
                    "instructions": i.instructions,
                }
                for i in prescriptions.items_of(session, cipher, p)
            ],
        }
        for p in issued
    ]

    plans = diet.of_patient(session, pid)
    withheld["draftDietPlans"] = sum(1 for p in plans if p.issued_at is None)
    diet_list = [
        {
            "id": p.id,
            "visitId": p.visit_id,
            "doctor": doctors.get(p.doctor_id),
            "version": p.version,
            "issuedAt": p.issued_at,
            "macros": p.macros,
            "schedule": p.schedule,
            "completedDays": p.adherence_summary_completed_days,
            "ticks": [
                {"day": day, "meal": meal, "done": done}
                for (day, meal), done in sorted(diet.ticks(session, p.id).items())
            ],
        }
        for p in plans
        if p.issued_at is not None
    ]

    order_list = []
    for o in orders.listing(session, patient_id=pid, limit=LIMIT):
        seen = o.status in orders.SEEN_BY_PATIENT
        result = orders.result_of(session, cipher, o) if seen else None
        if o.status == OrderStatus.REPORTED:
            withheld["unreviewedResults"] += 1
        order_list.append(
            {
                "id": o.id,
                "visitId": o.visit_id,
                "doctor": doctors.get(o.doctor_id),
                "type": o.type,
                "items": o.items,
                "status": o.status,
                "orderedAt": o.status_timeline_ordered_at,
                "collectedAt": o.status_timeline_collected_at,
                "reportedAt": o.status_timeline_reported_at,
                "reviewedAt": o.status_timeline_reviewed_at,
                "cancelledAt": o.status_timeline_cancelled_at,
                "abnormal": o.abnormal_flag if seen else None,
                "resultNote": result.note if result is not None else None,
                "reportFiles": [names[d.id] for d in result.documents if d.id in names]
                if result is not None
                else [],
            }
        )

    invoice_rows = _all(billing_queries.invoices(session, patient_id=pid, limit=LIMIT), "invoices")
    invoice_list, payment_list, refund_list = [], [], []
    for inv in reversed(invoice_rows):  # oldest first, like the rest
        invoice_list.append(
            {
                "id": inv.id,
                "number": inv.number,
                "status": inv.status,
                "lineItems": inv.line_items,
                "subtotal": inv.subtotal,
                "taxTotal": inv.tax_total,
                "discountTotal": inv.discount_total,
                "grandTotal": inv.grand_total,
                "amountPaid": inv.amount_paid,
                "amountRefunded": inv.amount_refunded,
                "balanceDue": inv.balance_due,
                "issuedAt": inv.issued_at,
                "paidAt": inv.paid_at,
                "createdAt": inv.created_at,
            }
        )
        for pay in billing_queries.payments_of(session, inv.id):
            payment_list.append(
                {
                    "id": pay.id,
                    "invoiceNumber": inv.number,
                    "method": pay.method,
                    "amount": pay.amount,
                    "currency": pay.currency,
                    "status": pay.status,
                    "reference": pay.reference,
                    "capturedAt": pay.captured_at,
                    "createdAt": pay.created_at,
                }
            )
            for ref in payments.refunds_of(session, pay.id):
                refund_list.append(
                    {
                        "id": ref.id,
                        "paymentId": pay.id,
                        "invoiceNumber": inv.number,
                        "amount": ref.amount,
                        "method": ref.method,
                        "status": ref.status,
                        "reason": ref.reason,
                        "createdAt": ref.created_at,
                        "processedAt": ref.processed_at,
                    }
                )
    ledger_list = [
        {
            "type": e.type,
            "kind": e.kind,
            "amount": e.amount,
            "description": e.description,
            "createdAt": e.created_at,
        }
        for e in ledger.entries(session, pid)
    ]
    # What the clinic sent the patient and how it went; the text is left out (it can
    # hold one-time sign-in codes and payment links that must not travel in a file).
    messages = [
        {
            "channel": m.channel,
            "kind": m.template,
            "status": m.status,
            "createdAt": m.created_at,
            "sentAt": m.sent_at,
            "deliveredAt": m.delivered_at,
        }
        for m in session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.patient_id == pid)
            .order_by(OutboxMessage.created_at)
            .limit(LIMIT)
        ).scalars()
    ]

    abdm_visits, abdm_consents, abdm_transfers = _abdm(session, pid)

    sections: dict[str, list[dict[str, Any]]] = {
        "consents": consents,
        "documents": document_list,
        "appointments": appointments,
        "waitlist": waitlist,
        "visits": visit_list,
        "prescriptions": prescription_list,
        "dietPlans": diet_list,
        "orders": order_list,
        "invoices": invoice_list,
        "payments": payment_list,
        "refunds": refund_list,
        "ledger": ledger_list,
        "messages": messages,
        "abdmVisits": abdm_visits,
        "abdmConsents": abdm_consents,
        "abdmTransfers": abdm_transfers,
    }
    data = plain(
        {
            "format": FORMAT,
            "generatedAt": ctx.now(),
            "clinic": _clinic(tenant),
            "patient": profile,
            **sections,
            "counts": {name: len(rows) for name, rows in sections.items()},
            "withheld": withheld,
        }
    )
    return PatientExport(data, files)


def _abdm(
    session: Session, patient_id: uuid.UUID
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """What ABDM knows of the patient here: their visits by ABDM's name for them, the
    consents naming them, and what was sent under each (dates and counts, no content)."""
    found = sharing.of_patient(session, patient_id)
    visits_ = [
        {
            "visit": c.visit_id,
            "name": c.display,
            "happenedAt": c.happened_at,
            "linkedAt": c.linked_at,
            "linkedBy": c.linked_by,
        }
        for c in found.care_contexts
    ]
    consents = [
        {
            "consentId": c.consent_id,
            "status": c.status,
            "kinds": c.hi_types,
            "from": c.date_from,
            "to": c.date_to,
            "eraseAt": c.data_erase_at,
            "receivedAt": c.received_at,
            "visits": [
                x["careContextReference"]
                for x in c.care_contexts
                if x.get("patientReference") == str(patient_id)
            ],
        }
        for c in found.consents
    ]
    transfers = [
        {
            "consentId": t.consent_id,
            "status": t.status,
            "from": t.date_from,
            "to": t.date_to,
            "sent": t.sent,
            "error": t.error,
            "requestedAt": t.requested_at,
            "finishedAt": t.finished_at,
        }
        for t in found.transfers
    ]
    return visits_, consents, transfers


def _count_drafts(session: Session, patient_id: uuid.UUID) -> int:
    """Prescriptions of the patient's visits not issued yet."""
    visit_ids = session.execute(select(Visit.id).where(Visit.patient_id == patient_id)).scalars()
    return sum(
        1
        for visit_id in visit_ids
        for p in prescriptions.of_visit(session, visit_id)
        if p.issued_at is None
    )


def export(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    *,
    patient: Patient,
    fonts: Path,
) -> bytes:
    """The patient's archive, audited in the request's transaction (one event, counts
    only: what was handed out, never its contents).
    """
    found = gather(session, ctx, cipher, storage, patient=patient)
    data = archive(found, fonts)
    audit.record(
        ctx,
        entity="patients",
        entity_id=patient.id,
        action="state-transition",
        to_state="exported",
        diff={
            "added": {"export": {**found.counts, "files": len(found.files)}},
            "updated": {},
            "removed": {},
        },
    )
    return data


def archive(found: PatientExport, fonts: Path) -> bytes:
    """One ZIP: ``patient.json``, ``summary.pdf`` and ``documents/...``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("patient.json", json.dumps(found.data, ensure_ascii=False, indent=2))
        zf.writestr("summary.pdf", summary_pdf.render(fonts, found.data))
        for f in found.files:
            zf.writestr(f.name, f.data)
    return buffer.getvalue()


def file_name(patient: Patient, on: date) -> str:
    """The archive's download name: ``opdesk-P-000012-2026-03-01.zip``."""
    return f"opdesk-{patient.display_number}-{on.isoformat()}.zip"
