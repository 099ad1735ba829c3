"""Re-encrypting every encrypted column under the active data key.

Each batch is its own transaction. A row is picked only while its ciphertext still
names an older key, so the query itself is the checkpoint: after a crash, running the
command again continues where it stopped, and rows already done are never touched twice.
Old keys stay in the keyring, so every row stays readable throughout.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Table, bindparam, func, select, text

from opdesk.context import system_context
from opdesk.db import Base, Database
from opdesk.security.crypto import FieldCipher, key_id_prefix
from opdesk.uow import transaction

ENCRYPTED_INFO_KEY = "encrypted"


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: str

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.column}"


def registered_columns(tables: Iterable[Table] | None = None) -> list[EncryptedColumn]:
    """Every column marked ``info={"encrypted": True}`` in the given (default: all) tables."""
    found = []
    for table in tables if tables is not None else Base.metadata.sorted_tables:
        for column in table.columns:
            if column.info.get(ENCRYPTED_INFO_KEY):
                found.append(EncryptedColumn(table, column.name))
    return found


@dataclass
class RotationProgress:
    rows: int = 0
    batches: int = 0


def reencrypt(
    db: Database,
    cipher: FieldCipher,
    *,
    columns: Sequence[EncryptedColumn] | None = None,
    batch_size: int = 500,
    after_batch: Callable[[RotationProgress], None] | None = None,
) -> RotationProgress:
    """Bring every ciphertext of every tenant to the active key, batch by batch."""
    progress = RotationProgress()
    targets = registered_columns() if columns is None else list(columns)
    for tenant_id in _tenant_ids(db):
        for target in targets:
            while _reencrypt_batch(db, cipher, tenant_id, target, batch_size, progress):
                if after_batch is not None:
                    after_batch(progress)
    return progress


def _tenant_ids(db: Database) -> list[uuid.UUID]:
    with transaction(db, system_context(None)) as session:
        return list(session.execute(text("select id from tenants order by id")).scalars())


def _reencrypt_batch(
    db: Database,
    cipher: FieldCipher,
    tenant_id: uuid.UUID,
    target: EncryptedColumn,
    batch_size: int,
    progress: RotationProgress,
) -> int:
    active = cipher.keyring.active_key_id
    prefix = key_id_prefix(active)
    table, col = target.table, target.table.c[target.column]
    with transaction(db, system_context(tenant_id)) as session:
        rows = session.execute(
            select(table.c.id, col)
            .where(
                table.c.tenant_id == tenant_id,
                col.is_not(None),
                func.substring(col, 1, len(prefix)) != prefix,
            )
            .order_by(table.c.id)
            .limit(batch_size)
            .with_for_update()
        ).all()
        if not rows:
            return 0
        updates = []
        for row_id, old in rows:
            where = {
                "tenant_id": tenant_id,
                "table": table.name,
                "column": target.column,
                "row_id": row_id,
            }
            plain = cipher.decrypt(old, **where)
            updates.append({"b_id": row_id, "b_value": cipher.encrypt(plain, **where)})
        session.execute(
            table.update()
            .where(table.c.tenant_id == tenant_id, table.c.id == bindparam("b_id"))
            .values({target.column: bindparam("b_value")}),
            updates,
        )
    progress.rows += len(rows)
    progress.batches += 1
    return len(rows)


def count_stale(db: Database, cipher: FieldCipher, columns: Sequence[EncryptedColumn]) -> int:
    """Ciphertexts across all tenants still made with a key other than the active one."""
    prefix = key_id_prefix(cipher.keyring.active_key_id)
    total = 0
    for tenant_id in _tenant_ids(db):
        with transaction(db, system_context(tenant_id)) as session:
            for target in columns:
                col = target.table.c[target.column]
                total += session.execute(
                    select(func.count())
                    .select_from(target.table)
                    .where(col.is_not(None), func.substring(col, 1, len(prefix)) != prefix)
                ).scalar_one()
    return total
