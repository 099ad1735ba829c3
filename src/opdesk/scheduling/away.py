"""Doctor away: the patients booked inside a doctor's time away, and one message to them
all with a link to choose another time.

Adding time away closes the free slots inside it and keeps the booked ones
(:func:`opdesk.scheduling.service.add_exception`): the appointments stay as they are, and
the desk decides, patient by patient, to cancel or move them. This module lists those
patients for the desk and queues the ``doctor-away`` message to each one who can be
messaged (a channel they agreed to, a phone on file), once per appointment and away
period (the outbox's dedupe key), so pressing the button twice sends once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.context import RequestContext
from opdesk.errors import NotFound
from opdesk.formatting import clock_time, day_name
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OutboxMessage
from opdesk.patients.models import Patient
from opdesk.patients.service import contact_phone
from opdesk.scheduling import lifecycle, queries
from opdesk.scheduling.models import (
    Appointment,
    AvailabilityException,
    DoctorProfile,
    Slot,
)
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy import service as tenants

TEMPLATE = "doctor-away"
# How many of the doctor's next free slots the page shows and the message payload names.
NEXT_FREE = 5
# How far ahead the next free slots are looked for (one slot search).
LOOK_AHEAD = timedelta(days=31)
# Why a patient is not messaged, as the desk reads it.
CANNOT_MESSAGE = "cannot be messaged — call"
NO_PHONE = "no phone number on file — call"


def dedupe_key(away_id: uuid.UUID, appointment_id: uuid.UUID) -> str:
    """One message per appointment and away period, however often the button is pressed."""
    return f"{TEMPLATE}:{away_id}:{appointment_id}"


@dataclass(frozen=True)
class Affected:
    """One patient booked inside the time away, and whether they can be messaged."""

    appointment: Appointment
    slot: Slot
    patient: Patient
    phone: str | None
    # "whatsapp" or "sms": the channel the message goes by; None when none is allowed.
    channel: str | None
    # The message already queued for this appointment and away period, if any.
    messaged: OutboxMessage | None
    # Why no message goes to this patient (None when one can).
    not_messaged: str | None

    @property
    def may_message(self) -> bool:
        return self.not_messaged is None and self.messaged is None


@dataclass(frozen=True)
class AwayReport:
    away: AvailabilityException
    doctor: DoctorProfile
    zone: ZoneInfo
    affected: list[Affected]
    next_free: list[Slot]

    @property
    def to_message(self) -> list[Affected]:
        return [a for a in self.affected if a.may_message]

    @property
    def already_messaged(self) -> list[Affected]:
        return [a for a in self.affected if a.messaged is not None]

    @property
    def to_call(self) -> list[Affected]:
        return [a for a in self.affected if a.messaged is None and a.not_messaged is not None]


@dataclass(frozen=True)
class Messaged:
    """What one press of the button did."""

    queued: list[Affected]
    already: list[Affected]
    to_call: list[Affected]


def away_of(
    session: Session, *, doctor_id: uuid.UUID, away_id: uuid.UUID, lock: bool = False
) -> AvailabilityException:
    """The doctor's away period; unknown, foreign or another doctor's id is 404."""
    away = records.by_id(session, AvailabilityException, away_id, lock=lock)
    if away.doctor_id != doctor_id:
        raise NotFound(f"no availability_exception with id {away_id}")
    return away


def _reason_not(
    ctx: RequestContext,
    appointment: Appointment,
    slot: Slot,
    phone: str | None,
    channel: str | None,
) -> str | None:
    if appointment.status not in lifecycle.RESCHEDULABLE:
        return f"{appointment.status.replace('-', ' ')}: not messaged"
    if slot.starts_at <= ctx.now():
        return "already begun: not messaged"
    if phone is None:
        return NO_PHONE
    if channel is None:
        return CANNOT_MESSAGE
    return None


def affected(
    session: Session, ctx: RequestContext, cipher: FieldCipher, away: AvailabilityException
) -> list[Affected]:
    """The live appointments on slots inside the time away, soonest first, each with the
    patient's phone, the channel a message would take and whether one was already queued.
    Cancelled and moved appointments leave the list.
    """
    rows = session.execute(
        select(Appointment, Slot, Patient)
        .join(Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id))
        .join(
            Patient,
            (Patient.tenant_id == Appointment.tenant_id) & (Patient.id == Appointment.patient_id),
        )
        .where(
            Appointment.doctor_id == away.doctor_id,
            Appointment.status.in_(queries.LIVE),
            Slot.occupied_from < away.ends_at,
            Slot.occupied_until > away.starts_at,
        )
        .order_by(Slot.starts_at, Appointment.id)
    ).all()
    keys = {dedupe_key(away.id, a.id): a.id for a, _s, _p in rows}
    sent = {
        keys[m.dedupe_key]: m
        for m in session.execute(
            select(OutboxMessage).where(OutboxMessage.dedupe_key.in_(list(keys)))
        ).scalars()
        if m.dedupe_key is not None
    }
    found = []
    for appointment, slot, patient in rows:
        phone = contact_phone(session, cipher, patient)
        channel = outbox.preferred_channel(session, patient.id)
        found.append(
            Affected(
                appointment=appointment,
                slot=slot,
                patient=patient,
                phone=phone,
                channel=channel,
                messaged=sent.get(appointment.id),
                not_messaged=_reason_not(ctx, appointment, slot, phone, channel),
            )
        )
    return found


def next_free(
    session: Session, ctx: RequestContext, away: AvailabilityException, zone: ZoneInfo
) -> list[Slot]:
    """The doctor's next few bookable slots after the time away (or from now, if later)."""
    today = tenants.today_at_clinic(session, ctx)
    after = max(away.ends_at, ctx.now())
    first = max(after.astimezone(zone).date(), today)
    window = queries.SlotWindow(first, first + LOOK_AHEAD)
    found = queries.slots(session, ctx, away.doctor_id, window, None)
    return [s for s in found if s.starts_at >= after][:NEXT_FREE]


