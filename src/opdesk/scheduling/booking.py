"""Holding and booking slots: exactly one appointment per slot, however many try at once.

The winner is decided by one conditional UPDATE on the slot row: it succeeds only while
the slot is free (or held by this requester, or held past its expiry). PostgreSQL's row
lock makes every other attempt see the slot already taken; a partial unique index on
appointments backs this up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, Forbidden
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment, Slot
from opdesk.security.tokens import random_token, token_hash

HOLD_FOR = timedelta(minutes=5)


@dataclass(frozen=True)
class Hold:
    slot_id: uuid.UUID
    token: str
    expires_at: datetime


def _claimable(ctx: RequestContext) -> ColumnElement[bool]:
    """A slot anyone may take now: free, or held past its expiry (before any sweeper runs)."""
    now = ctx.now()
    return or_(Slot.status == "free", and_(Slot.status == "held", Slot.hold_expires_at <= now))


def hold(
    session: Session, ctx: RequestContext, *, slot_id: uuid.UUID, hold_for: timedelta = HOLD_FOR
) -> Hold:
    """Keep a slot for one requester for a few minutes; the token proves who holds it."""
    records.by_id(session, Slot, slot_id)  # 404 for unknown or foreign ids
    token = random_token()
    expires = ctx.now() + hold_for
    taken = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, _claimable(ctx))
        .values(
            status="held",
            hold_expires_at=expires,
            meta=Slot.meta.op("||")({"holdHash": token_hash(token).hex()}),
        )
        .returning(Slot.id)
    ).first()
    if taken is None:
        raise Conflict("this slot has just been taken; please choose another")
    return Hold(slot_id, token, expires)


def book(
    session: Session,
    ctx: RequestContext,
    *,
    slot_id: uuid.UUID,
    patient_id: uuid.UUID,
    visit_type: str,
    channel: str,
    reason: str | None = None,
    hold_token: str | None = None,
    online: bool = False,
) -> Appointment:
    """Book a slot, from the requester's hold or directly (front desk). Losers get 409."""
    patient = records.by_id(session, Patient, patient_id)
    if online and patient.flags_blocked:
        raise Forbidden("this patient cannot book online; please call the clinic")
    slot = records.by_id(session, Slot, slot_id)
    mine = Slot.status == "held"
    if hold_token is not None:
        mine = and_(
            mine,
            Slot.meta["holdHash"].astext == token_hash(hold_token).hex(),
            Slot.hold_expires_at > ctx.now(),
        )
        condition = or_(mine, _claimable(ctx))
    else:
        condition = _claimable(ctx)
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot.id, condition)
        .values(status="booked", hold_expires_at=None, meta=Slot.meta.op("-")("holdHash"))
        .returning(Slot.id)
    ).first()
    if won is None:
        raise Conflict("this slot is no longer available; please choose another")
    now = ctx.now()
    appointment = Appointment(
        tenant_id=slot.tenant_id,
        id=new_id(),
        patient_id=patient.id,
        doctor_id=slot.doctor_id,
        slot_id=slot.id,
        visit_type=visit_type,
        reason=reason,
        channel=channel,
        status="confirmed",
        timeline_requested_at=now,
        timeline_confirmed_at=now,
        created_by=ctx.actor_id,
        updated_at=now,
    )
    session.add(appointment)
    session.flush()
    audit.record(
        ctx,
        entity="appointments",
        entity_id=appointment.id,
        action="create",
        to_state="confirmed",
        diff=audit.diff_of({}, {"slotId": slot.id, "patientId": patient.id, "channel": channel}),
    )
    return appointment


def free_slots(
    session: Session, ctx: RequestContext, *, doctor_id: uuid.UUID, day: date
) -> list[Slot]:
    """The doctor's slots that can be booked on a clinic-local day, expired holds included."""
    return list(
        session.execute(
            select(Slot)
            .where(Slot.doctor_id == doctor_id, Slot.date == day, _claimable(ctx))
            .order_by(Slot.starts_at)
        ).scalars()
    )
