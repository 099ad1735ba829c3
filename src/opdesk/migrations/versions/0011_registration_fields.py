"""patients: address, PIN code, blood group, preferred language, ABHA number, online sign-up

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 17:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# As they were when this migration was written (a later change writes its own migration).
BLOOD_GROUPS = ("A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-")
LANGUAGES = ("en", "hi", "mr", "gu", "bn", "ta", "te", "kn", "ml", "pa", "or", "ur")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.add_column("patients", sa.Column("address_encrypted", sa.LargeBinary(), nullable=True))
    op.add_column("patients", sa.Column("pin_code", sa.Text(), nullable=True))
    op.add_column("patients", sa.Column("blood_group", sa.Text(), nullable=True))
    op.add_column(
        "patients",
        sa.Column("preferred_language", sa.Text(), server_default="en", nullable=False),
    )
    op.add_column("patients", sa.Column("abha_number_encrypted", sa.LargeBinary(), nullable=True))
    op.add_column("patients", sa.Column("abha_hash", sa.LargeBinary(), nullable=True))
    op.add_column(
        "patients",
        sa.Column("registered_online", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_patients_pin_code_six_digits"), "patients", "pin_code ~ '^[1-9][0-9]{5}$'"
    )
    op.create_check_constraint(
        op.f("ck_patients_blood_group_known"), "patients", _one_of("blood_group", BLOOD_GROUPS)
    )
    op.create_check_constraint(
        op.f("ck_patients_preferred_language_known"),
        "patients",
        _one_of("preferred_language", LANGUAGES),
    )
    op.create_index(
        "uq_patients_tenant_id_abha_hash", "patients", ["tenant_id", "abha_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_patients_tenant_id_abha_hash", table_name="patients")
    for name in ("preferred_language_known", "blood_group_known", "pin_code_six_digits"):
        op.drop_constraint(op.f(f"ck_patients_{name}"), "patients", type_="check")
    for column in (
        "registered_online",
        "abha_hash",
        "abha_number_encrypted",
        "preferred_language",
        "blood_group",
        "pin_code",
        "address_encrypted",
    ):
        op.drop_column("patients", column)