def report(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    doctor_id: uuid.UUID,
    away_id: uuid.UUID,
) -> AwayReport:
    away = away_of(session, doctor_id=doctor_id, away_id=away_id)
    return _report(session, ctx, cipher, away)


def _report(
    session: Session, ctx: RequestContext, cipher: FieldCipher, away: AvailabilityException
) -> AwayReport:
    doctor = records.by_id(session, DoctorProfile, away.doctor_id)
    zone = tenants.zone_of(session, away.tenant_id)
    return AwayReport(
        away=away,
        doctor=doctor,
        zone=zone,
        affected=affected(session, ctx, cipher, away),
        next_free=next_free(session, ctx, away, zone),
    )


def when(slot: Slot, zone: ZoneInfo) -> str:
    """``Mon 7 Dec, 10:15 am`` in the clinic's zone."""
    return when_at(slot.starts_at, zone)


def rebook_link(base_url: str, appointment: Appointment, first_free: Slot | None) -> str:
    """The patient portal's reschedule page for this appointment, opened on the day of the
    doctor's next free slot (the appointment's own day has no time left to choose).
    """
    link = f"{base_url.rstrip('/')}/me/appointments/{appointment.id}/reschedule"
    return f"{link}?date={first_free.date.isoformat()}" if first_free is not None else link


def message_all(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    doctor_id: uuid.UUID,
    away_id: uuid.UUID,
    base_url: str,
) -> Messaged:
    """Queue the ``doctor-away`` message to every patient inside the time away who can be
    messaged and has not been yet. The away period is locked, so two presses at once
    queue each message once; each new message is audited.
    """
    assert ctx.tenant_id is not None
    away = away_of(session, doctor_id=doctor_id, away_id=away_id, lock=True)
    found = _report(session, ctx, cipher, away)
    clinic = tenants.get_tenant(session, ctx.tenant_id).name
    first_free = found.next_free[0] if found.next_free else None
    offered = ", ".join(when(s, found.zone) for s in found.next_free)
    queued = []
    for row in found.to_message:
        message = outbox.send_to_patient(
            session,
            ctx,
            cipher,
            patient_id=row.patient.id,
            template=TEMPLATE,
            payload={
                "patient": row.patient.full_name,
                "doctor": found.doctor.display_name,
                "startsAt": when(row.slot, found.zone),
                "clinic": clinic,
                "link": rebook_link(base_url, row.appointment, first_free),
                # Not in the template's text yet: the doctor's next free times.
                "nextFree": offered,
                "appointmentId": str(row.appointment.id),
                "awayId": str(away.id),
            },
            dedupe_key=dedupe_key(away.id, row.appointment.id),
        )
        if message is None:  # consent or phone went between reading and sending
            continue
        audit.record(
            ctx,
            entity="notifications_outbox",
            entity_id=message.id,
            action="create",
            diff={
                "template": TEMPLATE,
                "channel": message.channel,
                "appointmentId": str(row.appointment.id),
                "awayId": str(away.id),
            },
        )
        queued.append(row)
    return Messaged(queued=queued, already=found.already_messaged, to_call=found.to_call)


