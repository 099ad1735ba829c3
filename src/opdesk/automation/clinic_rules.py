"""The clinic's appointment rules: the booking confirmation, the reminders 24 h and 2 h
before, and marking a patient who never came as a no-show; and the slot rules: a waitlist
offer that lapses passes the slot to the next patient in line, a hold that lapses lets the
slot go.

Scheduling lives in one place: :func:`on_booked` (called by ``scheduling.booking.book``,
in the booking's transaction) schedules an appointment's events, and
:func:`on_status_changed` (called by ``scheduling.lifecycle`` after every move of an
appointment) cancels the ones whose reason went away. A reschedule is a new appointment
(booked: its events are scheduled) and the old one cancelled (its events are cancelled).

Every event's ``dedupe_key`` is ``"<rule>:<appointment id>"``, so booking code that runs
twice schedules each event once. A rule re-reads the appointment when it falls due and
does nothing unless the appointment still stands: a reminder never goes out for a visit
that was cancelled, even if a cancellation somehow missed the hook.

A waitlist offer's expiry is scheduled when the offer is made (:func:`on_offered`, for its
``expires_at``) and cancelled when the patient accepts or declines (:func:`on_offer_answered`);
a hold's when the hold is taken (:func:`on_held`) and cancelled when the slot is booked.
The sweeps (``jobs/sweeps.py``) do the same work for anything an event missed.

A clinic's settings (which reminders, how many hours before, per visit type; the no-show
grace) are read through :mod:`opdesk.automation.settings`, which holds their shape and
defaults.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.abdm import (  # noqa: F401  (importing them registers their rules)
    linking,
    share,
    sharing,
)
from opdesk.automation import (
    later_rules,  # noqa: F401  (importing it registers its rules)
    rules,
)
from opdesk.automation import service as automation
from opdesk.automation import settings as clinic_settings
from opdesk.automation.rules import Busy, Permanent, rule
from opdesk.automation.settings import AutomationSettings
from opdesk.billing import invoices
from opdesk.context import RequestContext
from opdesk.errors import NotFound
from opdesk.scheduling.models import (
    SLOT_GIVEN_UP,
    Appointment,
    AppointmentStatus,
    DoctorProfile,
    Slot,
    WaitlistLock,
)
from opdesk.tenancy import service as tenants

if TYPE_CHECKING:
    from opdesk.automation.models import AutomationEvent
    from opdesk.config import Settings
    from opdesk.db import Database
    from opdesk.security.crypto import FieldCipher

ENTITY = "appointments"
OFFER_ENTITY = "waitlist_locks"
SLOT_ENTITY = "slots"

CONFIRMATION = "booking-confirmation"
REMINDER_24H = "reminder-24h"
REMINDER_2H = "reminder-2h"
NO_SHOW = "no-show"
OFFER_EXPIRY = "waitlist-offer-expiry"
HOLD_EXPIRY = "hold-expiry"
# The follow-up work of a booking and of a desk move made in one statement (migrations
# 0020 and 0022 name them too).
BOOKED = "booked"
MOVED = "moved"
PREPAY_LAPSE = "prepay-lapse"
PREPAID_CANCELLED = "prepaid-cancelled"

# reminder rule -> its key in the settings
REMINDERS = {REMINDER_24H: "24h", REMINDER_2H: "2h"}
MESSAGE_RULES = (CONFIRMATION, REMINDER_24H, REMINDER_2H)
# (The prepayment's lapse is left to run when its booking is cancelled: it may be the
# event cancelling it, and it finds nothing to do otherwise.)
ALL_RULES = (*MESSAGE_RULES, NO_SHOW)

# An appointment whose messages still make sense: it has not been cancelled, missed or
# seen yet.
LIVE = frozenset({AppointmentStatus.REQUESTED, AppointmentStatus.CONFIRMED})
SEEN = frozenset(
    {AppointmentStatus.CHECKED_IN, AppointmentStatus.IN_CONSULT, AppointmentStatus.COMPLETED}
)
# Only a confirmed appointment can be marked no-show (the machine's rule).
MISSABLE = frozenset({AppointmentStatus.CONFIRMED})

# The worker puts its cipher here (``session.info``) before it runs a rule.
CIPHER_INFO = rules.CIPHER_INFO
SETTINGS_INFO = rules.SETTINGS_INFO


def dedupe_key(rule_name: str, appointment_id: uuid.UUID) -> str:
    return f"{rule_name}:{appointment_id}"


def hold_key(slot_id: uuid.UUID, expires_at: datetime) -> str:
    """One hold of a slot: a slot is held again and again, but never twice until the
    same moment (a new hold needs the old one lapsed).
    """
    return f"{HOLD_EXPIRY}:{slot_id}:{expires_at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


def settings_of(session: Session, tenant_id: uuid.UUID) -> AutomationSettings:
    return clinic_settings.of_tenant(tenants.get_tenant(session, tenant_id))


# --------------------------------------------------------------------------- the hooks


def plan(
    settings: AutomationSettings,
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
        reminder = settings.reminder(key, visit_type)
        when = starts_at - timedelta(hours=reminder.hours)
        if reminder.on and when > now:
            events[rule_name] = when
    events[NO_SHOW] = ends_at + settings.grace
    return events


def awaits_payment(
    session: Session, tenant_id: uuid.UUID, doctor_id: uuid.UUID, visit_type: str
) -> bool:
    """Whether a booking made on the clinic's page waits for its online payment."""
    from opdesk.billing import prepay

    return prepay.window(session, tenant_id, doctor_id, visit_type) is not None


