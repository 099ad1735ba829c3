"""Linking a patient's visits to their ABHA, both ways ABDM has.

**The clinic links** (HIP-initiated): when a visit is signed for a patient with an ABHA
address, a worker rule links the visit's care context to it. That needs a *link token*,
which ABDM gives once per patient (``generate-token``; it answers on
``on-generate-token``) and which lasts six months. ABDM blocks a client for 24 hours that
asks for tokens over and over, so one token is kept per patient (``abdm_link_tokens``),
one question is in flight at a time, and a refusal means no asking again for a day.
``link/carecontext`` is answered on ``on_carecontext``, which marks the visits linked.

**The patient links** (user-initiated): after discovery, the patient picks visits in
their ABHA app; ABDM calls ``link/init`` and the clinic texts the patient an OTP (through
the outbox), then ``link/confirm`` brings the OTP back. Five wrong tries or ten minutes
end the request.

The error codes OPDesk answers with are its best reading of ABDM's HIE-CM list; the
sandbox is what would confirm them (docs/abdm.md).
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.abdm import bridge, hub, messages
from opdesk.abdm.gateway import RATE_LIMIT_CODES, GatewayError
from opdesk.abdm.messages import V3_PATHS, HiType
from opdesk.abdm.models import AbdmSettings, CareContext, LinkRequest, LinkToken
from opdesk.abdm.settings import Abdm
from opdesk.abdm.sharing import care_contexts, clinic_of
from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import AfterCommit, Permanent, cipher_of, rule
from opdesk.clinical.models import Visit
from opdesk.config import Settings
from opdesk.context import Clock, RequestContext, system_context
from opdesk.db import Database, new_id
from opdesk.notifications import service as outbox
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.patients.sounds import in_latin_letters
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.service import today_at_clinic
from opdesk.uow import transaction

LINK_VISITS_RULE = "abdm.link-visits"
TOKEN_RULE = bridge.TOKEN_RULE
LINKED_RULE = bridge.LINKED_RULE
INIT_RULE = bridge.INIT_RULE
CONFIRM_RULE = bridge.CONFIRM_RULE

TOKEN_LIFE = timedelta(days=180)  # "valid for 6 months" (link-token.yaml); the safe side
# How long not to ask again after ABDM refused a token (its block on repeated asking is
# 24 hours; asking again sooner after any refusal would only earn that block).
REFUSED_PAUSE = timedelta(hours=24)
# How long an unanswered question (a token, a link) is waited for before it is asked again;
# a run is scheduled for then with every question, so an answer that never comes is noticed.
PATIENCE = timedelta(hours=6)
# How long after an outage (no answer, a 5xx) a link call is made again.
OUTAGE_WAIT = timedelta(minutes=15)
# A patient's link requests from their app in an hour, at most (each texts them a code).
INITS_PER_HOUR = 5
OTP_LIFE = timedelta(minutes=10)
OTP_TRIES = 5
OTP_PURPOSE = "abdm-link-otp"
TOKEN_TABLE = "abdm_link_tokens"  # noqa: S105 (a table's name)

# What OPDesk answers a patient's link request with when it cannot link (unverified codes).
NO_SUCH_PATIENT = "ABDM-1010"
NOT_THEIR_VISIT = "ABDM-1019"
OTP_WRONG = "ABDM-1035"
OTP_EXPIRED = "ABDM-1036"
LINK_UNKNOWN = "ABDM-1037"
TOO_MANY = "ABDM-1022"


# --------------------------------------------------------------------------- after a visit


def visit_signed(session: Session, ctx: RequestContext, visit: Visit) -> None:
    """Link the signed visit to the patient's ABHA later (a worker rule), if the clinic is
    on ABDM and the patient has an ABHA address; otherwise nothing."""
    enabled = session.scalar(
        select(AbdmSettings.enabled).where(AbdmSettings.tenant_id == visit.tenant_id)
    )
    if not enabled:
        return
    patient = session.get_one(Patient, (visit.tenant_id, visit.patient_id))
    if patient.abha_address_hash is None:
        return
    schedule_linking(session, ctx, patient.id, ctx.now(), key=str(visit.id))


def schedule_linking(
    session: Session, ctx: RequestContext, patient_id: uuid.UUID, when: datetime, *, key: str
) -> None:
    """A run of ``link_visits`` for the patient at ``when``, once per ``key``."""
    automation.schedule(
        session,
        ctx,
        rule=LINK_VISITS_RULE,
        entity_type="patients",
        entity_id=patient_id,
        when=when,
        dedupe_key=f"abdm-link:{patient_id}:{key}",
    )


def _at_key(when: datetime) -> str:
    return f"at:{int(when.timestamp())}"


def _waiting(contexts: Sequence[CareContext], now: datetime) -> list[CareContext]:
    """The care contexts not linked and not in a link call still awaiting its answer."""
    return [
        c
        for c in contexts
        if c.linked_at is None and (c.link_asked_at is None or c.link_asked_at < now - PATIENCE)
    ]


def _token_row(session: Session, ctx: RequestContext, patient: Patient) -> LinkToken:
    """The patient's link-token row, locked (made if missing); a row for an ABHA address
    the patient no longer has starts over."""
    assert ctx.tenant_id is not None
    assert patient.abha_address_hash is not None
    # Made if missing without a race (two first runs for one patient), then locked.
    session.execute(
        insert(LinkToken)
        .values(
            tenant_id=ctx.tenant_id,
            id=new_id(),
            patient_id=patient.id,
            abha_address_hash=patient.abha_address_hash,
            updated_at=ctx.now(),
        )
        .on_conflict_do_nothing()
    )
    row = session.scalars(
        select(LinkToken).where(LinkToken.patient_id == patient.id).with_for_update()
    ).one()
    if row.abha_address_hash != patient.abha_address_hash:
        row.abha_address_hash = patient.abha_address_hash
        forget_token(row, ctx.now(), "the patient's ABHA address changed")
        row.not_before = None
    return row


def forget_token(row: LinkToken, now: datetime, why: str) -> None:
    row.token_encrypted, row.expires_at = None, None
    row.ask_request_id, row.last_error, row.updated_at = None, why, now


def _token_of(cipher: FieldCipher, row: LinkToken, now: datetime) -> str | None:
    if row.token_encrypted is None or row.expires_at is None or row.expires_at <= now:
        return None
    return cipher.decrypt_str(
        row.token_encrypted,
        tenant_id=row.tenant_id,
        table=TOKEN_TABLE,
        column="token_encrypted",
        row_id=row.id,
    )


@rule(LINK_VISITS_RULE)
def link_visits(
    session: Session, ctx: RequestContext, event: AutomationEvent
) -> AfterCommit | None:
    """Link the patient's unlinked visits with the kept token, or ask for one (once; not
    while a question is out or ABDM said to wait)."""
    cipher = cipher_of(session)
    clinic = clinic_of(session, cipher, ctx)
    patient = session.get(Patient, (ctx.tenant_id, event.entity_ref_id))
    if patient is None:
        raise Permanent("no such patient")
    if patient.abha_address_hash is None:
        return None  # the ABHA was taken off the record since
    now = ctx.now()
    # The token row's lock comes first: two runs for one patient (two visits signed at
    # once) take turns, and the second sees what the first asked or sent.
    row = _token_row(session, ctx, patient)
    waiting = _waiting(care_contexts(session, ctx, patient), now)
    if not waiting:
        return None
    token = _token_of(cipher, row, now)
    if token is not None:
        return _link_call(session, ctx, cipher, clinic, patient, token, waiting)
    if row.not_before is not None and row.not_before > now:
        schedule_linking(session, ctx, patient.id, row.not_before, key=_at_key(row.not_before))
        return None
    if row.ask_request_id is not None and row.asked_at and row.asked_at > now - PATIENCE:
        return None  # the answer to the question out will link them
    paused = _clinic_paused_until(session, ctx)
    if paused is not None and paused > now:
        schedule_linking(session, ctx, patient.id, paused, key=_at_key(paused))
        return None
    return _token_call(session, ctx, cipher, clinic, patient, row)


def _clinic_paused_until(session: Session, ctx: RequestContext) -> datetime | None:
    return session.scalar(
        select(AbdmSettings.token_asks_paused_until).where(AbdmSettings.tenant_id == ctx.tenant_id)
    )


def _pause_clinic(session: Session, ctx: RequestContext, until: datetime) -> None:
    """ABDM's block on asking is the client's: every patient's question waits."""
    session.execute(
        update(AbdmSettings)
        .where(AbdmSettings.tenant_id == ctx.tenant_id)
        .values(token_asks_paused_until=until)
    )


