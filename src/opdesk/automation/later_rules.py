"""Rules for records OPDesk does not have yet: registered, scheduled and tested now, so the
issue that brings each record only fills it in.

Five patient messages, each for one record (its ``entity_type`` and id) at one time:

=================  ==========================  =================  =======================
rule               sent when                   template           the record (later)
=================  ==========================  =================  =======================
follow-up-due      a follow-up falls due       ``follow-up``      ``visits.followUp``
refill-due         a medicine runs out         ``refill``         prescriptions
lab-result-ready   a reviewed result is ready  ``lab-result``     orders
balance-due        a bill is due               ``balance-due``    invoices
diet-plan-nudge    a nudge to keep to a plan   ``diet-nudge``     diet plans
=================  ==========================  =================  =======================

What the later issue does, e.g. for follow-ups:

1. When a visit gets a follow-up date: ``schedule_follow_up(session, ctx,
   entity_type="visits", entity_id=visit.id, patient_id=visit.patient_id, due=day,
   values={"doctor": …})``. Scheduling the same record again moves its pending event (a
   changed date); :func:`cancel` drops it (the follow-up was booked or cleared).
2. Register a *finder* for its records: ``@finds(FOLLOW_UP, "visits")`` on a function
   ``(session, entity_id) -> Mapping | None``: ``None`` when the record is gone or the
   message no longer makes sense; otherwise the template's values it knows (they win
   over those given when scheduling).

When the event falls due the rule asks the finder, and sends the message to the patient
(their channel, their language, never in quiet hours) or does nothing. An event for a kind
of record with no finder fails with a message saying so, rather than vanish silently.

The sixth rule, ``daily-report``, runs at each clinic's local midnight and builds the
report of the day that ended (:func:`build_daily_report`, with the week before it built
again); each run schedules the next midnight's, and a sweep
(:func:`keep_daily_report_scheduled`) starts the chain for a new clinic and restarts a
broken one. Its dedupe key carries the date, so a day's rule runs once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import Permanent, cipher_of, rule
from opdesk.context import RequestContext
from opdesk.errors import NotFound
from opdesk.reports import build as reports
from opdesk.tenancy import service as tenants

if TYPE_CHECKING:
    from opdesk.patients.models import Patient

FOLLOW_UP = "follow-up-due"
REFILL = "refill-due"
LAB_RESULT = "lab-result-ready"
BALANCE_DUE = "balance-due"
DIET_NUDGE = "diet-plan-nudge"
DAILY_REPORT = "daily-report"

# A reminder given a day rather than a moment goes out at this hour, clinic time.
SEND_AT = time(10, 0)
# How a due date reads in a message ("Mon 09 Mar").
DAY_FORMAT = "%a %d %b"


@dataclass(frozen=True)
class Kind:
    rule: str
    template: str
    # The record it will be for, once that exists (documentation and the events page).
    record: str


KINDS: dict[str, Kind] = {
    kind.rule: kind
    for kind in (
        Kind(FOLLOW_UP, "follow-up", "visits"),
        Kind(REFILL, "refill", "prescriptions"),
        Kind(LAB_RESULT, "lab-result", "orders"),
        Kind(BALANCE_DUE, "balance-due", "invoices"),
        Kind(DIET_NUDGE, "diet-nudge", "diet plans"),
    )
}

# Finder: reads the record when its event falls due; None when it is gone or the message
# no longer makes sense, else the template values it knows.
Finder = Callable[[Session, uuid.UUID], Mapping[str, Any] | None]

# (rule, entity_type) -> its finder.
FINDERS: dict[tuple[str, str], Finder] = {}


def finds(rule_name: str, entity_type: str) -> Callable[[Finder], Finder]:
    """Register ``finder`` as how ``rule_name`` reads a record of ``entity_type``."""
    if rule_name not in KINDS:
        raise ValueError(f"{rule_name!r} is not one of {sorted(KINDS)}")

    def register(finder: Finder) -> Finder:
        FINDERS[(rule_name, entity_type)] = finder
        return finder

    return register


def dedupe_key(
    rule_name: str, entity_type: str, entity_id: uuid.UUID, occurrence: str | None = None
) -> str:
    key = f"{rule_name}:{entity_type}:{entity_id}"
    return key if occurrence is None else f"{key}:{occurrence}"


# --------------------------------------------------------------------------- scheduling


def _moment(session: Session, ctx: RequestContext, due: date | datetime) -> datetime:
    """``due`` as a moment: a day means :data:`SEND_AT` on that day, clinic time."""
    if isinstance(due, datetime):
        if due.tzinfo is None:
            raise ValueError("a reminder's time needs a time zone")
        return due
    assert ctx.tenant_id is not None, "reminders belong to a clinic"
    return datetime.combine(due, SEND_AT, tenants.zone_of(session, ctx.tenant_id))


def schedule_message(
    session: Session,
    ctx: RequestContext,
    rule_name: str,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    patient_id: uuid.UUID,
    due: date | datetime,
    values: Mapping[str, Any] | None = None,
    occurrence: str | None = None,
) -> AutomationEvent:
    """Message ``patient_id`` about a record at ``due`` (a day: :data:`SEND_AT` clinic
    time), once per record (and ``occurrence``, for a record that nudges again and again);
    scheduling it again moves a pending one to the new time.
    """
    if rule_name not in KINDS:
        raise ValueError(f"{rule_name!r} is not one of {sorted(KINDS)}")
    assert ctx.tenant_id is not None, "reminders belong to a clinic"
    when = _moment(session, ctx, due)
    zone = tenants.zone_of(session, ctx.tenant_id)
    given = {"dueOn": when.astimezone(zone).strftime(DAY_FORMAT), **(values or {})}
    return automation.schedule(
        session,
        ctx,
        rule=rule_name,
        entity_type=entity_type,
        entity_id=entity_id,
        when=when,
        dedupe_key=dedupe_key(rule_name, entity_type, entity_id, occurrence),
        payload={"patientId": str(patient_id), "values": {k: str(v) for k, v in given.items()}},
    )


class Scheduler(Protocol):
    """:func:`schedule_message` for one rule."""

    def __call__(
        self,
        session: Session,
        ctx: RequestContext,
        *,
        entity_type: str,
        entity_id: uuid.UUID,
        patient_id: uuid.UUID,
        due: date | datetime,
        values: Mapping[str, Any] | None = None,
    ) -> AutomationEvent: ...


def _scheduler(rule_name: str) -> Scheduler:
    def schedule(
        session: Session,
        ctx: RequestContext,
        *,
        entity_type: str,
        entity_id: uuid.UUID,
        patient_id: uuid.UUID,
        due: date | datetime,
        values: Mapping[str, Any] | None = None,
    ) -> AutomationEvent:
        return schedule_message(
            session,
            ctx,
            rule_name,
            entity_type=entity_type,
            entity_id=entity_id,
            patient_id=patient_id,
            due=due,
            values=values,
        )

    return schedule


# What each message's ``values`` name: follow-up ``doctor``; refill ``medicine``; lab result
# ``test`` (due: usually now, once reviewed); balance due ``amount``, as it should read ("₹1,200").
schedule_follow_up = _scheduler(FOLLOW_UP)
schedule_refill = _scheduler(REFILL)
schedule_lab_result = _scheduler(LAB_RESULT)
schedule_balance_due = _scheduler(BALANCE_DUE)


def schedule_diet_nudge(
    session: Session,
    ctx: RequestContext,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    patient_id: uuid.UUID,
    due: date | datetime,
    values: Mapping[str, Any] | None = None,
) -> AutomationEvent:
    """One nudge of a diet plan (``values``: ``plan``); a plan nudges once a day at most,
    so each day's nudge is its own event.
    """
    return schedule_message(
        session,
        ctx,
        DIET_NUDGE,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient_id,
        due=due,
        values=values,
        occurrence=_moment(session, ctx, due).date().isoformat(),
    )


def cancel(
    session: Session,
    ctx: RequestContext,
    *,
    rule_name: str,
    entity_type: str,
    entity_id: uuid.UUID,
) -> int:
    """The record's pending ``rule_name`` events are cancelled (the follow-up was booked,
    the bill paid, the plan ended); returns how many.
    """
    return automation.cancel_for(
        session, ctx, entity_type=entity_type, entity_id=entity_id, rules=(rule_name,)
    )


# --------------------------------------------------------------------------- the rules


def _send(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    from opdesk.notifications import service as outbox
    from opdesk.patients.models import Patient

    kind = KINDS[event.rule]
    finder = FINDERS.get((event.rule, event.entity_ref_type))
    if finder is None:
        raise Permanent(
            f"rule {event.rule!r} cannot read a record of {event.entity_ref_type!r}: "
            f"no finder is registered for it (later_rules.finds)"
        )
    found = finder(session, event.entity_ref_id)
    if found is None:
        return  # the record is gone, or the message no longer makes sense
    try:
        patient: Patient = records.by_id(session, Patient, uuid.UUID(event.payload["patientId"]))
    except (KeyError, ValueError) as exc:
        raise Permanent(f"the event does not name its patient: {exc}") from exc
    except NotFound:
        return
    tenant = tenants.get_tenant(session, event.tenant_id)
    outbox.send_to_patient(
        session,
        ctx,
        cipher_of(session),
        patient_id=patient.id,
        template=kind.template,
        payload={
            "patient": patient.full_name,
            "clinic": tenant.name,
            **(event.payload.get("values") or {}),
            **{k: "" if v is None else str(v) for k, v in found.items()},
        },
        dedupe_key=event.dedupe_key,
    )


for _rule in KINDS:
    rule(_rule)(_send)


# --------------------------------------------------------------------------- daily report


def midnight_after(day: date, zone: Any) -> datetime:
    """The clinic-local midnight that ends ``day``."""
    return datetime.combine(day + timedelta(days=1), time(0), zone)


def daily_report_key(day: date) -> str:
    return f"{DAILY_REPORT}:{day.isoformat()}"


def schedule_daily_report(session: Session, ctx: RequestContext, *, day: date) -> AutomationEvent:
    """The report of clinic-local ``day``, built at the midnight that ends it (moved if the
    clinic's time zone changed since it was scheduled).
    """
    assert ctx.tenant_id is not None, "a daily report belongs to a clinic"
    return automation.schedule(
        session,
        ctx,
        rule=DAILY_REPORT,
        entity_type="tenants",
        entity_id=ctx.tenant_id,
        when=midnight_after(day, tenants.zone_of(session, ctx.tenant_id)),
        dedupe_key=daily_report_key(day),
        payload={"day": day.isoformat()},
    )


def keep_daily_report_scheduled(session: Session, ctx: RequestContext) -> int:
    """A sweep: today's report (clinic time) is scheduled for tonight's midnight; 1 when
    this scheduled or moved it, 0 when it already was (then nothing is locked or written).
    """
    assert ctx.tenant_id is not None, "a daily report belongs to a clinic"
    try:
        zone = tenants.zone_of(session, ctx.tenant_id)
    except NotFound:
        return 0  # a closed clinic gets no reports
    today = ctx.now().astimezone(zone).date()
    when = midnight_after(today, zone)
    scheduled = session.execute(
        select(AutomationEvent.scheduled_for, AutomationEvent.status).where(
            AutomationEvent.dedupe_key == daily_report_key(today)
        )
    ).first()
    if scheduled is not None and (scheduled.scheduled_for == when or scheduled.status != "pending"):
        return 0
    schedule_daily_report(session, ctx, day=today)
    return 1


def build_daily_report(session: Session, ctx: RequestContext, *, day: date) -> None:
    """Build the clinic's report of ``day`` (clinic-local), and the week before it again so
    what changed since (a note signed the next morning, a no-show marked late) lands.
    """
    assert ctx.tenant_id is not None, "a daily report belongs to a clinic"
    zone = tenants.zone_of(session, ctx.tenant_id)
    reports.build(session, ctx, zone, day - timedelta(days=reports.TRAILING_DAYS - 1), day)


@rule(DAILY_REPORT)
def daily_report(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """Build the report of the day that ended, then schedule the next day's. The next one
    follows from this one's day, not from the clock: a worker that was down for days
    catches up one day at a time, and no day is skipped.
    """
    try:
        day = date.fromisoformat(str(event.payload["day"]))
    except (KeyError, ValueError) as exc:
        raise Permanent(f"the event does not say which day to report: {exc}") from exc
    try:
        tenants.get_tenant(session, event.tenant_id)
    except NotFound:
        return  # the clinic was closed: no report, and no next one
    build_daily_report(session, ctx, day=day)
    schedule_daily_report(session, ctx, day=day + timedelta(days=1))
