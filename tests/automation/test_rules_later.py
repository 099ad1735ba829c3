"""The rules for records not built yet (follow-up due, refill due, lab result ready, balance
due, diet-plan nudge), run against a stand-in record, and the daily report at each clinic's
local midnight; every one run by the worker with its clock moved to when it falls due.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from opdesk.automation import later_rules
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database
from opdesk.jobs.runner import run_job
from opdesk.jobs.sweeps import sweep_jobs
from opdesk.notifications.models import OutboxMessage
from opdesk.notifications.service import read as read_message
from opdesk.scheduling import waitlist
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import CLINIC_ZONE, coming, ctx_for, events_of, make_patient, make_tenant
from tests.factories.automation import make_worker
from tests.factories.messages import consent_to
from tests.factories.reports import clinic_days
from tests.factories.scheduling import OFFER_FOR

STAND_IN = "stand-ins"
DUBAI = ZoneInfo("Asia/Dubai")
LONDON = ZoneInfo("Europe/London")


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class StandIns:
    """Records of a kind OPDesk does not have yet: id -> the values its finder gives, while
    it exists.
    """

    def __init__(self) -> None:
        self.alive: dict[uuid.UUID, dict[str, Any]] = {}

    def add(self, **values: Any) -> uuid.UUID:
        record_id = uuid.uuid4()
        self.alive[record_id] = values
        return record_id

    def find(self, session: Any, record_id: uuid.UUID) -> Mapping[str, Any] | None:
        return self.alive.get(record_id)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> StandIns:
    """A stand-in record, registered for every rule as the later issues will register
    visits, prescriptions, orders, invoices and diet plans.
    """
    records = StandIns()
    for rule_name in later_rules.KINDS:
        monkeypatch.setitem(later_rules.FINDERS, (rule_name, STAND_IN), records.find)
    return records


def clinic(db: Database, ident: Any, cipher: FieldCipher, **patient: Any) -> tuple[Tenant, Any]:
    tenant = make_tenant(db, "Later Clinic")
    person = make_patient(db, ident, tenant, name={"first": "Asha", "last": "Verma"}, **patient)
    consent_to(db, cipher, tenant, person.id, "sms")
    return tenant, person


def rows(db: Database, tenant: Tenant, entity_id: uuid.UUID) -> list[AutomationEvent]:
    with transaction(db, ctx_for(tenant.id)) as session:
        return list(
            session.execute(
                select(AutomationEvent)
                .where(AutomationEvent.entity_ref_id == entity_id)
                .order_by(AutomationEvent.scheduled_for)
            ).scalars()
        )


def sent(db: Database, cipher: FieldCipher, tenant: Tenant) -> dict[str, Any]:
    """The clinic's outbox: dedupe key -> (template, status, text as sent)."""
    with transaction(db, ctx_for(tenant.id)) as session:
        found = session.execute(select(OutboxMessage)).scalars().all()
        return {
            str(m.dedupe_key): (m.template, m.status, read_message(cipher, m, tenant.name).text)
            for m in found
        }


Schedule = Callable[..., AutomationEvent]

KINDS: list[tuple[Schedule, str, str, dict[str, str], list[str]]] = [
    (
        later_rules.schedule_follow_up,
        "follow-up-due",
        "follow-up",
        {"doctor": "Dr Meera Rao"},
        ["Asha Verma", "follow-up visit with Dr Meera Rao", "Later Clinic"],
    ),
    (
        later_rules.schedule_refill,
        "refill-due",
        "refill",
        {"medicine": "Metformin 500 mg"},
        ["Asha Verma", "your Metformin 500 mg from Later Clinic runs out"],
    ),
    (
        later_rules.schedule_lab_result,
        "lab-result-ready",
        "lab-result",
        {"test": "HbA1c"},
        ["your HbA1c result has been reviewed", "Later Clinic"],
    ),
    (
        later_rules.schedule_balance_due,
        "balance-due",
        "balance-due",
        {"amount": "₹1,200"},
        ["Asha Verma, ₹1,200 is due to Later Clinic by"],
    ),
    (
        later_rules.schedule_diet_nudge,
        "diet-plan-nudge",
        "diet-nudge",
        {"plan": "low salt"},
        ["keep to your diet plan (low salt)", "Later Clinic"],
    ),
]


def schedule(
    db: Database,
    tenant: Tenant,
    how: Schedule,
    *,
    entity_id: uuid.UUID,
    patient_id: uuid.UUID,
    due: date | datetime,
    values: dict[str, str] | None = None,
) -> AutomationEvent:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return how(
            session,
            ctx,
            entity_type=STAND_IN,
            entity_id=entity_id,
            patient_id=patient_id,
            due=due,
            values=values,
        )