def _facts(session: Session, ctx: RequestContext, cipher: FieldCipher, patient: Patient) -> Any:
    return patients.read(cipher, patient, today_at_clinic(session, ctx))


def _link_call(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    clinic: Abdm,
    patient: Patient,
    token: str,
    waiting: Sequence[CareContext],
) -> AfterCommit:
    shown = _facts(session, ctx, cipher, patient)
    request_id = uuid.uuid4()
    for context in waiting:
        context.link_request_id, context.link_asked_at = request_id, ctx.now()
    body = messages.link_carecontext(
        abha_address=shown.abha_address,
        abha_number=(shown.abha_number or "").replace("-", "") or None,
        patient_reference=str(patient.id),
        patient_display=patient.display_number,
        care_contexts=[
            messages.CareContext(c.reference, c.display, HiType.OP_CONSULTATION) for c in waiting
        ],
    )
    audit.record(
        ctx,
        entity="abdm_care_contexts",
        entity_id=patient.id,
        action="update",
        diff={"added": {"linkAsked": [c.reference for c in waiting]}, "updated": {}, "removed": {}},
    )
    headers = messages.link_headers(clinic.facility_id, token)
    tenant_id, patient_id = patient.tenant_id, patient.id
    # If no answer ever comes, this run finds the visits still waiting and asks again.
    schedule_linking(session, ctx, patient_id, ctx.now() + PATIENCE, key=f"check:{request_id}")

    failed = partial(_link_call_failed, tenant_id=tenant_id, patient_id=patient_id, clock=ctx.clock)
    return _call_later(clinic, V3_PATHS.link_carecontext, body, headers, request_id, failed)


