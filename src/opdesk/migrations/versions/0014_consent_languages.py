"""consent templates: one text per language for each version

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 20:30:00.000000

A version of a consent (type + version) is one agreement; each language it is written in
is its own row with its own text and hash, so a patient reads and signs the words in their
language and the signed copy records exactly those words. Rows written before this
migration are English.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As they were when this migration was written (patients.preferred_language's list, 0011).
LANGUAGES = ("en", "hi", "mr", "gu", "bn", "ta", "te", "kn", "ml", "pa", "or", "ur")


def upgrade() -> None:
    op.add_column(
        "consent_templates",
        sa.Column("language", sa.Text(), server_default="en", nullable=False),
    )
    op.create_check_constraint(
        "language_known",
        "consent_templates",
        "language IN (" + ", ".join(f"'{v}'" for v in LANGUAGES) + ")",
    )
    op.drop_index("uq_consent_templates_tenant_id_type_version", table_name="consent_templates")
    op.create_index(
        "uq_consent_templates_tenant_id_type_version_language",
        "consent_templates",
        ["tenant_id", "type", "version", "language"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index(
        "uq_consent_templates_tenant_id_type_version_language", table_name="consent_templates"
    )
    op.execute("DELETE FROM consent_templates WHERE language <> 'en'")
    op.create_index(
        "uq_consent_templates_tenant_id_type_version",
        "consent_templates",
        ["tenant_id", "type", "version"],
        unique=True,
    )
    op.drop_constraint("language_known", "consent_templates", type_="check")
    op.drop_column("consent_templates", "language")