def at(day: date, hour: int, minute: int, zone: ZoneInfo = CLINIC_ZONE) -> datetime:
    return datetime.combine(day, time(hour, minute), zone).astimezone(UTC)


# --------------------------------------------------------------------------- the messages


@pytest.mark.parametrize(("how", "rule_name", "template", "values", "words"), KINDS)
def test_each_rule_messages_the_patient_on_its_day_at_ten_clinic_time(
    fresh_database: Database,
    ident: Any,
    cipher: FieldCipher,
    stand_ins: StandIns,
    how: Schedule,
    rule_name: str,
    template: str,
    values: dict[str, str],
    words: list[str],
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher)
    day = coming(2)  # a Wednesday at least a week ahead
    record = stand_ins.add()
    event = schedule(
        db, tenant, how, entity_id=record, patient_id=patient.id, due=day, values=values
    )
    assert event.rule == rule_name
    assert event.scheduled_for == at(day, 10, 0)
    assert event.dedupe_key.startswith(f"{rule_name}:{STAND_IN}:{record}")

    clock = Clock(at(day, 9, 59))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert sent(db, cipher, tenant) == {}

    clock.now = at(day, 10, 0)
    worker.run_once()
    ((key, (used, status, text)),) = sent(db, cipher, tenant).items()
    assert (key, used, status) == (event.dedupe_key, template, "sent")
    for phrase in words:
        assert phrase in text, text
    assert "{" not in text and "}" not in text
    assert rows(db, tenant, record)[0].status == EventStatus.SUCCESS


def test_the_due_day_reads_in_the_message(
    fresh_database: Database, ident: Any, cipher: FieldCipher, stand_ins: StandIns
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher)
    day = coming(2)
    record = stand_ins.add(doctor="Dr Meera Rao")  # the finder's values win
    schedule(
        db,
        tenant,
        later_rules.schedule_follow_up,
        entity_id=record,
        patient_id=patient.id,
        due=day,
        values={"doctor": "Dr Old Name"},
    )
    make_worker(db, cipher, clock=Clock(at(day, 10, 0))).run_once()
    ((_, _, text),) = sent(db, cipher, tenant).values()
    assert f"is due on {day:%a %d %b}." in text
    assert "Dr Meera Rao" in text and "Dr Old Name" not in text


def test_a_stand_in_that_is_gone_when_its_time_comes_sends_nothing(
    fresh_database: Database, ident: Any, cipher: FieldCipher, stand_ins: StandIns
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher)
    day = coming(2)
    record = stand_ins.add()
    schedule(
        db, tenant, later_rules.schedule_refill, entity_id=record, patient_id=patient.id, due=day
    )
    del stand_ins.alive[record]  # the prescription was deleted, or the refill collected
    make_worker(db, cipher, clock=Clock(at(day, 10, 0))).run_once()
    assert sent(db, cipher, tenant) == {}
    assert rows(db, tenant, record)[0].status == EventStatus.SUCCESS  # it ran, and chose silence


def test_a_record_kind_with_no_finder_fails_its_event_saying_so(
    fresh_database: Database, ident: Any, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher)
    day = coming(2)
    record = uuid.uuid4()
    schedule(
        db,
        tenant,
        later_rules.schedule_balance_due,
        entity_id=record,
        patient_id=patient.id,
        due=day,
    )
    make_worker(db, cipher, clock=Clock(at(day, 10, 0))).run_once()
    (event,) = rows(db, tenant, record)
    assert event.status == EventStatus.FAILED
    assert "no finder is registered" in (event.last_error or "")
    assert sent(db, cipher, tenant) == {}


def test_scheduling_twice_is_one_event_a_new_day_moves_it_and_cancel_drops_it(
    fresh_database: Database, ident: Any, cipher: FieldCipher, stand_ins: StandIns
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher)
    day = coming(2)
    record = stand_ins.add()

    def follow_up(due: date) -> AutomationEvent:
        return schedule(
            db,
            tenant,
            later_rules.schedule_follow_up,
            entity_id=record,
            patient_id=patient.id,
            due=due,
        )

    first = follow_up(day)
    again = follow_up(day)
    moved = follow_up(day + timedelta(days=7))  # the doctor changed the follow-up date
    assert first.id == again.id == moved.id
    (event,) = rows(db, tenant, record)
    assert event.scheduled_for == at(day + timedelta(days=7), 10, 0)

    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        assert (
            later_rules.cancel(
                session, ctx, rule_name="follow-up-due", entity_type=STAND_IN, entity_id=record
            )
            == 1
        )
    make_worker(db, cipher, clock=Clock(at(day + timedelta(days=7), 10, 0))).run_once()
    assert rows(db, tenant, record)[0].status == EventStatus.CANCELLED
    assert sent(db, cipher, tenant) == {}