def payment_due_by(session: Session, appointment_id: uuid.UUID) -> datetime | None:
    """When a booking waiting for its payment lapses (None once it no longer waits)."""
    from opdesk.automation.models import AutomationEvent, EventStatus

    return session.scalar(
        select(AutomationEvent.scheduled_for).where(
            AutomationEvent.dedupe_key == dedupe_key(PREPAY_LAPSE, appointment_id),
            AutomationEvent.status == EventStatus.PENDING,
        )
    )


def on_booked(
    session: Session,
    ctx: RequestContext,
    appointment: Appointment,
    *,
    starts_at: datetime,
    ends_at: datetime,
) -> None:
    """Schedule a new appointment's events, in the booking's transaction. One that waits
    for its online payment (``requested``) gets only the lapse of that wait: its messages
    and its no-show check are scheduled when it is confirmed.
    """
    if appointment.slot_id is not None:
        # The slot was taken, perhaps from a hold: that hold's expiry has nothing to do.
        on_hold_released(session, ctx, appointment.slot_id)
    # The consultation fee waits as a draft invoice, so checkout cannot forget it.
    invoices.charge_booking(session, ctx, appointment)
    if appointment.status == AppointmentStatus.REQUESTED:
        _schedule_lapse(session, ctx, appointment)
        return
    _schedule_plan(session, ctx, appointment, starts_at=starts_at, ends_at=ends_at)


def _schedule_plan(
    session: Session,
    ctx: RequestContext,
    appointment: Appointment,
    *,
    starts_at: datetime,
    ends_at: datetime,
) -> None:
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


def _schedule_lapse(session: Session, ctx: RequestContext, appointment: Appointment) -> None:
    from opdesk.billing import settings as billing_settings

    waits = billing_settings.prepay_window(session, appointment.tenant_id)
    if waits is None:  # the clinic stopped taking prepayment a moment ago: its usual wait
        waits = timedelta(minutes=billing_settings.Billing.prepay_minutes)
    automation.schedule(
        session,
        ctx,
        rule=PREPAY_LAPSE,
        entity_type=ENTITY,
        entity_id=appointment.id,
        when=ctx.now() + waits,
        dedupe_key=dedupe_key(PREPAY_LAPSE, appointment.id),
        payload={},
    )


def on_status_changed(session: Session, ctx: RequestContext, appointment: Appointment) -> None:
    """After an appointment moved: once it no longer stands (cancelled, checked in,
    missed…), its pending events are cancelled. A no-show keeps its own no-show event (it
    may be the one running now; it finds nothing to do).
    """
    if appointment.status == AppointmentStatus.CONFIRMED:
        _confirmed(session, ctx, appointment)
        return
    if appointment.status in LIVE:
        return
    if appointment.status in SLOT_GIVEN_UP:
        invoices.drop_booking_charge(session, ctx, appointment.id)
    if appointment.status == AppointmentStatus.CANCELLED:
        _settle_cancelled(session, ctx, appointment)
    rules = MESSAGE_RULES if appointment.status == AppointmentStatus.NO_SHOW else ALL_RULES
    automation.cancel_for(session, ctx, entity_type=ENTITY, entity_id=appointment.id, rules=rules)


def _confirmed(session: Session, ctx: RequestContext, appointment: Appointment) -> None:
    """A requested appointment was confirmed (paid): the wait is over, and the events a
    confirmed booking has are scheduled now (each once: the keys are the booking's).
    """
    automation.cancel_for(
        session, ctx, entity_type=ENTITY, entity_id=appointment.id, rules=(PREPAY_LAPSE,)
    )
    if appointment.slot_id is None:
        return
    slot = records.by_id(session, Slot, appointment.slot_id)
    _schedule_plan(session, ctx, appointment, starts_at=slot.starts_at, ends_at=slot.ends_at)


