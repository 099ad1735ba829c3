"""Patient sign-in by a one-time code sent to their mobile."""

from __future__ import annotations

import base64
import json
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import NotFound
from opdesk.identity.models import OtpToken, User
from opdesk.identity.service._common import (
    GENERIC_OTP_FAILURE,
    OTP_MAX_TRIES,
    OTP_SENDS_DEVICE,
    OTP_SENDS_DEVICE_DAY,
    OTP_SENDS_IP,
    OTP_SENDS_PHONE,
    OTP_SENDS_PHONE_DAY,
    OTP_TTL,
    PHONE_PROOF_TTL,
    SMS_BUDGET_NEAR,
    SMS_BUDGET_SPENT,
    SMS_PREFIX_DIGITS,
    SMS_SENDS_PREFIX,
    Identity,
    Refusal,
    SignedIn,
    auth_event,
    counted_sign_in,
    device_key,
    known_device,
    sms_budget_limit,
    too_many,
    whole_minutes,
)
from opdesk.identity.service.password_link import is_password_link
from opdesk.identity.service.signin import open_session
from opdesk.notifications import service as outbox
from opdesk.security import throttle
from opdesk.security.throttle import Limit
from opdesk.security.tokens import keyed_hash, random_token, same, token_hash
from opdesk.tenancy import service as tenants
from opdesk.uow import enter_tenant

# --------------------------------------------------------------------------- patient OTP


def request_otp(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    phone: str,
    clinic: str,
    device_token: str | None = None,
) -> str | Refusal:
    """Send a six-digit code to ``phone``; returns the attempt token the code is bound to.

    The answer is the same whether or not any clinic knows the phone. Limits: per IP
    address; per number (3 in 15 minutes, 10 a day); per number prefix; the clinic's
    daily SMS budget. A browser the patient has signed in with before is judged by
    counters of its own instead of the number's, prefix and budget, so strangers asking
    for codes to a patient's number never lock that patient out.
    """
    now = ctx.now()
    tenant = tenants.get_by_slug(session, clinic)
    enter_tenant(session, ctx, tenant.id)
    phone_hash = ident.cipher.blind_index(phone, purpose="phone")
    ip_key = keyed_hash(ident.keys.throttle, "otp-ip", ctx.ip or "")
    device = known_device(session, ident, _patient_with(session, phone_hash), device_token)
    budget = sms_budget_limit(ident.settings)
    budget_key = tenant.id.bytes
    counted: list[tuple[Limit, bytes]]
    if device is not None:
        own = device_key(ident, "otp", device)
        counted = [(OTP_SENDS_IP, ip_key), (OTP_SENDS_DEVICE, own)]
        checks = [*counted, (OTP_SENDS_DEVICE_DAY, own)]
    else:
        prefix_key = keyed_hash(ident.keys.throttle, "sms-prefix", str(tenant.id), _prefix(phone))
        counted = [
            (OTP_SENDS_IP, ip_key),
            (OTP_SENDS_PHONE, phone_hash),
            (SMS_SENDS_PREFIX, prefix_key),
        ]
        checks = [*counted, (OTP_SENDS_PHONE_DAY, phone_hash)]
        spent = throttle.retry_after(session, budget, budget_key, now)
        if spent is not None:
            return Refusal(429, "Too many attempts", SMS_BUDGET_SPENT, retry_after=spent)
    for limit, key in checks:
        wait = throttle.retry_after(session, limit, key, now)
        if wait is not None:
            return too_many(wait)
    for limit, key in counted:
        throttle.count(session, limit, key, now)
    _spend_from_budget(session, ctx, tenant.id, budget, budget_key, now)
    attempt = random_token()
    code = f"{secrets.randbelow(1_000_000):06d}"
    token = OtpToken(
        id=new_id(),
        phone_hash=phone_hash,
        attempt_hash=token_hash(attempt),
        otp_hash=keyed_hash(ident.keys.otp, token_hash(attempt), code),
        expires_at=now + OTP_TTL,
        created_at=now,
        clinic_id=tenant.id,
    )
    session.add(token)
    session.flush()
    outbox.enqueue(
        session,
        ctx,
        ident.cipher,
        channel="sms",
        template="otp",
        recipient=phone,
        payload={"code": code, "clinic": tenant.name, "minutes": whole_minutes(OTP_TTL)},
    )
    auth_event(ctx, "otp-requested", tenant_id=tenant.id, entity="otp_tokens", entity_id=token.id)
    return attempt


