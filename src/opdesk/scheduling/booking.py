"""Holding and booking slots: exactly one appointment per slot, however many try at once.

The winner is decided by one conditional UPDATE on the slot row: it succeeds only while
the slot is free (or held by this requester, or held past its expiry). PostgreSQL's row
lock makes every other attempt see the slot already taken; a partial unique index on
appointments backs this up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from opdesk import audit, metrics, records
from opdesk.automation import clinic_rules
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, DomainError, FieldError, Forbidden, InvalidInput, NotFound
from opdesk.formatting import clock_time, day_name
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment, AppointmentStatus, Slot, SlotStatus
from opdesk.security.tokens import random_token, token_hash
from opdesk.tenancy import service as tenants

APPOINTMENTS: Table = Appointment.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Hold:
    slot_id: uuid.UUID
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Origin:
    """How the booking may take the slot, and what it continues."""

    hold_token: str | None = None
    waitlist_lock_id: uuid.UUID | None = None
    waitlist_entry_id: uuid.UUID | None = None
    online: bool = False
    reschedule_of: uuid.UUID | None = None
    follow_up_for: uuid.UUID | None = None


@dataclass(frozen=True)
class BookingRequest:
    """What a booking asks for; where it came from is in ``origin``."""

    slot_id: uuid.UUID
    patient_id: uuid.UUID
    visit_type: str
    channel: str
    reason: str | None = None
    notes: str | None = None
    origin: Origin = field(default_factory=Origin)
    # The desk and the API are warned (409) when the patient already has an appointment
    # with this doctor close by; they book anyway by saying so. Other callers (waitlist
    # offers, reschedules) are not checked: the patient asked for that time themselves.
    check_near: bool = False


def claimable(ctx: RequestContext) -> ColumnElement[bool]:
    """A slot anyone may take now: free, or held past its expiry (before any sweeper runs),
    and not yet over.
    """
    now = ctx.now()
    return and_(
        Slot.ends_at > now,
        or_(
            Slot.status == SlotStatus.FREE,
            and_(Slot.status == SlotStatus.HELD, Slot.hold_expires_at <= now),
        ),
    )


def hold(session: Session, ctx: RequestContext, *, slot_id: uuid.UUID, hold_for: timedelta) -> Hold:
    """Keep a slot for one requester for a few minutes; the token proves who holds it."""
    token = random_token()
    expires = ctx.now() + hold_for
    taken = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, claimable(ctx))
        .values(
            status=SlotStatus.HELD,
            hold_expires_at=expires,
            meta=Slot.meta.op("-")("waitlistLock").op("||")({"holdHash": token_hash(token).hex()}),
        )
        .returning(Slot.id)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        raise refusal(ctx, records.by_id(session, Slot, slot_id))  # 404 when unknown
    audit.record(
        ctx,
        entity="slots",
        entity_id=slot_id,
        action="state-transition",
        from_state=SlotStatus.FREE,
        to_state=SlotStatus.HELD,
        diff=audit.diff_of({}, {"holdExpiresAt": expires}),
    )
    clinic_rules.on_held(session, ctx, slot_id=slot_id, expires_at=expires)
    return Hold(slot_id, token, expires)


def refusal(ctx: RequestContext, slot: Slot) -> Conflict:
    """Why a slot cannot be had, in words for the person who asked."""
    if slot.ends_at <= ctx.now():
        return Conflict("this slot is already over; please choose a later one")
    reason = {
        SlotStatus.BOOKED: "is already booked",
        SlotStatus.HELD: "is being booked by someone else right now",
        SlotStatus.BLOCKED: "is not open for booking",
    }.get(slot.status, "is no longer available")
    return Conflict(f"this slot {reason}; please choose another")


def _held_for(ctx: RequestContext, origin: Origin) -> ColumnElement[bool] | None:
    """The condition under which the slot is held for this requester, if they say it is."""
    now = ctx.now()
    # A hold taken near the end of a slot may outlast it; an ended slot is never booked.
    live = and_(Slot.status == SlotStatus.HELD, Slot.hold_expires_at > now, Slot.ends_at > now)
    if origin.hold_token is not None:
        return and_(live, Slot.meta["holdHash"].astext == token_hash(origin.hold_token).hex())
    if origin.waitlist_lock_id is not None:
        return and_(live, Slot.meta["waitlistLock"].astext == str(origin.waitlist_lock_id))
    return None


def _patient(session: Session, patient_id: uuid.UUID) -> Any:
    """Only what booking needs of the patient (not their encrypted record)."""
    found = session.execute(
        select(Patient.id, Patient.flags_blocked).where(Patient.id == patient_id)
    ).first()
    if found is None:
        raise NotFound(f"no patient with id {patient_id}")
    return found


def check_visit_type(meta: dict[str, Any], visit_type: str) -> None:
    offered = meta.get("visitType") or []
    if visit_type not in offered:
        choices = ", ".join(offered) or "none"
        raise InvalidInput(
            [FieldError("visitType", f"this slot is for {choices}, not {visit_type!r}")]
        )


@dataclass(frozen=True)
class Taken:
    tenant_id: uuid.UUID
    id: uuid.UUID
    doctor_id: uuid.UUID
    meta: dict[str, Any]
    day: date
    starts_at: datetime
    ends_at: datetime


def take_slot(session: Session, ctx: RequestContext, slot_id: uuid.UUID, origin: Origin) -> Taken:
    """Mark the slot booked if this requester may have it: 404 if unknown, 409 if taken.

    The happy path is this one UPDATE; the slot is read only to explain a refusal.
    """
    mine = _held_for(ctx, origin)
    condition = claimable(ctx) if mine is None else or_(mine, claimable(ctx))
    won = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, condition)
        .values(
            status=SlotStatus.BOOKED,
            hold_expires_at=None,
            meta=Slot.meta.op("-")("holdHash").op("-")("waitlistLock"),
        )
        .returning(
            Slot.tenant_id,
            Slot.id,
            Slot.doctor_id,
            Slot.meta,
            Slot.date,
            Slot.starts_at,
            Slot.ends_at,
        )
        .execution_options(synchronize_session=False)
    ).first()
    if won is None:
        raise refusal(ctx, records.by_id(session, Slot, slot_id))  # 404 when unknown
    return Taken(*won)


# Two appointments of one patient with one doctor this close on the same day are most
# likely one visit booked twice (a call taken twice, a wrong row clicked).
NEAR = timedelta(minutes=30)
# Appointments that still stand (a cancelled or missed one is no duplicate).
STANDING = (
    AppointmentStatus.REQUESTED,
    AppointmentStatus.CONFIRMED,
    AppointmentStatus.CHECKED_IN,
    AppointmentStatus.IN_CONSULT,
)


class NearDuplicate(Conflict):
    """The patient already has an appointment with this doctor close to this slot."""


def near_duplicates(
    session: Session,
    *,
    patient_id: uuid.UUID,
    doctor_id: uuid.UUID,
    day: date,
    starts_at: datetime,
    ends_at: datetime,
) -> list[tuple[Appointment, Slot]]:
    """The patient's standing appointments with the doctor on ``day`` that overlap the
    time or lie within :data:`NEAR` of it, earliest first.
    """
    stmt = (
        select(Appointment, Slot)
        .join(Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id))
        .where(
            Appointment.patient_id == patient_id,
            Appointment.doctor_id == doctor_id,
            Appointment.status.in_(STANDING),
            Slot.date == day,
            Slot.starts_at < ends_at + NEAR,
            Slot.ends_at > starts_at - NEAR,
        )
        .order_by(Slot.starts_at)
    )
    return [(a, s) for a, s in session.execute(stmt).all()]


def _refuse_near(session: Session, request: BookingRequest, slot: Taken) -> None:
    found = near_duplicates(
        session,
        patient_id=request.patient_id,
        doctor_id=slot.doctor_id,
        day=slot.day,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
    )
    if not found:
        return
    zone = tenants.zone_of(session, slot.tenant_id)
    times = ", ".join(clock_time(s.starts_at, str(zone)) for _a, s in found)
    raise NearDuplicate(
        f"this patient already has an appointment with this doctor at {times} "
        f"on {day_name(slot.day)}; book this one too only if both visits are meant",
        override="allowNearDuplicate",
        nearby=[
            {"appointmentId": str(a.id), "startsAt": t.starts_at.isoformat()} for a, t in found
        ],
    )


def book(session: Session, ctx: RequestContext, request: BookingRequest) -> Appointment:
    """Book a slot, from the requester's hold or directly (front desk). Losers get 409."""
    try:
        appointment = _book(session, ctx, request)
    except Conflict:
        metrics.BOOKINGS.labels("conflict").inc()
        raise
    except DomainError:
        metrics.BOOKINGS.labels("refused").inc()
        raise
    metrics.BOOKINGS.labels(str(appointment.status)).inc()
    return appointment


