"""Doctors' availability and slot generation.

Slots are made N days ahead from the weekly templates in the clinic's time zone. Making
them twice creates nothing new: PostgreSQL's exclusion constraint refuses any slot that
would overlap another of the same doctor, and the insert skips such rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound
from opdesk.identity.models import User
from opdesk.scheduling.booking import claimable
from opdesk.scheduling.models import (
    AvailabilityException,
    AvailabilityTemplate,
    DoctorProfile,
    Slot,
    SlotStatus,
)
from opdesk.tenancy import service as tenants

INSERT_BATCH = 1000


@dataclass(frozen=True)
class Opening:
    weekday: int
    start_time: time
    end_time: time
    slot_minutes: int
    buffer_before: int = 0
    buffer_after: int = 0
    visit_types: tuple[str, ...] = ("consultation",)


def _zone(session: Session, ctx: RequestContext) -> ZoneInfo:
    assert ctx.tenant_id is not None
    return tenants.zone_of(session, ctx.tenant_id)


def check_openings(openings: list[Opening]) -> None:
    """Bad templates name the field: length, order, and overlaps on the same weekday."""
    errors = []
    for i, o in enumerate(openings):
        if o.slot_minutes <= 0:
            errors.append(FieldError(f"templates.{i}.slotMinutes", "must be more than 0"))
        if o.end_time <= o.start_time:
            errors.append(FieldError(f"templates.{i}.endTime", "must be after the start time"))
        if not 0 <= o.weekday <= 6:
            errors.append(FieldError(f"templates.{i}.weekday", "must be 0 (Monday) to 6"))
    for i, a in enumerate(openings):
        for j, b in enumerate(openings[i + 1 :], start=i + 1):
            if a.weekday == b.weekday and a.start_time < b.end_time and b.start_time < a.end_time:
                errors.append(
                    FieldError(f"templates.{j}", f"overlaps template {i} on the same day")
                )
    if errors:
        raise InvalidInput(errors)


def set_templates(
    session: Session,
    ctx: RequestContext,
    *,
    doctor_id: uuid.UUID,
    openings: list[Opening],
    valid_from: date,
) -> list[AvailabilityTemplate]:
    """Replace the doctor's weekly openings; future free slots are made again from them."""
    check_openings(openings)
    doctor = records.by_id(session, DoctorProfile, doctor_id, lock=True)
    session.execute(delete(AvailabilityTemplate).where(AvailabilityTemplate.doctor_id == doctor.id))
    rows = [
        AvailabilityTemplate(
            tenant_id=doctor.tenant_id,
            id=new_id(),
            doctor_id=doctor.id,
            weekday=o.weekday,
            start_time=o.start_time,
            end_time=o.end_time,
            slot_minutes=o.slot_minutes,
            buffer_before=o.buffer_before,
            buffer_after=o.buffer_after,
            visit_types=list(o.visit_types),
            valid_from=valid_from,
        )
        for o in openings
    ]
    session.add_all(rows)
    session.flush()
    # Booked and held slots stay; only free future ones follow the new template.
    session.execute(
        delete(Slot).where(
            Slot.doctor_id == doctor.id,
            Slot.status == SlotStatus.FREE,
            Slot.starts_at > ctx.now(),
        )
    )
    audit.record(
        ctx,
        entity="doctor_profiles",
        entity_id=doctor.id,
        action="update",
        diff=audit.diff_of({}, {"templates": [vars(o) for o in openings]}),
    )
    return rows


