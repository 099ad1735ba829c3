"""Consent templates, signing (with a PDF copy kept as a document), revoking, and the one
question other domains ask: does this patient consent to this channel?

A version of a consent is one agreement, written in one or more languages: each language
is its own row (title, body, hash). A new version starts in one language; translations of
the version in force are added without a new version number. Patients read, and sign, the
row in their preferred language when it exists, else English (else the version's first
language), and may switch to any language the version has.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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
from opdesk.errors import Conflict, FieldError, InvalidInput
from opdesk.formatting import local_time
from opdesk.patients import service as patients
from opdesk.patients.models import LANGUAGES, Patient
from opdesk.patients.schemas import LANGUAGE_NAMES
from opdesk.security.crypto import FieldCipher

SIGNED_COPY_LIMIT = 5 * 1024 * 1024
ENGLISH = "en"
# "This text is not yet in <your language>, shown in English", said in that language
# (languages whose script the pages and PDFs carry fonts for); the English sentence
# follows it in every case.
NOT_YET_IN_YOUR_LANGUAGE = {
    "hi": "यह पाठ अभी हिन्दी में उपलब्ध नहीं है, इसलिए अंग्रेज़ी में दिखाया गया है।",
    "mr": "हा मजकूर अजून मराठीत उपलब्ध नाही, म्हणून इंग्रजीत दाखवला आहे.",
    "ta": "இந்த உரை இன்னும் தமிழில் கிடைக்கவில்லை, எனவே ஆங்கிலத்தில் காட்டப்படுகிறது.",
}


def language_name(code: str) -> str:
    """A language as its speakers write it ("हिन्दी", "English")."""
    return LANGUAGE_NAMES.get(code, code).split(" (")[0]


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


def _known_language(language: str) -> None:
    if language not in LANGUAGES:
        raise InvalidInput([FieldError("language", "choose one of the languages listed")])


def _write(
    session: Session,
    ctx: RequestContext,
    *,
    type_: str,
    version: int,
    language: str,
    title: str,
    body: str,
) -> ConsentTemplate:
    assert ctx.tenant_id is not None
    template = ConsentTemplate(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        type=type_,
        version=version,
        language=language,
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
            {},
            {
                "type": type_,
                "version": version,
                "language": language,
                "textHash": template.text_hash,
            },
        ),
    )
    return template


def add_template(
    session: Session,
    ctx: RequestContext,
    *,
    type_: str,
    title: str,
    body: str,
    language: str = ENGLISH,
) -> ConsentTemplate:
    """A new version of the clinic's wording for one consent type, in one language; the
    previous version (in every language it was written in) is no longer in force.
    """
    _known_language(language)
    # One writer per clinic and type at a time, so two edits cannot take the same version.
    _lock_type(session, ctx, type_, shared=False)
    latest = session.execute(
        select(func.max(ConsentTemplate.version)).where(ConsentTemplate.type == type_)
    ).scalar()
    return _write(
        session,
        ctx,
        type_=type_,
        version=(latest or 0) + 1,
        language=language,
        title=title,
        body=body,
    )


def add_translation(
    session: Session,
    ctx: RequestContext,
    *,
    type_: str,
    version: int,
    language: str,
    title: str,
    body: str,
) -> ConsentTemplate:
    """The version in force written in one more language, under the same version number.

    ``version`` is the one the admin translated: a newer one published meanwhile, or a
    language the version already has, is a conflict (409).
    """
    _known_language(language)
    _lock_type(session, ctx, type_, shared=False)
    rows = in_force_of(session, type_)
    if not rows:
        raise Conflict(
            f"the clinic has no {consent_label(type_)} text yet; publish it first, "
            "then add translations"
        )
    current = rows[0].version
    if version != current:
        raise Conflict(
            f"Version {current} of {consent_label(type_)} is now in force, not version "
            f"{version}; translate version {current} instead."
        )
    if any(r.language == language for r in rows):
        raise Conflict(
            f"Version {current} of {consent_label(type_)} is already written in "
            f"{language_name(language)}; a published text never changes: to change its "
            "words, write the next version."
        )
    return _write(
        session,
        ctx,
        type_=type_,
        version=current,
        language=language,
        title=title,
        body=body,
    )


def _language_order(template: ConsentTemplate) -> int:
    return LANGUAGES.index(template.language) if template.language in LANGUAGES else 99


def templates(session: Session) -> list[ConsentTemplate]:
    """Every row, by type, newest version first, each version's languages English first."""
    rows = session.execute(
        select(ConsentTemplate).order_by(ConsentTemplate.type, ConsentTemplate.version.desc())
    ).scalars()
    return sorted(rows, key=lambda t: (t.type, -t.version, _language_order(t)))