def _patient_with(session: Session, phone_hash: bytes) -> User | None:
    return session.execute(
        select(User).where(User.role == "patient", User.phone_hash == phone_hash, User.active)
    ).scalar_one_or_none()


def _prefix(phone: str) -> str:
    """The country code and first digits of an E.164 number: one operator's block."""
    return "".join(c for c in phone if c.isdigit())[:SMS_PREFIX_DIGITS]


def _spend_from_budget(
    session: Session,
    ctx: RequestContext,
    tenant_id: uuid.UUID,
    budget: Limit,
    key: bytes,
    now: datetime,
) -> None:
    """Count one SMS against the clinic's budget; tell the admins when it runs low."""
    throttle.lock_key(session, budget.kind, key)
    throttle.count(session, budget, key, now)
    used = len(throttle.recent(session, budget, key, now))
    near = max(1, math.ceil(budget.count * SMS_BUDGET_NEAR))
    if used in (near, budget.count):
        event = "sms-budget-reached" if used >= budget.count else "sms-budget-near"
        auth_event(
            ctx,
            event,
            tenant_id=tenant_id,
            entity="tenants",
            entity_id=tenant_id,
            used=used,
            budget=budget.count,
        )


def sms_budget_used(
    session: Session, ident: Identity, tenant_id: uuid.UUID, now: datetime
) -> tuple[int, int]:
    """Sign-in codes this clinic sent in the last 24 hours, and its budget."""
    budget = sms_budget_limit(ident.settings)
    return len(throttle.recent(session, budget, tenant_id.bytes, now)), budget.count


@dataclass(frozen=True)
class PhoneProof:
    """A verified phone: a signed, short-lived statement plus the clinics that know it."""

    proof: str
    clinics: list[tuple[str, str]]  # (slug, name)


@counted_sign_in("otp")
def verify_otp(
    session: Session, ctx: RequestContext, ident: Identity, *, attempt: str, code: str
) -> PhoneProof | Refusal:
    """Check a code against the attempt that asked for it: 5 tries, 5 minutes, once."""
    now = ctx.now()
    token = session.execute(
        select(OtpToken).where(OtpToken.attempt_hash == token_hash(attempt)).with_for_update()
    ).scalar_one_or_none()
    refused = Refusal(401, "Code not accepted", GENERIC_OTP_FAILURE, field="code")
    if token is None or is_password_link(token):
        return refused
    enter_tenant(session, ctx, token.clinic_id)
    usable = token.consumed_at is None and now < token.expires_at and token.attempts < OTP_MAX_TRIES
    expected = keyed_hash(ident.keys.otp, token.attempt_hash, code.strip())
    if not usable or not same(expected, token.otp_hash):
        if usable:
            token.attempts += 1
        auth_event(
            ctx,
            "otp-failed",
            tenant_id=token.clinic_id,
            entity="otp_tokens",
            entity_id=token.id,
            attempts=token.attempts,
        )
        return refused
    token.consumed_at = now
    # The row now stands for the phone proof: kept as long as the proof lasts, deleted
    # when the proof is used (once).
    token.expires_at = now + PHONE_PROOF_TTL
    auth_event(
        ctx, "otp-verified", tenant_id=token.clinic_id, entity="otp_tokens", entity_id=token.id
    )
    return PhoneProof(
        _sign_proof(ident, token.phone_hash, token.id, now),
        _clinics_for(session, token.phone_hash),
    )