def local_start(day: date, at: time, zone: ZoneInfo) -> datetime | None:
    """``day at`` in the clinic's zone, or None when that local time does not exist (DST)."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=zone)
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return aware


def planned_slots(
    doctor: DoctorProfile,
    templates: list[AvailabilityTemplate],
    away: list[AvailabilityException],
    zone: ZoneInfo,
    first_day: date,
    days: int,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for t in templates:
            if t.weekday != day.weekday() or day < t.valid_from:
                continue
            if t.valid_until is not None and day > t.valid_until:
                continue
            rows.extend(_day_slots(doctor, t, day, zone, away))
    return rows


def _day_slots(
    doctor: DoctorProfile,
    t: AvailabilityTemplate,
    day: date,
    zone: ZoneInfo,
    away: list[AvailabilityException],
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    step = t.buffer_before + t.slot_minutes + t.buffer_after
    minute = t.start_time.hour * 60 + t.start_time.minute + t.buffer_before
    last = t.end_time.hour * 60 + t.end_time.minute
    while minute + t.slot_minutes + t.buffer_after <= last:
        begins = local_start(day, time(minute // 60, minute % 60), zone)
        minute += step
        if begins is None:
            continue
        starts = begins.astimezone(UTC)
        ends = starts + timedelta(minutes=t.slot_minutes)
        held_from = starts - timedelta(minutes=t.buffer_before)
        held_until = ends + timedelta(minutes=t.buffer_after)
        if any(e.starts_at < held_until and held_from < e.ends_at for e in away):
            continue
        rows.append(
            {
                "tenant_id": doctor.tenant_id,
                "id": new_id(),
                "doctor_id": doctor.id,
                "date": day,
                "starts_at": starts,
                "ends_at": ends,
                "occupied_from": held_from,
                "occupied_until": held_until,
                "status": SlotStatus.FREE,
                "meta": {
                    "visitType": list(t.visit_types),
                    "bufferBefore": t.buffer_before,
                    "bufferAfter": t.buffer_after,
                },
            }
        )
    return rows


def generate_slots(
    session: Session,
    ctx: RequestContext,
    *,
    doctor_id: uuid.UUID,
    days: int,
    first_day: date | None = None,
) -> int:
    """Make the doctor's free slots for ``days`` days; returns how many were new."""
    zone = _zone(session, ctx)
    doctor = records.by_id(session, DoctorProfile, doctor_id)
    start = first_day or ctx.now().astimezone(zone).date()
    templates = list(
        session.execute(
            select(AvailabilityTemplate).where(AvailabilityTemplate.doctor_id == doctor.id)
        ).scalars()
    )
    window_end = datetime.combine(start + timedelta(days=days + 1), time(), zone)
    away = list(
        session.execute(
            select(AvailabilityException).where(
                AvailabilityException.doctor_id == doctor.id,
                AvailabilityException.ends_at > datetime.combine(start, time(), zone),
                AvailabilityException.starts_at < window_end,
            )
        ).scalars()
    )
    rows = planned_slots(doctor, templates, away, zone, start, days)
    made = 0
    for i in range(0, len(rows), INSERT_BATCH):
        stmt = insert(Slot).values(rows[i : i + INSERT_BATCH]).on_conflict_do_nothing()
        made += len(session.execute(stmt.returning(Slot.id)).all())
    if made:  # one event per run, not one per slot
        audit.record(
            ctx,
            entity="slots",
            entity_id=doctor.id,
            action="create",
            diff=audit.diff_of({}, {"doctorId": doctor.id, "slots": made, "from": start}),
        )
    return made


@dataclass(frozen=True)
class VisitType:
    code: str
    label: str
    minutes: int


@dataclass(frozen=True)
class DoctorFields:
    display_name: str
    specialty: str
    registration_number: str
    consultation_fee: Decimal
    visit_types: tuple[VisitType, ...]
    active: bool = True


def _check_visit_types(visit_types: tuple[VisitType, ...]) -> None:
    codes = [v.code for v in visit_types]
    if len(set(codes)) != len(codes):
        raise InvalidInput([FieldError("visitTypes", "each code may appear once")])


def create_doctor(
    session: Session, ctx: RequestContext, *, user_id: uuid.UUID, fields: DoctorFields
) -> DoctorProfile:
    """The profile of a user with the doctor role (one per user)."""
    user = records.by_id(session, User, user_id)
    if user.role != "doctor":
        raise InvalidInput([FieldError("userId", "is not a user with the doctor role")])
    taken = session.execute(
        select(DoctorProfile.id).where(DoctorProfile.user_id == user.id)
    ).first()
    if taken is not None:
        raise Conflict(f"this user already has a doctor profile ({taken[0]})")
    _check_visit_types(fields.visit_types)
    doctor = DoctorProfile(
        tenant_id=user.tenant_id, id=new_id(), user_id=user.id, created_at=ctx.now()
    )
    _apply(doctor, fields)
    session.add(doctor)
    session.flush()
    audit.record(ctx, entity="doctor_profiles", entity_id=doctor.id, action="create")
    return doctor


def _apply(doctor: DoctorProfile, fields: DoctorFields) -> None:
    doctor.display_name = fields.display_name
    doctor.specialty = fields.specialty
    doctor.registration_number = fields.registration_number
    doctor.consultation_fee = fields.consultation_fee
    doctor.visit_types = [vars(v) for v in fields.visit_types]
    doctor.active = fields.active


def update_doctor(
    session: Session, ctx: RequestContext, *, doctor_id: uuid.UUID, fields: DoctorFields
) -> DoctorProfile:
    doctor = records.by_id(session, DoctorProfile, doctor_id, lock=True)
    _check_visit_types(fields.visit_types)
    before = {"specialty": doctor.specialty, "fee": doctor.consultation_fee}
    _apply(doctor, fields)
    session.flush()
    audit.record(
        ctx,
        entity="doctor_profiles",
        entity_id=doctor.id,
        action="update",
        diff=audit.diff_of(before, {"specialty": doctor.specialty, "fee": doctor.consultation_fee}),
    )
    return doctor


