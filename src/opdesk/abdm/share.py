"""Scan & Share: a patient scans a counter's QR code with an ABDM app and the gateway
sends their ABHA profile; OPDesk finds the patient (or registers them) and answers with a
token number for that counter's queue.

The worker runs :func:`answer_share` for each profile received (``abdm.bridge``). Finding
the patient: their ABHA number or address first (certain), then mobile + year of birth +
gender + a similar name, across scripts (``abdm.matching``); never a guess between two.
Tokens are numbered per counter per clinic day and last 30 minutes; a rescan within them
gets the same token, as ABDM's apps expect.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.abdm import bridge, matching, messages
from opdesk.abdm import settings as abdm_settings
from opdesk.abdm.messages import ShareProfile
from opdesk.abdm.models import AbdmSettings, ShareCounter, ShareToken
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import AfterCommit, Busy, Permanent, rule, settings_of
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict
from opdesk.identity.service import Identity
from opdesk.patients import service as patients
from opdesk.patients.models import Patient
from opdesk.patients.schemas import PatientCreate, PatientName, PatientUpdate
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.service import today_at_clinic

SHARE_RULE = bridge.SHARE_RULE
ON_SHARE_PATH = "/api/hiecm/patient-share/v3/on-share"
TOKEN_LIFE = timedelta(minutes=30)
ENTITY = "abdm_share_tokens"
# ABDM's gender letters as OPDesk records them (T: transgender; D/U: not disclosed).
GENDERS = {"M": "male", "F": "female", "O": "other", "T": "other", "D": "undisclosed"}


@dataclass(frozen=True)
class Issued:
    token: ShareToken
    patient: Patient
    new_patient: bool


# --------------------------------------------------------------------------- the patient


def _candidates(session: Session, cipher: FieldCipher, p: ShareProfile) -> list[Patient]:
    """Patients who might be this profile: same ABHA number or address, or same mobile."""
    wanted = [Patient.abha_address_hash == patients.abha_address_hash(cipher, p.abha_address)]
    if p.abha_number:
        wanted.append(Patient.abha_hash == patients.abha_hash(cipher, p.abha_number))
    mobile = _mobile(p)
    if mobile:
        wanted.append(Patient.phone_hash == cipher.blind_index(mobile, purpose="phone"))
    return list(session.scalars(select(Patient).where(or_(*wanted))))


def _mobile(p: ShareProfile) -> str | None:
    try:
        return matching.mobile_e164(p.mobile) if p.mobile else None
    except ValueError:
        return None


def candidate_of(cipher: FieldCipher, patient: Patient, today: date) -> matching.Candidate:
    """A patient's plain facts as matching compares them."""
    shown = patients.read(cipher, patient, today)
    year = shown.dob.year if shown.dob else today.year - shown.age_years
    return matching.Candidate(
        patient_id=str(patient.id),
        first_name=shown.name.first,
        last_name=shown.name.last,
        abha_number=(shown.abha_number or "").replace("-", "") or None,
        phone=shown.phone,
        year_of_birth=year,
        gender=shown.gender,
    )


def _same_address(cipher: FieldCipher, patient: Patient, p: ShareProfile) -> bool:
    return patient.abha_address_hash == patients.abha_address_hash(cipher, p.abha_address)


def find_patient(
    session: Session, ctx: RequestContext, cipher: FieldCipher, p: ShareProfile
) -> Patient | None:
    """The clinic's patient this profile is, if exactly one is."""
    found = _candidates(session, cipher, p)
    by_address = [patient for patient in found if _same_address(cipher, patient, p)]
    if len(by_address) == 1:
        return by_address[0]
    today = today_at_clinic(session, ctx)
    best = matching.best_match([candidate_of(cipher, x, today) for x in found], p)
    return next((x for x in found if str(x.id) == best.patient_id), None) if best else None


def _name(full: str) -> PatientName:
    words = full.split()
    if len(words) < 2:
        return PatientName(first=full.strip(), last="")
    return PatientName(first=" ".join(words[:-1]), last=words[-1])


def _registration(
    session: Session, cipher: FieldCipher, p: ShareProfile, today: date
) -> PatientCreate:
    """The profile as a registration; a mobile already someone else's is shared with them
    (the family's phone), as the desk would register a dependent."""
    mobile = _mobile(p)
    if mobile is None:
        raise Permanent("the profile has no usable mobile number; the desk registers them")
    owner = session.scalar(
        select(Patient).where(Patient.phone_hash == cipher.blind_index(mobile, purpose="phone"))
    )
    birth = p.birth_date
    fields: dict[str, object] = {
        "name": _name(p.name),
        "gender": GENDERS.get(p.gender, "undisclosed"),
        "abha_number": p.abha_number,
        "abha_address": p.abha_address,
        "pin_code": p.address.pincode,
    }
    if birth is not None:
        fields["dob"] = birth
    else:
        fields["age_years"] = max(0, today.year - p.year_of_birth)
    if owner is None:
        fields["phone"] = mobile
    else:
        fields["guardian_id"] = owner.id
        fields["guardian_relation"] = "shares this mobile"
    return PatientCreate.model_validate({k: v for k, v in fields.items() if v is not None})


def _complete(
    session: Session, ctx: RequestContext, ident: Identity, patient: Patient, p: ShareProfile
) -> None:
    """Add the ABHA number and address the record lacks (never overwrite the desk's)."""
    shown = patients.read(ident.cipher, patient, today_at_clinic(session, ctx))
    missing: dict[str, str] = {}
    if shown.abha_address is None:
        missing["abha_address"] = p.abha_address
    if shown.abha_number is None and p.abha_number:
        missing["abha_number"] = p.abha_number
    if missing:
        # Another record may hold one of them: then the desk sees both and decides.
        with contextlib.suppress(Conflict):
            patients.update(
                session,
                ctx,
                ident,
                patient_id=patient.id,
                changes=PatientUpdate.model_validate(missing),
            )