def test_a_diet_plan_nudges_once_per_day(
    fresh_database: Database, ident: Any, cipher: FieldCipher, stand_ins: StandIns
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher)
    day = coming(2)
    plan = stand_ins.add(plan="low salt")
    for due in (day, day, day + timedelta(days=1)):
        schedule(
            db,
            tenant,
            later_rules.schedule_diet_nudge,
            entity_id=plan,
            patient_id=patient.id,
            due=due,
        )
    assert [e.scheduled_for for e in rows(db, tenant, plan)] == [
        at(day, 10, 0),
        at(day + timedelta(days=1), 10, 0),
    ]
    clock = Clock(at(day, 10, 0))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    clock.now = at(day + timedelta(days=1), 10, 0)
    worker.run_once()
    assert len(sent(db, cipher, tenant)) == 2


def test_a_message_goes_out_in_the_patients_language(
    fresh_database: Database, ident: Any, cipher: FieldCipher, stand_ins: StandIns
) -> None:
    db = fresh_database
    tenant, patient = clinic(db, ident, cipher, preferredLanguage="hi")
    day = coming(2)
    record = stand_ins.add(test="HbA1c")
    schedule(
        db,
        tenant,
        later_rules.schedule_lab_result,
        entity_id=record,
        patient_id=patient.id,
        due=day,
    )
    make_worker(db, cipher, clock=Clock(at(day, 10, 0))).run_once()
    ((_, status, text),) = sent(db, cipher, tenant).values()
    assert status == "sent"
    assert re.search(r"[\u0900-\u097F]", text), text  # Devanagari
    assert "HbA1c" in text and "Asha Verma" in text


def test_a_clinic_in_dubai_gets_its_reminders_at_ten_its_own_time(
    fresh_database: Database, ident: Any, cipher: FieldCipher, stand_ins: StandIns
) -> None:
    db = fresh_database
    tenant = make_tenant(db, "Gulf Clinic", timezone=DUBAI.key)
    patient = make_patient(db, ident, tenant)
    consent_to(db, cipher, tenant, patient.id, "sms")
    day = coming(2, DUBAI)
    record = stand_ins.add()
    event = schedule(
        db, tenant, later_rules.schedule_refill, entity_id=record, patient_id=patient.id, due=day
    )
    assert event.scheduled_for == datetime.combine(day, time(6), UTC)  # 10:00 in Dubai
    clock = Clock(at(day, 10, 0, CLINIC_ZONE))  # 10:00 in India: still 08:30 in Dubai
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert sent(db, cipher, tenant) == {}
    clock.now = at(day, 10, 0, DUBAI)
    worker.run_once()
    assert len(sent(db, cipher, tenant)) == 1


# --------------------------------------------------------------------------- daily report


def reports_built(db: Database, tenant: Tenant) -> list[str]:
    return [
        e.diff["updated"]["reportDaily"]["to"]
        for e in events_of(db, tenant.id)
        if e.entity_collection == "report_daily"
    ]


def report_events(db: Database, tenant: Tenant) -> dict[str, AutomationEvent]:
    with transaction(db, ctx_for(tenant.id)) as session:
        found = session.execute(
            select(AutomationEvent).where(AutomationEvent.rule == "daily-report")
        ).scalars()
        return {e.dedupe_key: e for e in found}


def keep_scheduled(db: Database, tenant: Tenant, now: datetime) -> int:
    ctx = ctx_for(tenant.id, clock=lambda: now)
    with transaction(db, ctx) as session:
        return later_rules.keep_daily_report_scheduled(session, ctx)


