"""``patients`` (seed) and the per-clinic counter behind human-friendly patient numbers."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, SoftDeletable, TenantScoped, encrypted_column

GENDERS = ("female", "male", "other", "undisclosed")
BLOOD_GROUPS = ("A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-")
# Languages a clinic's messages may be written in (ISO 639-1), English first.
LANGUAGES = ("en", "hi", "mr", "gu", "bn", "ta", "te", "kn", "ml", "pa", "or", "ur")
NUMBER_PREFIX = "P-"
# Fewest digits of a phone that search looks up by their start or end (PatientPhoneKey).
PHONE_PART_MIN = 5


class Patient(SoftDeletable, TenantScoped, Base):
    __tablename__ = "patients"

    number: Mapped[int] = mapped_column(Integer)
    # Blind index of the E.164 phone; NULL for a dependent who shares a guardian's phone.
    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_encrypted: Mapped[bytes | None] = encrypted_column()
    email_encrypted: Mapped[bytes | None] = encrypted_column()
    name_first: Mapped[str] = mapped_column(Text)
    name_last: Mapped[str] = mapped_column(Text, server_default="")
    # Lower-cased, byte-ordered copies for prefix search. Range comparisons on them are
    # leakproof, so PostgreSQL may use their indexes under row-level security (LIKE and
    # lower() are not, and would force a sequential scan).
    first_key: Mapped[str] = mapped_column(
        Text(collation="C"), Computed("lower(name_first)", persisted=True)
    )
    last_key: Mapped[str] = mapped_column(
        Text(collation="C"), Computed("lower(name_last)", persisted=True)
    )
    # The sound of each name (patients/sounds.py) with its script, "i:amit srm" for
    # "अमित शर्मा": a name typed in one script finds names written in another.
    first_sound: Mapped[str] = mapped_column(Text(collation="C"), server_default="")
    last_sound: Mapped[str] = mapped_column(Text(collation="C"), server_default="")
    dob: Mapped[date | None] = mapped_column(Date)
    # When only an age was given: the age and the day it was stated, so it can grow.
    age_years: Mapped[int | None] = mapped_column(Integer)
    age_recorded_on: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(Text)
    # House, street and locality as one text; the city and PIN code stay readable for
    # reports by area.
    address_encrypted: Mapped[bytes | None] = encrypted_column()
    pin_code: Mapped[str | None] = mapped_column(Text)
    blood_group: Mapped[str | None] = mapped_column(Text)
    preferred_language: Mapped[str] = mapped_column(Text, server_default="en")
    # The 14-digit ABHA number: encrypted, with a blind index to find a patient by it.
    abha_number_encrypted: Mapped[bytes | None] = encrypted_column()
    abha_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The ABHA address (name@abdm): encrypted, with its own blind index.
    abha_address_encrypted: Mapped[bytes | None] = encrypted_column()
    abha_address_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    # When the patient proved the ABHA number theirs (the ABHA login OTP); cleared when
    # the number changes.
    abha_verified_at: Mapped[datetime | None]
    # Created by the patient booking online: the desk completes the record at the visit.
    registered_online: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    allergies: Mapped[bytes | None] = encrypted_column()
    chronic_conditions: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    ongoing_medications: Mapped[bytes | None] = encrypted_column()
    emergency_contact: Mapped[bytes | None] = encrypted_column()
    flags_vip: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    flags_blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Mirror of the latest signed consent of each type (see patients/consents).
    consents: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    guardian_id: Mapped[uuid.UUID | None]
    guardian_relation: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "gender IN (" + ", ".join(f"'{g}'" for g in GENDERS) + ")", name="gender_known"
        ),
        CheckConstraint("dob IS NOT NULL OR age_years IS NOT NULL", name="dob_or_age"),
        CheckConstraint("pin_code ~ '^[1-9][0-9]{5}$'", name="pin_code_six_digits"),
        CheckConstraint(
            "blood_group IN (" + ", ".join(f"'{g}'" for g in BLOOD_GROUPS) + ")",
            name="blood_group_known",
        ),
        CheckConstraint(
            "preferred_language IN (" + ", ".join(f"'{code}'" for code in LANGUAGES) + ")",
            name="preferred_language_known",
        ),
        CheckConstraint(
            "phone_hash IS NOT NULL OR guardian_id IS NOT NULL", name="phone_or_guardian"
        ),
        CheckConstraint("guardian_id IS NULL OR guardian_id <> id", name="not_own_guardian"),
        ForeignKeyConstraint(["tenant_id", "guardian_id"], ["patients.tenant_id", "patients.id"]),
        Index("uq_patients_tenant_id_phone_hash", "tenant_id", "phone_hash", unique=True),
        Index("uq_patients_tenant_id_number", "tenant_id", "number", unique=True),
        Index("uq_patients_tenant_id_abha_hash", "tenant_id", "abha_hash", unique=True),
        Index(
            "uq_patients_tenant_id_abha_address_hash",
            "tenant_id",
            "abha_address_hash",
            unique=True,
        ),
        CheckConstraint(
            "abha_verified_at IS NULL OR abha_hash IS NOT NULL", name="verified_abha_exists"
        ),
        Index(None, "tenant_id", "name_last"),
        # Each name with the other: "first starts with a and last with b" (or the other
        # way round, or similar spellings of both) is checked in the index, not the table.
        Index(None, "tenant_id", "first_key", "last_key"),
        Index(None, "tenant_id", "last_key", "first_key"),
        Index(None, "tenant_id", "first_sound", "last_sound"),
        Index(None, "tenant_id", "last_sound", "first_sound"),
        Index(None, "tenant_id", "guardian_id"),
    )

    @property
    def display_number(self) -> str:
        return f"{NUMBER_PREFIX}{self.number:06d}"

    @property
    def full_name(self) -> str:
        return f"{self.name_first} {self.name_last}".strip()


class PatientCounter(Base):
    """The last patient number handed out by each clinic (row lock = no duplicates)."""

    __tablename__ = "patient_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class PatientName(Base):
    """Each clinic's vocabulary of first and last names, for fuzzy search.

    Similar spellings are looked for among the clinic's distinct names (thousands) rather
    than its patients (up to millions); patients are then found by exact name key.
    """

    __tablename__ = "patient_names"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    patients: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index(
            "ix_patient_names_trgm",
            "tenant_id",
            text("key gin_trgm_ops"),
            postgresql_using="gin",
        ),
    )


class PatientPhoneKey(Base):
    """Blind indexes of the first and last digits of a patient's phone, for partial search.

    The desk types the first digits of a mobile number as often as the last. For each
    length from :data:`PHONE_PART_MIN` to one short of the whole number, the keyed hash of
    the number's first digits and of its last digits (each hash says which end it is), so
    "98220" finds "98220 43210" and "43210" finds it too, with no digit stored in clear.
    """

    __tablename__ = "patient_phone_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            ondelete="CASCADE",
        ),
        Index(None, "tenant_id", "patient_id"),
    )
