"""Patient sign-in by a one-time code sent to their mobile."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import NotFound
from opdesk.identity.models import OtpToken, User
from opdesk.identity.service._common import (
    GENERIC_OTP_FAILURE,
    OTP_MAX_TRIES,
    OTP_SENDS_IP,
    OTP_SENDS_PHONE,
    OTP_SENDS_PHONE_DAY,
    OTP_TTL,
    PHONE_PROOF_TTL,
    Identity,
    Refusal,
    SignedIn,
    auth_event,
    too_many,
    whole_minutes,
)
from opdesk.identity.service.signin import open_session
from opdesk.notifications import service as outbox
from opdesk.security import throttle
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
) -> str | Refusal:
    """Send a six-digit code to ``phone``; returns the attempt token the code is bound to.

    The answer is the same whether or not any clinic knows the phone.
    """
    now = ctx.now()
    tenant = tenants.get_by_slug(session, clinic)
    enter_tenant(session, ctx, tenant.id)
    phone_hash = ident.cipher.blind_index(phone, purpose="phone")
    ip_key = keyed_hash(ident.keys.throttle, "otp-ip", ctx.ip or "")
    for limit, key in (
        (OTP_SENDS_IP, ip_key),
        (OTP_SENDS_PHONE, phone_hash),
        (OTP_SENDS_PHONE_DAY, phone_hash),
    ):
        wait = throttle.retry_after(session, limit, key, now)
        if wait is not None:
            return too_many(wait)
    throttle.count(session, OTP_SENDS_IP, ip_key, now)
    throttle.count(session, OTP_SENDS_PHONE, phone_hash, now)
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


@dataclass(frozen=True)
class PhoneProof:
    """A verified phone: a signed, short-lived statement plus the clinics that know it."""

    proof: str
    clinics: list[tuple[str, str]]  # (slug, name)


def verify_otp(
    session: Session, ctx: RequestContext, ident: Identity, *, attempt: str, code: str
) -> PhoneProof | Refusal:
    """Check a code against the attempt that asked for it: 5 tries, 5 minutes, once."""
    now = ctx.now()
    token = session.execute(
        select(OtpToken).where(OtpToken.attempt_hash == token_hash(attempt)).with_for_update()
    ).scalar_one_or_none()
    refused = Refusal(401, "Code not accepted", GENERIC_OTP_FAILURE, field="code")
    if token is None:
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
    auth_event(
        ctx, "otp-verified", tenant_id=token.clinic_id, entity="otp_tokens", entity_id=token.id
    )
    return PhoneProof(
        _sign_proof(ident, token.phone_hash, now), _clinics_for(session, token.phone_hash)
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


def _sign_proof(ident: Identity, phone_hash: bytes, now: datetime) -> str:
    body = json.dumps({"p": phone_hash.hex(), "exp": int((now + PHONE_PROOF_TTL).timestamp())})
    encoded = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    mac = keyed_hash(ident.keys.proof, encoded).hex()
    return f"{encoded}.{mac}"


def _read_proof(ident: Identity, proof: str, now: datetime) -> bytes | None:
    encoded, _, mac = proof.partition(".")
    if not mac or not same(keyed_hash(ident.keys.proof, encoded).hex().encode(), mac.encode()):
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        phone_hash, expires = bytes.fromhex(doc["p"]), int(doc["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    return phone_hash if now.timestamp() < expires else None


def patient_sign_in(
    session: Session, ctx: RequestContext, ident: Identity, *, proof: str, clinic: str
) -> SignedIn | Refusal:
    """Open a session at one of the clinics that know the verified phone."""
    phone_hash = _read_proof(ident, proof, ctx.now())
    if phone_hash is None:
        return Refusal(401, "Sign-in failed", "Your code check has expired. Ask for a new code.")
    tenant = tenants.get_by_slug(session, clinic)
    enter_tenant(session, ctx, tenant.id)
    user = session.execute(
        select(User).where(User.role == "patient", User.phone_hash == phone_hash, User.active)
    ).scalar_one_or_none()
    if user is None:
        raise NotFound(f"{tenant.name} has no patient with this phone number")
    return open_session(session, ctx, ident, tenant, user, "otp", None, None)


def sweep_otp_tokens(session: Session, now: datetime) -> int:
    """Delete codes past expiry (the seed's TTL index); run by ``opdesk sweep``."""
    result = session.execute(text("delete from otp_tokens where expires_at < :now"), {"now": now})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