def doctors(
    session: Session, *, specialty: str | None = None, include_inactive: bool = False
) -> list[DoctorProfile]:
    stmt = select(DoctorProfile)
    if not include_inactive:
        stmt = stmt.where(DoctorProfile.active.is_(True))
    if specialty:
        stmt = stmt.where(DoctorProfile.specialty == specialty)
    return list(session.execute(stmt.order_by(DoctorProfile.display_name)).scalars())


def doctor_of_user(session: Session, user_id: uuid.UUID) -> DoctorProfile | None:
    return session.execute(
        select(DoctorProfile).where(DoctorProfile.user_id == user_id)
    ).scalar_one_or_none()


def templates_of(session: Session, doctor_id: uuid.UUID) -> list[AvailabilityTemplate]:
    return list(
        session.execute(
            select(AvailabilityTemplate)
            .where(AvailabilityTemplate.doctor_id == doctor_id)
            .order_by(AvailabilityTemplate.weekday, AvailabilityTemplate.start_time)
        ).scalars()
    )


LONGEST_EXCEPTION = timedelta(days=366)


def add_exception(
    session: Session,
    ctx: RequestContext,
    *,
    doctor_id: uuid.UUID,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None,
) -> tuple[AvailabilityException, int]:
    """Mark the doctor away; free slots in that time go. Returns how many booked or held
    slots fall inside it (they stay: the desk decides what to tell those patients).
    """
    errors = []
    if ends_at <= starts_at:
        errors.append(FieldError("endsAt", "must be after startsAt"))
    elif ends_at - starts_at > LONGEST_EXCEPTION:
        errors.append(FieldError("endsAt", "an absence may last at most a year"))
    if ends_at <= ctx.now():
        errors.append(FieldError("endsAt", "is in the past"))
    if errors:
        raise InvalidInput(errors)
    doctor = records.by_id(session, DoctorProfile, doctor_id, lock=True)
    away = AvailabilityException(
        tenant_id=doctor.tenant_id,
        id=new_id(),
        doctor_id=doctor.id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
    )
    session.add(away)
    inside = (
        Slot.doctor_id == doctor.id,
        Slot.occupied_from < ends_at,
        Slot.occupied_until > starts_at,
    )
    session.execute(delete(Slot).where(*inside, Slot.status == SlotStatus.FREE))
    kept = session.execute(select(func.count()).select_from(Slot).where(*inside)).scalar_one()
    session.flush()
    audit.record(
        ctx,
        entity="availability_exceptions",
        entity_id=away.id,
        action="create",
        diff=audit.diff_of({}, {"startsAt": starts_at, "endsAt": ends_at}),
    )
    return away, int(kept)


def remove_exception(
    session: Session, ctx: RequestContext, *, doctor_id: uuid.UUID, exception_id: uuid.UUID
) -> None:
    """The doctor is back; the next slot generation fills the time again."""
    away = records.by_id(session, AvailabilityException, exception_id, lock=True)
    if away.doctor_id != doctor_id:
        raise NotFound(f"no availability_exception with id {exception_id}")
    session.delete(away)
    session.flush()
    audit.record(ctx, entity="availability_exceptions", entity_id=away.id, action="delete")


def exceptions_of(
    session: Session, ctx: RequestContext, doctor_id: uuid.UUID
) -> list[AvailabilityException]:
    return list(
        session.execute(
            select(AvailabilityException)
            .where(
                AvailabilityException.doctor_id == doctor_id,
                AvailabilityException.ends_at > ctx.now(),
            )
            .order_by(AvailabilityException.starts_at)
        ).scalars()
    )


def set_blocked(
    session: Session, ctx: RequestContext, slot_id: uuid.UUID, *, blocked: bool
) -> Slot:
    """Take a free slot out of booking, or put a blocked one back (audited, from/to)."""
    records.by_id(session, Slot, slot_id)
    condition = claimable(ctx) if blocked else Slot.status == SlotStatus.BLOCKED
    changed = session.execute(
        update(Slot)
        .where(Slot.id == slot_id, condition)
        .values(status=SlotStatus.BLOCKED if blocked else SlotStatus.FREE, hold_expires_at=None)
        .returning(Slot)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if changed is None:
        raise Conflict("only a free slot can be blocked" if blocked else "this slot is not blocked")
    audit.record(
        ctx,
        entity="slots",
        entity_id=changed.id,
        action="state-transition",
        from_state=SlotStatus.FREE if blocked else SlotStatus.BLOCKED,
        to_state=changed.status,
    )
    return changed
