"""Loading one row by id (404 otherwise), row locks, and soft delete and restore for any
``SoftDeletable`` row, audited the same way everywhere.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, SessionTransaction

from opdesk import audit
from opdesk.context import RequestContext
from opdesk.db import SoftDeletable
from opdesk.errors import Conflict, NotFound

T = TypeVar("T", bound=SoftDeletable)
R = TypeVar("R")


def by_id(
    session: Session,
    model: type[R],
    row_id: uuid.UUID,
    *,
    lock: bool = False,
    include_deleted: bool = False,
) -> R:
    """One row of the current tenant by id, else 404 (another tenant's id looks unknown).

    ``lock``: the row is locked until the transaction ends (``FOR UPDATE``) and read afresh
    even if the session had loaded it before, so what the caller checks is what it changes.
    """
    stmt = select(model).where(model.id == row_id)  # type: ignore[attr-defined]
    options: dict[str, Any] = {"include_deleted": include_deleted}
    if lock:
        stmt = stmt.with_for_update()
        options["populate_existing"] = True
    row = session.execute(stmt.execution_options(**options)).scalar_one_or_none()
    if row is None:
        noun = model.__tablename__.removesuffix("s")  # type: ignore[attr-defined]
        raise NotFound(f"no {noun} with id {row_id}")
    if lock:
        _note_lock(session, row)
    return row


def lock(session: Session, row: Any) -> None:
    """Lock a loaded row until the transaction ends and read it afresh (another transaction
    may have changed it since it was loaded); nothing to do if this transaction already
    holds its lock (:func:`by_id` with ``lock=True``, or an earlier call). 404 if it is gone.
    """
    if holds_lock(session, row):
        return
    mapper = inspect(type(row))
    key = zip(mapper.primary_key, mapper.primary_key_from_instance(row), strict=True)
    found = session.execute(
        select(type(row))
        .where(*(column == value for column, value in key))
        .with_for_update()
        .execution_options(populate_existing=True, include_deleted=True)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no {row.__tablename__.removesuffix('s')} with id {row.id}")
    _note_lock(session, found)


# Rows this session's transaction has locked: identity key -> the (sub)transaction that
# took the lock. A savepoint's rollback releases its locks in PostgreSQL, and its
# transaction object is then no longer active, so the row is locked again when needed.
_LOCKS = "records_locked_rows"


def _note_lock(session: Session, row: Any) -> None:
    taken_in = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_LOCKS, {})[inspect(row).identity_key] = taken_in


def holds_lock(session: Session, row: Any) -> bool:
    """Whether this transaction is known to hold the row's lock."""
    taken_in = session.info.get(_LOCKS, {}).get(inspect(row).identity_key)
    return taken_in is not None and taken_in.is_active


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_LOCKS, None)


def get_any(session: Session, model: type[T], row_id: uuid.UUID, *, lock: bool = False) -> T:
    """A row by id, deleted or not (restore needs to find deleted rows)."""
    return by_id(session, model, row_id, lock=lock, include_deleted=True)


def _entity(row: Any) -> tuple[str, uuid.UUID]:
    return row.__tablename__, row.id


def soft_delete(session: Session, ctx: RequestContext, row: SoftDeletable) -> None:
    entity, row_id = _entity(row)
    if row.deleted_at is not None:
        raise Conflict(f"{entity} {row_id} is already deleted")
    row.deleted_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity=entity,
        entity_id=row_id,
        action="soft-delete",
        from_state="active",
        to_state="deleted",
        diff=audit.diff_of({}, {"deletedAt": row.deleted_at}),
    )


def restore(session: Session, ctx: RequestContext, row: SoftDeletable) -> None:
    entity, row_id = _entity(row)
    if row.deleted_at is None:
        raise Conflict(f"{entity} {row_id} is not deleted")
    deleted_at, row.deleted_at = row.deleted_at, None
    session.flush()
    audit.record(
        ctx,
        entity=entity,
        entity_id=row_id,
        action="restore",
        from_state="deleted",
        to_state="active",
        diff=audit.diff_of({"deletedAt": deleted_at}, {}),
    )