# ------------------------------------------------------------------ calendar


@dataclass(frozen=True)
class AwayBand:
    """A doctor's time away as a calendar shows it across a day."""

    away: AvailabilityException
    doctor_id: uuid.UUID
    doctor_name: str
    label: str  # "Dr X away: reason"
    span: str  # "10:00 am to 1:00 pm" (or "all day", "from 2:00 pm", "until 11:00 am")
    booked: int  # live appointments inside it (all days)

    def covers(self, starts_at: datetime, ends_at: datetime) -> bool:
        """Whether the time from ``starts_at`` to ``ends_at`` overlaps the time away."""
        return self.away.starts_at < ends_at and starts_at < self.away.ends_at

    def at(self, moment: datetime) -> bool:
        return self.away.starts_at <= moment < self.away.ends_at


def bands(
    session: Session, day_first: date, day_last: date, zone: ZoneInfo, doctor_id: uuid.UUID | None
) -> dict[date, list[AwayBand]]:
    """Each day's away periods (of one doctor, or of every doctor) between two clinic-local
    days, with how many live appointments each still has inside it.
    """
    begins = datetime.combine(day_first, time(), zone)
    ends = datetime.combine(day_last + timedelta(days=1), time(), zone)
    stmt = (
        select(AvailabilityException, DoctorProfile)
        .join(
            DoctorProfile,
            (DoctorProfile.tenant_id == AvailabilityException.tenant_id)
            & (DoctorProfile.id == AvailabilityException.doctor_id),
        )
        .where(AvailabilityException.starts_at < ends, AvailabilityException.ends_at > begins)
        .order_by(AvailabilityException.starts_at)
    )
    if doctor_id is not None:
        stmt = stmt.where(AvailabilityException.doctor_id == doctor_id)
    found: dict[date, list[AwayBand]] = {}
    for away, doctor in session.execute(stmt).all():
        booked = _booked_inside(session, away)
        reason = f": {away.reason}" if away.reason else ""
        label = f"{doctor.display_name} away{reason}"
        day = max(day_first, away.starts_at.astimezone(zone).date())
        last = min(day_last, away.ends_at.astimezone(zone).date())
        while day <= last:
            span = _span(away, day, zone)
            if span is not None:
                found.setdefault(day, []).append(
                    AwayBand(away, doctor.id, doctor.display_name, label, span, booked)
                )
            day += timedelta(days=1)
    return found


def _span(away: AvailabilityException, day: date, zone: ZoneInfo) -> str | None:
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    if away.ends_at <= start or away.starts_at >= end:
        return None  # ends at midnight: nothing of it on this day
    starts_today = away.starts_at > start
    ends_today = away.ends_at < end
    if starts_today and ends_today:
        return f"{clock_time(away.starts_at, zone.key)} to {clock_time(away.ends_at, zone.key)}"
    if starts_today:
        return f"from {clock_time(away.starts_at, zone.key)}"
    if ends_today:
        return f"until {clock_time(away.ends_at, zone.key)}"
    return "all day"


def _booked_inside(session: Session, away: AvailabilityException) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(Appointment)
            .join(
                Slot, (Slot.tenant_id == Appointment.tenant_id) & (Slot.id == Appointment.slot_id)
            )
            .where(
                Appointment.doctor_id == away.doctor_id,
                Appointment.status.in_(queries.LIVE),
                Slot.occupied_from < away.ends_at,
                Slot.occupied_until > away.starts_at,
            )
        ).scalar_one()
    )


def booked_counts(session: Session, aways: list[AvailabilityException]) -> dict[uuid.UUID, int]:
    """How many live appointments each away period still has inside it."""
    return {a.id: _booked_inside(session, a) for a in aways}


def when_at(moment: datetime, zone: ZoneInfo) -> str:
    """``Mon 7 Dec, 10:00 am`` in the clinic's zone, for any moment."""
    return f"{day_name(moment.astimezone(zone).date())}, {clock_time(moment, zone.key)}"


def span_of(away: AvailabilityException, zone: ZoneInfo) -> str:
    """``Mon 14 Dec, 10:00 am to 11:00 am`` (the day named again only when it changes)."""
    starts, ends = away.starts_at.astimezone(zone), away.ends_at.astimezone(zone)
    if starts.date() == ends.date():
        return f"{when_at(starts, zone)} to {clock_time(ends, zone.key)}"
    return f"{when_at(starts, zone)} to {when_at(ends, zone)}"
