"""What the identity use cases share: configuration, keys, refusals, auth events."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit, metrics, records
from opdesk.config import Settings
from opdesk.context import RequestContext
from opdesk.identity.models import AuthSession, Device, User
from opdesk.identity.sessions import Principal
from opdesk.security.crypto import FieldCipher
from opdesk.security.throttle import Limit
from opdesk.security.tokens import keyed_hash

P = ParamSpec("P")
R = TypeVar("R")

PASSWORD_FAILS_ACCOUNT = Limit("password-account", 5, timedelta(minutes=15))
PASSWORD_FAILS_IP = Limit("password-ip", 30, timedelta(minutes=15))
# A browser that has signed this user in before keeps trying while the account is locked
# for everyone else, against a counter of its own (OWASP "device cookies").
PASSWORD_FAILS_DEVICE = Limit("password-device", 5, timedelta(minutes=15))
MFA_FAILS_SESSION = Limit("mfa-session", 5, timedelta(minutes=15))
OTP_SENDS_PHONE = Limit("otp-phone", 3, timedelta(minutes=15))
OTP_SENDS_PHONE_DAY = Limit("otp-phone", 10, timedelta(days=1))
OTP_SENDS_IP = Limit("otp-ip", 20, timedelta(hours=1))
# A patient's own recognised browser asks for codes against its own counters, so a
# stranger asking for codes to their number cannot lock them out.
OTP_SENDS_DEVICE = Limit("otp-device", 3, timedelta(minutes=15))
OTP_SENDS_DEVICE_DAY = Limit("otp-device", 10, timedelta(days=1))
# SMS pumping: codes sent by one clinic to numbers of one prefix (country code and the
# first digits), and the clinic's daily budget (its size is a setting).
SMS_PREFIX_DIGITS = 7
SMS_SENDS_PREFIX = Limit("sms-prefix", 20, timedelta(hours=1))
SMS_BUDGET_WINDOW = timedelta(days=1)
SMS_BUDGET_NEAR = 0.8  # share of the budget at which admins are warned
OTP_TTL = timedelta(minutes=5)
OTP_MAX_TRIES = 5
PHONE_PROOF_TTL = timedelta(minutes=10)
RECOVERY_CODES = 10
TOTP_ISSUER = "OPDesk"

GENERIC_SIGN_IN_FAILURE = "The clinic code, email or password is not right."
GENERIC_OTP_FAILURE = "That code is wrong or has expired. Ask for a new code if needed."
SMS_BUDGET_SPENT = (
    "The clinic cannot send more sign-in codes today. Please call the clinic, "
    "or try again tomorrow."
)

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
    "password-change-failed",
    "password-link-issued",
    "password-set",
    "sms-budget-near",
    "sms-budget-reached",
)


@dataclass(frozen=True)
class Refusal:
    """A sign-in step that failed; ``status`` is the HTTP status to answer with."""

    status: int
    title: str
    detail: str
    retry_after: timedelta | None = None
    field: str | None = None


def counted_sign_in(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count a sign-in step's outcome for /metrics: a ``Refusal`` by its status, anything
    else as done."""

    def wrap(step: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(step)
        def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            answer = step(*args, **kwargs)
            metrics.count_sign_in(kind, answer.status if isinstance(answer, Refusal) else None)
            return answer

        return counted

    return wrap


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


def auth_event(
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


def whole_minutes(delta: timedelta) -> int:
    return max(1, int((delta.total_seconds() + 59) // 60))


def too_many(delta: timedelta) -> Refusal:
    return Refusal(
        429,
        "Too many attempts",
        f"Too many attempts. Try again in {whole_minutes(delta)} minutes.",
        retry_after=delta,
    )


def user_of(session: Session, principal: Principal, *, lock: bool = False) -> User:
    stmt = select(User).where(User.id == principal.user_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one()


def session_row(session: Session, principal: Principal) -> AuthSession:
    return session.execute(
        select(AuthSession).where(AuthSession.id == principal.session_id).with_for_update()
    ).scalar_one()


def get_user(session: Session, user_id: uuid.UUID, *, lock: bool = False) -> User:
    return records.by_id(session, User, user_id, lock=lock)


def sms_budget_limit(settings: Settings) -> Limit:
    return Limit("sms-clinic", settings.sms_daily_budget, SMS_BUDGET_WINDOW)


def known_device(
    session: Session, ident: Identity, user: User | None, device_token: str | None
) -> Device | None:
    """The browser's device row when it has fully signed ``user`` in before and is not
    revoked; None for a browser never seen, or seen only part-way through sign-in.
    """
    if user is None or not device_token or len(device_token) > 200:
        return None
    fingerprint = keyed_hash(ident.keys.device, device_token)
    signed_in_before = (
        select(AuthSession.id)
        .where(
            AuthSession.tenant_id == Device.tenant_id,
            AuthSession.device_id == Device.id,
            AuthSession.stage == "active",
        )
        .exists()
    )
    return session.execute(
        select(Device).where(
            Device.user_id == user.id,
            Device.fingerprint_hash == fingerprint,
            Device.revoked_at.is_(None),
            signed_in_before,
        )
    ).scalar_one_or_none()


def device_key(ident: Identity, kind: str, device: Device) -> bytes:
    return keyed_hash(ident.keys.throttle, kind, str(device.tenant_id), str(device.id))


def device_stage(user: User, device: Device | None) -> str:
    if user.device_approval_required and not (device and device.approved):
        return "device"
    return "active"
