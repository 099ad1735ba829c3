"""Key rotation reaches frozen rows.

A signed visit (its note's versions, diagnoses, vitals) and an issued prescription (its
items) are frozen by triggers, for every role; but ``opdesk keys rotate`` must re-encrypt
their ciphertext under the new key. The freeze now lets exactly that through: an UPDATE
by the owner (never the app role) in a transaction that says it is re-keying
(``opdesk.rekey``). Whatever else the row holds is still refused to everyone else.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

from opdesk.db import APP_ROLE

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# child table -> (its parent, the column naming the parent, when the parent is frozen), as
# 0015 made them.
FROZEN_WITH_PARENT = {
    "visits_soap_versions": ("visits", "visit_id", "p.status = 'signed'"),
    "visits_diagnoses": ("visits", "visit_id", "p.status = 'signed'"),
    "visits_vitals": ("visits", "visit_id", "p.status = 'signed'"),
    "visits_services": ("visits", "visit_id", "p.status = 'signed'"),
    "prescriptions_items": ("prescriptions", "prescription_id", "p.issued_at IS NOT NULL"),
}
FROZEN_SQLSTATE = "OD001"  # as 0015 defines it: the application answers 409
REFUSE = f"USING ERRCODE = '{FROZEN_SQLSTATE}'"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION opdesk_rekeying() RETURNS boolean LANGUAGE sql STABLE AS $$
          SELECT coalesce(current_setting('opdesk.rekey', true), '') = 'on'
             AND current_user <> '{APP_ROLE}'
        $$
        """
    )
    _visit_frozen(rekey=True)
    for child, (parent, column, frozen) in FROZEN_WITH_PARENT.items():
        _child_frozen(child, parent, column, frozen, rekey=True)


def downgrade() -> None:
    for child, (parent, column, frozen) in FROZEN_WITH_PARENT.items():
        _child_frozen(child, parent, column, frozen, rekey=False)
    _visit_frozen(rekey=False)
    op.execute("DROP FUNCTION opdesk_rekeying()")


def _let_rekey(rekey: bool) -> str:
    return "AND NOT (TG_OP = 'UPDATE' AND opdesk_rekeying())" if rekey else ""


def _visit_frozen(*, rekey: bool) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION opdesk_visit_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.status = 'signed' {_let_rekey(rekey)} THEN
            RAISE EXCEPTION 'visit % is signed and cannot change; add an addendum', OLD.id
              {REFUSE};
          END IF;
          RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END $$
        """
    )


def _child_frozen(child: str, parent: str, column: str, frozen: str, *, rekey: bool) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION opdesk_{child}_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          row_ {child}%ROWTYPE := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        BEGIN
          IF EXISTS (SELECT FROM {parent} p
                     WHERE p.tenant_id = row_.tenant_id AND p.id = row_.{column} AND {frozen})
             {_let_rekey(rekey)}
          THEN
            RAISE EXCEPTION '{parent} % is frozen: its {child} cannot change', row_.{column}
              {REFUSE};
          END IF;
          RETURN row_;
        END $$
        """
    )