def _settle_cancelled(session: Session, ctx: RequestContext, appointment: Appointment) -> None:
    """A cancelled booking's money: an issued charge nobody paid is cancelled by a credit
    note (its links failed) at once; links to cancel at Razorpay and link payments to
    refund are left to the worker (:func:`settle_prepaid`), which calls out after commit.
    """
    from opdesk.billing import prepay

    charge = prepay.charge_of(session, appointment.id)
    if charge is None:
        return
    prepay.give_up(session, ctx, charge)
    if prepay.links_given_up(session, appointment.id) or prepay.paid_by_link(session, charge):
        automation.schedule(
            session,
            ctx,
            rule=PREPAID_CANCELLED,
            entity_type=ENTITY,
            entity_id=appointment.id,
            when=ctx.now(),
            dedupe_key=dedupe_key(PREPAID_CANCELLED, appointment.id),
            payload={},
        )


def on_offered(
    session: Session, ctx: RequestContext, offer: WaitlistLock, *, keep_for: timedelta
) -> None:
    """A waitlist offer was made: it lapses at its ``expires_at`` (the slot then goes to
    the next patient in line). ``keep_for`` is how long the next offer will be kept.
    """
    automation.schedule(
        session,
        ctx,
        rule=OFFER_EXPIRY,
        entity_type=OFFER_ENTITY,
        entity_id=offer.id,
        when=offer.expires_at,
        dedupe_key=dedupe_key(OFFER_EXPIRY, offer.id),
        payload={"slotId": str(offer.slot_id), "keepForSeconds": keep_for.total_seconds()},
    )


def on_offer_answered(session: Session, ctx: RequestContext, offer_id: uuid.UUID) -> None:
    """The patient accepted or declined (or a sweep let the offer lapse): its expiry has
    nothing left to do.
    """
    automation.cancel_for(
        session, ctx, entity_type=OFFER_ENTITY, entity_id=offer_id, rules=(OFFER_EXPIRY,)
    )


def hold_payload(expires_at: datetime) -> dict[str, Any]:
    return {"expiresAt": expires_at.isoformat()}


def on_held(
    session: Session, ctx: RequestContext, *, slot_id: uuid.UUID, expires_at: datetime
) -> None:
    """A slot was held for someone booking it: at ``expires_at`` the hold lapses."""
    automation.schedule(
        session,
        ctx,
        rule=HOLD_EXPIRY,
        entity_type=SLOT_ENTITY,
        entity_id=slot_id,
        when=expires_at,
        dedupe_key=hold_key(slot_id, expires_at),
        payload=hold_payload(expires_at),
    )


def on_hold_released(session: Session, ctx: RequestContext, slot_id: uuid.UUID) -> None:
    """The slot's hold ended (booked, or let go by a sweep): its expiry has nothing to do."""
    automation.cancel_for(
        session, ctx, entity_type=SLOT_ENTITY, entity_id=slot_id, rules=(HOLD_EXPIRY,)
    )


# --------------------------------------------------------------------------- the rules


def _cipher(session: Session) -> FieldCipher:
    return rules.cipher_of(session)


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
    if not settings.reminder(REMINDERS[event.rule], appointment.visit_type).on:
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


# --------------------------------------------------------------------------- slots

_Row = TypeVar("_Row", Slot, WaitlistLock)


