"""The clinic's appointment rules: the booking confirmation, the reminders 24 h and 2 h
before, and marking a patient who never came as a no-show.

Scheduling lives in one place: :func:`on_booked` (called by ``scheduling.booking.book``,
in the booking's transaction) schedules an appointment's events, and
:func:`on_status_changed` (called by ``scheduling.lifecycle`` after every move of an
appointment) cancels the ones whose reason went away. A reschedule is a new appointment
(booked: its events are scheduled) and the old one cancelled (its events are cancelled).

Every event's ``dedupe_key`` is ``"<rule>:<appointment id>"``, so booking code that runs
twice schedules each event once. A rule re-reads the appointment when it falls due and
does nothing unless the appointment still stands: a reminder never goes out for a visit
that was cancelled, even if a cancellation somehow missed the hook.

Per-clinic settings are in ``tenants.automation_settings`` (defaults in :data:`DEFAULTS`)::

    {
      "reminders": {"24h": true, "2h": {"on": true, "hours": 3}},
      "visitTypes": {"procedure": {"reminders": {"2h": false}}},
      "noShowGraceMinutes": 15
    }

A reminder is either on/off (``true``/``false``) or ``{"on": …, "hours": …}`` (hours before
the slot's start); a visit type's entry overrides the clinic's for appointments of that type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from opdesk import records
from opdesk.automation import service as automation
from opdesk.automation.rules import Permanent, rule
from opdesk.context import RequestContext
from opdesk.errors import NotFound
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, Slot
from opdesk.tenancy import service as tenants

if TYPE_CHECKING:
    from opdesk.automation.models import AutomationEvent
    from opdesk.security.crypto import FieldCipher

ENTITY = "appointments"

CONFIRMATION = "booking-confirmation"
REMINDER_24H = "reminder-24h"
REMINDER_2H = "reminder-2h"
NO_SHOW = "no-show"

# reminder rule -> its key in the settings
REMINDERS = {REMINDER_24H: "24h", REMINDER_2H: "2h"}
MESSAGE_RULES = (CONFIRMATION, REMINDER_24H, REMINDER_2H)
ALL_RULES = (*MESSAGE_RULES, NO_SHOW)

DEFAULT_HOURS = {"24h": 24.0, "2h": 2.0}
DEFAULTS: dict[str, Any] = {
    "reminders": {"24h": True, "2h": True},
    "noShowGraceMinutes": 15,
}

# An appointment whose messages still make sense: it has not been cancelled, missed or
# seen yet.
LIVE = frozenset({AppointmentStatus.REQUESTED, AppointmentStatus.CONFIRMED})
# Only a confirmed appointment can be marked no-show (the machine's rule).
MISSABLE = frozenset({AppointmentStatus.CONFIRMED})

# The worker puts its cipher here (``session.info``) before it runs a rule: the rules that
# write messages need it to read the patient's phone and seal the recipient.
CIPHER_INFO = "opdesk.cipher"


def dedupe_key(rule_name: str, appointment_id: uuid.UUID) -> str:
    return f"{rule_name}:{appointment_id}"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Reminder:
    on: bool
    hours: float


def _reminder(given: Any, key: str, fallback: Reminder) -> Reminder:
    if isinstance(given, bool):
        return Reminder(given, fallback.hours)
    if isinstance(given, dict):
        hours = given.get("hours", fallback.hours)
        return Reminder(
            bool(given.get("on", fallback.on)),
            float(hours) if isinstance(hours, int | float) and hours > 0 else fallback.hours,
        )
    return fallback


def reminder_setting(settings: dict[str, Any], key: str, visit_type: str | None) -> Reminder:
    """Whether the ``key`` ("24h", "2h") reminder is on, and how many hours before."""
    value = Reminder(True, DEFAULT_HOURS[key])
    value = _reminder((settings.get("reminders") or {}).get(key), key, value)
    if visit_type is not None:
        per_type = ((settings.get("visitTypes") or {}).get(visit_type) or {}).get("reminders")
        value = _reminder((per_type or {}).get(key), key, value)
    return value


def grace(settings: dict[str, Any]) -> timedelta:
    minutes = settings.get("noShowGraceMinutes", DEFAULTS["noShowGraceMinutes"])
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes < 0:
        minutes = DEFAULTS["noShowGraceMinutes"]
    return timedelta(minutes=minutes)


def settings_of(session: Session, tenant_id: uuid.UUID) -> dict[str, Any]:
    return dict(tenants.get_tenant(session, tenant_id).automation_settings or {})


# --------------------------------------------------------------------------- the hooks


def plan(
    settings: dict[str, Any],
    *,
    now: datetime,
    visit_type: str | None,
    starts_at: datetime,
    ends_at: datetime,
) -> dict[str, datetime]:
    """The events an appointment booked at ``now`` gets, and when each falls due: the
    confirmation now, each reminder that is on and not already past, the no-show check at
    the slot's end plus the grace period.
    """
    events = {CONFIRMATION: now}
    for rule_name, key in REMINDERS.items():
        reminder = reminder_setting(settings, key, visit_type)
        when = starts_at - timedelta(hours=reminder.hours)
        if reminder.on and when > now:
            events[rule_name] = when
    events[NO_SHOW] = ends_at + grace(settings)
    return events


def on_booked(
    session: Session,
    ctx: RequestContext,
    appointment: Appointment,
    *,
    starts_at: datetime,
    ends_at: datetime,
) -> None:
    """Schedule a new appointment's events, in the booking's transaction."""
    settings = settings_of(session, appointment.tenant_id)
    events = plan(
        settings,
        now=ctx.now(),
        visit_type=appointment.visit_type,
        starts_at=starts_at,
        ends_at=ends_at,
    )
    automation.schedule_all(
        session,
        ctx,
        entity_type=ENTITY,
        entity_id=appointment.id,
        when_by_rule=events,
        key_of=lambda rule_name: dedupe_key(rule_name, appointment.id),
        payload={"startsAt": starts_at.isoformat()},
    )


def on_status_changed(session: Session, ctx: RequestContext, appointment: Appointment) -> None:
    """After an appointment moved: once it no longer stands (cancelled, checked in,
    missed…), its pending events are cancelled. A no-show keeps its own no-show event (it
    may be the one running now; it finds nothing to do).
    """
    if appointment.status in LIVE:
        return
    rules = MESSAGE_RULES if appointment.status == AppointmentStatus.NO_SHOW else ALL_RULES
    automation.cancel_for(session, ctx, entity_type=ENTITY, entity_id=appointment.id, rules=rules)


# --------------------------------------------------------------------------- the rules


def _cipher(session: Session) -> FieldCipher:
    found = session.info.get(CIPHER_INFO)
    if found is None:
        raise Permanent("this rule needs the worker's cipher (session.info) to send a message")
    return found  # type: ignore[no-any-return]


def _standing(session: Session, event: AutomationEvent) -> tuple[Appointment, Slot] | None:
    """The event's appointment and slot if the appointment still stands, else None."""
    try:
        appointment = records.by_id(session, Appointment, event.entity_ref_id)
    except NotFound:
        return None
    if appointment.status not in LIVE or appointment.slot_id is None:
        return None
    return appointment, records.by_id(session, Slot, appointment.slot_id)


