"""Consent templates, signing (with a PDF copy kept as a document), revoking, and the one
question other domains ask: does this patient consent to this channel?
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.consents.models import CONSENT, Consent, ConsentStatus, ConsentTemplate, consent_label
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.documents import pdf
from opdesk.documents import service as documents
from opdesk.documents.storage import Storage
from opdesk.errors import Conflict
from opdesk.formatting import local_time
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.security.crypto import FieldCipher

SIGNED_COPY_LIMIT = 5 * 1024 * 1024


def text_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _lock_type(session: Session, ctx: RequestContext, type_: str, *, shared: bool) -> None:
    """Publishing a version takes the clinic's type exclusively; agreeing to one shares it,
    so an agreement and a new version of the same text never pass each other.
    """
    assert ctx.tenant_id is not None
    kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(
        text(f"select {kind}(hashtextextended(:k, 0))"),
        {"k": f"consent-template:{ctx.tenant_id}:{type_}"},
    )


def add_template(
    session: Session, ctx: RequestContext, *, type_: str, title: str, body: str
) -> ConsentTemplate:
    """A new version of the clinic's wording for one consent type."""
    assert ctx.tenant_id is not None
    # One writer per clinic and type at a time, so two edits cannot take the same version.
    _lock_type(session, ctx, type_, shared=False)
    latest = session.execute(
        select(func.max(ConsentTemplate.version)).where(ConsentTemplate.type == type_)
    ).scalar()
    template = ConsentTemplate(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        type=type_,
        version=(latest or 0) + 1,
        title=title,
        body=body,
        text_hash=text_hash(body),
        created_at=ctx.now(),
        created_by=ctx.actor_id,
    )
    session.add(template)
    session.flush()
    audit.record(
        ctx,
        entity="consent_templates",
        entity_id=template.id,
        action="create",
        diff=audit.diff_of(
            {}, {"type": type_, "version": template.version, "textHash": template.text_hash}
        ),
    )
    return template


def templates(session: Session) -> list[ConsentTemplate]:
    return list(
        session.execute(
            select(ConsentTemplate).order_by(ConsentTemplate.type, ConsentTemplate.version.desc())
        ).scalars()
    )


def published(session: Session) -> dict[str, ConsentTemplate]:
    """The version of each consent type patients agree to now (the newest), by type."""
    newest = session.execute(
        select(ConsentTemplate)
        .ext(distinct_on(ConsentTemplate.type))
        .order_by(ConsentTemplate.type, ConsentTemplate.version.desc())
    ).scalars()
    return {t.type: t for t in newest}


def current_template(session: Session, type_: str) -> ConsentTemplate:
    template = session.execute(
        select(ConsentTemplate)
        .where(ConsentTemplate.type == type_)
        .order_by(ConsentTemplate.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    if template is None:
        raise Conflict(f"the clinic has no {type_} consent text yet; an admin adds it first")
    return template


def agreed_template(
    session: Session, type_: str, *, version: int, text_hash: str | None = None
) -> ConsentTemplate:
    """The published text the patient read, if it is still the one in force.

    A patient agrees to the words they were shown: naming an older version (the clinic
    published a new one after the page was opened), or a hash that is not this version's,
    is refused, and they read the current text again.
    """
    template = current_template(session, type_)
    if version != template.version or (text_hash is not None and text_hash != template.text_hash):
        raise Conflict(
            f"The {consent_label(type_)} text changed after it was shown: version "
            f"{template.version} is now in force, not version {version}. "
            "Read the current text and agree again."
        )
    return template


def sign(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    storage: Storage,
    *,
    patient_id: uuid.UUID,
    type_: str,
    method: str,
    fonts: Path,
    version: int,
    text_hash: str | None = None,
) -> Consent:
    """The patient agrees to ``version`` of the text, which must be the one in force (see
    :func:`agreed_template`); a signed PDF copy joins their documents.
    """
    patient = records.by_id(session, Patient, patient_id, lock=True)
    _lock_type(session, ctx, type_, shared=True)
    template = agreed_template(session, type_, version=version, text_hash=text_hash)
    now = ctx.now()
    copy = pdf.document(
        fonts,
        template.title,
        template.body.split("\n\n"),
        f"Signed by {patient.full_name} ({patient.display_number}) on {local_time(now)} "
        f"({'in the clinic' if method == 'in-clinic' else 'online, after a one-time code'}). "
        f"Consent version {template.version}, text SHA-256 {template.text_hash}.",
    )
    document = documents.upload(
        session,
        ctx,
        cipher,
        storage,
        patient_id=patient.id,
        category="consent",
        filename=f"consent-{type_}-v{template.version}.pdf",
        data=copy,
        tags=[type_],
        max_bytes=SIGNED_COPY_LIMIT,
    )
    consent = Consent(
        tenant_id=patient.tenant_id,
        id=new_id(),
        patient_id=patient.id,
        type=type_,
        version=template.version,
        template_id=template.id,
        text_hash=template.text_hash,
        file_id=document.id,
        method=method,
        signed_by=ctx.actor_id,
        signed_at=now,
    )
    session.add(consent)
    session.flush()
    _mirror(session, ctx, patient)
    audit.record(
        ctx,
        entity="consents",
        entity_id=consent.id,
        action="create",
        diff=audit.diff_of(
            {},
            {
                "patientId": patient.id,
                "type": type_,
                "version": template.version,
                "textHash": template.text_hash,
                "method": method,
            },
        ),
    )
    return consent


def revoke(session: Session, ctx: RequestContext, *, consent_id: uuid.UUID) -> Consent:
    consent = records.by_id(session, Consent, consent_id, lock=True)
    states.transition(session, ctx, consent, ConsentStatus.REVOKED, CONSENT)
    _mirror(session, ctx, records.by_id(session, Patient, consent.patient_id, lock=True))
    return consent


def latest(session: Session, patient_id: uuid.UUID) -> list[Consent]:
    """The newest consent of each type for a patient, revoked or not: one indexed query."""
    return list(
        session.execute(
            select(Consent)
            .where(Consent.patient_id == patient_id)
            .ext(distinct_on(Consent.type))
            .order_by(Consent.type, Consent.signed_at.desc())
        ).scalars()
    )


def allows(session: Session, patient_id: uuid.UUID, type_: str) -> bool:
    """Whether the patient's newest consent of this type stands (e.g. ``whatsapp``)."""
    newest = next((c for c in latest(session, patient_id) if c.type == type_), None)
    return newest is not None and newest.status == ConsentStatus.SIGNED


def _mirror(session: Session, ctx: RequestContext, patient: Patient) -> None:
    """The patient's ``consents`` list: the standing consents, as the seed embeds them."""
    standing = [
        {
            "consentId": str(c.id),
            "type": c.type,
            "version": c.version,
            "signedAt": c.signed_at.isoformat(),
        }
        for c in latest(session, patient.id)
        if c.status == ConsentStatus.SIGNED
    ]
    patients.set_standing_consents(session, ctx, patient, standing)


def get(session: Session, consent_id: uuid.UUID) -> Consent:
    return records.by_id(session, Consent, consent_id)