def _call_later(
    clinic: Abdm,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    request_id: uuid.UUID,
    failed: Callable[[Database, uuid.UUID, GatewayError], None],
) -> AfterCommit:
    """The call, sent once the rule's writes commit, under the REQUEST-ID the rule kept
    (the answer names it); ``failed`` records what a refusal or an outage means."""

    def send(db: Database, _cipher: FieldCipher, settings: Settings) -> None:
        try:
            hub.link_for(settings, clinic).gateway.post(
                path, body, headers=headers, request_id=str(request_id)
            )
        except GatewayError as exc:
            failed(db, request_id, exc)

    return send


def _token_refused(status: int | None, message: str) -> bool:
    """Whether ABDM refused the link token itself (its code for that is not published;
    401/403 come after the session token was already renewed once)."""
    return status in (401, 403) or "token" in message.lower()


def _link_call_failed(
    db: Database,
    request_id: uuid.UUID,
    exc: GatewayError,
    *,
    tenant_id: uuid.UUID,
    patient_id: uuid.UUID,
    clock: Clock,
) -> None:
    """The link call was not taken. After an outage its visits are tried again a little
    later; a refused token is forgotten and a new one asked for; any other refusal leaves
    them until the check run ``PATIENCE`` later."""
    ctx = system_context(tenant_id, clock=clock)  # the worker's clock
    with transaction(db, ctx) as session:
        if exc.retryable:
            _release(session, request_id)
            retry_at = ctx.now() + max(OUTAGE_WAIT, timedelta(seconds=exc.retry_after or 0))
            schedule_linking(session, ctx, patient_id, retry_at, key=_at_key(retry_at))
        elif _token_refused(exc.status, exc.message):
            _release(session, request_id)
            _forget_and_relink(session, ctx, patient_id, request_id, exc.message)


def _forget_and_relink(
    session: Session, ctx: RequestContext, patient_id: uuid.UUID, request_id: uuid.UUID, why: str
) -> None:
    """Forget a token ABDM refused and ask for a new one: now, unless one was asked for
    within the day (asking again so soon is what earns ABDM's 24-hour block)."""
    row = session.scalar(
        select(LinkToken).where(LinkToken.patient_id == patient_id).with_for_update()
    )
    when = ctx.now()
    if row is not None:
        forget_token(row, ctx.now(), f"ABDM refused the link token: {why}")
        if row.asked_at is not None and row.asked_at > when - REFUSED_PAUSE:
            row.not_before = when = row.asked_at + REFUSED_PAUSE
    schedule_linking(session, ctx, patient_id, when, key=f"refused:{request_id}")


