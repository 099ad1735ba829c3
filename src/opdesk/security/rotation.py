"""Re-encrypting every encrypted column under the active data key.

Each batch is its own transaction. A row is picked only while its ciphertext still
names an older key, so the query itself is the checkpoint: after a crash, running the
command again continues where it stopped, and rows already done are never touched twice.
Old keys stay in the keyring, so every row stays readable throughout.

Rotation runs as the database owner, scoped to one clinic at a time, in transactions that
say they are re-keying (``opdesk.rekey``): the freeze of a signed visit or an issued
prescription lets exactly such an UPDATE through (migration 0017), and the app role can
never claim it. Each value is bound to its row as the code that wrote it bound it (the
column's ``bound_to``), and rows are addressed by their primary key, whatever it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, select, text
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.audit.service import CTX_KEY
from opdesk.context import RequestContext, system_context
from opdesk.db import TENANT_KEY, Base, Binding, Database, bound_to_id, set_tenant_setting
from opdesk.security.crypto import FieldCipher, key_id_prefix

ENCRYPTED_INFO_KEY = "encrypted"


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: str

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.column}"

    def bound(self, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
        """The column label and row id this row's value was sealed with."""
        binding: Binding = self.table.c[self.column].info.get("bound_to", bound_to_id)
        return binding(self.column, row)


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
    with db.owner_engine.connect() as conn:
        return list(conn.execute(text("select id from tenants order by id")).scalars())


@contextmanager
def _rekeying(db: Database, ctx: RequestContext) -> Iterator[Session]:
    """An owner's transaction scoped to one clinic that says it is re-keying (its audit
    events are written with its commit, as every transaction's are).
    """
    with Session(db.owner_engine) as session:
        session.info[CTX_KEY] = ctx
        session.info[TENANT_KEY] = ctx.tenant_id
        with session.begin():
            session.execute(text("select set_config('opdesk.rekey', 'on', true)"))
            yield session


def _stale(target: EncryptedColumn, tenant_id: uuid.UUID, prefix: bytes) -> ColumnElement[bool]:
    col = target.table.c[target.column]
    return and_(
        target.table.c.tenant_id == tenant_id,
        col.is_not(None),
        func.substring(col, 1, len(prefix)) != prefix,
    )


def _reencrypt_batch(
    db: Database,
    cipher: FieldCipher,
    tenant_id: uuid.UUID,
    target: EncryptedColumn,
    batch_size: int,
    progress: RotationProgress,
) -> int:
    prefix = key_id_prefix(cipher.keyring.active_key_id)
    table = target.table
    keys = list(table.primary_key.columns)
    ctx = system_context(tenant_id)
    with _rekeying(db, ctx) as session:
        rows = (
            session.execute(
                select(table)
                .where(_stale(target, tenant_id, prefix))
                .order_by(*keys)
                .limit(batch_size)
                .with_for_update()
            )
            .mappings()
            .all()
        )
        if not rows:
            return 0
        updates = []
        for row in rows:
            column, row_id = target.bound(dict(row))
            plain = cipher.decrypt(
                row[target.column],
                tenant_id=tenant_id,
                table=table.name,
                column=column,
                row_id=row_id,
            )
            sealed = cipher.encrypt(
                plain, tenant_id=tenant_id, table=table.name, column=column, row_id=row_id
            )
            updates.append({**{f"k_{key.name}": row[key.name] for key in keys}, "b_value": sealed})
        session.execute(
            table.update()
            .where(*[key == bindparam(f"k_{key.name}") for key in keys])
            .values({target.column: bindparam("b_value")}),
            updates,
        )
        # One event for the batch: which rows of the clinic were sealed anew, under what key.
        audit.record(
            ctx,
            entity=table.name,
            entity_id=None,
            action="update",
            diff={
                "rekeyed": {
                    "column": target.column,
                    "keyId": cipher.keyring.active_key_id,
                    "rows": [[str(row[key.name]) for key in keys] for row in rows],
                }
            },
        )
    progress.rows += len(rows)
    progress.batches += 1
    return len(rows)


def count_stale(db: Database, cipher: FieldCipher, columns: Sequence[EncryptedColumn]) -> int:
    """Ciphertexts across all tenants still made with a key other than the active one."""
    prefix = key_id_prefix(cipher.keyring.active_key_id)
    total = 0
    for tenant_id in _tenant_ids(db):
        with db.owner_engine.begin() as conn:
            set_tenant_setting(conn, tenant_id)
            for target in columns:
                total += conn.execute(
                    select(func.count())
                    .select_from(target.table)
                    .where(_stale(target, tenant_id, prefix))
                ).scalar_one()
    return total
