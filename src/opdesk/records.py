"""Soft delete and restore for any ``SoftDeletable`` row, audited the same way everywhere."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    """One row of the current tenant by id, else 404 (another tenant's id looks unknown)."""
    stmt = select(model).where(model.id == row_id)  # type: ignore[attr-defined]
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(
        stmt.execution_options(include_deleted=include_deleted)
    ).scalar_one_or_none()
    if row is None:
        noun = model.__tablename__.removesuffix("s")  # type: ignore[attr-defined]
        raise NotFound(f"no {noun} with id {row_id}")
    return row


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
