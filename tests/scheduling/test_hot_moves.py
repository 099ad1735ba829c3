"""Holds and the desk's moves in one statement each (``opdesk_api_hold``,
``opdesk_api_move``): the same answers and guarantees as the services, under real
concurrency, and the follow-up work the worker's ``moved`` rule does.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opdesk.audit.models import AuditEvent
from opdesk.audit.verify import verify_tenant
from opdesk.automation.models import AutomationEvent
from opdesk.billing.models import Invoice
from opdesk.db import Database
from opdesk.scheduling.models import Appointment, QueueCounter
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from tests.factories import bearer, clinic_session, clinic_with_slots, patients
from tests.factories.automation import make_worker
from tests.factories.hot import REFUSED_SESSIONS, booking_body, desk_headers, written


def at_once(count: int, attempt: Callable[[int], Any]) -> list[Any]:
    """``attempt(0..count-1)`` from ``count`` threads released together; their answers."""
    start = threading.Barrier(count)
    answers: list[Any] = [None] * count

    def run(k: int) -> None:
        start.wait()
        answers[k] = attempt(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def booked(
    client: TestClient, db: Database, ident: Any, count: int
) -> tuple[Tenant, dict[str, str], list[str]]:
    """A new clinic's doctor with ``count`` slots, each booked through the hot route."""
    tenant, _doctor, slots = clinic_with_slots(db, ident, count)
    people = patients(db, ident, tenant, count)
    desk = desk_headers(db, ident, tenant)
    ids = []
    for slot, person in zip(slots, people, strict=True):
        made = client.post("/api/v1/appointments", json=booking_body(slot, person), headers=desk)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    return tenant, desk, ids


def move(client: TestClient, appointment_id: str, to: str, headers: dict[str, str]) -> Any:
    return client.post(
        f"/api/v1/appointments/{appointment_id}/status", json={"status": to}, headers=headers
    )


def verified(db: Database, tenant: Tenant) -> bool:
    with db.owner_engine.connect() as conn:
        return verify_tenant(conn, tenant.id).ok


# ------------------------------------------------------------------ moves


def test_twenty_patients_checked_in_at_once_get_tokens_one_to_twenty(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _desk, ids = booked(client, db, ident, 20)
    desks = [desk_headers(db, ident, tenant) for _ in range(4)]
    answers = at_once(20, lambda k: move(client, ids[k], "checked-in", desks[k % 4]))
    assert [a.status_code for a in answers] == [200] * 20, answers[0].text
    assert sorted(a.json()["tokenNumber"] for a in answers) == list(range(1, 21))
    with clinic_session(db, tenant.id) as session:
        tokens = session.execute(select(Appointment.token_number)).scalars().all()
        transitions = session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "state-transition", AuditEvent.to_state == "checked-in")
        ).scalar_one()
    assert sorted(t or 0 for t in tokens) == list(range(1, 21))
    assert transitions == 20
    assert verified(db, tenant)


