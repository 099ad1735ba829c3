"""Sign-in (staff password + TOTP, patient phone OTP), devices, users.

Refusals that must leave a trace (failed password, wrong OTP, lockout) are *returned*
as :class:`Refusal`, not raised: raising would roll back the very counter and audit
event that make the next attempt slower. Routes turn them into responses while the
transaction still commits.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
import segno
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.config import Settings
from opdesk.context import RequestContext
from opdesk.db import bind_tenant, new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound
from opdesk.identity.models import STAFF_ROLES, AuthSession, Device, OtpToken, User
from opdesk.notifications import service as outbox
from opdesk.security import sessions, throttle
from opdesk.security.crypto import FieldCipher
from opdesk.security.passwords import hash_password, password_problem, verify_password
from opdesk.security.sessions import Principal
from opdesk.security.throttle import Limit
from opdesk.security.tokens import keyed_hash, random_token, same, token_hash
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant

PASSWORD_FAILS_ACCOUNT = Limit("password-account", 5, timedelta(minutes=15))
PASSWORD_FAILS_IP = Limit("password-ip", 30, timedelta(minutes=15))
MFA_FAILS_SESSION = Limit("mfa-session", 5, timedelta(minutes=15))
OTP_SENDS_PHONE = Limit("otp-phone", 3, timedelta(minutes=15))
OTP_SENDS_PHONE_DAY = Limit("otp-phone", 10, timedelta(days=1))
OTP_SENDS_IP = Limit("otp-ip", 20, timedelta(hours=1))
OTP_TTL = timedelta(minutes=5)
OTP_MAX_TRIES = 5
PHONE_PROOF_TTL = timedelta(minutes=10)
RECOVERY_CODES = 10
TOTP_ISSUER = "OPDesk"

GENERIC_SIGN_IN_FAILURE = "The clinic code, email or password is not right."
GENERIC_OTP_FAILURE = "That code is wrong or has expired. Ask for a new code if needed."

AUTH_EVENTS = (
    "sign-in-succeeded",
    "sign-in-failed",
    "otp-requested",
    "otp-verified",
    "otp-failed",
    "mfa-enrolled",
    "mfa-verified",
    "mfa-failed",
    "mfa-reset",
    "device-approved",
    "device-revoked",
    "session-ended",
    "password-changed",
)


@dataclass(frozen=True)
class Refusal:
    """A sign-in step that failed; ``status`` is the HTTP status to answer with."""

    status: int
    title: str
    detail: str
    retry_after: timedelta | None = None
    field: str | None = None


@dataclass(frozen=True)
class SignedIn:
    token: str
    stage: str
    user: User
    session_id: uuid.UUID
    device_token: str | None = None


@dataclass(frozen=True)
class Keys:
    """Secrets this module needs, derived from the keyring (each for one purpose)."""

    throttle: bytes
    otp: bytes
    proof: bytes
    device: bytes

    @classmethod
    def from_cipher(cls, cipher: FieldCipher) -> Keys:
        ring = cipher.keyring
        return cls(
            throttle=ring.derived_key("opdesk throttle v1"),
            otp=ring.derived_key("opdesk otp v1"),
            proof=ring.derived_key("opdesk phone proof v1"),
            device=ring.derived_key("opdesk device v1"),
        )


@dataclass(frozen=True)
class Identity:
    """What the identity use cases need from the running app."""

    settings: Settings
    cipher: FieldCipher
    keys: Keys

    @classmethod
    def create(cls, settings: Settings, cipher: FieldCipher) -> Identity:
        return cls(settings, cipher, Keys.from_cipher(cipher))

    @property
    def fast(self) -> bool:
        return self.settings.fast_password_hashing

    def idle(self, role: str) -> timedelta:
        minutes = (
            self.settings.patient_idle_minutes
            if role == "patient"
            else self.settings.staff_idle_minutes
        )
        return timedelta(minutes=minutes)

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.session_hours)


# --------------------------------------------------------------------------- audit helper


def _auth_event(
    ctx: RequestContext,
    event: str,
    *,
    tenant_id: uuid.UUID,
    entity: str,
    entity_id: uuid.UUID | None,
    **details: Any,
) -> None:
    audit.record(
        ctx,
        entity=entity,
        entity_id=entity_id,
        action="state-transition",
        to_state=event,
        diff={"added": details, "updated": {}, "removed": {}},
        tenant_id=tenant_id,
    )


def _minutes(delta: timedelta) -> int:
    return max(1, int((delta.total_seconds() + 59) // 60))


def _too_many(delta: timedelta) -> Refusal:
    return Refusal(
        429,
        "Too many attempts",
        f"Too many attempts. Try again in {_minutes(delta)} minutes.",
        retry_after=delta,
    )


# --------------------------------------------------------------------------- staff sign-in


def staff_sign_in(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    clinic: str,
    email: str,
    password: str,
    device_token: str | None,
    device_label: str | None,
) -> SignedIn | Refusal:
    """Email + password at one clinic, then (if needed) MFA and device approval.

    Every failure answers the same words, whether the clinic, the email or the password
    was wrong; lockouts count per account and per IP address.
    """
    now = ctx.now()
    ip_key = keyed_hash(ident.keys.throttle, "ip", ctx.ip or "")
    tenant = tenants.find_by_slug(session, clinic)
    account_key = keyed_hash(
        ident.keys.throttle, "account", str(tenant.id if tenant else clinic), email
    )
    for limit, key in ((PASSWORD_FAILS_IP, ip_key), (PASSWORD_FAILS_ACCOUNT, account_key)):
        wait = throttle.retry_after(session, limit, key, now)
        if wait is not None:
            if tenant is not None:
                _note_failure(session, ctx, tenant, email, None, "locked-out")
            return _too_many(wait)
    user = _staff_user(session, ctx, tenant, email) if tenant else None
    good = verify_password(password, user.password_hash if user else None, fast=ident.fast)
    if tenant is None or user is None or not user.active or not good:
        throttle.count(session, PASSWORD_FAILS_IP, ip_key, now)
        throttle.count(session, PASSWORD_FAILS_ACCOUNT, account_key, now)
        if tenant is not None:
            reason = "inactive" if user is not None and good else "bad-credentials"
            _note_failure(session, ctx, tenant, email, user, reason)
        return Refusal(401, "Sign-in failed", GENERIC_SIGN_IN_FAILURE)
    throttle.forget(session, PASSWORD_FAILS_ACCOUNT, account_key)
    return _open_session(session, ctx, ident, tenant, user, "password", device_token, device_label)


def _staff_user(session: Session, ctx: RequestContext, tenant: Tenant, email: str) -> User | None:
    ctx.tenant_id = tenant.id
    bind_tenant(session, tenant.id)
    return session.execute(
        select(User).where(User.email == email, User.role != "patient")
    ).scalar_one_or_none()


def _note_failure(
    session: Session,
    ctx: RequestContext,
    tenant: Tenant,
    email: str,
    user: User | None,
    reason: str,
) -> None:
    ctx.tenant_id = tenant.id
    bind_tenant(session, tenant.id)
    _auth_event(
        ctx,
        "sign-in-failed",
        tenant_id=tenant.id,
        entity="users",
        entity_id=user.id if user else None,
        email=email[:120],
        reason=reason,
    )


def _open_session(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    tenant: Tenant,
    user: User,
    method: str,
    device_token: str | None,
    device_label: str | None,
) -> SignedIn:
    device, new_device_token = _device_for(session, ctx, ident, user, device_token, device_label)
    stage = _first_stage(tenant, user, device)
    row, token = sessions.start(
        session,
        ctx,
        user=user,
        stage=stage,
        method=method,
        device_id=device.id if device else None,
        idle=ident.idle(user.role),
        lifetime=ident.lifetime,
    )
    ctx.actor_id, ctx.role = user.id, user.role
    _auth_event(
        ctx,
        "sign-in-succeeded",
        tenant_id=tenant.id,
        entity="sessions",
        entity_id=row.id,
        userId=str(user.id),
        method=method,
        stage=stage,
    )
    return SignedIn(token, stage, user, row.id, new_device_token)


def _first_stage(tenant: Tenant, user: User, device: Device | None) -> str:
    if user.mfa_enabled:
        return "mfa"
    if user.role in (tenant.mfa_required_roles or []):
        return "mfa-enrol"
    return _device_stage(user, device)


def _device_stage(user: User, device: Device | None) -> str:
    if user.device_approval_required and not (device and device.approved):
        return "device"
    return "active"


def _device_for(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    user: User,
    device_token: str | None,
    label: str | None,
) -> tuple[Device | None, str | None]:
    """The browser's device row (created on first sight); a new token if it had none."""
    if user.role == "patient":
        return None, None
    fresh = None
    if not device_token or len(device_token) > 200:
        device_token = fresh = random_token()
    fingerprint = keyed_hash(ident.keys.device, device_token)
    device = session.execute(
        select(Device).where(Device.user_id == user.id, Device.fingerprint_hash == fingerprint)
    ).scalar_one_or_none()
    now = ctx.now()
    if device is not None and device.revoked_at is not None:
        # A revoked device starts over as a new, unapproved one.
        device_token = fresh = random_token()
        fingerprint = keyed_hash(ident.keys.device, device_token)
        device = None
    if device is None:
        device = Device(
            tenant_id=user.tenant_id,
            id=new_id(),
            user_id=user.id,
            fingerprint_hash=fingerprint,
            label=browser_label(label),
            approved=not user.device_approval_required,
            first_seen_at=now,
            last_seen_at=now,
        )
        session.add(device)
    else:
        device.last_seen_at = now
    session.flush()
    return device, fresh


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS", "Mac"),
    ("Linux", "Linux"),
)


