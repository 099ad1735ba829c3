"""``POST /api/v1/appointments`` in one statement (``opdesk_api_book``): the same answers
and the same guarantees as the service path, under real concurrency.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.audit.verify import verify_tenant
from opdesk.automation.models import AutomationEvent
from opdesk.billing.models import Invoice
from opdesk.db import Database
from opdesk.scheduling.models import Appointment
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from tests.factories import (
    bearer,
    clinic_session,
    clinic_with_slots,
    make_tenant,
    make_user,
    open_session,
    patients,
)
from tests.factories.automation import make_worker
from tests.factories.hot import REFUSED_SESSIONS, booking_body, desk_headers, written

# Each patient races for every slot of the morning: each booking is meant.
ANOTHER = {"allowNearDuplicate": True}


def test_200_concurrent_bookings_over_http_on_20_slots_make_exactly_20(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Hot Clinic")
    people = patients(db, ident, tenant, 200)
    for _round in range(10):
        _tenant, doctor, slots = clinic_with_slots(db, ident, 20, tenant)
        headers = [desk_headers(db, ident, tenant) for _ in range(4)]
        outcomes: list[int] = []
        start = threading.Barrier(20)

        def attempt(
            worker: int,
            slots: list[Any] = slots,
            headers: list[dict[str, str]] = headers,
            outcomes: list[int] = outcomes,
            start: threading.Barrier = start,
        ) -> None:
            start.wait()
            for k in range(10):
                answer = client.post(
                    "/api/v1/appointments",
                    json=booking_body(slots[(worker + k) % 20], people[worker * 10 + k]),
                    headers=headers[worker % 4],
                )
                outcomes.append(answer.status_code)

        threads = [threading.Thread(target=attempt, args=(w,)) for w in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert Counter(outcomes) == {201: 20, 409: 180}
        with clinic_session(db, tenant.id) as session:
            made = session.execute(
                select(func.count(), func.count(func.distinct(Appointment.slot_id))).where(
                    Appointment.doctor_id == doctor.id
                )
            ).one()
        assert tuple(made) == (20, 20)
    with db.owner_engine.connect() as conn:
        assert verify_tenant(conn, tenant.id).ok


def test_a_lapsing_hold_raced_by_its_holder_and_a_newcomer_books_once(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 8)
    holder, newcomer = patients(db, ident, tenant, 2)
    start = slots[0].starts_at - timedelta(hours=2)
    with time_machine.travel(start, tick=False):
        desk = desk_headers(db, ident, tenant)
        other_desk = desk_headers(db, ident, tenant)
        held = [client.post(f"/api/v1/slots/{slot.id}/hold", headers=desk) for slot in slots]
    assert [h.status_code for h in held] == [201] * len(slots), held[0].text
    holds = [h.json() for h in held]
    # At the very instant each hold lapses, its holder and a newcomer book the slot at once.
    lapses = {datetime.fromisoformat(h["expiresAt"]) for h in holds}
    assert len(lapses) == 1
    with time_machine.travel(lapses.pop(), tick=False):
        for slot, hold in zip(slots, holds, strict=True):
            answers: list[int] = []
            go = threading.Barrier(2)

            def send(
                body: dict[str, Any],
                headers: dict[str, str],
                go: threading.Barrier = go,
                answers: list[int] = answers,
            ) -> None:
                go.wait()
                answer = client.post("/api/v1/appointments", json=body, headers=headers)
                answers.append(answer.status_code)

            racers = [
                threading.Thread(
                    target=send,
                    args=(booking_body(slot, holder, holdToken=hold["holdToken"], **ANOTHER), desk),
                ),
                threading.Thread(
                    target=send, args=(booking_body(slot, newcomer, **ANOTHER), other_desk)
                ),
            ]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join()
            assert sorted(answers) == [201, 409]
    with clinic_session(db, tenant.id) as session:
        per_slot = session.execute(
            select(Appointment.slot_id, func.count()).group_by(Appointment.slot_id)
        ).all()
    assert sorted(n for _slot, n in per_slot) == [1] * len(slots)


@pytest.mark.parametrize(("make_token", "status"), REFUSED_SESSIONS)
def test_a_session_that_may_not_book_is_refused_with_nothing_written(
    client: TestClient, db: Database, ident: Any, make_token: Any, status: int
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    token = make_token(db, ident, tenant)
    before = written(db, tenant)
    answer = client.post(
        "/api/v1/appointments",
        json=booking_body(slots[0], patient),
        headers={**bearer(token), "Idempotency-Key": "try-1"},
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert written(db, tenant) == before


def test_a_refused_booking_writes_nothing_and_frees_its_idempotency_key(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    desk = {**desk_headers(db, ident, tenant), "Idempotency-Key": "k-1"}
    before = written(db, tenant)
    wrong_type = client.post(
        "/api/v1/appointments", json=booking_body(slots[0], patient, visitType="new"), headers=desk
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"] == [
        {"field": "visitType", "reason": "this slot is for consultation, not 'new'"}
    ]
    assert written(db, tenant) == before
    # The key was given back with the refusal: the corrected request books.
    booked = client.post("/api/v1/appointments", json=booking_body(slots[0], patient), headers=desk)
    assert booked.status_code == 201, booked.text


def test_invalid_input_from_a_caller_who_may_not_book_is_refused_for_who_they_are(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant = make_tenant(db, "Order Clinic")
    pharmacist = bearer(open_session(db, ident, make_user(db, ident, tenant, "pharmacy")))
    assert client.post("/api/v1/appointments", json={}, headers=pharmacist).status_code == 403
    assert client.post("/api/v1/appointments", json={}).status_code == 401
    desk = desk_headers(db, ident, tenant)
    assert client.post("/api/v1/appointments", json={}, headers=desk).status_code == 422
    # The same with a malformed Idempotency-Key and an otherwise good request.
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    (patient,) = patients(db, ident, tenant, 1)
    body, bad_key = booking_body(slots[0], patient), {"Idempotency-Key": "tab\there"}
    refused = client.post("/api/v1/appointments", json=body, headers={**pharmacist, **bad_key})
    assert refused.status_code == 403
    refused = client.post("/api/v1/appointments", json=body, headers={**desk, **bad_key})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "Idempotency-Key"


def booked_by_the_desk(
    client: TestClient, db: Database, ident: Any
) -> tuple[Tenant, str, dict[str, str]]:
    """A new clinic's one slot booked through the hot route: the clinic, the appointment's
    id and the desk's headers.
    """
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    (patient,) = patients(db, ident, tenant, 1)
    desk = desk_headers(db, ident, tenant)
    made = client.post("/api/v1/appointments", json=booking_body(slots[0], patient), headers=desk)
    assert made.status_code == 201, made.text
    return tenant, made.json()["id"], desk


def test_the_booked_rule_leaves_the_draft_invoice_and_reminders_of_a_hot_booking_body(
    client: TestClient, db: Database, ident: Any, cipher: FieldCipher
) -> None:
    tenant, appointment_id, _desk = booked_by_the_desk(client, db, ident)
    with clinic_session(db, tenant.id) as session:
        rules = set(session.execute(select(AutomationEvent.rule)).scalars())
        drafts = session.execute(select(func.count()).select_from(Invoice)).scalar_one()
    assert rules == {"booked"}
    assert drafts == 0
    make_worker(db, cipher).run_once()
    with clinic_session(db, tenant.id) as session:
        invoice = session.execute(select(Invoice)).scalar_one()
        rules = set(
            session.execute(
                select(AutomationEvent.rule).where(AutomationEvent.status == "pending")
            ).scalars()
        )
    assert str(invoice.appointment_id) == appointment_id
    assert invoice.status == "draft"
    assert rules and "booked" not in rules  # the reminders and the no-show check wait
    with db.owner_engine.connect() as conn:
        assert verify_tenant(conn, tenant.id).ok


def test_a_hot_booking_checked_in_before_its_follow_up_runs_still_gets_its_draft(
    client: TestClient, db: Database, ident: Any, cipher: FieldCipher
) -> None:
    """The worker was slow (or down): the patient arrived and was checked in first."""
    tenant, appointment_id, desk = booked_by_the_desk(client, db, ident)
    moved = client.post(
        f"/api/v1/appointments/{appointment_id}/status",
        json={"status": "checked-in"},
        headers=desk,
    )
    assert moved.status_code == 200, moved.text
    make_worker(db, cipher).run_once()
    with clinic_session(db, tenant.id) as session:
        invoice = session.execute(select(Invoice)).scalar_one()
        reminders = session.execute(
            select(func.count())
            .select_from(AutomationEvent)
            .where(AutomationEvent.rule.like("reminder%"), AutomationEvent.status == "pending")
        ).scalar_one()
    assert str(invoice.appointment_id) == appointment_id
    assert reminders == 0