def test_the_daily_report_is_built_at_a_dubai_clinics_own_midnight(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant = make_tenant(db, "Gulf Clinic", timezone=DUBAI.key)
    day = date(2031, 3, 10)
    evening = at(day, 18, 0, DUBAI)
    assert keep_scheduled(db, tenant, evening) == 1
    assert keep_scheduled(db, tenant, evening + timedelta(minutes=1)) == 0  # already is
    (event,) = report_events(db, tenant).values()
    assert event.dedupe_key == "daily-report:2031-03-10"
    midnight = datetime(2031, 3, 10, 20, 0, tzinfo=UTC)  # 00:00 on the 11th in Dubai
    assert event.scheduled_for == midnight

    clock = Clock(midnight - timedelta(seconds=1))
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    assert reports_built(db, tenant) == []

    clock.now = midnight
    worker.run_once()
    assert reports_built(db, tenant) == ["2031-03-10"]
    # The day, and the week before it again (late changes land), each with a row.
    days = clinic_days(db, tenant)
    assert sorted(days) == [day - timedelta(days=n) for n in range(6, -1, -1)]
    assert {d.time_zone for d in days.values()} == {DUBAI.key}
    planned = report_events(db, tenant)
    assert planned["daily-report:2031-03-10"].status == EventStatus.SUCCESS
    following = planned["daily-report:2031-03-11"]
    assert (following.status, following.scheduled_for) == (
        EventStatus.PENDING,
        midnight + timedelta(days=1),
    )
    # The sweep, a minute later, finds tonight's report already scheduled.
    assert keep_scheduled(db, tenant, midnight + timedelta(minutes=1)) == 0
    assert len(report_events(db, tenant)) == 2


def test_london_midnight_moves_with_summer_time(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant = make_tenant(db, "Thames Clinic", timezone=LONDON.key)
    # Summer time begins at 01:00 UTC on Sunday 30 March 2031.
    keep_scheduled(db, tenant, datetime(2031, 3, 29, 12, 0, tzinfo=UTC))
    clock = Clock(datetime(2031, 3, 30, 0, 0, tzinfo=UTC))  # midnight GMT
    worker = make_worker(db, cipher, clock=clock)
    worker.run_once()
    next_one = report_events(db, tenant)["daily-report:2031-03-30"]
    assert next_one.scheduled_for == datetime(2031, 3, 30, 23, 0, tzinfo=UTC)  # midnight BST
    clock.now = datetime(2031, 3, 30, 23, 0, tzinfo=UTC)
    worker.run_once()
    assert reports_built(db, tenant) == ["2031-03-29", "2031-03-30"]


def test_a_worker_down_for_days_builds_every_missed_days_report_once(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    db = fresh_database
    tenant = make_tenant(db, "Late Clinic")
    keep_scheduled(db, tenant, at(date(2031, 3, 10), 12, 0))
    clock = Clock(at(date(2031, 3, 14), 9, 0))  # back four days later
    worker = make_worker(db, cipher, clock=clock)
    while worker.run_once():
        pass
    assert reports_built(db, tenant) == ["2031-03-10", "2031-03-11", "2031-03-12", "2031-03-13"]
    assert report_events(db, tenant)["daily-report:2031-03-14"].scheduled_for == at(
        date(2031, 3, 15), 0, 0
    )
    # Running again (another worker, the sweep) builds nothing twice.
    assert keep_scheduled(db, tenant, clock.now) == 0
    worker.run_once()
    assert len(reports_built(db, tenant)) == 4


def test_the_sweep_schedules_every_clinics_daily_report(
    fresh_database: Database, cipher: FieldCipher
) -> None:
    db = fresh_database
    india = make_tenant(db, "Indian Clinic")
    gulf = make_tenant(db, "Gulf Clinic", timezone=DUBAI.key)
    (job,) = [
        j
        for j in sweep_jobs(waitlist.Offers(cipher, OFFER_FOR))
        if j.work is later_rules.keep_daily_report_scheduled
    ]
    now = datetime(2031, 3, 10, 12, 0, tzinfo=UTC)
    assert run_job(db, job, clock=lambda: now).done == 2
    assert run_job(db, job, clock=lambda: now).done == 0
    assert [e.scheduled_for for e in report_events(db, india).values()] == [
        at(date(2031, 3, 11), 0, 0)
    ]
    assert [e.scheduled_for for e in report_events(db, gulf).values()] == [
        at(date(2031, 3, 11), 0, 0, DUBAI)
    ]


def test_the_worker_loads_every_rule_of_item_two() -> None:
    """A fresh process that imports only the worker can run every rule (none is left to an
    import some other module happens to make).
    """
    import subprocess
    import sys

    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import opdesk.automation.worker\n"
            "from opdesk.automation.rules import registered\n"
            "print(' '.join(registered()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(shown) >= {
        "booking-confirmation",
        "reminder-24h",
        "reminder-2h",
        "no-show",
        "waitlist-offer-expiry",
        "hold-expiry",
        "follow-up-due",
        "refill-due",
        "lab-result-ready",
        "balance-due",
        "diet-plan-nudge",
        "daily-report",
    }