def test_one_patient_checked_in_twice_at_once_is_checked_in_once(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, desk, (appointment_id,) = booked(client, db, ident, 1)
    other = desk_headers(db, ident, tenant)
    answers = at_once(2, lambda k: move(client, appointment_id, "checked-in", (desk, other)[k]))
    assert sorted(a.status_code for a in answers) == [200, 409]
    refusal = next(a for a in answers if a.status_code == 409).json()
    assert "checked-in" in refusal["detail"]
    with clinic_session(db, tenant.id) as session:
        counter = session.execute(select(QueueCounter.last_token)).scalar_one()
    assert counter == 1  # the loser took no token


def test_a_move_the_lifecycle_forbids_is_409_naming_both_states_and_writes_nothing(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, desk, (appointment_id,) = booked(client, db, ident, 1)
    before = written(db, tenant)
    refused = move(client, appointment_id, "completed", desk)
    assert refused.status_code == 409
    assert "confirmed" in refused.json()["detail"]
    assert "completed" in refused.json()["detail"]
    assert written(db, tenant) == before


def test_an_unknown_appointment_is_404_and_a_bad_status_422_naming_the_field(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, desk, _ids = booked(client, db, ident, 1)
    before = written(db, tenant)
    unknown = move(client, "01890000-0000-7000-8000-000000000000", "checked-in", desk)
    assert unknown.status_code == 404
    bad = move(client, _ids[0], "teleported", desk)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "status"
    # An unknown record is unknown whatever the body says, as on the services' routes.
    unknown = move(client, "01890000-0000-7000-8000-000000000000", "teleported", desk)
    assert unknown.status_code == 404
    malformed = client.post("/api/v1/appointments/not-an-id/status", json={}, headers=desk)
    assert malformed.status_code == 422
    assert {e["field"] for e in malformed.json()["errors"]} == {"path.appointment_id", "status"}
    assert written(db, tenant) == before


@pytest.mark.parametrize(("make_token", "status"), REFUSED_SESSIONS)
def test_a_session_that_may_not_move_appointments_is_refused_with_nothing_written(
    client: TestClient, db: Database, ident: Any, make_token: Any, status: int
) -> None:
    tenant, _desk, (appointment_id,) = booked(client, db, ident, 1)
    token = make_token(db, ident, tenant)
    before = written(db, tenant)
    refused = move(client, appointment_id, "checked-in", bearer(token))
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert written(db, tenant) == before


def pending_rules(db: Database, tenant: Tenant) -> set[str]:
    with clinic_session(db, tenant.id) as session:
        return set(
            session.execute(
                select(AutomationEvent.rule).where(AutomationEvent.status == "pending")
            ).scalars()
        )


def test_the_moved_rule_cancels_the_reminders_of_a_patient_checked_in_at_the_desk(
    client: TestClient, db: Database, ident: Any, cipher: FieldCipher
) -> None:
    tenant, desk, (appointment_id,) = booked(client, db, ident, 1)
    make_worker(db, cipher).run_once()  # the booking's follow-up: reminders, no-show check
    assert {"reminder-2h", "no-show"} <= pending_rules(db, tenant)
    assert move(client, appointment_id, "checked-in", desk).status_code == 200
    # The move is done; what follows it waits for the worker, due at once.
    assert "moved" in pending_rules(db, tenant)
    make_worker(db, cipher).run_once()
    assert pending_rules(db, tenant) == set()
    assert verified(db, tenant)


def test_a_no_show_marked_at_the_desk_drops_its_draft_once_the_worker_follows_up(
    client: TestClient, db: Database, ident: Any, cipher: FieldCipher
) -> None:
    tenant, desk, (appointment_id,) = booked(client, db, ident, 1)
    make_worker(db, cipher).run_once()

    def drafts() -> int:
        with clinic_session(db, tenant.id) as session:
            return int(
                session.execute(
                    select(func.count()).select_from(Invoice).where(Invoice.status == "draft")
                ).scalar_one()
            )

    assert drafts() == 1
    assert move(client, appointment_id, "no-show", desk).status_code == 200
    make_worker(db, cipher).run_once()
    assert drafts() == 0


def test_a_no_show_who_turns_up_before_the_follow_up_keeps_the_draft(
    client: TestClient, db: Database, ident: Any, cipher: FieldCipher
) -> None:
    """The later move decides: the no-show's follow-up finds the patient checked in."""
    tenant, desk, (appointment_id,) = booked(client, db, ident, 1)
    make_worker(db, cipher).run_once()
    assert move(client, appointment_id, "no-show", desk).status_code == 200
    assert move(client, appointment_id, "checked-in", desk).status_code == 200
    make_worker(db, cipher).run_once()
    with clinic_session(db, tenant.id) as session:
        statuses = session.execute(select(Invoice.status)).scalars().all()
    assert statuses == ["draft"]


def test_cancelling_through_the_api_still_offers_the_slot_at_once(
    client: TestClient, db: Database, ident: Any
) -> None:
    """Cancelling is not a desk move: the slot is free as soon as the answer arrives."""
    tenant, desk, (appointment_id,) = booked(client, db, ident, 1)
    cancelled = move(client, appointment_id, "cancelled", desk)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    slot_id = cancelled.json()["slotId"]
    (person,) = patients(db, ident, tenant, 1)
    again = client.post(
        "/api/v1/appointments",
        json={"slotId": slot_id, "patientId": str(person.id), "visitType": "consultation"},
        headers=desk,
    )
    assert again.status_code == 201, again.text


# ------------------------------------------------------------------ holds


def test_ten_desks_holding_one_slot_at_once_get_one_hold_and_one_expiry(
    client: TestClient, db: Database, ident: Any
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    desks = [desk_headers(db, ident, tenant) for _ in range(10)]
    answers = at_once(
        10, lambda k: client.post(f"/api/v1/slots/{slots[0].id}/hold", headers=desks[k])
    )
    assert Counter(a.status_code for a in answers) == {201: 1, 409: 9}
    held = next(a for a in answers if a.status_code == 201).json()
    assert held["slotId"] == str(slots[0].id)
    with clinic_session(db, tenant.id) as session:
        expiry = session.execute(select(AutomationEvent)).scalar_one()
    assert expiry.rule == "hold-expiry"
    assert expiry.scheduled_for.isoformat() == held["expiresAt"].replace("Z", "+00:00")
    assert verified(db, tenant)


@pytest.mark.parametrize(("make_token", "status"), REFUSED_SESSIONS)
def test_a_session_that_may_not_hold_is_refused_with_nothing_written(
    client: TestClient, db: Database, ident: Any, make_token: Any, status: int
) -> None:
    tenant, _doctor, slots = clinic_with_slots(db, ident, 1)
    token = make_token(db, ident, tenant)
    before = written(db, tenant)
    refused = client.post(f"/api/v1/slots/{slots[0].id}/hold", headers=bearer(token))
    assert refused.status_code == status, refused.text
    assert written(db, tenant) == before
