"""The waitlist: a freed slot is offered to the first waiting patient for a while.

An offer is a ``waitlist_locks`` row (seed) plus a hold on the slot that only that
offer can book, both ending at ``expires_at``. Declining, or letting it lapse, offers
the slot to the next patient in line who has not had it yet. Offers and entries move
along their machines (``WAITLIST_OFFER``, ``WAITLIST_ENTRY``) through
:func:`opdesk.states.transition`.

Each offer schedules its own expiry (the automation rule ``waitlist-offer-expiry``, due at
``expires_at``), so the slot moves on when the offer lapses; a hold's expiry (rule
``hold-expiry``) does the same for a slot held while booking. :func:`lapse_offers` and
:func:`release_lapsed_holds`, run by the sweeps, catch whatever those events missed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.automation import clinic_rules
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput
from opdesk.identity.service._common import whole_minutes
from opdesk.notifications import service as outbox
from opdesk.patients.models import Patient
from opdesk.patients.service import contact_phone
from opdesk.scheduling import booking
from opdesk.scheduling.models import (
    IN_LINE,
    WAITLIST_ENTRY,
    WAITLIST_OFFER,
    Appointment,
    DoctorProfile,
    OfferStatus,
    Slot,
    SlotStatus,
    WaitlistEntry,
    WaitlistLock,
    WaitlistStatus,
)
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenants


@dataclass(frozen=True)
class Offers:
    """How freed slots are offered: the cipher that reads the patient's phone for the
    message, and how long the offer is kept (``OPDESK_WAITLIST_OFFER_MINUTES``).
    """

    cipher: FieldCipher
    keep_for: timedelta


LONGEST_WAIT = timedelta(days=180)


def join(
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    doctor_id: uuid.UUID,
    from_date: date,
    until_date: date,
    visit_type: str,
) -> WaitlistEntry:
    """Put a patient in line for any slot of the doctor between two clinic-local dates."""
    patient = records.by_id(session, Patient, patient_id)
    doctor = records.by_id(session, DoctorProfile, doctor_id)
    today = tenants.today_at_clinic(session, ctx)
    errors = []
    if from_date < today:
        errors.append(FieldError("fromDate", "is in the past"))
    if until_date < from_date:
        errors.append(FieldError("untilDate", "must be on or after fromDate"))
    if until_date > today + LONGEST_WAIT:
        errors.append(FieldError("untilDate", "must be within 180 days"))
    if visit_type not in {v["code"] for v in doctor.visit_types}:
        errors.append(FieldError("visitType", "is not one of this doctor's visit types"))
    if errors:
        raise InvalidInput(errors)
    entry = WaitlistEntry(
        tenant_id=doctor.tenant_id,
        id=new_id(),
        patient_id=patient.id,
        doctor_id=doctor.id,
        from_date=from_date,
        until_date=until_date,
        visit_type=visit_type,
        status=WaitlistStatus.WAITING,
        created_at=ctx.now(),
        created_by=ctx.actor_id,
    )
    session.add(entry)
    session.flush()
    audit.record(ctx, entity="waitlist_entries", entity_id=entry.id, action="create")
    return entry


def withdraw(session: Session, ctx: RequestContext, *, entry_id: uuid.UUID) -> WaitlistEntry:
    entry = records.by_id(session, WaitlistEntry, entry_id, lock=True)
    states.transition(session, ctx, entry, WaitlistStatus.WITHDRAWN, WAITLIST_ENTRY)
    return entry


def _next_in_line(session: Session, slot: Slot) -> WaitlistEntry | None:
    """The longest-waiting patient who wants this slot's day and has not had it offered."""
    already_offered = exists().where(
        WaitlistLock.slot_id == slot.id, WaitlistLock.entry_id == WaitlistEntry.id
    )
    has_slot_already = exists().where(
        Appointment.slot_id == slot.id,
        Appointment.patient_id == WaitlistEntry.patient_id,
    )
    return session.execute(
        select(WaitlistEntry)
        .where(
            WaitlistEntry.doctor_id == slot.doctor_id,
            WaitlistEntry.status == WaitlistStatus.WAITING,
            WaitlistEntry.from_date <= slot.date,
            WaitlistEntry.until_date >= slot.date,
            WaitlistEntry.visit_type.in_(slot.meta.get("visitType") or []),
            ~already_offered,
            ~has_slot_already,
        )
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()


def offer_next(
    session: Session,
    ctx: RequestContext,
    offers: Offers,
    slot: Slot,
) -> WaitlistLock | None:
    """Offer a free slot to the next waiting patient: lock, hold and message in one go."""
    entry = _next_in_line(session, slot)
    if entry is None:
        return None
    now = ctx.now()
    lock = WaitlistLock(
        tenant_id=slot.tenant_id,
        id=new_id(),
        slot_id=slot.id,
        patient_id=entry.patient_id,
        entry_id=entry.id,
        expires_at=min(now + offers.keep_for, slot.starts_at),
        status=OfferStatus.OFFERED,
        created_at=now,
    )
    session.add(lock)
    session.flush()
    held = session.execute(
        update(Slot)
        .where(Slot.id == slot.id, booking.claimable(ctx))
        .values(
            status=SlotStatus.HELD,
            hold_expires_at=lock.expires_at,
            meta=Slot.meta.op("-")("holdHash").op("||")({"waitlistLock": str(lock.id)}),
        )
        .returning(Slot.id)
    ).first()
    if held is None:  # someone took the slot in the meantime; nothing to offer
        session.delete(lock)
        session.flush()
        return None
    states.transition(session, ctx, entry, WaitlistStatus.OFFERED, WAITLIST_ENTRY)
    _send_offer(session, ctx, offers.cipher, lock, slot)
    clinic_rules.on_offered(session, ctx, lock, keep_for=offers.keep_for)
    audit.record(
        ctx,
        entity="waitlist_locks",
        entity_id=lock.id,
        action="create",
        to_state=OfferStatus.OFFERED,
        diff=audit.diff_of({}, {"slotId": slot.id, "patientId": entry.patient_id}),
    )
    return lock


def _send_offer(
    session: Session, ctx: RequestContext, cipher: FieldCipher, lock: WaitlistLock, slot: Slot
) -> None:
    patient = session.get(Patient, (lock.tenant_id, lock.patient_id))
    doctor = session.get(DoctorProfile, (lock.tenant_id, slot.doctor_id))
    assert patient is not None
    assert doctor is not None
    phone = contact_phone(session, cipher, patient)
    if phone is None:
        return  # the desk sees the offer on the waitlist page and can call
    zone = tenants.zone_of(session, lock.tenant_id)
    outbox.enqueue(
        session,
        ctx,
        cipher,
        channel="sms",
        template="waitlist-offer",
        recipient=phone,
        payload={
            "patient": patient.full_name,
            "doctor": doctor.display_name,
            "startsAt": slot.starts_at.astimezone(zone).strftime("%a %d %b, %I:%M %p"),
            "offerId": str(lock.id),
            "minutes": whole_minutes(lock.expires_at - lock.created_at),
        },
        patient_id=patient.id,
        language=patient.preferred_language,
        dedupe_key=f"waitlist-offer:{lock.id}",
    )


def _open_offer(
    session: Session, ctx: RequestContext, lock_id: uuid.UUID, to: OfferStatus
) -> WaitlistLock:
    """The offer, locked, if it may still be answered with ``to``; else 409."""
    lock = records.by_id(session, WaitlistLock, lock_id, lock=True)
    if not WAITLIST_OFFER.allows(lock.status, to):
        raise WAITLIST_OFFER.refuse(lock.status, to)
    if lock.expires_at <= ctx.now():
        raise Conflict("this offer has expired")
    return lock


def accept(
    session: Session,
    ctx: RequestContext,
    *,
    lock_id: uuid.UUID,
    channel: str,
    online: bool,
) -> Appointment:
    """Book the offered slot for the patient it was offered to (``waitlistOrigin`` set)."""
    lock = _open_offer(session, ctx, lock_id, OfferStatus.ACCEPTED)
    entry = records.by_id(session, WaitlistEntry, lock.entry_id, lock=True)
    appointment = booking.book(
        session,
        ctx,
        booking.BookingRequest(
            slot_id=lock.slot_id,
            patient_id=lock.patient_id,
            visit_type=entry.visit_type,
            channel=channel,
            origin=booking.Origin(
                waitlist_lock_id=lock.id, waitlist_entry_id=entry.id, online=online
            ),
        ),
    )
    states.transition(session, ctx, lock, OfferStatus.ACCEPTED, WAITLIST_OFFER)
    states.transition(session, ctx, entry, WaitlistStatus.BOOKED, WAITLIST_ENTRY)
    clinic_rules.on_offer_answered(session, ctx, lock.id)
    return appointment


def decline(
    session: Session, ctx: RequestContext, offers: Offers, *, lock_id: uuid.UUID
) -> WaitlistLock:
    """The patient does not want this slot: they stay in line, the slot goes to the next."""
    lock = _open_offer(session, ctx, lock_id, OfferStatus.DECLINED)
    _lapse(session, ctx, offers, lock, OfferStatus.DECLINED)
    clinic_rules.on_offer_answered(session, ctx, lock.id)
    return lock


def _lapse(
    session: Session, ctx: RequestContext, offers: Offers, lock: WaitlistLock, to: OfferStatus
) -> None:
    """The offer ends unanswered: its patient goes back in line (unless they left it) and
    the slot to the next patient.
    """
    states.transition(session, ctx, lock, to, WAITLIST_OFFER)
    entry = records.by_id(session, WaitlistEntry, lock.entry_id, lock=True)
    if entry.status == WaitlistStatus.OFFERED:
        states.transition(session, ctx, entry, WaitlistStatus.WAITING, WAITLIST_ENTRY)
    released = session.execute(
        update(Slot)
        .where(Slot.id == lock.slot_id, Slot.meta["waitlistLock"].astext == str(lock.id))
        .values(
            status=SlotStatus.FREE, hold_expires_at=None, meta=Slot.meta.op("-")("waitlistLock")
        )
        .returning(Slot)
    ).scalar_one_or_none()
    session.flush()
    if released is not None and released.starts_at > ctx.now():
        offer_next(session, ctx, offers, released)


def lapse_offers(session: Session, ctx: RequestContext, offers: Offers) -> int:
    """Offers that ran out: each slot goes on to the next patient in line."""
    lapsed = list(
        session.execute(
            select(WaitlistLock)
            .where(WaitlistLock.status == OfferStatus.OFFERED, WaitlistLock.expires_at <= ctx.now())
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    for lock in lapsed:
        _lapse(session, ctx, offers, lock, OfferStatus.EXPIRED)
        clinic_rules.on_offer_answered(session, ctx, lock.id)  # its event missed it
    return len(lapsed)


def expire_offer(session: Session, ctx: RequestContext, offers: Offers, lock: WaitlistLock) -> bool:
    """One offer's expiry, at its time (the automation event of :func:`offer_next`): if it
    is still open and has run out, it lapses as :func:`lapse_offers` would lapse it (its
    patient back in line, the slot offered to the next one). ``lock`` is locked by the
    caller. False when there was nothing to do (answered, or lapsed by a sweep).
    """
    if lock.status != OfferStatus.OFFERED or lock.expires_at > ctx.now():
        return False
    _lapse(session, ctx, offers, lock, OfferStatus.EXPIRED)
    return True


def _release(
    session: Session,
    ctx: RequestContext,
    offers: Offers | None,
    slots: list[Slot],
    *,
    entity_id: uuid.UUID | None = None,
) -> None:
    """Audit the holds let go (one event naming every slot) and offer each slot that has
    not begun to the next patient in line, if one waits for it (someone may have joined
    the line while the hold hid the slot); a slot nobody waits for is free for everyone.
    """
    if not slots:
        return
    # One event for a sweep of a clinic, naming every slot it let go.
    audit.record(
        ctx,
        entity="slots",
        entity_id=entity_id,
        action="state-transition",
        from_state=SlotStatus.HELD,
        to_state=SlotStatus.FREE,
        diff=audit.diff_of({}, {"lapsedHolds": sorted(str(s.id) for s in slots)}),
    )
    session.flush()
    if offers is None:
        return
    for slot in slots:
        if slot.starts_at > ctx.now():
            offer_next(session, ctx, offers, slot)


def release_hold(
    session: Session,
    ctx: RequestContext,
    offers: Offers,
    slot: Slot,
    *,
    expires_at: datetime,
) -> bool:
    """One hold's expiry, at its time (the automation event of ``booking.hold``): if the
    slot is still held by that hold (held until ``expires_at``, by a requester's token, not
    a waitlist offer) and the hold has run out, the slot is let go as
    :func:`release_lapsed_holds` lets it go. ``slot`` is locked by the caller. False when
    there was nothing to do (booked, held anew, or released by a sweep).
    """
    now = ctx.now()
    if (
        slot.status != SlotStatus.HELD
        or "holdHash" not in slot.meta
        or slot.hold_expires_at is None
        or slot.hold_expires_at != expires_at
        or slot.hold_expires_at > now
    ):
        return False
    released = session.execute(
        update(Slot)
        .where(Slot.id == slot.id, Slot.status == SlotStatus.HELD)
        .values(
            status=SlotStatus.FREE,
            hold_expires_at=None,
            meta=Slot.meta.op("-")("holdHash").op("-")("waitlistLock"),
        )
        .returning(Slot)
        .execution_options(populate_existing=True)
    ).scalar_one()
    _release(session, ctx, offers, [released], entity_id=released.id)
    return True


def release_lapsed_holds(
    session: Session, ctx: RequestContext, offers: Offers | None = None
) -> int:
    """Holds past their expiry are let go (the seed's TTL index on holds); with ``offers``
    each slot goes to the next patient in line first, as a hold's own expiry event does.
    """
    released = list(
        session.execute(
            update(Slot)
            .where(Slot.status == SlotStatus.HELD, Slot.hold_expires_at <= ctx.now())
            .values(
                status=SlotStatus.FREE,
                hold_expires_at=None,
                meta=Slot.meta.op("-")("holdHash").op("-")("waitlistLock"),
            )
            .returning(Slot)
            .execution_options(populate_existing=True)
        ).scalars()
    )
    released.sort(key=lambda slot: (slot.starts_at, slot.id))
    _release(session, ctx, offers, released)
    for slot in released:  # their expiry events have nothing left to do
        clinic_rules.on_hold_released(session, ctx, slot.id)
    return len(released)


def entries(
    session: Session,
    *,
    doctor_id: uuid.UUID | None = None,
    patient_ids: list[uuid.UUID] | None = None,
) -> list[WaitlistEntry]:
    stmt = select(WaitlistEntry).where(WaitlistEntry.status.in_(IN_LINE))
    if doctor_id is not None:
        stmt = stmt.where(WaitlistEntry.doctor_id == doctor_id)
    if patient_ids is not None:
        stmt = stmt.where(WaitlistEntry.patient_id.in_(patient_ids))
    return list(session.execute(stmt.order_by(WaitlistEntry.created_at)).scalars())


def open_offers(
    session: Session, ctx: RequestContext, patient_ids: list[uuid.UUID]
) -> list[WaitlistLock]:
    return list(
        session.execute(
            select(WaitlistLock).where(
                and_(
                    WaitlistLock.patient_id.in_(patient_ids),
                    WaitlistLock.status == OfferStatus.OFFERED,
                    WaitlistLock.expires_at > ctx.now(),
                )
            )
        ).scalars()
    )


def offer(session: Session, offer_id: uuid.UUID) -> WaitlistLock:
    return records.by_id(session, WaitlistLock, offer_id)
