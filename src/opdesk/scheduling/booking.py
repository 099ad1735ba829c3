"""Holding and booking slots: exactly one appointment per slot, however many try at once.

The rules are SQL functions (migration 0020: ``opdesk_hold``, ``opdesk_book``,
``slot_claimable``), one statement each: the winner is decided by one conditional UPDATE
on the slot row, which succeeds only while the slot is free (or held by this requester,
or held past its expiry). PostgreSQL's row lock makes every other attempt see the slot
already taken; a partial unique index on appointments backs this up. This module turns
their answers into appointments, audit events, follow-up work and refusals in words.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Table, func, select, text
from sqlalchemy.orm import Session

from opdesk import audit, metrics
from opdesk.automation import clinic_rules
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, DomainError, FieldError, Forbidden, InvalidInput, NotFound
from opdesk.formatting import clock_time, day_name
from opdesk.scheduling.models import Appointment, AppointmentStatus, Slot, SlotStatus
from opdesk.security.tokens import random_token, token_hash

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
    and not yet over (``slot_claimable``; the planner inlines it into searches).
    """
    return func.slot_claimable(
        Slot.status, Slot.hold_expires_at, Slot.ends_at, ctx.now(), type_=Boolean
    )


def hold(session: Session, ctx: RequestContext, *, slot_id: uuid.UUID, hold_for: timedelta) -> Hold:
    """Keep a slot for one requester for a few minutes; the token proves who holds it."""
    token = random_token()
    expires = ctx.now() + hold_for
    outcome = session.execute(
        _HOLD,
        {"slot": slot_id, "hash": token_hash(token).hex(), "expires": expires, "at": ctx.now()},
    ).scalar_one()
    if "refused" in outcome:
        raise slot_refusal(ctx, slot_id, outcome)
    record_event(ctx, outcome["audit"])
    clinic_rules.on_held(session, ctx, slot_id=slot_id, expires_at=expires)
    return Hold(slot_id, token, expires)


_HOLD = text("select opdesk_hold(:slot, :hash, :expires, :at)")


def record_event(ctx: RequestContext, event: dict[str, Any]) -> None:
    """Queue the audit event a SQL function described (it is written at commit)."""
    audit.record(
        ctx,
        entity=event["entity"],
        entity_id=uuid.UUID(event["entityId"]),
        action=event["action"],
        from_state=event["from"],
        to_state=event["to"],
        diff=event["diff"],
    )


def _not_available(ctx: RequestContext, status: str, ends_at: datetime) -> Conflict:
    if ends_at <= ctx.now():
        return Conflict("this slot is already over; please choose a later one")
    reason = {
        SlotStatus.BOOKED: "is already booked",
        SlotStatus.HELD: "is being booked by someone else right now",
        SlotStatus.BLOCKED: "is not open for booking",
    }.get(SlotStatus(status), "is no longer available")
    return Conflict(f"this slot {reason}; please choose another")


def slot_refusal(ctx: RequestContext, slot_id: uuid.UUID, outcome: dict[str, Any]) -> DomainError:
    """A slot refusal of ``opdesk_hold`` or ``opdesk_book``, in words: 404 or 409."""
    if outcome["refused"] == "slot-unknown":
        return NotFound(f"no slot with id {slot_id}")
    return _not_available(ctx, outcome["status"], _instant(outcome["endsAt"]))


def visit_type_refusal(offered: list[str], visit_type: str) -> InvalidInput:
    choices = ", ".join(offered) or "none"
    return InvalidInput(
        [FieldError("visitType", f"this slot is for {choices}, not {visit_type!r}")]
    )


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


