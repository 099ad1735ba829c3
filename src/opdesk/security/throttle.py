"""Sliding-window limits counted in PostgreSQL, so every app process agrees.

Each counted event is a row of ``auth_throttle``; a check counts rows in the window
under a transaction-scoped advisory lock on the key, so two concurrent requests cannot
both slip under the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Identity, Index, LargeBinary, Text, delete, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from opdesk.db import Base


class AuthThrottle(Base):
    """One row per counted event (failed password, OTP sent...) for sliding-window limits.

    Kept in PostgreSQL so every app process sees the same counts.
    """

    __tablename__ = "auth_throttle"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime]

    __table_args__ = (Index(None, "kind", "key_hash", "at"), Index(None, "at"))


@dataclass(frozen=True)
class Limit:
    kind: str
    count: int
    window: timedelta


def lock_key(session: Session, kind: str, key: bytes) -> None:
    session.execute(
        text("select pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": kind + ":" + key.hex()},
    )


def recent(session: Session, limit: Limit, key: bytes, now: datetime) -> list[datetime]:
    """Times of the events of ``key`` inside the window, oldest first."""
    return list(
        session.execute(
            select(AuthThrottle.at)
            .where(
                AuthThrottle.kind == limit.kind,
                AuthThrottle.key_hash == key,
                AuthThrottle.at > now - limit.window,
            )
            .order_by(AuthThrottle.at)
        ).scalars()
    )


def retry_after(session: Session, limit: Limit, key: bytes, now: datetime) -> timedelta | None:
    """How long until ``key`` may act again, or None when it is under the limit."""
    lock_key(session, limit.kind, key)
    times = recent(session, limit, key, now)
    if len(times) < limit.count:
        return None
    # The window frees up when the oldest counted event inside it ages out.
    return times[len(times) - limit.count] + limit.window - now


def count(session: Session, limit: Limit, key: bytes, now: datetime) -> None:
    session.add(AuthThrottle(kind=limit.kind, key_hash=key, at=now))
    session.flush()


def forget(session: Session, limit: Limit, key: bytes) -> None:
    session.execute(
        delete(AuthThrottle).where(AuthThrottle.kind == limit.kind, AuthThrottle.key_hash == key)
    )


def sweep(session: Session, older_than: datetime) -> int:
    result = session.execute(delete(AuthThrottle).where(AuthThrottle.at < older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