def _release(session: Session, request_id: uuid.UUID) -> None:
    session.execute(
        update(CareContext)
        .where(CareContext.link_request_id == request_id, CareContext.linked_at.is_(None))
        .values(link_request_id=None, link_asked_at=None)
    )


def _latin_name(shown: Any) -> str:
    """The name as ABDM takes it: Latin letters (an Indic name spelled in them) and
    ' , . - only; ABDM matches it against the ABHA's."""
    full = in_latin_letters(f"{shown.name.first} {shown.name.last}")
    kept = re.sub(r"[^A-Za-z',. \-]+", " ", full)
    return " ".join(kept.split()).title()


# OPDesk's genders as ABDM writes them.
_ABDM_GENDER = {"female": "F", "male": "M", "other": "O", "undisclosed": "U"}


def _token_call(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    clinic: Abdm,
    patient: Patient,
    row: LinkToken,
) -> AfterCommit | None:
    shown = _facts(session, ctx, cipher, patient)
    year = shown.dob.year if shown.dob else today_at_clinic(session, ctx).year - shown.age_years
    try:
        body = messages.generate_token(
            abha_address=shown.abha_address,
            abha_number=(shown.abha_number or "").replace("-", "") or None,
            name=_latin_name(shown),
            gender=_ABDM_GENDER[shown.gender],
            year_of_birth=year,
        )
    except messages.MessageError as exc:
        # The record cannot be asked about as it stands (a name with no Latin letters):
        # the reason shows on the patient's ABDM page until the record changes.
        _pause(session, ctx, row, f"the patient's {exc.field} cannot be sent: {exc.reason}")
        return None
    request_id = uuid.uuid4()
    row.ask_request_id, row.asked_at, row.updated_at = request_id, ctx.now(), ctx.now()
    audit.record(
        ctx,
        entity=TOKEN_TABLE,
        entity_id=row.id,
        action="update",
        diff={"added": {"asked": str(request_id)}, "updated": {}, "removed": {}},
    )
    headers = messages.hip_headers(clinic.facility_id)
    tenant_id, row_id = row.tenant_id, row.id
    # If no answer ever comes, this run finds the question stale and asks again.
    schedule_linking(session, ctx, patient.id, ctx.now() + PATIENCE, key=f"check:{request_id}")

    assert V3_PATHS.generate_token is not None
    failed = partial(_token_call_failed, tenant_id=tenant_id, row_id=row_id, clock=ctx.clock)
    return _call_later(clinic, V3_PATHS.generate_token, body, headers, request_id, failed)


def _is_refusal(code: str | None, status: int | None) -> bool:
    """ABDM's "too many requests" (its block), as a code or a 429."""
    return status == 429 or code in RATE_LIMIT_CODES


def _token_call_failed(
    db: Database,
    request_id: uuid.UUID,
    exc: GatewayError,
    *,
    tenant_id: uuid.UUID,
    row_id: uuid.UUID,
    clock: Clock,
) -> None:
    """The question was not taken. After an outage (no answer, a 5xx) ABDM may still have
    it and answer: it stays asked until the check run. A refusal (a block, or a 4xx that
    asking again would only repeat) pauses asking for a day."""
    if exc.retryable and not _is_refusal(exc.code, exc.status):
        return
    ctx = system_context(tenant_id, clock=clock)  # the worker's clock
    with transaction(db, ctx) as session:
        row = session.scalar(select(LinkToken).where(LinkToken.id == row_id).with_for_update())
        if row is None or row.ask_request_id != request_id:
            return
        row.ask_request_id, row.updated_at = None, ctx.now()
        _pause(session, ctx, row, f"{exc.code or exc.status}: {exc.message}", exc.retry_after)
        if _is_refusal(exc.code, exc.status):
            assert row.not_before is not None
            _pause_clinic(session, ctx, row.not_before)


