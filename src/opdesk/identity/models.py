"""``users``, ``devices``, ``otp_tokens`` (seed) plus ``sessions`` and ``auth_throttle``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped, encrypted_column, new_id

ROLES = ("patient", "frontdesk", "doctor", "pharmacy", "accounts", "admin")
STAFF_ROLES = tuple(r for r in ROLES if r != "patient")
SESSION_STAGES = ("mfa", "mfa-enrol", "device", "active")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class User(TenantScoped, Base):
    __tablename__ = "users"

    role: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(Text)
    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_encrypted: Mapped[bytes | None] = encrypted_column()
    name: Mapped[str] = mapped_column(Text)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    mfa_secret: Mapped[bytes | None] = encrypted_column()
    # The last TOTP time-step accepted: a code is never accepted twice.
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    mfa_recovery_hashes: Mapped[list[str]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    device_approval_required: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role_known"),
        CheckConstraint("email IS NULL OR email = lower(email)", name="email_lower"),
        CheckConstraint("role = 'patient' OR email IS NOT NULL", name="staff_have_email"),
        CheckConstraint("role <> 'patient' OR phone_hash IS NOT NULL", name="patients_have_phone"),
        Index(None, "tenant_id", "role"),
        Index("uq_users_tenant_id_email", "tenant_id", "email", unique=True),
        # One patient sign-in per phone and clinic (a family sharing a phone shares it).
        Index(
            "uq_users_tenant_id_phone_hash_patient",
            "tenant_id",
            "phone_hash",
            unique=True,
            postgresql_where=text("role = 'patient'"),
        ),
        Index(None, "tenant_id", "phone_hash"),
    )

    def snapshot(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "email": self.email,
            "name": self.name,
            "phoneEncrypted": self.phone_encrypted,
            "mfaEnabled": self.mfa_enabled,
            "deviceApprovalRequired": self.device_approval_required,
            "active": self.active,
        }


class Device(TenantScoped, Base):
    __tablename__ = "devices"

    user_id: Mapped[uuid.UUID]
    fingerprint_hash: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str | None] = mapped_column(Text)
    approved: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[uuid.UUID | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"]),
        Index(
            "uq_devices_tenant_id_user_id_fingerprint_hash",
            "tenant_id",
            "user_id",
            "fingerprint_hash",
            unique=True,
        ),
    )


class OtpToken(Base):
    """A one-time code sent to a phone. Not tenant-scoped: a phone proves ownership once."""

    __tablename__ = "otp_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    phone_hash: Mapped[bytes] = mapped_column(LargeBinary)
    # HMAC of the code bound to the sign-in attempt that asked for it.
    otp_hash: Mapped[bytes] = mapped_column(LargeBinary)
    attempt_hash: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The clinic whose page asked for the code: its audit trail records the attempt.
    clinic_id: Mapped[uuid.UUID]

    __table_args__ = (
        Index(None, "phone_hash"),
        Index(None, "expires_at"),
        Index("uq_otp_tokens_attempt_hash", "attempt_hash", unique=True),
    )


class AuthSession(TenantScoped, Base):
    """A signed-in browser or API client. Only the token's hash is stored."""

    __tablename__ = "sessions"

    user_id: Mapped[uuid.UUID]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    device_id: Mapped[uuid.UUID | None]
    stage: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    idle_timeout_seconds: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("stage", SESSION_STAGES), name="stage_known"),
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"]),
        ForeignKeyConstraint(["tenant_id", "device_id"], ["devices.tenant_id", "devices.id"]),
        Index("uq_sessions_tenant_id_token_hash", "tenant_id", "token_hash", unique=True),
        Index(None, "tenant_id", "user_id", "ended_at"),
        Index(None, "tenant_id", "device_id"),
    )
