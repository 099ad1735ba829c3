"""patient search keys: partial phone numbers, names across scripts, first+last pairs

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-27 10:00:00.000000

Written against 0008; if another migration became the head first (e.g. 0009), set
``down_revision`` to it: this one depends on nothing after 0008.

Existing patients get their keys here: sound keys from their names, and phone keys from
their (decrypted) phones with the keyring the settings name, as ``opdesk serve`` loads it.
A database without patients (tests, a new install) needs no keyring.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

from opdesk.migrations.helpers import enable_tenant_rls, grant_app

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 2000


def upgrade() -> None:
    op.add_column(
        "patients",
        sa.Column("first_sound", sa.Text(collation="C"), server_default="", nullable=False),
    )
    op.add_column(
        "patients",
        sa.Column("last_sound", sa.Text(collation="C"), server_default="", nullable=False),
    )
    # Each name with the other, so a condition on both is checked in the index.
    for lead, other in (("first_key", "last_key"), ("last_key", "first_key")):
        op.create_index(
            op.f(f"ix_patients_tenant_id_{lead}_{other}"), "patients", ["tenant_id", lead, other]
        )
        op.drop_index(op.f(f"ix_patients_tenant_id_{lead}"), table_name="patients")
    for lead, other in (("first_sound", "last_sound"), ("last_sound", "first_sound")):
        op.create_index(
            op.f(f"ix_patients_tenant_id_{lead}_{other}"), "patients", ["tenant_id", lead, other]
        )
    op.create_table(
        "patient_phone_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_patient_phone_keys_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_patient_phone_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "key", "patient_id", name=op.f("pk_patient_phone_keys")
        ),
    )
    op.create_index(
        op.f("ix_patient_phone_keys_tenant_id_patient_id"),
        "patient_phone_keys",
        ["tenant_id", "patient_id"],
    )
    enable_tenant_rls("patient_phone_keys")
    grant_app("patient_phone_keys", "SELECT, INSERT, DELETE")
    _backfill()


def _backfill() -> None:
    """Keys for the patients registered before this migration, in batches.

    The owner runs migrations; it is subject to the clinics' row-level security (FORCE),
    so the backfill reads and writes with it lifted for this transaction only.
    """
    conn = op.get_bind()
    if conn.execute(sa.text("select not exists (select 1 from patients)")).scalar_one():
        return
    from opdesk.patients import sounds
    from opdesk.patients.service import phone_part_keys

    op.execute("ALTER TABLE patients NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE patient_phone_keys NO FORCE ROW LEVEL SECURITY")
    cipher = _cipher() if _has_phones(conn) else None
    after: tuple[Any, Any] = (uuid.UUID(int=0), uuid.UUID(int=0))
    while True:
        rows = conn.execute(
            sa.text(
                "select tenant_id, id, name_first, name_last, phone_encrypted from patients "
                "where (tenant_id, id) > (:t, :i) order by tenant_id, id limit :n"
            ),
            {"t": after[0], "i": after[1], "n": BATCH},
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text(
                "update patients set first_sound = :f, last_sound = :l where tenant_id = :t and id = :i"
            ),
            [
                {
                    "t": r.tenant_id,
                    "i": r.id,
                    "f": sounds.name_key(r.name_first),
                    "l": sounds.name_key(r.name_last or ""),
                }
                for r in rows
            ],
        )
        keys = []
        for r in rows:
            if r.phone_encrypted is None or cipher is None:
                continue
            phone = cipher.decrypt_str(
                r.phone_encrypted,
                tenant_id=r.tenant_id,
                table="patients",
                column="phone_encrypted",
                row_id=r.id,
            )
            keys += [{"t": r.tenant_id, "k": k, "p": r.id} for k in phone_part_keys(cipher, phone)]
        if keys:
            conn.execute(
                sa.text(
                    "insert into patient_phone_keys (tenant_id, key, patient_id) "
                    "values (:t, :k, :p) on conflict do nothing"
                ),
                keys,
            )
        after = (rows[-1].tenant_id, rows[-1].id)
    op.execute("ALTER TABLE patients FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE patient_phone_keys FORCE ROW LEVEL SECURITY")


def _has_phones(conn: sa.Connection) -> bool:
    found = conn.execute(
        sa.text("select exists (select 1 from patients where phone_encrypted is not null)")
    )
    return bool(found.scalar_one())


def _cipher() -> Any:
    """The keyring ``opdesk serve`` would use (the phones must be read to index them)."""
    from opdesk.config import get_settings
    from opdesk.security.crypto import FieldCipher
    from opdesk.security.keys import KeyConfigError, load_keyring

    try:
        return FieldCipher(load_keyring(get_settings()))
    except KeyConfigError as exc:
        raise RuntimeError(
            "migration 0010 indexes the patients' phones for partial-number search and "
            f"needs the encryption keys: {exc}"
        ) from exc


def downgrade() -> None:
    op.drop_index(
        op.f("ix_patient_phone_keys_tenant_id_patient_id"), table_name="patient_phone_keys"
    )
    op.drop_table("patient_phone_keys")
    for lead, other in (("first_sound", "last_sound"), ("last_sound", "first_sound")):
        op.drop_index(op.f(f"ix_patients_tenant_id_{lead}_{other}"), table_name="patients")
    for lead, other in (("first_key", "last_key"), ("last_key", "first_key")):
        op.create_index(op.f(f"ix_patients_tenant_id_{lead}"), "patients", ["tenant_id", lead])
        op.drop_index(op.f(f"ix_patients_tenant_id_{lead}_{other}"), table_name="patients")
    op.drop_column("patients", "last_sound")
    op.drop_column("patients", "first_sound")
