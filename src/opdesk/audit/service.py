"""Recording audit events and appending them to the per-tenant hash chain.

Services call :func:`record` as they work. The events wait in ``ctx.pending_audit``
and are chained and inserted by a ``before_commit`` hook, so the per-tenant chain lock
(a row lock on ``audit_chain_heads``) is held only while the transaction commits.

Link ``n`` of a tenant's chain stores ``hash = SHA-256(bytes(prev_hash) ||
JCS(event))`` where JCS is the RFC 8785 canonical JSON of the event without its hash.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any

import rfc8785
from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction

from opdesk.audit.models import ACTIONS
from opdesk.context import RequestContext
from opdesk.db import TENANT_KEY, new_id, set_tenant_setting

CTX_KEY = "request_context"
REDACTED = "[encrypted]"


@dataclass(frozen=True)
class PendingEvent:
    """An audit event waiting for its place in the chain."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    ts: datetime
    actor_id: uuid.UUID | None
    actor_role: str
    entity_collection: str
    entity_id: uuid.UUID | None
    action: str
    from_state: str | None
    to_state: str | None
    diff: dict[str, Any]
    request_id: str | None
    ip: str | None
    user_agent: str | None


def jsonable(value: Any) -> Any:
    """Plain JSON values only, so the hash computed now equals the one recomputed later."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, bytes):
        return REDACTED
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def diff_of(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    redact: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """``{added, updated, removed}`` between two snapshots of a record.

    Fields in ``redact`` (encrypted health data) are reported as changed without values.
    """
    before, after = before or {}, after or {}

    def shown(key: str, value: Any) -> Any:
        return REDACTED if key in redact and value is not None else jsonable(value)

    added = {k: shown(k, v) for k, v in after.items() if k not in before and v is not None}
    removed = {k: shown(k, v) for k, v in before.items() if k not in after and v is not None}
    updated = {
        k: {"from": shown(k, before[k]), "to": shown(k, after[k])}
        for k in after.keys() & before.keys()
        if before[k] != after[k]
    }
    return {"added": added, "updated": updated, "removed": removed}


def record(
    ctx: RequestContext,
    *,
    entity: str,
    entity_id: uuid.UUID | None,
    action: str,
    from_state: str | None = None,
    to_state: str | None = None,
    diff: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
) -> PendingEvent:
    """Queue one audit event; it is written with the transaction's commit."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    tenant = tenant_id or ctx.tenant_id
    if tenant is None:
        raise ValueError("an audit event needs a tenant")
    pending = PendingEvent(
        tenant_id=tenant,
        id=new_id(),
        ts=ctx.now(),
        actor_id=ctx.actor_id,
        actor_role=ctx.role,
        entity_collection=entity,
        entity_id=entity_id,
        action=action,
        from_state=from_state,
        to_state=to_state,
        diff=jsonable(diff or {"added": {}, "updated": {}, "removed": {}}),
        request_id=ctx.request_id,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )
    ctx.pending_audit.append(pending)
    return pending


def canonical_event(row: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of one event as stored, without its ``hash``."""
    doc = {
        "tenantId": str(row["tenant_id"]),
        "id": str(row["id"]),
        "seq": row["seq"],
        "ts": jsonable(row["ts"]),
        "actor": {"id": jsonable(row["actor_id"]), "role": row["actor_role"]},
        "entity": {"collection": row["entity_collection"], "id": jsonable(row["entity_id"])},
        "action": row["action"],
        "from": row["from_state"],
        "to": row["to_state"],
        "diff": row["diff"],
        "requestId": row["request_id"],
        "ip": row["ip"],
        "userAgent": row["user_agent"],
        "prevHash": row["prev_hash"],
    }
    return bytes(rfc8785.dumps(doc))


def link_hash(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_event(row)).hexdigest()


def append_chain(session: Session, events: list[PendingEvent]) -> None:
    """Chain and insert ``events`` (all of one tenant) under the tenant's head lock.

    One statement of fixed text (``audit_append``, migration 0019): it locks the head,
    links and inserts each event with the SQL form of :func:`link_hash`, and moves the head.
    """
    session.execute(
        _APPEND, {"t": events[0].tenant_id, "events": json.dumps([_as_row(e) for e in events])}
    )


def _as_row(pending: PendingEvent) -> dict[str, Any]:
    # The diff was made plain JSON when the event was recorded; the rest are ids and a time.
    fields = vars(pending)
    return {k: v if k == "diff" else jsonable(v) for k, v in fields.items()}


_APPEND = text("select audit_append(:t, cast(:events as jsonb))")


def flush_pending(session: Session, ctx: RequestContext) -> None:
    """Write the context's queued events, one tenant chain at a time."""
    if not ctx.pending_audit:
        return
    by_tenant: dict[uuid.UUID, list[PendingEvent]] = {}
    for pending in ctx.pending_audit:
        by_tenant.setdefault(pending.tenant_id, []).append(pending)
    scoped = session.info.get(TENANT_KEY)
    # A fixed lock order keeps two multi-tenant transactions from deadlocking.
    for tenant_id in sorted(by_tenant, key=str):
        if tenant_id != scoped:
            set_tenant_setting(session, tenant_id)
        append_chain(session, by_tenant[tenant_id])
        if tenant_id != scoped:
            set_tenant_setting(session, scoped)
    ctx.pending_audit.clear()


@event.listens_for(Session, "before_commit")
def _write_audit_before_commit(session: Session) -> None:
    # SQLAlchemy fires this when a savepoint is released too; the events wait for the
    # real commit, or a later rollback of an enclosing savepoint would take them along.
    if session.in_nested_transaction():
        return
    ctx = session.info.get(CTX_KEY)
    if isinstance(ctx, RequestContext):
        flush_pending(session, ctx)


# How many events were pending when each open savepoint began, so rolling one back
# drops only the events queued inside it (the writes before it still commit).
_SAVEPOINT_MARKS = "audit_savepoint_marks"


@event.listens_for(Session, "after_transaction_create")
def _mark_pending_at_savepoint(session: Session, transaction: SessionTransaction) -> None:
    ctx = session.info.get(CTX_KEY)
    if transaction.nested and isinstance(ctx, RequestContext):
        session.info.setdefault(_SAVEPOINT_MARKS, {})[transaction] = len(ctx.pending_audit)


@event.listens_for(Session, "after_soft_rollback")
def _drop_audit_after_rollback(session: Session, previous: SessionTransaction) -> None:
    """A savepoint's rollback drops its own events; the outer rollback drops them all."""
    ctx = session.info.get(CTX_KEY)
    if not isinstance(ctx, RequestContext):
        return
    if previous.parent is None:
        ctx.pending_audit.clear()
        return
    mark = session.info.get(_SAVEPOINT_MARKS, {}).pop(previous, None)
    if mark is not None:
        del ctx.pending_audit[mark:]


@event.listens_for(Session, "after_transaction_end")
def _forget_savepoints(session: Session, transaction: SessionTransaction) -> None:
    # Marks of released savepoints are dropped with the outermost transaction.
    if transaction.parent is None:
        session.info.pop(_SAVEPOINT_MARKS, None)


__all__ = [
    "CTX_KEY",
    "PendingEvent",
    "append_chain",
    "diff_of",
    "flush_pending",
    "jsonable",
    "link_hash",
    "record",
]