def in_force(session: Session) -> dict[str, list[ConsentTemplate]]:
    """The version of each consent type patients agree to now (the newest), by type: its
    rows, one per language, English first.
    """
    newest = (
        select(ConsentTemplate.type, func.max(ConsentTemplate.version).label("version"))
        .group_by(ConsentTemplate.type)
        .subquery()
    )
    rows = session.execute(
        select(ConsentTemplate).join(
            newest,
            (ConsentTemplate.type == newest.c.type) & (ConsentTemplate.version == newest.c.version),
        )
    ).scalars()
    by_type: dict[str, list[ConsentTemplate]] = {}
    for row in sorted(rows, key=lambda t: (t.type, _language_order(t))):
        by_type.setdefault(row.type, []).append(row)
    return by_type


def in_force_of(session: Session, type_: str) -> list[ConsentTemplate]:
    """The rows (one per language, English first) of the version of one type in force."""
    newest = (
        select(func.max(ConsentTemplate.version))
        .where(ConsentTemplate.type == type_)
        .scalar_subquery()
    )
    rows = session.execute(
        select(ConsentTemplate).where(
            ConsentTemplate.type == type_, ConsentTemplate.version == newest
        )
    ).scalars()
    return sorted(rows, key=_language_order)


def in_language(rows: Sequence[ConsentTemplate], *languages: str | None) -> ConsentTemplate:
    """The first of ``languages`` the rows of a version have, else English, else the
    version's first language.
    """
    by_language = {r.language: r for r in rows}
    for language in (*languages, ENGLISH):
        if language in by_language:
            return by_language[language]
    return rows[0]


def published(session: Session, language: str | None = None) -> dict[str, ConsentTemplate]:
    """The text in force of each consent type, by type: in ``language`` when the version
    has it, else English, else its first language.
    """
    return {type_: in_language(rows, language) for type_, rows in in_force(session).items()}


def current_template(session: Session, type_: str, language: str | None = None) -> ConsentTemplate:
    """The text in force of one type (in ``language`` if written in it, else English...)."""
    rows = in_force_of(session, type_)
    if not rows:
        raise Conflict(f"the clinic has no {type_} consent text yet; an admin adds it first")
    return in_language(rows, language)


@dataclass(frozen=True)
class Reading:
    """What a patient reads of one consent: the text in force in the language shown, the
    languages its version is written in, and the patient's preferred language.
    """

    text: ConsentTemplate
    languages: tuple[str, ...]
    preferred: str

    @property
    def fallback(self) -> bool:
        """The version is not (yet) written in the patient's language."""
        return self.preferred not in self.languages

    @property
    def note(self) -> str | None:
        """ "Not yet available in हिन्दी, shown in English", in the patient's language too
        where we can say it.
        """
        if not self.fallback:
            return None
        shown = self.text.language
        english = (
            f"Not yet available in {language_name(self.preferred)}, "
            f"shown in {language_name(shown)}."
        )
        own = NOT_YET_IN_YOUR_LANGUAGE.get(self.preferred) if shown == ENGLISH else None
        return f"{own} ({english})" if own else english