def _clinics_for(session: Session, phone_hash: bytes) -> list[tuple[str, str]]:
    rows = session.execute(
        text(
            "select t.slug, t.name from opdesk_clinics_for_phone(:p) c "
            "join tenants t on t.id = c.tenant_id order by t.name"
        ),
        {"p": phone_hash},
    ).all()
    return [(slug, name) for slug, name in rows]


def _sign_proof(ident: Identity, phone_hash: bytes, token_id: uuid.UUID, now: datetime) -> str:
    body = json.dumps(
        {
            "p": phone_hash.hex(),
            "t": token_id.hex,
            "exp": int((now + PHONE_PROOF_TTL).timestamp()),
        }
    )
    encoded = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    mac = keyed_hash(ident.keys.proof, encoded).hex()
    return f"{encoded}.{mac}"


def _read_proof(ident: Identity, proof: str, now: datetime) -> tuple[bytes, uuid.UUID] | None:
    encoded, _, mac = proof.partition(".")
    if not mac or not same(keyed_hash(ident.keys.proof, encoded).hex().encode(), mac.encode()):
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        phone_hash, token_id = bytes.fromhex(doc["p"]), uuid.UUID(hex=doc["t"])
        expires = int(doc["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    return (phone_hash, token_id) if now.timestamp() < expires else None


@dataclass(frozen=True)
class ProvenPhone:
    """What an unused phone proof stands for: the phone's blind index and the clinic
    that sent the code.
    """

    phone_hash: bytes
    clinic_id: uuid.UUID


def proven_phone(
    session: Session, ident: Identity, *, proof: str, now: datetime
) -> ProvenPhone | None:
    """Read a phone proof without using it (a new patient's record is made from it
    before the same proof opens their session); None when forged, expired or used.
    """
    read = _read_proof(ident, proof, now)
    if read is None:
        return None
    phone_hash, token_id = read
    clinic_id = session.execute(
        select(OtpToken.clinic_id).where(
            OtpToken.id == token_id,
            OtpToken.phone_hash == phone_hash,
            OtpToken.consumed_at.is_not(None),
        )
    ).scalar_one_or_none()
    return ProvenPhone(phone_hash, clinic_id) if clinic_id is not None else None


def _use_proof(session: Session, phone_hash: bytes, token_id: uuid.UUID) -> bool:
    """Spend the proof: delete the verified code it stands for. Of two concurrent uses
    the second waits on the row and then finds it gone.
    """
    used = session.execute(
        delete(OtpToken)
        .where(
            OtpToken.id == token_id,
            OtpToken.phone_hash == phone_hash,
            OtpToken.consumed_at.is_not(None),
        )
        .returning(OtpToken.id)
    ).scalar_one_or_none()
    return used is not None


def patient_sign_in(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    proof: str,
    clinic: str,
    device_token: str | None = None,
) -> SignedIn | Refusal:
    """Open a session at one of the clinics that know the verified phone (once)."""
    read = _read_proof(ident, proof, ctx.now())
    if read is None:
        return Refusal(401, "Sign-in failed", "Your code check has expired. Ask for a new code.")
    phone_hash, token_id = read
    tenant = tenants.get_by_slug(session, clinic)
    enter_tenant(session, ctx, tenant.id)
    user = _patient_with(session, phone_hash)
    if user is None:
        raise NotFound(f"{tenant.name} has no patient with this phone number")
    if not _use_proof(session, phone_hash, token_id):
        return Refusal(
            401, "Sign-in failed", "This code check has been used already. Ask for a new code."
        )
    return open_session(session, ctx, ident, tenant, user, "otp", device_token, ctx.user_agent)


def sweep_otp_tokens(session: Session, now: datetime) -> int:
    """Delete codes past expiry (the seed's TTL index); run by ``opdesk sweep``."""
    result = session.execute(text("delete from otp_tokens where expires_at < :now"), {"now": now})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
