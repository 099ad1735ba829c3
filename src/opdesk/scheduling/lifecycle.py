"""An appointment's life: moves along its machine, tokens at check-in, walk-ins, reschedules.

Every change of status is one statement, ``opdesk_move`` (migration 0022), given what the
table ``APPOINTMENT`` (``scheduling/models.py``) says of the target: the row is locked,
the move checked, the matching ``timeline_*`` field stamped, a token handed out at
check-in and an audit event with from/to described. The API's desk moves call the same
function through ``opdesk_api_move`` (``scheduling/hot.py``). A slot that frees up
(cancellation, reschedule, a future no-show) goes to the first waiting patient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, case, exists, select, text, update
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.automation import clinic_rules
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, DomainError, NotFound
from opdesk.patients.models import Patient
from opdesk.scheduling import booking, service, waitlist
from opdesk.scheduling.models import (
    APPOINTMENT,
    Appointment,
    AppointmentStatus,
    AvailabilityException,
    DoctorProfile,
    Slot,
    SlotStatus,
)
from opdesk.tenancy import service as tenants

RESCHEDULABLE = frozenset({AppointmentStatus.REQUESTED, AppointmentStatus.CONFIRMED})
# Moves that give the slot up: a slot that has not started yet is offered on.
RELEASING = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW})


def next_token(session: Session, ctx: RequestContext, doctor_id: uuid.UUID, day: date) -> int:
    """The next OPD token for one doctor on one day; concurrent check-ins never share one
    (``opdesk_token``, migration 0022).
    """
    assert ctx.tenant_id is not None
    bumped = session.execute(
        _TOKEN, {"tenant": ctx.tenant_id, "doctor": doctor_id, "day": day}
    ).scalar_one()
    return int(bumped)


_TOKEN = text("select opdesk_token(:tenant, :doctor, :day)")


def transition(
    session: Session,
    ctx: RequestContext,
    offers: waitlist.Offers,
    *,
    appointment_id: uuid.UUID,
    to: str,
) -> Appointment:
    """Move an appointment to ``to`` if ``APPOINTMENT`` allows it (409 naming both states
    if not), then do what follows the move.
    """
    appointment = move(session, ctx, appointment_id, to)
    after_move(session, ctx, offers, appointment)
    return appointment


def confirm(session: Session, ctx: RequestContext, appointment_id: uuid.UUID) -> Appointment:
    """A requested appointment is confirmed (its online payment arrived). Its slot is
    already booked for it, so nothing moves on the slot and nobody is offered anything.
    """
    appointment = move(session, ctx, appointment_id, AppointmentStatus.CONFIRMED)
    clinic_rules.on_status_changed(session, ctx, appointment)
    return appointment


@dataclass(frozen=True)
class MoveRule:
    """What ``opdesk_move`` needs to know of the lifecycle's table for one target: the
    statuses it may be reached from and the timeline column it stamps.
    """

    target: str
    allowed_from: list[str]
    stamp: str


def move_rule(to: str) -> MoveRule:
    allowed_from = [s.value for s in AppointmentStatus if APPOINTMENT.allows(s, to)]
    known = to in set(AppointmentStatus)
    stamp = APPOINTMENT.timeline[AppointmentStatus(to)] if known else "updated_at"
    return MoveRule(str(to), allowed_from, stamp)


def move_refusal(appointment_id: uuid.UUID, to: str, outcome: dict[str, Any]) -> DomainError:
    """The words for ``opdesk_move``'s refusal."""
    if outcome["refused"] == "unknown":
        return NotFound(f"no appointment with id {appointment_id}")
    return APPOINTMENT.refuse(outcome["from"], to)


def move(session: Session, ctx: RequestContext, appointment_id: uuid.UUID, to: str) -> Appointment:
    """The move itself, in one statement (``opdesk_move``, migration 0022): the row locked
    and checked, the status and timeline stamped, a token at check-in, the audit event.
    """
    rule = move_rule(to)
    outcome = session.execute(
        _MOVE,
        {
            "appointment": appointment_id,
            "target": rule.target,
            "allowed_from": rule.allowed_from,
            "stamp": rule.stamp,
            "at": ctx.now(),
        },
    ).scalar_one()
    if "refused" in outcome:
        raise move_refusal(appointment_id, to, outcome)
    booking.record_event(ctx, outcome["audit"])
    # The statement changed the row behind the ORM's back: read it afresh (still locked).
    return records.by_id(session, Appointment, appointment_id, lock=True)


_MOVE = text("select opdesk_move(:appointment, :target, :allowed_from, :stamp, :at)")


def after_move(
    session: Session, ctx: RequestContext, offers: waitlist.Offers, appointment: Appointment
) -> None:
    """What follows a move: the appointment's pending events and charge as its new status
    wants them (``clinic_rules.on_status_changed``), and a slot given up offered on.
    """
    clinic_rules.on_status_changed(session, ctx, appointment)
    if appointment.status in RELEASING and appointment.slot_id is not None:
        _release(session, ctx, offers, appointment.slot_id)