def reading(
    session: Session, type_: str, *, preferred: str, chosen: str | None = None
) -> Reading | None:
    """The text of one type to show a patient who prefers ``preferred``: the language
    ``chosen`` (a switch on the page) when the version has it, else theirs, else English.
    None when the clinic has no text of this type.
    """
    rows = in_force_of(session, type_)
    if not rows:
        return None
    return Reading(
        text=in_language(rows, chosen, preferred),
        languages=tuple(r.language for r in rows),
        preferred=preferred,
    )


def readings(session: Session, *, preferred: str, chosen: str | None = None) -> list[Reading]:
    """:func:`reading` of every type the clinic has a text of."""
    return [
        Reading(
            text=in_language(rows, chosen, preferred),
            languages=tuple(r.language for r in rows),
            preferred=preferred,
        )
        for rows in in_force(session).values()
    ]


def agreed_template(
    session: Session,
    type_: str,
    *,
    version: int,
    text_hash: str | None = None,
    language: str | None = None,
    preferred: str = ENGLISH,
) -> ConsentTemplate:
    """The published text the patient read, if it is still the one in force.

    A patient agrees to the words they were shown: naming an older version (the clinic
    published a new one after the page was opened), or a hash that is not the hash of
    this version in that language, is refused (409), and they read the current text
    again. The language is the one named; unnamed, the row whose hash was given, else the
    patient's ``preferred`` language, else English. A language the version is not
    written in is refused naming ``language`` (422).
    """
    rows = in_force_of(session, type_)
    if not rows:
        raise Conflict(f"the clinic has no {type_} consent text yet; an admin adds it first")
    current = rows[0].version
    label = consent_label(type_)
    if version != current:
        raise Conflict(
            f"The {label} text changed after it was shown: version "
            f"{current} is now in force, not version {version}. "
            "Read the current text and agree again."
        )
    by_language = {r.language: r for r in rows}
    by_hash = {r.text_hash: r for r in rows}
    if language is not None:
        if language not in by_language:
            written = ", ".join(language_name(r.language) for r in rows)
            raise InvalidInput(
                [
                    FieldError(
                        "language",
                        f"version {current} of the {label} text is not written in "
                        f"{language_name(language)}; choose one it is written in: {written}",
                    )
                ]
            )
        template = by_language[language]
    elif text_hash is not None and text_hash in by_hash:
        template = by_hash[text_hash]
    else:
        template = in_language(rows, preferred)
    if text_hash is not None and text_hash != template.text_hash:
        raise Conflict(
            f"The {label} text in {language_name(template.language)} is not the one that "
            f"was shown: version {current} is in force and its words differ. "
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
    language: str | None = None,
) -> Consent:
    """The patient agrees to ``version`` of the text, which must be the one in force, in
    the language they read (see :func:`agreed_template`); the consent names that
    language's row and hash, and a signed PDF copy of those words joins their documents.
    """
    patient = records.by_id(session, Patient, patient_id, lock=True)
    _lock_type(session, ctx, type_, shared=True)
    template = agreed_template(
        session,
        type_,
        version=version,
        text_hash=text_hash,
        language=language,
        preferred=patient.preferred_language,
    )
    now = ctx.now()
    copy = pdf.document(
        fonts,
        template.title,
        template.body.split("\n\n"),
        f"Signed by {patient.full_name} ({patient.display_number}) on {local_time(now)} "
        f"({'in the clinic' if method == 'in-clinic' else 'online, after a one-time code'}). "
        f"Consent version {template.version} in {LANGUAGE_NAMES.get(template.language)}, "
        f"text SHA-256 {template.text_hash}.",
    )
    suffix = "" if template.language == ENGLISH else f"-{template.language}"
    document = documents.upload(
        session,
        ctx,
        cipher,
        storage,
        patient_id=patient.id,
        category="consent",
        filename=f"consent-{type_}-v{template.version}{suffix}.pdf",
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
                "language": template.language,
                "templateId": template.id,
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
