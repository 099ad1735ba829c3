"""Request and response bodies for sign-in, accounts, users and devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from opdesk.schemas import ApiModel, Email, MobileE164, ShortText, Slug

Role = Literal["patient", "frontdesk", "doctor", "pharmacy", "accounts", "admin"]
StaffRole = Literal["frontdesk", "doctor", "pharmacy", "accounts", "admin"]
Secret = Annotated[str, Field(min_length=1, max_length=256)]
Code = Annotated[str, Field(min_length=6, max_length=8, pattern=r"^\s*\d{3}\s?\d{3}\s*$")]
Token = Annotated[str, Field(min_length=10, max_length=400)]


class StaffSignIn(ApiModel):
    clinic: Slug
    email: Email
    password: Secret
    device_token: Token | None = None


class SessionOut(ApiModel):
    token: str
    stage: str
    device_token: str | None = None


class MfaVerify(ApiModel):
    code: Code | None = None
    recovery_code: Annotated[str, Field(min_length=8, max_length=40)] | None = None


class MfaEnrolment(ApiModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class MfaConfirm(ApiModel):
    code: Code


class MfaConfirmed(ApiModel):
    recovery_codes: list[str]
    token: str | None = None


class OtpRequest(ApiModel):
    clinic: Slug
    phone: MobileE164
    # The device token a patient's earlier sign-in gave this client, if any.
    device_token: Token | None = None


class OtpAttempt(ApiModel):
    attempt: str
    expires_in_seconds: int


class OtpVerify(ApiModel):
    attempt: Token
    code: Code


class ClinicChoice(ApiModel):
    slug: str
    name: str


class PhoneVerified(ApiModel):
    proof: str
    clinics: list[ClinicChoice]


class PatientSignIn(ApiModel):
    proof: Token
    clinic: Slug
    device_token: Token | None = None


class Me(ApiModel):
    user_id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    role: str
    stage: str


class PasswordChange(ApiModel):
    current: Secret
    new: Secret


class UserCreate(ApiModel):
    name: ShortText
    role: Role
    email: Email | None = None
    password: Secret | None = None
    phone: MobileE164 | None = None
    device_approval_required: bool = False


class UserUpdate(ApiModel):
    name: ShortText | None = None
    role: Role | None = None
    active: bool | None = None
    device_approval_required: bool | None = None


class UserOut(ApiModel):
    id: uuid.UUID
    name: str
    role: str
    email: str | None
    mfa_enabled: bool
    device_approval_required: bool
    active: bool
    created_at: datetime


class DeviceOut(ApiModel):
    id: uuid.UUID
    user_id: uuid.UUID
    label: str | None
    approved: bool
    first_seen_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None


class SignInLogEntry(ApiModel):
    ts: datetime
    event: str
    entity: str
    entity_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    ip: str | None
    user_agent: str | None
    details: dict[str, object]


class ClinicSecurity(ApiModel):
    mfa_required_roles: list[StaffRole]


class FirstAdmin(ApiModel):
    """A new clinic's first admin (``opdesk tenant create``)."""

    name: ShortText
    email: Email