def _book(session: Session, ctx: RequestContext, request: BookingRequest) -> Appointment:
    origin = request.origin
    patient = _patient(session, request.patient_id)
    if origin.online and patient.flags_blocked:
        raise Forbidden("this patient cannot book online; please call the clinic")
    if origin.follow_up_for is not None:
        earlier = records.by_id(session, Appointment, origin.follow_up_for)
        if earlier.patient_id != patient.id:
            raise InvalidInput([FieldError("followUpFor", "is another patient's appointment")])
    # Take the slot first; a refusal below rolls the whole request back with it.
    slot = take_slot(session, ctx, request.slot_id, origin)
    check_visit_type(slot.meta, request.visit_type)
    if request.check_near:
        _refuse_near(session, request, slot)
    # Booked on the clinic's page: the clinic may want it paid for before it stands.
    on_page = origin.online and origin.hold_token is not None
    waits = on_page and clinic_rules.awaits_payment(
        session, slot.tenant_id, slot.doctor_id, request.visit_type
    )
    status = AppointmentStatus.REQUESTED if waits else AppointmentStatus.CONFIRMED
    now = ctx.now()
    fields = {
        "tenant_id": slot.tenant_id,
        "id": new_id(),
        "patient_id": patient.id,
        "doctor_id": slot.doctor_id,
        "slot_id": slot.id,
        "visit_type": request.visit_type,
        "reason": request.reason,
        "notes": request.notes,
        "channel": request.channel,
        "status": status,
        "timeline_requested_at": now,
        "timeline_confirmed_at": now if status == AppointmentStatus.CONFIRMED else None,
        "waitlist_origin": origin.waitlist_entry_id,
        "reschedule_of": origin.reschedule_of,
        "follow_up_for": origin.follow_up_for,
        "created_by": ctx.actor_id,
        "updated_at": now,
    }
    # A plain INSERT (the ORM's unit of work costs more than the SQL on this hot path);
    # the live-per-slot unique index is the last line of defence (409).
    session.execute(insert(APPOINTMENTS).values(fields))
    appointment = Appointment(**fields)  # as written; load it from the session to change it
    audit.record(
        ctx,
        entity="appointments",
        entity_id=appointment.id,
        action="create",
        to_state=status,
        diff=audit.diff_of(
            {},
            {"slotId": slot.id, "patientId": patient.id, "channel": request.channel},
        ),
    )
    clinic_rules.on_booked(
        session, ctx, appointment, starts_at=slot.starts_at, ends_at=slot.ends_at
    )
    return appointment