def _near_refusal(outcome: dict[str, Any]) -> NearDuplicate:
    zone = outcome["timezone"]
    nearby = outcome["nearby"]
    times = ", ".join(clock_time(_instant(n["startsAt"]), zone) for n in nearby)
    day = date.fromisoformat(outcome["day"])
    return NearDuplicate(
        f"this patient already has an appointment with this doctor at {times} "
        f"on {day_name(day)}; book this one too only if both visits are meant",
        override="allowNearDuplicate",
        nearby=[
            {
                "appointmentId": n["appointmentId"],
                "startsAt": _instant(n["startsAt"]).isoformat(),
            }
            for n in nearby
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
    outcome = session.execute(
        _BOOK,
        {
            "slot": request.slot_id,
            "patient": request.patient_id,
            "visit_type": request.visit_type,
            "channel": request.channel,
            "reason": request.reason,
            "notes": request.notes,
            "hold_hash": token_hash(origin.hold_token).hex() if origin.hold_token else None,
            "lock": str(origin.waitlist_lock_id) if origin.waitlist_lock_id else None,
            "online": origin.online,
            "awaits_payment": _awaits_payment(session, request),
            "waitlist_origin": origin.waitlist_entry_id,
            "reschedule_of": origin.reschedule_of,
            "follow_up_for": origin.follow_up_for,
            "check_near": request.check_near,
            "id": new_id(),
            "actor": ctx.actor_id,
            "at": ctx.now(),
        },
    ).scalar_one()
    if "refused" in outcome:
        raise refused(ctx, request.slot_id, request.patient_id, request.visit_type, outcome)
    appointment = appointment_of(outcome["appointment"])
    record_event(ctx, outcome["audit"])
    slot = outcome["slot"]
    clinic_rules.on_booked(
        session,
        ctx,
        appointment,
        starts_at=_instant(slot["startsAt"]),
        ends_at=_instant(slot["endsAt"]),
    )
    return appointment


_BOOK = text(
    "select opdesk_book(:slot, :patient, :visit_type, :channel, :reason, :notes, :hold_hash, "
    ":lock, :online, :awaits_payment, :waitlist_origin, :reschedule_of, :follow_up_for, "
    ":check_near, :id, :actor, :at)"
)


def _awaits_payment(session: Session, request: BookingRequest) -> bool:
    """Booked on the clinic's page: the clinic may want it paid for before it stands."""
    if not (request.origin.online and request.origin.hold_token is not None):
        return False
    slot = session.execute(
        select(Slot.tenant_id, Slot.doctor_id).where(Slot.id == request.slot_id)
    ).first()
    # An unknown slot is opdesk_book's to refuse, after the patient.
    return slot is not None and clinic_rules.awaits_payment(
        session, slot.tenant_id, slot.doctor_id, request.visit_type
    )


def refused(
    ctx: RequestContext,
    slot_id: uuid.UUID,
    patient_id: uuid.UUID,
    visit_type: str,
    outcome: dict[str, Any],
) -> DomainError:
    """The refusal ``opdesk_book`` named, in words for the person who asked."""
    why = outcome["refused"]
    if why == "patient":
        return NotFound(f"no patient with id {patient_id}")
    if why == "blocked":
        return Forbidden("this patient cannot book online; please call the clinic")
    if why == "follow-up-unknown":
        return NotFound(f"no appointment with id {outcome.get('followUpFor')}")
    if why == "follow-up-other":
        return InvalidInput([FieldError("followUpFor", "is another patient's appointment")])
    if why == "visit-type":
        return visit_type_refusal(outcome["offered"], visit_type)
    if why == "near":
        return _near_refusal(outcome)
    return slot_refusal(ctx, slot_id, outcome)


def appointment_of(row: dict[str, Any]) -> Appointment:
    """The appointment as ``opdesk_book`` wrote it (JSON), as the model's Python values."""
    values: dict[str, Any] = {}
    for column in APPOINTMENTS.columns:
        value = row[column.name]
        parse = _PARSE.get(column.name) or _PARSE_TYPE.get(type(column.type).__name__)
        values[column.key] = value if value is None or parse is None else parse(value)
    return Appointment(**values)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


_PARSE: dict[str, Any] = {"status": AppointmentStatus}
_PARSE_TYPE: dict[str, Any] = {"Uuid": uuid.UUID, "DateTime": _instant, "Date": date.fromisoformat}
