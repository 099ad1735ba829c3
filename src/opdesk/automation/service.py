"""Scheduling, cancelling and retrying automation events (in the caller's transaction).

An event is something to do at a time for one entity, once: "remind this appointment's
patient 24 hours before". Its ``dedupe_key`` makes scheduling idempotent: a second
:func:`schedule` with the same key is a no-op (or moves a pending event to the new time,
when the reason moved: a rescheduled appointment). The worker (:mod:`.worker`) runs due
events through their rule (:mod:`.rules`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.automation.models import EVENT, AutomationEvent, EventStatus
from opdesk.context import RequestContext, utc_now
from opdesk.db import new_id

ENTITY = "automation_events"


def schedule(
    session: Session,
    ctx: RequestContext,
    *,
    rule: str,
    entity_type: str,
    entity_id: uuid.UUID,
    when: datetime,
    dedupe_key: str,
    payload: dict[str, Any] | None = None,
) -> AutomationEvent:
    """``rule`` for the entity at ``when``, once per ``dedupe_key`` in the clinic.

    Scheduling a key again returns the event that holds it; a pending one whose time
    differs moves to ``when``. Of two transactions scheduling the same key at once, the
    second waits for the first and then gets its event (``ON CONFLICT``).
    """
    assert ctx.tenant_id is not None, "automation events belong to a clinic"
    if when.tzinfo is None:
        raise ValueError("an automation event's time needs a time zone")
    now = ctx.now()
    created = session.scalars(
        insert(AutomationEvent)
        .values(
            tenant_id=ctx.tenant_id,
            id=new_id(),
            rule=rule,
            entity_ref_type=entity_type,
            entity_ref_id=entity_id,
            scheduled_for=when,
            status=EventStatus.PENDING,
            attempts=0,
            dedupe_key=dedupe_key,
            payload=payload or {},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
        .returning(AutomationEvent),
        execution_options={"populate_existing": True},
    ).one_or_none()
    if created is not None:
        _record_created(ctx, created)
        return created
    existing = session.execute(
        select(AutomationEvent)
        .where(AutomationEvent.dedupe_key == dedupe_key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if existing.status == EventStatus.PENDING and existing.scheduled_for != when:
        before = existing.scheduled_for
        existing.scheduled_for = when
        existing.updated_at = now
        session.flush()
        audit.record(
            ctx,
            entity=ENTITY,
            entity_id=existing.id,
            action="update",
            diff={"updated": {"scheduledFor": {"from": before, "to": when}}},
        )
    return existing


def _record_created(ctx: RequestContext, event: AutomationEvent) -> None:
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=event.id,
        action="create",
        diff={
            "added": {
                "rule": event.rule,
                "entity": f"{event.entity_ref_type}/{event.entity_ref_id}",
                "scheduledFor": event.scheduled_for,
                "dedupeKey": event.dedupe_key,
            }
        },
    )


def schedule_all(
    session: Session,
    ctx: RequestContext,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    when_by_rule: Mapping[str, datetime],
    key_of: Callable[[str], str],
    payload: dict[str, Any] | None = None,
) -> list[AutomationEvent]:
    """Several rules for one entity in one statement (a booking's confirmation, reminders
    and no-show check: one INSERT on the booking's hot path, not one per rule). A key
    already taken goes through :func:`schedule`, which leaves it or moves it.
    """
    assert ctx.tenant_id is not None, "automation events belong to a clinic"
    if any(when.tzinfo is None for when in when_by_rule.values()):
        raise ValueError("an automation event's time needs a time zone")
    if not when_by_rule:
        return []
    now = ctx.now()
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "id": new_id(),
            "rule": rule,
            "entity_ref_type": entity_type,
            "entity_ref_id": entity_id,
            "scheduled_for": when,
            "status": EventStatus.PENDING,
            "attempts": 0,
            "dedupe_key": key_of(rule),
            "payload": payload or {},
            "created_at": now,
            "updated_at": now,
        }
        for rule, when in when_by_rule.items()
    ]
    created = list(
        session.scalars(
            insert(AutomationEvent)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
            .returning(AutomationEvent),
            execution_options={"populate_existing": True},
        )
    )
    for event in created:
        _record_created(ctx, event)
    taken = {event.dedupe_key for event in created}
    return created + [
        schedule(
            session,
            ctx,
            rule=rule,
            entity_type=entity_type,
            entity_id=entity_id,
            when=when,
            dedupe_key=key_of(rule),
            payload=payload,
        )
        for rule, when in when_by_rule.items()
        if key_of(rule) not in taken
    ]


def cancel_for(
    session: Session,
    ctx: RequestContext,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    rules: list[str] | tuple[str, ...] | None = None,
) -> int:
    """Cancel the entity's pending events (of ``rules``, or all); returns how many.

    Each is locked and moved with the shared transition (audited); an event a worker is
    running right now is waited for, and then left alone if it has already run.
    """
    query = select(AutomationEvent).where(
        AutomationEvent.entity_ref_type == entity_type,
        AutomationEvent.entity_ref_id == entity_id,
        AutomationEvent.status == EventStatus.PENDING,
    )
    if rules is not None:
        query = query.where(AutomationEvent.rule.in_(list(rules)))
    cancelled = 0
    for event in session.execute(query.order_by(AutomationEvent.id)).scalars().all():
        records.lock(session, event)
        if event.status != EventStatus.PENDING:
            continue  # it ran (or failed) while we waited for its lock
        event.claimed_until = None
        event.claimed_by = None
        states.transition(session, ctx, event, EventStatus.CANCELLED, EVENT)
        cancelled += 1
    return cancelled


def retry(session: Session, ctx: RequestContext, event_id: uuid.UUID) -> AutomationEvent:
    """An admin's retry of a failed event: pending again, due now, with its attempts anew.

    404 for an unknown id (or another clinic's); 409 unless it failed.
    """
    event = records.by_id(session, AutomationEvent, event_id, lock=True)
    if not EVENT.allows(event.status, EventStatus.PENDING):
        raise EVENT.refuse(event.status, EventStatus.PENDING)
    attempts = event.attempts
    event.attempts = 0
    event.scheduled_for = ctx.now()
    event.claimed_until = None
    event.claimed_by = None
    states.transition(
        session,
        ctx,
        event,
        EventStatus.PENDING,
        EVENT,
        diff={"updated": {"attempts": {"from": attempts, "to": 0}}},
    )
    return event


def due_summary(
    session: Session | Connection, *, now: datetime | None = None
) -> tuple[int, datetime | None]:
    """How many rows (events and messages, all clinics) are due and free, and since when
    the oldest of them has been due. For health checks: counts and a time, no row content.
    """
    at = now or utc_now()
    row = session.execute(
        text(
            "select coalesce(sum(due), 0), min(oldest) "
            "from opdesk_due_work(:at, make_interval(secs => 0))"
        ),
        {"at": at},
    ).one()
    return int(row[0]), row[1]


def due_clinics(
    session: Session, *, now: datetime, horizon: timedelta
) -> tuple[list[uuid.UUID], datetime | None]:
    """The clinics with due work, the longest waiting first, and when the next row of any
    clinic falls due (within ``horizon``; ``None``: not that soon).
    """
    rows = session.execute(
        text(
            "select tenant_id, due, oldest, next_at "
            "from opdesk_due_work(:at, make_interval(secs => :horizon))"
        ),
        {"at": now, "horizon": horizon.total_seconds()},
    ).all()
    due = sorted((r for r in rows if r.due), key=lambda r: r.oldest)
    upcoming = [r.next_at for r in rows if r.next_at is not None]
    return [r.tenant_id for r in due], min(upcoming, default=None)
