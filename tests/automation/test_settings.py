"""A clinic's reminder, no-show grace and quiet-hour settings: the module (defaults, reading
what is stored, saving audited), the API ``/api/v1/automation/settings`` (a 422 naming each
bad field, a round trip, admin only), and that a saved setting changes what happens: the
reminders and no-show check a booking plans, and when a message is deferred.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from opdesk.audit.models import AuditEvent
from opdesk.automation import settings as automation_settings
from opdesk.automation.models import AutomationEvent
from opdesk.db import Database
from opdesk.errors import InvalidInput
from opdesk.notifications import delivery, policy
from opdesk.notifications.delivery import Deferred
from opdesk.notifications.models import OutboxMessage
from opdesk.scheduling.service import Opening, VisitType
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import (
    CLINIC_ZONE,
    bearer,
    book,
    coming,
    ctx_for,
    generate,
    make_doctor,
    make_patient,
    make_tenant,
    make_user,
    open_session,
    set_week,
    slots_of,
)
from tests.factories.clinics import clinic_session
from tests.factories.messages import consent_to, queue

URL = "/api/v1/automation/settings"
DEFAULTS = {
    "reminders": {"24h": {"on": True, "hours": 24}, "2h": {"on": True, "hours": 2}},
    "visitTypes": {},
    "noShowGraceMinutes": 15,
    "quietHours": {"start": "21:00", "end": "08:00"},
}
PROCEDURE = VisitType(code="procedure", label="प्रक्रिया", minutes=30)
CONSULTATION = VisitType(code="consultation", label="परामर्श", minutes=15)


def stored(db: Database, tenant: Tenant) -> dict[str, Any]:
    with clinic_session(db, tenant.id) as session:
        return dict(session.get_one(Tenant, tenant.id).automation_settings)


def settings_events(db: Database, tenant: Tenant) -> list[AuditEvent]:
    with clinic_session(db, tenant.id) as session:
        rows = session.execute(
            select(AuditEvent)
            .where(AuditEvent.entity_collection == "tenants", AuditEvent.action == "update")
            .order_by(AuditEvent.seq)
        ).scalars()
        return [row for row in rows if "automationSettings" in json.dumps(row.diff)]


def store_raw(db: Database, tenant: Tenant, raw: dict[str, Any]) -> None:
    """Settings written by hand (or by older code), around the module on purpose."""
    from tests.factories import unaudited

    with transaction(db, ctx_for(tenant.id)) as session:
        unaudited(session)
        session.execute(
            text("update tenants set automation_settings = cast(:s as jsonb) where id = :id"),
            {"s": json.dumps(raw), "id": tenant.id},
        )


def save(db: Database, tenant: Tenant, wanted: automation_settings.AutomationSettings) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        automation_settings.save(session, ctx, wanted)


@pytest.fixture
def admin_headers(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, "admin")))


# --------------------------------------------------------------------------- the module


def test_a_new_clinic_reads_the_defaults_the_rules_always_used(
    db: Database, tenant: Tenant
) -> None:
    with clinic_session(db, tenant.id) as session:
        read = automation_settings.read(session, ctx_for(tenant.id))
        row = session.get_one(Tenant, tenant.id)
        assert read.stored() == DEFAULTS
        assert (read.reminder("24h").on, read.reminder("24h").hours) == (True, 24)
        assert (read.reminder("2h").on, read.reminder("2h").hours) == (True, 2)
        assert read.grace == timedelta(minutes=15)
        assert policy.quiet_hours(row) == (time(21, 0), time(8, 0))


def test_what_is_stored_reads_as_the_rules_read_it_and_unusable_parts_as_defaults(
    db: Database, tenant: Tenant
) -> None:
    raw = {
        "reminders": {"24h": False, "2h": {"on": True, "hours": 3}},
        "visitTypes": {"procedure": {"reminders": {"2h": False}}},
        "noShowGraceMinutes": "soon",
        "quietHours": {"start": "20:00", "end": "half past seven"},
    }
    store_raw(db, tenant, raw)
    with clinic_session(db, tenant.id) as session:
        read = automation_settings.read(session, ctx_for(tenant.id))
    expected = {
        ("24h", None): (False, 24),
        ("24h", "procedure"): (False, 24),
        ("24h", "consultation"): (False, 24),
        ("2h", None): (True, 3),
        ("2h", "procedure"): (False, 3),  # the visit type turns it off, hours kept
        ("2h", "consultation"): (True, 3),  # no entry of its own: the clinic's
    }
    for (key, kind), (on, hours) in expected.items():
        got = read.reminder(key, kind)
        assert (got.on, got.hours) == (on, hours), (key, kind)
    assert read.grace == timedelta(minutes=15)  # "soon" is not minutes: the default
    assert read.quiet_hours.times == (time(20, 0), time(8, 0))


def test_saving_replaces_the_settings_and_audits_them_before_and_after(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    make_doctor(db, ident, tenant, visit_types=(CONSULTATION, PROCEDURE))
    wanted = automation_settings.parse(
        {
            "reminders": {"24h": {"on": False, "hours": 30}, "2h": {"on": True, "hours": 3}},
            "visitTypes": {
                "procedure": {"reminders": {"2h": {"on": False}}},
                "consultation": {"reminders": {"24h": {}, "2h": {}}},  # changes nothing
            },
            "noShowGraceMinutes": 40,
            "quietHours": {"start": "22:00", "end": "07:30"},
        }
    )
    save(db, tenant, wanted)
    after = stored(db, tenant)
    assert after == {
        "reminders": {"24h": {"on": False, "hours": 30}, "2h": {"on": True, "hours": 3}},
        "visitTypes": {"procedure": {"reminders": {"2h": {"on": False}}}},
        "noShowGraceMinutes": 40,
        "quietHours": {"start": "22:00", "end": "07:30"},
    }
    (event,) = settings_events(db, tenant)
    change = event.diff["updated"]["automationSettings"]
    assert change == {"from": {}, "to": after}
    # Saving the same again writes nothing and records nothing.
    save(db, tenant, wanted)
    assert len(settings_events(db, tenant)) == 1


def test_an_override_for_a_visit_type_the_clinic_does_not_offer_is_refused(
    db: Database, ident: Any, tenant: Tenant
) -> None:
    make_doctor(db, ident, tenant, visit_types=(CONSULTATION,))
    wanted = automation_settings.parse(
        {"visitTypes": {"yoga": {"reminders": {"2h": {"on": False}}}}}
    )
    with pytest.raises(InvalidInput) as refused:
        save(db, tenant, wanted)
    assert [e.field for e in refused.value.errors] == ["visitTypes.yoga"]
    assert "consultation" in refused.value.errors[0].reason
    assert stored(db, tenant) == {}


# --------------------------------------------------------------------------- the API


def test_get_answers_the_defaults_and_put_then_get_round_trips(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    make_doctor(db, ident, tenant, visit_types=(CONSULTATION, PROCEDURE))
    first = client.get(URL, headers=admin_headers)
    assert first.status_code == 200
    assert first.json() == DEFAULTS
    body = {
        "reminders": {"24h": {"on": True, "hours": 48}, "2h": {"on": False, "hours": 2}},
        "visitTypes": {"procedure": {"reminders": {"24h": {"hours": 72}, "2h": {"on": True}}}},
        "noShowGraceMinutes": 0,
        "quietHours": {"start": "13:00", "end": "15:00"},
    }
    put = client.put(URL, json=body, headers=admin_headers)
    assert put.status_code == 200, put.text
    assert put.json() == body
    assert client.get(URL, headers=admin_headers).json() == body
    assert stored(db, tenant) == body
    assert len(settings_events(db, tenant)) == 1


def test_put_leaves_what_it_omits_at_its_default(
    client: TestClient, tenant: Tenant, admin_headers: dict[str, str]
) -> None:
    put = client.put(
        URL,
        json={"reminders": {"2h": {"on": False}}, "noShowGraceMinutes": 30},
        headers=admin_headers,
    )
    assert put.status_code == 200
    assert put.json() == {
        **DEFAULTS,
        "reminders": {"24h": {"on": True, "hours": 24}, "2h": {"on": False, "hours": 2}},
        "noShowGraceMinutes": 30,
    }


BAD = [
    ({"reminders": {"24h": {"hours": 0}}}, "reminders.24h.hours", "from 1 to 72"),
    ({"reminders": {"24h": {"hours": 73}}}, "reminders.24h.hours", "from 1 to 72"),
    ({"reminders": {"2h": {"hours": 1.5}}}, "reminders.2h.hours", "whole number of hours"),
    ({"reminders": {"2h": {"hours": "2"}}}, "reminders.2h.hours", "whole number of hours"),
    ({"reminders": {"2h": {"on": "yes", "hours": 2}}}, "reminders.2h.on", "choose on or off"),
    ({"noShowGraceMinutes": -1}, "noShowGraceMinutes", "from 0 to 120"),
    ({"noShowGraceMinutes": 121}, "noShowGraceMinutes", "from 0 to 120"),
    ({"noShowGraceMinutes": True}, "noShowGraceMinutes", "from 0 to 120"),
    ({"quietHours": {"start": "25:00"}}, "quietHours.start", "HH:MM"),
    ({"quietHours": {"end": "9pm"}}, "quietHours.end", "HH:MM"),
    (
        {"quietHours": {"start": "08:00", "end": "08:00"}},
        "quietHours.end",
        "other than the start",
    ),
    (
        {"visitTypes": {"consultation": {"reminders": {"24h": {"hours": 100}}}}},
        "visitTypes.consultation.reminders.24h.hours",
        "from 1 to 72",
    ),
    (
        {"visitTypes": {"massage": {"reminders": {"2h": {"on": False}}}}},
        "visitTypes.massage",
        "not one of the clinic's",
    ),
    ({"reminders": {"1h": {"hours": 1}}}, "reminders.1h", "not permitted"),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD)
def test_a_bad_value_is_422_naming_the_field_and_nothing_is_saved(
    client: TestClient,
    db: Database,
    ident: Any,
    tenant: Tenant,
    admin_headers: dict[str, str],
    body: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    make_doctor(db, ident, tenant, visit_types=(CONSULTATION,))
    answer = client.put(URL, json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    errors = {e["field"]: e["reason"] for e in answer.json()["errors"]}
    assert field in errors, errors
    assert reason in errors[field]
    assert stored(db, tenant) == {}
    assert settings_events(db, tenant) == []


@pytest.mark.parametrize("role", ["frontdesk", "doctor", "accounts", "pharmacy"])
def test_only_an_admin_reads_or_changes_the_settings(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, role: str
) -> None:
    headers = bearer(open_session(db, ident, make_user(db, ident, tenant, role)))
    assert client.get(URL, headers=headers).status_code == 403
    put = client.put(URL, json={"noShowGraceMinutes": 5}, headers=headers)
    assert put.status_code == 403
    assert stored(db, tenant) == {}


def test_one_clinics_settings_leave_another_clinics_alone(
    client: TestClient, db: Database, ident: Any, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = bearer(open_session(db, ident, make_user(db, ident, other_tenant, "admin")))
    assert client.put(URL, json={"noShowGraceMinutes": 5}, headers=theirs).status_code == 200
    assert stored(db, tenant) == {}
    assert stored(db, other_tenant)["noShowGraceMinutes"] == 5


# --------------------------------------------------------------------------- it changes things


def at(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), CLINIC_ZONE).astimezone(UTC)


def test_saved_reminder_hours_and_grace_change_what_a_booking_plans(
    fresh_database: Database, ident: Any, cipher: FieldCipher, client: TestClient
) -> None:
    db = fresh_database
    tenant = make_tenant(db, "Settings Clinic")
    doctor = make_doctor(db, ident, tenant, visit_types=(CONSULTATION,))
    set_week(db, tenant, doctor, Opening(0, time(9), time(9, 30), 15))
    day = coming(0)
    assert generate(db, tenant, doctor, day, 1) == 2
    first, second = slots_of(db, tenant, doctor)
    patient = make_patient(db, ident, tenant)

    with time_machine.travel(at(day - timedelta(days=4), 12, 0), tick=False):
        before = book(db, tenant, first, patient)
    save(
        db,
        tenant,
        automation_settings.parse(
            {
                "reminders": {
                    "24h": {"on": True, "hours": 30},
                    "2h": {"on": True, "hours": 3},
                },
                "visitTypes": {"consultation": {"reminders": {"2h": {"on": False}}}},
                "noShowGraceMinutes": 40,
            }
        ),
    )
    with time_machine.travel(at(day - timedelta(days=4), 12, 5), tick=False):
        after = book(db, tenant, second, patient)

    def planned(appointment_id: uuid.UUID) -> dict[str, datetime]:
        with clinic_session(db, tenant.id) as session:
            rows = session.execute(
                select(AutomationEvent).where(AutomationEvent.entity_ref_id == appointment_id)
            ).scalars()
            return {r.rule: r.scheduled_for for r in rows if r.rule != "booking-confirmation"}

    assert planned(before.id) == {
        "reminder-24h": at(day - timedelta(days=1), 9, 0),
        "reminder-2h": at(day, 7, 0),
        "no-show": at(day, 9, 30),
    }
    # 09:15 slot: 30 h before, no 2 h reminder for a consultation, 40 minutes' grace
    assert planned(after.id) == {
        "reminder-24h": at(day - timedelta(days=1), 3, 15),
        "no-show": at(day, 10, 10),
    }


def test_saved_quiet_hours_decide_when_a_reminder_is_deferred(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    consent_to(db, cipher, tenant, patient.id, "sms")
    save(db, tenant, automation_settings.parse({"quietHours": {"start": "13:00", "end": "15:00"}}))

    def prepare(at_utc: datetime) -> delivery.Outgoing:
        message_id = queue(
            db, cipher, tenant, template="appointment-reminder", patient_id=patient.id
        )
        ctx = ctx_for(tenant.id, clock=lambda: at_utc)
        with transaction(db, ctx) as session:
            message = session.get_one(OutboxMessage, (tenant.id, message_id))
            return delivery.prepare(session, ctx, cipher, message)

    one_thirty_ist = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(Deferred) as deferred:
        prepare(one_thirty_ist)
    assert deferred.value.until == datetime(2027, 3, 1, 9, 30, tzinfo=UTC)  # 15:00 IST
    # 22:00 IST was quiet under the default hours; the clinic's own hours let it go.
    assert prepare(datetime(2027, 3, 1, 16, 30, tzinfo=UTC)).template == "appointment-reminder"