def _release(
    session: Session, ctx: RequestContext, offers: waitlist.Offers, slot_id: uuid.UUID
) -> None:
    """Give back a slot that has not started yet: offered to the waitlist, or, when the
    doctor is away at that time, blocked (time away keeps no bookable slots).
    """
    freed = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.status == SlotStatus.BOOKED, Slot.starts_at > ctx.now())
        .values(status=case((_inside_time_away(Slot), SlotStatus.BLOCKED), else_=SlotStatus.FREE))
        .returning(Slot)
    ).scalar_one_or_none()
    if freed is None:
        return
    audit.record(
        ctx,
        entity="slots",
        entity_id=freed.id,
        action="state-transition",
        from_state=SlotStatus.BOOKED,
        to_state=freed.status,
    )
    if freed.status == SlotStatus.FREE:
        waitlist.offer_next(session, ctx, offers, freed)


def _inside_time_away(slot: type[Slot] | Slot) -> ColumnElement[bool]:
    """The slot overlaps time its doctor is away (``add_exception`` removes such slots
    when they are free).
    """
    return exists().where(
        AvailabilityException.tenant_id == slot.tenant_id,
        AvailabilityException.doctor_id == slot.doctor_id,
        AvailabilityException.starts_at < slot.occupied_until,
        AvailabilityException.ends_at > slot.occupied_from,
    )


def frees_slot(session: Session, ctx: RequestContext, slot: Slot | None, to: str) -> bool:
    """Whether moving an appointment on ``slot`` to ``to`` gives the slot back to booking
    (and so to the waitlist): the rule :func:`_release` applies, asked before the move.
    """
    return (
        to in RELEASING
        and slot is not None
        and slot.status == SlotStatus.BOOKED
        and slot.starts_at > ctx.now()
        and not session.execute(select(_inside_time_away(slot))).scalar_one()
    )


def reopen(
    session: Session, ctx: RequestContext, offers: waitlist.Offers, slot_id: uuid.UUID
) -> Slot:
    """Put a blocked slot back into booking; the first waiting patient is offered it."""
    slot = service.set_blocked(session, ctx, slot_id, blocked=False)
    waitlist.offer_next(session, ctx, offers, slot)
    return slot


def reschedule(
    session: Session,
    ctx: RequestContext,
    offers: waitlist.Offers,
    *,
    appointment_id: uuid.UUID,
    slot_id: uuid.UUID,
    origin: booking.Origin,
    visit_type: str | None = None,
) -> Appointment:
    """A new appointment on ``slot_id`` continuing this one; the old one is cancelled and
    its slot freed, all in the caller's transaction. Of concurrent reschedules of the same
    appointment one wins: the others wait on the row lock, then find it cancelled (409).
    """
    old = records.by_id(session, Appointment, appointment_id, lock=True)
    if old.status not in RESCHEDULABLE:
        raise Conflict(f"a {old.status} appointment cannot be rescheduled")
    new = booking.book(
        session,
        ctx,
        booking.BookingRequest(
            slot_id=slot_id,
            patient_id=old.patient_id,
            visit_type=visit_type or old.visit_type,
            channel=old.channel,
            reason=old.reason,
            origin=booking.Origin(
                hold_token=origin.hold_token,
                online=origin.online,
                reschedule_of=old.id,
                follow_up_for=old.follow_up_for,
            ),
        ),
    )
    transition(session, ctx, offers, appointment_id=old.id, to=AppointmentStatus.CANCELLED)
    return new


def walk_in(
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    doctor_id: uuid.UUID,
    visit_type: str,
    reason: str | None = None,
) -> Appointment:
    """A patient without a slot joins today's queue for the doctor with the next token."""
    patient = records.by_id(session, Patient, patient_id)
    doctor = records.by_id(session, DoctorProfile, doctor_id)
    now = ctx.now()
    appointment = Appointment(
        tenant_id=doctor.tenant_id,
        id=new_id(),
        patient_id=patient.id,
        doctor_id=doctor.id,
        slot_id=None,
        visit_type=visit_type,
        reason=reason,
        channel="walk-in",
        status=AppointmentStatus.CHECKED_IN,
        timeline_requested_at=now,
        timeline_confirmed_at=now,
        timeline_checked_in_at=now,
        created_by=ctx.actor_id,
        updated_at=now,
    )
    appointment.queue_date = tenants.today_at_clinic(session, ctx)
    appointment.token_number = next_token(session, ctx, doctor.id, appointment.queue_date)
    session.add(appointment)
    session.flush()
    audit.record(
        ctx,
        entity="appointments",
        entity_id=appointment.id,
        action="create",
        to_state=AppointmentStatus.CHECKED_IN,
        diff=audit.diff_of({}, {"patientId": patient.id, "channel": "walk-in"}),
    )
    return appointment


def queue(
    session: Session, ctx: RequestContext, *, doctor_id: uuid.UUID | None, day: date
) -> list[Appointment]:
    """The day's tokens in order, for one doctor or all of them."""
    stmt = select(Appointment).where(
        Appointment.queue_date == day, Appointment.token_number.is_not(None)
    )
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    return list(
        session.execute(stmt.order_by(Appointment.doctor_id, Appointment.token_number)).scalars()
    )
