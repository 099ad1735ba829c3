"""``Idempotency-Key``: a retried request returns the first answer instead of acting twice.

The key is claimed by inserting its row in the request's own transaction. A concurrent
retry with the same key waits on the unique index until the first commits, then reads
the stored answer; if the first fails, its row rolls back with it and the retry runs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Integer, LargeBinary, Text, delete, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from opdesk.context import RequestContext
from opdesk.db import Base
from opdesk.errors import Conflict, FieldError, InvalidInput

MAX_KEY_LENGTH = 200


class IdempotentRequest(Base):
    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    actor_key: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def fingerprint(operation: str, body: Any) -> bytes:
    canonical = json.dumps([operation, body], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).digest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            [FieldError("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} printable characters")]
        )
    return key


def claim(
    session: Session, ctx: RequestContext, *, actor_key: str, key: str, request_hash: bytes
) -> Replay | None:
    """Claim ``key`` for this request, or return the answer an earlier request got.

    ``actor_key`` scopes keys to one caller (a user, or a hold token's owner), so two
    callers can never see each other's answers.
    """
    assert ctx.tenant_id is not None
    check_key(key)
    claimed = session.execute(
        insert(IdempotentRequest)
        .values(
            tenant_id=ctx.tenant_id,
            actor_key=actor_key,
            key=key,
            request_hash=request_hash,
            created_at=ctx.now(),
        )
        .on_conflict_do_nothing()
        .returning(IdempotentRequest.key)
    ).first()
    if claimed is not None:
        return None
    earlier = session.execute(
        select(IdempotentRequest).where(
            IdempotentRequest.tenant_id == ctx.tenant_id,
            IdempotentRequest.actor_key == actor_key,
            IdempotentRequest.key == key,
        )
    ).scalar_one()
    if earlier.request_hash != request_hash:
        raise Conflict("this Idempotency-Key was already used for a different request")
    assert earlier.status_code is not None
    assert earlier.response is not None
    return Replay(earlier.status_code, earlier.response)


def remember(
    session: Session,
    ctx: RequestContext,
    *,
    actor_key: str,
    key: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    row = session.get(IdempotentRequest, (ctx.tenant_id, actor_key, key))
    assert row is not None
    row.status_code = status_code
    row.response = response
    session.flush()


KEEP_FOR = timedelta(days=1)


def sweep(session: Session, now: datetime) -> int:
    """Forget the clinic's keys older than a day (clients retry within minutes, not days)."""
    result = session.execute(
        delete(IdempotentRequest).where(IdempotentRequest.created_at < now - KEEP_FOR)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def run_once(
    session: Session,
    ctx: RequestContext,
    *,
    actor_key: str,
    key: str | None,
    operation: str,
    body: Any,
    act: Callable[[], BaseModel],
    status_code: int,
) -> BaseModel | Replay:
    """Run ``act`` unless this caller already sent this key: then the first answer, which the
    route sends as it is (``opdesk.web.deps.answer``).
    """
    if key is None:
        return act()
    replay = claim(
        session, ctx, actor_key=actor_key, key=key, request_hash=fingerprint(operation, body)
    )
    if replay is not None:
        return replay
    result = act()
    remember(
        session,
        ctx,
        actor_key=actor_key,
        key=key,
        status_code=status_code,
        response=result.model_dump(mode="json", by_alias=True),
    )
    return result