def _lock_or_give_way(session: Session, model: type[_Row], row_id: uuid.UUID) -> _Row | None:
    """The row, locked; None if it is gone. Raises :class:`Busy` when another transaction
    holds it: the rule holds its event's lock, and a patient accepting the offer (or a
    booking taking the slot) may be waiting for that event's lock to cancel it, so the
    rule never waits here.
    """
    row = session.execute(
        select(model)
        .where(model.id == row_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is not None:
        return row
    if session.execute(select(model.id).where(model.id == row_id)).first() is not None:
        raise Busy(f"the {model.__tablename__.removesuffix('s')} is being changed right now")
    return None


def _offers(session: Session, event: AutomationEvent) -> Any:
    from opdesk.config import get_settings
    from opdesk.scheduling import waitlist

    seconds = event.payload.get("keepForSeconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        keep_for = timedelta(seconds=seconds)
    else:
        keep_for = get_settings().offer_for
    return waitlist.Offers(_cipher(session), keep_for)


@rule(OFFER_EXPIRY)
def expire_offer(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """The offer ran out unanswered: its patient goes back in line and the slot is offered
    to the next one (as the sweep of lapsed offers does). Nothing to do for an offer that
    was answered meanwhile.
    """
    from opdesk.scheduling import waitlist

    offer = _lock_or_give_way(session, WaitlistLock, event.entity_ref_id)
    if offer is None:
        return
    waitlist.expire_offer(session, ctx, _offers(session, event), offer)


@rule(HOLD_EXPIRY)
def release_hold(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """The hold ran out before a booking: the slot is offered to the next patient in line,
    or goes back to everyone (as the sweep of lapsed holds does). Nothing to do once the
    slot was booked or held anew.
    """
    from opdesk.scheduling import waitlist

    slot = _lock_or_give_way(session, Slot, event.entity_ref_id)
    if slot is None:
        return
    try:
        expires_at = datetime.fromisoformat(str(event.payload["expiresAt"]))
    except (KeyError, ValueError) as exc:
        raise Permanent(f"the event does not say when the hold expires: {exc}") from exc
    waitlist.release_hold(session, ctx, _offers(session, event), slot, expires_at=expires_at)


@rule(BOOKED)
def follow_up_booking(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """A booking made in one statement (``opdesk_api_book``) leaves the rest here: the
    draft invoice, the reminders and no-show check, the end of the hold it used
    (:func:`on_booked`, as a booking through the services does at once). Nothing to do
    once the appointment no longer stands.
    """
    standing = _standing(session, event)
    if standing is not None:
        appointment, slot = standing
        on_booked(session, ctx, appointment, starts_at=slot.starts_at, ends_at=slot.ends_at)
        return
    # Already seen (checked in, or done) before this ran: its reminders have nothing to
    # say, but the fee must still wait at checkout.
    try:
        appointment = records.by_id(session, Appointment, event.entity_ref_id)
    except NotFound:
        return
    if appointment.status in SEEN:
        invoices.charge_booking(session, ctx, appointment)
        if appointment.slot_id is not None:
            on_hold_released(session, ctx, appointment.slot_id)


@rule(MOVED)
def follow_up_move(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """A desk move made in one statement (``opdesk_api_move``) leaves what follows it here
    (``lifecycle.after_move``, as a move through the services does at once): pending
    reminders cancelled, a missed visit's charge dropped, a slot given up offered on.
    Once the appointment has moved again, that later move's own follow-up decides.
    """
    from opdesk.scheduling import lifecycle

    try:
        appointment = records.by_id(session, Appointment, event.entity_ref_id, lock=True)
    except NotFound:
        return
    if appointment.status != event.payload.get("to"):
        return
    lifecycle.after_move(session, ctx, _offers(session, event), appointment)


# --------------------------------------------------------------------------- prepayment


@rule(PREPAY_LAPSE)
def lapse_prepayment(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """The booking's payment did not arrive in the clinic's minutes: the appointment is
    cancelled (its slot offered on, its charge cancelled, its link cancelled at Razorpay
    by :func:`settle_prepaid`). Nothing to do once it was paid or cancelled.
    """
    from opdesk.billing import prepay
    from opdesk.scheduling import lifecycle

    # Locked in the order a capture takes them (payment, invoice, appointment), so a
    # payment arriving at this very moment waits for the lapse or wins before it.
    charge = prepay.charge_of(session, event.entity_ref_id)
    if charge is not None:
        for payment in prepay.link_payments(session, charge.id):
            records.lock(session, payment)
        records.lock(session, charge)
    try:
        appointment = records.by_id(session, Appointment, event.entity_ref_id, lock=True)
    except NotFound:
        return
    if appointment.status != AppointmentStatus.REQUESTED:
        return
    lifecycle.transition(
        session,
        ctx,
        _offers(session, event),
        appointment_id=appointment.id,
        to=AppointmentStatus.CANCELLED,
    )


@rule(PREPAID_CANCELLED)
def settle_prepaid(
    session: Session, ctx: RequestContext, event: AutomationEvent
) -> rules.AfterCommit | None:
    """A booking with online money on it was cancelled: its given-up links are cancelled
    at Razorpay and what its links brought in is refunded through Razorpay (the refund
    rows are written now; Razorpay is asked after the commit, with the refund's own id
    as the idempotency key, so a retry never refunds twice).
    """
    from opdesk.billing import prepay

    links = prepay.links_given_up(session, event.entity_ref_id)
    refunds = prepay.refunds_due(session, ctx, event.entity_ref_id)
    if not links and not refunds:
        return None

    def call_razorpay(db: Database, cipher: FieldCipher, settings: Settings) -> None:
        from opdesk.billing import gateway, outside

        gateways = gateway.Gateways(settings.razorpay_base_url, settings.razorpay_timeout_seconds)
        outside.cancel_links(db, ctx, cipher, gateways, links)
        for request in refunds:
            outside.make_refund(db, ctx, cipher, gateways, request, retry=True)

    return call_razorpay