def browser_label(user_agent: str | None) -> str | None:
    """``Chrome on Android`` from a user-agent string: what an admin needs to recognise it."""
    if not user_agent:
        return None
    browser = next((name for key, name in _BROWSERS if key in user_agent), "Browser")
    system = next((name for key, name in _SYSTEMS if key in user_agent), None)
    return f"{browser} on {system}" if system else browser


# --------------------------------------------------------------------------- MFA


def _user_of(session: Session, principal: Principal, *, lock: bool = False) -> User:
    stmt = select(User).where(User.id == principal.user_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one()


def _session_row(session: Session, principal: Principal) -> AuthSession:
    return session.execute(
        select(AuthSession).where(AuthSession.id == principal.session_id).with_for_update()
    ).scalar_one()


def _totp(ident: Identity, user: User) -> pyotp.TOTP:
    assert user.mfa_secret is not None
    secret = ident.cipher.decrypt_str(
        user.mfa_secret,
        tenant_id=user.tenant_id,
        table="users",
        column="mfa_secret",
        row_id=user.id,
    )
    return pyotp.TOTP(secret)


def _accept_totp(ident: Identity, user: User, code: str, now: datetime) -> bool:
    """A code for the current 30-second step (±1 for clock drift), never one used before."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isdigit()) or user.mfa_secret is None:
        return False
    totp = _totp(ident, user)
    step_now = int(now.timestamp()) // totp.interval
    for step in (step_now - 1, step_now, step_now + 1):
        if same(totp.at(step * totp.interval).encode(), code.encode()):
            if user.mfa_last_step is not None and step <= user.mfa_last_step:
                return False
            user.mfa_last_step = step
            return True
    return False


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def begin_mfa_enrolment(
    session: Session, ctx: RequestContext, ident: Identity, principal: Principal
) -> Enrolment:
    """A new TOTP secret for the user (not yet active until a code confirms it)."""
    user = _user_of(session, principal, lock=True)
    if user.mfa_enabled:
        raise Conflict("two-step sign-in is already on; an admin can reset it")
    secret = pyotp.random_base32()
    user.mfa_secret = ident.cipher.encrypt(
        secret, tenant_id=user.tenant_id, table="users", column="mfa_secret", row_id=user.id
    )
    user.mfa_last_step = None
    session.flush()
    label = user.email or user.name
    uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=TOTP_ISSUER)
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#1b2b34")
    return Enrolment(secret, uri, svg)


def confirm_mfa_enrolment(
    session: Session, ctx: RequestContext, ident: Identity, principal: Principal, code: str
) -> tuple[list[str], str | None] | Refusal:
    """Turn MFA on with a first good code; returns the recovery codes (shown once)."""
    user = _user_of(session, principal, lock=True)
    if user.mfa_enabled:
        raise Conflict("two-step sign-in is already on")
    if user.mfa_secret is None:
        raise Conflict("start the set-up first")
    if not _accept_totp(ident, user, code, ctx.now()):
        return Refusal(
            422, "Invalid input", "That code is not right; try the newest one.", field="code"
        )
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    user.mfa_enabled = True
    user.mfa_recovery_hashes = [_recovery_hash(ident, user, c) for c in codes]
    user.updated_at = ctx.now()
    _auth_event(ctx, "mfa-enrolled", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    sessions.end_all(session, ctx, user_id=user.id, reason="mfa-changed", keep=principal.session_id)
    new_token = _advance(session, ctx, principal, user)
    return codes, new_token


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:16]}"


def _recovery_hash(ident: Identity, user: User, code: str) -> str:
    normalized = code.strip().lower().replace(" ", "")
    return keyed_hash(ident.keys.otp, "recovery", str(user.id), normalized).hex()


def verify_mfa(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    principal: Principal,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
) -> str | Refusal:
    """Second step of sign-in: a TOTP code or one recovery code. Returns the new token."""
    now = ctx.now()
    if principal.stage != "mfa":
        raise Conflict(f"this session is at step {principal.stage!r}, not two-step sign-in")
    key = principal.session_id.bytes
    wait = throttle.retry_after(session, MFA_FAILS_SESSION, key, now)
    if wait is not None:
        sessions.end(session, ctx, _session_row(session, principal), "mfa-locked")
        return _too_many(wait)
    user = _user_of(session, principal, lock=True)
    if recovery_code:
        good = _use_recovery_code(ident, user, recovery_code)
    else:
        good = _accept_totp(ident, user, code or "", now)
    if not good:
        throttle.count(session, MFA_FAILS_SESSION, key, now)
        _auth_event(ctx, "mfa-failed", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
        return Refusal(401, "Sign-in failed", "That code is not right.", field="code")
    _auth_event(
        ctx,
        "mfa-verified",
        tenant_id=user.tenant_id,
        entity="users",
        entity_id=user.id,
        method="recovery-code" if recovery_code else "totp",
    )
    token = _advance(session, ctx, principal, user)
    assert token is not None
    return token


def _use_recovery_code(ident: Identity, user: User, code: str) -> bool:
    wanted = _recovery_hash(ident, user, code)
    remaining = list(user.mfa_recovery_hashes or [])
    for stored in remaining:
        if same(bytes.fromhex(stored), bytes.fromhex(wanted)):
            remaining.remove(stored)
            user.mfa_recovery_hashes = remaining
            return True
    return False


def _advance(session: Session, ctx: RequestContext, principal: Principal, user: User) -> str | None:
    """Move a half-signed-in session to its next step; a new token when it changes."""
    if principal.stage not in ("mfa", "mfa-enrol"):
        return None
    row = _session_row(session, principal)
    device = session.get(Device, (row.tenant_id, row.device_id)) if row.device_id else None
    row.stage = _device_stage(user, device)
    session.flush()
    return sessions.rotate(session, row)


def stage_of(session: Session, principal: Principal) -> str:
    return str(
        session.execute(
            select(AuthSession.stage).where(AuthSession.id == principal.session_id)
        ).scalar_one()
    )


def may_enrol(principal: Principal) -> Principal:
    """MFA set-up is for signed-in users and for those whose clinic now requires it."""
    if principal.stage not in ("active", "mfa-enrol"):
        raise Conflict(f"finish signing in first (at step {principal.stage!r})")
    return principal


def reset_mfa(session: Session, ctx: RequestContext, *, user_id: uuid.UUID) -> User:
    """Admin: turn MFA off for a user who lost their phone; ends their sessions."""
    user = get_user(session, user_id, lock=True)
    user.mfa_enabled = False
    user.mfa_secret = None
    user.mfa_last_step = None
    user.mfa_recovery_hashes = []
    user.updated_at = ctx.now()
    session.flush()
    _auth_event(ctx, "mfa-reset", tenant_id=user.tenant_id, entity="users", entity_id=user.id)
    sessions.end_all(session, ctx, user_id=user.id, reason="mfa-reset")
    return user


# --------------------------------------------------------------------------- sign-out, password


def sign_out(session: Session, ctx: RequestContext, principal: Principal) -> None:
    sessions.end(session, ctx, _session_row(session, principal), "signed-out")


def change_password(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    principal: Principal,
    *,
    current: str,
    new: str,
) -> Refusal | None:
    user = _user_of(session, principal, lock=True)
    if not verify_password(current, user.password_hash, fast=ident.fast):
        return Refusal(
            422, "Invalid input", "current: that is not your current password", field="current"
        )
    problem = password_problem(new)
    if problem:
        raise InvalidInput([FieldError("new", problem)])
    user.password_hash = hash_password(new, fast=ident.fast)
    user.updated_at = ctx.now()
    _auth_event(
        ctx, "password-changed", tenant_id=user.tenant_id, entity="users", entity_id=user.id
    )
    sessions.end_all(
        session, ctx, user_id=user.id, reason="password-changed", keep=principal.session_id
    )
    return None


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
    ctx.tenant_id = tenant.id
    bind_tenant(session, tenant.id)
    phone_hash = ident.cipher.blind_index(phone, purpose="phone")
    ip_key = keyed_hash(ident.keys.throttle, "otp-ip", ctx.ip or "")
    for limit, key in (
        (OTP_SENDS_IP, ip_key),
        (OTP_SENDS_PHONE, phone_hash),
        (OTP_SENDS_PHONE_DAY, phone_hash),
    ):
        wait = throttle.retry_after(session, limit, key, now)
        if wait is not None:
            return _too_many(wait)
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
        payload={"code": code, "clinic": tenant.name, "minutes": _minutes(OTP_TTL)},
    )
    _auth_event(ctx, "otp-requested", tenant_id=tenant.id, entity="otp_tokens", entity_id=token.id)
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
    ctx.tenant_id = token.clinic_id
    bind_tenant(session, token.clinic_id)
    usable = token.consumed_at is None and now < token.expires_at and token.attempts < OTP_MAX_TRIES
    expected = keyed_hash(ident.keys.otp, token.attempt_hash, code.strip())
    if not usable or not same(expected, token.otp_hash):
        if usable:
            token.attempts += 1
        _auth_event(
            ctx,
            "otp-failed",
            tenant_id=token.clinic_id,
            entity="otp_tokens",
            entity_id=token.id,
            attempts=token.attempts,
        )
        return refused
    token.consumed_at = now
    _auth_event(
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
    ctx.tenant_id = tenant.id
    bind_tenant(session, tenant.id)
    user = session.execute(
        select(User).where(User.role == "patient", User.phone_hash == phone_hash, User.active)
    ).scalar_one_or_none()
    if user is None:
        raise NotFound(f"{tenant.name} has no patient with this phone number")
    return _open_session(session, ctx, ident, tenant, user, "otp", None, None)


def sweep_otp_tokens(session: Session, now: datetime) -> int:
    """Delete codes past expiry (the seed's TTL index); run by ``opdesk sweep``."""
    result = session.execute(text("delete from otp_tokens where expires_at < :now"), {"now": now})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- users (admin)


def get_user(session: Session, user_id: uuid.UUID, *, lock: bool = False) -> User:
    stmt = select(User).where(User.id == user_id)
    if lock:
        stmt = stmt.with_for_update()
    user = session.execute(stmt).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def create_user(
    session: Session,
    ctx: RequestContext,
    ident: Identity,
    *,
    name: str,
    role: str,
    email: str | None = None,
    password: str | None = None,
    phone: str | None = None,
    device_approval_required: bool = False,
) -> User:
    """A staff member (email + password) or a patient login (phone)."""
    assert ctx.tenant_id is not None
    errors = []
    if role in STAFF_ROLES:
        if not email:
            errors.append(FieldError("email", "staff need an email address to sign in"))
        if not password:
            errors.append(FieldError("password", "staff need a first password"))
        elif problem := password_problem(password):
            errors.append(FieldError("password", problem))
    elif not phone:
        errors.append(FieldError("phone", "patients sign in with their mobile number"))
    if errors:
        raise InvalidInput(errors)
    now = ctx.now()
    user = User(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        role=role,
        email=email,
        password_hash=hash_password(password, fast=ident.fast) if password else None,
        name=name,
        device_approval_required=device_approval_required,
        created_at=now,
        updated_at=now,
        mfa_enabled=False,
        active=True,
        mfa_recovery_hashes=[],
    )
    if phone:
        user.phone_hash = ident.cipher.blind_index(phone, purpose="phone")
        user.phone_encrypted = ident.cipher.encrypt(
            phone, tenant_id=ctx.tenant_id, table="users", column="phone_encrypted", row_id=user.id
        )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise Conflict(_duplicate_message(email, phone)) from exc
    audit.record(
        ctx,
        entity="users",
        entity_id=user.id,
        action="create",
        diff=audit.diff_of({}, user.snapshot(), redact={"phoneEncrypted"}),
    )
    return user


def _duplicate_message(email: str | None, phone: str | None) -> str:
    if email:
        return f"a user with the email {email} already exists in this clinic"
    return "a patient login with this phone number already exists in this clinic"


def update_user(
    session: Session,
    ctx: RequestContext,
    *,
    user_id: uuid.UUID,
    name: str | None = None,
    role: str | None = None,
    active: bool | None = None,
    device_approval_required: bool | None = None,
) -> User:
    """Admin changes; deactivating ends the user's sessions at once."""
    user = get_user(session, user_id, lock=True)
    if user_id == ctx.actor_id and (active is False or (role and role != user.role)):
        raise Conflict("admins cannot deactivate themselves or change their own role")
    if role is not None and (role == "patient") != (user.role == "patient"):
        raise Conflict("a staff login cannot become a patient login or the other way round")
    before = user.snapshot()
    for field, value in (
        ("name", name),
        ("role", role),
        ("active", active),
        ("device_approval_required", device_approval_required),
    ):
        if value is not None:
            setattr(user, field, value)
    after = user.snapshot()
    if after == before:
        return user
    user.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="users",
        entity_id=user.id,
        action="update",
        diff=audit.diff_of(before, after, redact={"phoneEncrypted"}),
    )
    if active is False:
        sessions.end_all(session, ctx, user_id=user.id, reason="user-deactivated")
    return user


# --------------------------------------------------------------------------- devices (admin)


def get_device(session: Session, device_id: uuid.UUID, *, lock: bool = False) -> Device:
    stmt = select(Device).where(Device.id == device_id)
    if lock:
        stmt = stmt.with_for_update()
    device = session.execute(stmt).scalar_one_or_none()
    if device is None:
        raise NotFound(f"no device with id {device_id}")
    return device


def approve_device(session: Session, ctx: RequestContext, *, device_id: uuid.UUID) -> Device:
    device = get_device(session, device_id, lock=True)
    if device.revoked_at is not None:
        raise Conflict("a revoked device cannot be approved; the user signs in again instead")
    if device.approved:
        return device
    device.approved = True
    device.approved_at = ctx.now()
    device.approved_by = ctx.actor_id
    session.flush()
    _auth_event(
        ctx, "device-approved", tenant_id=device.tenant_id, entity="devices", entity_id=device.id
    )
    return device


def revoke_device(session: Session, ctx: RequestContext, *, device_id: uuid.UUID) -> Device:
    device = get_device(session, device_id, lock=True)
    if device.revoked_at is not None:
        raise Conflict("this device is already revoked")
    device.revoked_at = ctx.now()
    device.approved = False
    session.flush()
    _auth_event(
        ctx, "device-revoked", tenant_id=device.tenant_id, entity="devices", entity_id=device.id
    )
    sessions.end_all(session, ctx, device_id=device.id, reason="device-revoked")
    return device


# --------------------------------------------------------------------------- clinic security


def set_mfa_required_roles(session: Session, ctx: RequestContext, *, roles: list[str]) -> Tenant:
    assert ctx.tenant_id is not None
    unknown = sorted(set(roles) - set(STAFF_ROLES))
    if unknown:
        raise InvalidInput([FieldError("roles", f"not staff roles: {', '.join(unknown)}")])
    tenant = tenants.get_tenant(session, ctx.tenant_id)
    before = tenant.snapshot()
    tenant.mfa_required_roles = sorted(set(roles))
    tenant.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="tenants",
        entity_id=tenant.id,
        action="update",
        diff=audit.diff_of(before, tenant.snapshot()),
    )
    return tenant