def _pause(
    session: Session, ctx: RequestContext, row: LinkToken, why: str, wait: float | None = None
) -> None:
    pause = max(REFUSED_PAUSE, timedelta(seconds=wait or 0))
    row.not_before, row.last_error, row.updated_at = ctx.now() + pause, why, ctx.now()
    audit.record(
        ctx,
        entity=TOKEN_TABLE,
        entity_id=row.id,
        action="update",
        diff={"added": {"refused": why, "notBefore": row.not_before}, "updated": {}, "removed": {}},
    )
    schedule_linking(session, ctx, row.patient_id, row.not_before, key=_at_key(row.not_before))


# --------------------------------------------------------------------------- the answers


@rule(TOKEN_RULE)
def token_arrived(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """Keep the link token ABDM sent (six months), then link the patient's visits; or
    keep its refusal and wait a day."""
    cipher, call, result = bridge.received(session, event, messages.parse_on_generate_token)
    row = session.scalar(
        select(LinkToken).where(LinkToken.ask_request_id == result.request_id).with_for_update()
    )
    if row is None:
        bridge.finished(ctx, call, "no question of this clinic's waits for this answer")
        return
    row.ask_request_id = None
    if result.error is not None:
        _pause(session, ctx, row, f"{result.error.code}: {result.error.message}")
        if _is_refusal(result.error.code, None):
            assert row.not_before is not None
            _pause_clinic(session, ctx, row.not_before)
        bridge.finished(ctx, call, f"refused: {result.error.code}")
        return
    assert result.link_token is not None
    row.token_encrypted = cipher.encrypt(
        result.link_token,
        tenant_id=row.tenant_id,
        table=TOKEN_TABLE,
        column="token_encrypted",
        row_id=row.id,
    )
    row.expires_at = ctx.now() + TOKEN_LIFE
    row.not_before, row.last_error, row.updated_at = None, None, ctx.now()
    audit.record(
        ctx,
        entity=TOKEN_TABLE,
        entity_id=row.id,
        action="update",
        diff=audit.diff_of({}, {"token": "kept", "expiresAt": row.expires_at}),
    )
    schedule_linking(session, ctx, row.patient_id, ctx.now(), key=f"token:{call.request_id}")
    bridge.finished(ctx, call, "link token kept")


@rule(LINKED_RULE)
def link_answered(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """ABDM's answer to a link call: its visits are linked, or wait to be linked again
    (with a fresh token if ABDM refused the one used)."""
    _, call, result = bridge.received(session, event, messages.parse_on_link_carecontext)
    request_id = result.request_id
    named = list(
        session.scalars(
            select(CareContext).where(CareContext.link_request_id == request_id).with_for_update()
        )
    )
    if not named:
        bridge.finished(ctx, call, "no link call of this clinic waits for this answer")
        return
    if result.error is None:
        mark_linked(ctx, named, by="hip")
        bridge.finished(ctx, call, f"{len(named)} visits linked")
        return
    why = f"{result.error.code}: {result.error.message}"
    if _token_refused(None, result.error.message):
        _release(session, request_id)
        _forget_and_relink(session, ctx, named[0].patient_id, request_id, why)
    # Otherwise the visits stay asked: the call's check run tries them again.
    bridge.finished(ctx, call, f"not linked: {why}")


def mark_linked(ctx: RequestContext, contexts: Sequence[CareContext], *, by: str) -> None:
    if not contexts:
        return
    now = ctx.now()
    for context in contexts:
        if context.linked_at is None:
            context.linked_at, context.linked_by = now, by
        context.link_request_id, context.link_asked_at = None, None
    audit.record(
        ctx,
        entity="abdm_care_contexts",
        entity_id=contexts[0].patient_id,
        action="update",
        diff={
            "added": {"linked": [c.reference for c in contexts], "by": by},
            "updated": {},
            "removed": {},
        },
    )


# --------------------------------------------------------------------------- the patient links


def otp_hash(cipher: FieldCipher, reference: str, code: str) -> bytes:
    return cipher.blind_index(f"{reference}:{code}", purpose=OTP_PURPOSE)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _patient_named(session: Session, reference: str) -> Patient | None:
    patient_id = _uuid(reference)
    if patient_id is None:
        return None
    return session.scalar(select(Patient).where(Patient.id == patient_id))


def _contexts_named(
    session: Session, ctx: RequestContext, patient: Patient, references: Sequence[str]
) -> list[CareContext] | None:
    """The patient's care contexts the references name, or None if any is not theirs."""
    theirs = {c.reference: c for c in care_contexts(session, ctx, patient)}
    if any(r not in theirs for r in references):
        return None
    return [theirs[r] for r in references]


def _masked(phone: str) -> str:
    return "X" * 6 + phone[-4:]


@rule(INIT_RULE)
def link_init(session: Session, ctx: RequestContext, event: AutomationEvent) -> AfterCommit:
    """The patient asks to link visits they discovered: text them an OTP and say where it
    went, or say why not."""
    assert ctx.tenant_id is not None
    cipher, call, request = bridge.received(session, event, messages.parse_link_init)
    clinic = clinic_of(session, cipher, ctx)
    request_id = str(call.request_id)

    def refuse(code: str, message: str) -> AfterCommit:
        bridge.finished(ctx, call, f"refused: {message}")
        answer = messages.on_init_error(
            request_id=request_id, transaction_id=request.transaction_id, code=code, message=message
        )
        return bridge.answer_later(clinic, V3_PATHS.on_init, answer)

    patient = _patient_named(session, request.patient_reference)
    if patient is None:
        return refuse(NO_SUCH_PATIENT, "No patient with this reference at this facility")
    phone = patients.contact_phone(session, cipher, patient)
    if phone is None:
        return refuse(NO_SUCH_PATIENT, "The facility has no mobile number to send the OTP to")
    made = session.scalar(select(LinkRequest).where(LinkRequest.init_request_id == call.request_id))
    if made is None:  # (else the same call again: its answer was not delivered)
        why = _refusal_of_init(session, ctx, cipher, patient, request)
        if why is not None:
            return refuse(*why)
        made = _new_link_request(session, ctx, cipher, patient, phone, call.request_id, request)
    bridge.finished(ctx, call, f"OTP sent for {len(made.care_contexts)} visits")
    answer = messages.on_init(
        request_id=request_id,
        transaction_id=request.transaction_id,
        link_reference=made.reference,
        expires_at=made.expires_at,
        hint=_masked(phone),
    )
    return bridge.answer_later(clinic, V3_PATHS.on_init, answer)


def _refusal_of_init(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    patient: Patient,
    request: messages.LinkInitRequest,
) -> tuple[str, str] | None:
    """Why this link request is refused (the error code and message), or None."""
    address = patients.abha_address_hash(cipher, request.abha_address.strip().lower())
    if patient.abha_address_hash is not None and patient.abha_address_hash != address:
        return NO_SUCH_PATIENT, "The ABHA address is not that of this patient"
    if _contexts_named(session, ctx, patient, request.care_context_references) is None:
        return NOT_THEIR_VISIT, "A care context named is not of this patient"
    recent = session.scalar(
        select(func.count())
        .select_from(LinkRequest)
        .where(
            LinkRequest.patient_id == patient.id,
            LinkRequest.created_at > ctx.now() - timedelta(hours=1),
        )
    )
    if (recent or 0) >= INITS_PER_HOUR:
        return TOO_MANY, "Too many link requests for this patient: try again in an hour"
    return None


def _new_link_request(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    patient: Patient,
    phone: str,
    init_request_id: uuid.UUID,
    request: messages.LinkInitRequest,
) -> LinkRequest:
    """A link request with a fresh code texted to the patient; an earlier pending one of
    theirs ends (only the newest code works)."""
    assert ctx.tenant_id is not None
    session.execute(
        update(LinkRequest)
        .where(LinkRequest.patient_id == patient.id, LinkRequest.status == "pending")
        .values(status="refused", finished_at=ctx.now())
    )
    reference = str(new_id())
    code = f"{secrets.randbelow(1_000_000):06d}"
    made = LinkRequest(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        reference=reference,
        transaction_id=request.transaction_id,
        patient_id=patient.id,
        abha_address=request.abha_address,
        care_contexts=list(request.care_context_references),
        otp_hash=otp_hash(cipher, reference, code),
        expires_at=ctx.now() + OTP_LIFE,
        attempts=0,
        status="pending",
        init_request_id=init_request_id,
        created_at=ctx.now(),
    )
    session.add(made)
    session.flush()
    clinic_name = session.get_one(Tenant, ctx.tenant_id).name
    outbox.enqueue(
        session,
        ctx,
        cipher,
        channel="sms",
        template="abdm-link-otp",
        recipient=phone,
        payload={"code": code, "clinic": clinic_name, "minutes": OTP_LIFE.seconds // 60},
        patient_id=patient.id,
        dedupe_key=f"abdm-link-otp:{made.id}",
    )
    audit.record(
        ctx,
        entity="abdm_link_requests",
        entity_id=made.id,
        action="create",
        to_state="pending",
        diff=audit.diff_of({}, {"careContexts": made.care_contexts}),
    )
    return made


def check_otp(
    ctx: RequestContext, cipher: FieldCipher, made: LinkRequest, code: str, call_id: uuid.UUID
) -> tuple[str, str] | None:
    """None when ``code`` links the request now; else the error code and message (a wrong
    code counts a try; the last try, or a late one, ends the request). The same confirm
    call again (the worker retrying its answer) gets the same outcome and costs no try."""
    if made.last_try_id == call_id:
        return _outcome_of(made)
    if made.status != "pending":
        return LINK_UNKNOWN, "This link request is already finished"
    made.last_try_id = call_id
    if made.expires_at <= ctx.now():
        made.status, made.finished_at = "refused", ctx.now()
    elif hmac.compare_digest(made.otp_hash, otp_hash(cipher, made.reference, code)):
        made.status, made.finished_at = "linked", ctx.now()
    else:
        made.attempts += 1
        if made.attempts >= OTP_TRIES:
            made.status, made.finished_at = "refused", ctx.now()
    return _outcome_of(made)


def _outcome_of(made: LinkRequest) -> tuple[str, str] | None:
    """What the last confirm call of ``made`` is answered."""
    if made.status == "linked":
        return None
    if made.status == "pending":
        return OTP_WRONG, f"The OTP is wrong: {OTP_TRIES - made.attempts} tries left"
    if made.attempts >= OTP_TRIES:
        return OTP_WRONG, "The OTP is wrong and no tries are left: ask to link again"
    return OTP_EXPIRED, "The OTP has expired: ask to link again"


@rule(CONFIRM_RULE)
def link_confirm(session: Session, ctx: RequestContext, event: AutomationEvent) -> AfterCommit:
    """The OTP the patient typed: the visits are linked, or why not."""
    cipher, call, request = bridge.received(session, event, messages.parse_link_confirm)
    clinic = clinic_of(session, cipher, ctx)
    request_id = str(call.request_id)
    made = session.scalar(
        select(LinkRequest).where(LinkRequest.reference == request.link_reference).with_for_update()
    )
    if made is None:
        failure: tuple[str, str] | None = (LINK_UNKNOWN, "No link request with this reference")
    else:
        before = made.status
        failure = check_otp(ctx, cipher, made, request.token, call.request_id)
        audit.record(
            ctx,
            entity="abdm_link_requests",
            entity_id=made.id,
            action="update" if made.status == before else "state-transition",
            from_state=before,
            to_state=made.status,
            diff={"added": {"attempts": made.attempts}, "updated": {}, "removed": {}},
        )
    if failure is not None:
        bridge.finished(ctx, call, f"refused: {failure[1]}")
        answer = messages.on_confirm_error(
            request_id=request_id, code=failure[0], message=failure[1]
        )
        return bridge.answer_later(clinic, V3_PATHS.on_confirm, answer)
    assert made is not None
    patient = session.get_one(Patient, (made.tenant_id, made.patient_id))
    named = _contexts_named(session, ctx, patient, made.care_contexts) or []
    mark_linked(ctx, named, by="patient")
    bridge.finished(ctx, call, f"{len(named)} visits linked by the patient")
    answer = messages.on_confirm(
        request_id=request_id,
        patient_reference=str(patient.id),
        patient_display=patient.display_number,
        care_contexts=[
            messages.CareContext(c.reference, c.display, HiType.OP_CONSULTATION) for c in named
        ],
    )
    return bridge.answer_later(clinic, V3_PATHS.on_confirm, answer)


def token_of_patient(session: Session, patient_id: uuid.UUID) -> LinkToken | None:
    """The patient's link-token row (the page says from it whether linking is paused)."""
    return session.scalar(select(LinkToken).where(LinkToken.patient_id == patient_id))