def _send(
    session: Session,
    ctx: RequestContext,
    event: AutomationEvent,
    *,
    template: str,
    appointment: Appointment,
    slot: Slot,
) -> None:
    from opdesk.notifications import service as outbox
    from opdesk.patients.models import Patient

    tenant = tenants.get_tenant(session, appointment.tenant_id)
    patient = records.by_id(session, Patient, appointment.patient_id)
    doctor = records.by_id(session, DoctorProfile, appointment.doctor_id)
    zone = tenants.zone_of(session, appointment.tenant_id)
    outbox.send_to_patient(
        session,
        ctx,
        _cipher(session),
        patient_id=appointment.patient_id,
        template=template,
        payload={
            "patient": patient.full_name,
            "doctor": doctor.display_name,
            "startsAt": slot.starts_at.astimezone(zone).strftime("%a %d %b, %I:%M %p"),
            "clinic": tenant.name,
            "appointmentId": str(appointment.id),
        },
        dedupe_key=event.dedupe_key,
    )


@rule(CONFIRMATION)
def confirm_booking(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """Tell the patient their appointment is booked (unless it no longer stands)."""
    found = _standing(session, event)
    if found is None:
        return
    appointment, slot = found
    if slot.starts_at <= ctx.now():
        return  # the visit has begun: a confirmation now says nothing
    _send(session, ctx, event, template="booking-confirmation", appointment=appointment, slot=slot)


def _remind(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    found = _standing(session, event)
    if found is None:
        return
    appointment, slot = found
    if slot.starts_at <= ctx.now():
        return  # too late to remind
    # The clinic may have turned this reminder off since the booking.
    settings = settings_of(session, appointment.tenant_id)
    if not reminder_setting(settings, REMINDERS[event.rule], appointment.visit_type).on:
        return
    _send(session, ctx, event, template="appointment-reminder", appointment=appointment, slot=slot)


rule(REMINDER_24H)(_remind)
rule(REMINDER_2H)(_remind)


@rule(NO_SHOW)
def mark_no_show(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """A confirmed appointment whose patient has not checked in by the slot's end plus the
    grace period becomes a no-show, through the lifecycle's audited transition. Anything
    else (checked in, cancelled, already marked) is left as it is.
    """
    from opdesk.config import Settings
    from opdesk.scheduling import lifecycle, waitlist

    try:
        appointment = records.by_id(session, Appointment, event.entity_ref_id, lock=True)
    except NotFound:
        return
    if appointment.status not in MISSABLE or appointment.slot_id is None:
        return
    # The slot is over, so the move frees nothing and offers nothing to the waitlist;
    # the lifecycle asks for the offer settings all the same.
    offers = waitlist.Offers(_cipher(session), Settings.model_construct().offer_for)
    lifecycle.transition(
        session,
        ctx,
        offers,
        appointment_id=appointment.id,
        to=AppointmentStatus.NO_SHOW,
    )