# --------------------------------------------------------------------------- the token


def _live_token(
    session: Session, ctx: RequestContext, counter_id: str, address_hash: bytes
) -> ShareToken | None:
    return session.scalar(
        select(ShareToken)
        .where(
            ShareToken.abha_address_hash == address_hash,
            ShareToken.counter_id == counter_id,
            ShareToken.expires_at > ctx.now(),
        )
        .order_by(ShareToken.issued_at.desc())
        .limit(1)
    )


def _next_number(session: Session, tenant_id: uuid.UUID, counter_id: str, day: date) -> int:
    row = insert(ShareCounter).values(
        tenant_id=tenant_id, counter_id=counter_id, day=day, last_number=1
    )
    number = session.scalar(
        row.on_conflict_do_update(
            index_elements=["tenant_id", "counter_id", "day"],
            set_={"last_number": ShareCounter.last_number + 1},
        ).returning(ShareCounter.last_number)
    )
    if number is None:
        raise RuntimeError("the counter's upsert returned no number")
    return int(number)


def issue(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    profile: ShareProfile,
    counter_id: str,
    request_id: uuid.UUID,
) -> Issued:
    """The patient found or registered, and their token at ``counter_id``."""
    assert ctx.tenant_id is not None
    cipher = ident.cipher
    patient = find_patient(session, ctx, cipher, profile)
    new_patient = patient is None
    if patient is None:
        try:
            patient = patients.register(
                session,
                ctx,
                ident,
                data=_registration(session, cipher, profile, today_at_clinic(session, ctx)),
            )
        except Conflict as exc:  # registered by a scan running at the same moment
            raise Busy(str(exc)) from exc
    else:
        _complete(session, ctx, ident, patient, profile)
    # One scan of this person at a time: a rescan racing this one waits, then reuses.
    records.by_id(session, Patient, patient.id, lock=True)
    address_hash = patients.abha_address_hash(cipher, profile.abha_address)
    live = _live_token(session, ctx, counter_id, address_hash)
    if live is not None:
        return Issued(live, patient, new_patient)
    day = today_at_clinic(session, ctx)
    token = ShareToken(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        counter_id=counter_id,
        day=day,
        number=_next_number(session, ctx.tenant_id, counter_id, day),
        patient_id=patient.id,
        abha_address_hash=address_hash,
        request_id=request_id,
        issued_at=ctx.now(),
        expires_at=ctx.now() + TOKEN_LIFE,
    )
    session.add(token)
    session.flush()
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=token.id,
        action="create",
        diff=audit.diff_of(
            {}, {"counter": counter_id, "day": day, "number": token.number, "patient": patient.id}
        ),
    )
    return Issued(token, patient, new_patient)


def tokens_of_day(session: Session, day: date) -> list[tuple[ShareToken, Patient]]:
    """The day's tokens with their patients, the latest first (the desk's list)."""
    rows = session.execute(
        select(ShareToken, Patient)
        .join(Patient, Patient.id == ShareToken.patient_id)
        .where(ShareToken.day == day)
        .order_by(ShareToken.issued_at.desc(), ShareToken.number.desc())
    )
    return [(token, patient) for token, patient in rows]


# --------------------------------------------------------------------------- the rule


@rule(SHARE_RULE)
def answer_share(session: Session, ctx: RequestContext, event: AutomationEvent) -> AfterCommit:
    """Answer one shared profile: the patient found or registered, a token issued, and
    ``on-share`` sent to the gateway after the commit (again, if the worker retries)."""
    assert ctx.tenant_id is not None
    cipher, row, profile = bridge.received(session, event, messages.parse_share_profile)
    clinic = abdm_settings.of(session, cipher, ctx.tenant_id)
    if clinic is None or not clinic.enabled:
        raise Permanent("ABDM is switched off for this clinic: the profile is not answered")
    request_id = str(row.request_id)
    if clinic.counter(profile.context) is None:
        bridge.finished(ctx, row, f"refused: no counter {profile.context!r}")
        refusal = messages.on_share_error(
            request_id=request_id, code="ABDM-1001", message="Unknown counter in the QR code"
        )
        return bridge.answer_later(clinic, ON_SHARE_PATH, refusal)
    ident = Identity.create(settings_of(session), cipher)
    issued = issue(
        session,
        ctx,
        ident,
        profile=profile,
        counter_id=profile.context,
        request_id=row.request_id,
    )
    bridge.finished(ctx, row, f"token {issued.token.number} at {profile.context}")
    left = int((issued.token.expires_at - ctx.now()).total_seconds())
    answer = messages.on_share(
        request_id=request_id,
        abha_address=profile.abha_address,
        context=profile.context,
        token_number=str(issued.token.number),
        expiry_seconds=max(left, 1),
    )
    return bridge.answer_later(clinic, ON_SHARE_PATH, answer)


def waiting_at_counters(session: Session, ctx: RequestContext) -> int | None:
    """How many Scan & Share tokens are still valid now; None when the clinic is not on
    ABDM (the queue page then shows no Scan & Share link at all)."""
    on_abdm = session.scalar(
        select(AbdmSettings.enabled).where(AbdmSettings.tenant_id == ctx.tenant_id)
    )
    if not on_abdm:
        return None
    live = select(func.count()).where(ShareToken.expires_at > ctx.now())
    return session.scalar(live) or 0
