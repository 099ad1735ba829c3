"""The outbox and automation events through the JSON API: the same rows, filters, order
and retries as the admin's pages, for the admin only, never another clinic's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database
from opdesk.notifications.models import OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import bearer, ctx_for, make_patient, make_tenant, make_user, open_session
from tests.factories.clinics import clinic_session
from tests.factories.messages import (
    fail,
    failed_event,
    failed_message,
    mark_sent,
    message_row,
    queue,
)


def headers_for(db: Database, ident: Any, tenant: Tenant, role: str) -> dict[str, str]:
    return bearer(open_session(db, ident, make_user(db, ident, tenant, role)))


@pytest.fixture
def admin(db: Database, ident: Any, tenant: Tenant) -> dict[str, str]:
    return headers_for(db, ident, tenant, "admin")


def event_row(db: Database, tenant: Tenant, event_id: uuid.UUID) -> AutomationEvent:
    with clinic_session(db, tenant.id) as session:
        row = session.get_one(AutomationEvent, (tenant.id, event_id))
        session.expunge(row)
        return row


def audit_moves(db: Database, tenant: Tenant, collection: str, entity_id: uuid.UUID) -> list[Any]:
    with clinic_session(db, tenant.id) as session:
        return [
            (e.action, e.from_state, e.to_state)
            for e in session.execute(
                select(AuditEvent)
                .where(
                    AuditEvent.entity_collection == collection,
                    AuditEvent.entity_id == entity_id,
                )
                .order_by(AuditEvent.seq)
            ).scalars()
        ]


# --------------------------------------------------------------------------- outbox


def test_the_outbox_lists_each_message_as_the_page_shows_it(
    client: TestClient,
    admin: dict[str, str],
    db: Database,
    ident: Any,
    cipher: FieldCipher,
    tenant: Tenant,
) -> None:
    patient = make_patient(db, ident, tenant, name={"first": "Kavya", "last": "Iyer"})
    message_id = queue(
        db,
        cipher,
        tenant,
        patient_id=patient.id,
        recipient="+919800011122",
        payload={"patient": "Kavya", "doctor": "Dr Rao", "startsAt": "Tue 08 Dec, 09:30 AM"},
    )
    answer = client.get("/api/v1/outbox", headers=admin)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["total"], body["page"], body["pages"], body["pageSize"]) == (1, 1, 1, 50)
    [item] = body["items"]
    assert item["id"] == str(message_id)
    assert (item["template"], item["channel"], item["status"]) == (
        "booking-confirmation",
        "sms",
        "pending",
    )
    assert item["to"] == "+919800011122"
    assert item["patientId"] == str(patient.id)
    assert item["language"] == "en"
    assert item["text"].startswith("Kavya, your appointment with Dr Rao")
    assert (item["attempts"], item["lastError"], item["fallbackOf"]) == (0, None, None)
    for stamp in ("scheduledFor", "sentAt", "deliveredAt", "readAt"):
        assert item[stamp] is None
    # The page shows the very same text.
    page = client.get("/admin/outbox", headers=admin)
    assert item["text"] in page.text.replace("&#39;", "'")
    # One message by id, the same.
    one = client.get(f"/api/v1/outbox/{message_id}", headers=admin)
    assert one.status_code == 200
    assert one.json() == item


def test_the_outbox_filters_by_status_channel_template_and_patient(
    client: TestClient,
    admin: dict[str, str],
    db: Database,
    ident: Any,
    cipher: FieldCipher,
    tenant: Tenant,
) -> None:
    asha, ravi = make_patient(db, ident, tenant), make_patient(db, ident, tenant)
    failed = queue(db, cipher, tenant, patient_id=asha.id, recipient="+919800000001")
    fail(db, tenant, failed, "HTTP 400")
    queue(db, cipher, tenant, channel="whatsapp", patient_id=ravi.id, recipient="+919800000002")
    queue(
        db,
        cipher,
        tenant,
        template="otp",
        recipient="+919800000003",
        payload={"code": "1", "clinic": "C", "minutes": 10},
    )

    def shown(**query: str) -> set[str]:
        answer = client.get("/api/v1/outbox", params=query, headers=admin)
        assert answer.status_code == 200
        return {i["to"] for i in answer.json()["items"]}

    assert shown() == {"+919800000001", "+919800000002", "+919800000003"}
    assert shown(status="failed") == {"+919800000001"}
    assert shown(channel="whatsapp") == {"+919800000002"}
    assert shown(template="otp") == {"+919800000003"}
    assert shown(patientId=str(ravi.id)) == {"+919800000002"}
    assert shown(status="failed", channel="whatsapp") == set()
    [failed_item] = client.get("/api/v1/outbox", params={"status": "failed"}, headers=admin).json()[
        "items"
    ]
    assert (failed_item["lastError"], failed_item["attempts"]) == ("HTTP 400", 5)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"channel": "pigeon"}, "channel"),
        ({"patientId": "Ravi"}, "patientId"),
        ({"page": "0"}, "page"),
    ],
)
def test_a_bad_outbox_filter_is_422_naming_it(
    client: TestClient, admin: dict[str, str], query: dict[str, str], field: str
) -> None:
    answer = client.get("/api/v1/outbox", params=query, headers=admin)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [f"query.{field}"]


def test_the_outbox_is_paged_fifty_to_a_page_newest_first(
    client: TestClient, admin: dict[str, str], db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    ids = [queue(db, cipher, tenant, recipient=f"+9198000{n:05}") for n in range(51)]
    first = client.get("/api/v1/outbox", headers=admin).json()
    assert (first["total"], first["pages"], len(first["items"])) == (51, 2, 50)
    second = client.get("/api/v1/outbox", params={"page": 2}, headers=admin).json()
    assert second["page"] == 2
    assert [i["id"] for i in second["items"]] == [str(ids[0])]  # the oldest, last
    assert str(ids[-1]) == first["items"][0]["id"]
    # Past the last page: the last page, as the page does.
    beyond = client.get("/api/v1/outbox", params={"page": 9}, headers=admin).json()
    assert beyond["page"] == 2 and beyond["items"] == second["items"]


def test_retrying_a_failed_message_queues_it_again_audited(
    client: TestClient, admin: dict[str, str], db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    message_id = failed_message(db, cipher, tenant)
    answer = client.post(f"/api/v1/outbox/{message_id}/retry", headers=admin)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["id"], body["status"], body["attempts"]) == (str(message_id), "pending", 0)
    row = message_row(db, tenant, message_id)
    assert (row.status, row.attempts, row.scheduled_for) == (OutboxStatus.PENDING, 0, None)
    assert audit_moves(db, tenant, "notifications_outbox", message_id)[-1] == (
        "state-transition",
        "failed",
        "pending",
    )


def test_a_message_that_did_not_fail_cannot_be_retried_409(
    client: TestClient, admin: dict[str, str], db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    sent = queue(db, cipher, tenant, channel="whatsapp")
    mark_sent(db, tenant, sent, "wamid.1")
    waiting = queue(db, cipher, tenant)
    for message_id, status in ((sent, OutboxStatus.SENT), (waiting, OutboxStatus.PENDING)):
        moves = audit_moves(db, tenant, "notifications_outbox", message_id)
        answer = client.post(f"/api/v1/outbox/{message_id}/retry", headers=admin)
        assert answer.status_code == 409
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert message_row(db, tenant, message_id).status == status
        assert audit_moves(db, tenant, "notifications_outbox", message_id) == moves


def test_another_clinics_or_an_unknown_message_is_404_and_unchanged(
    client: TestClient, admin: dict[str, str], db: Database, cipher: FieldCipher
) -> None:
    other = make_tenant(db, "Other Clinic")
    theirs = failed_message(db, cipher, other)
    for unknown in (theirs, uuid.uuid4()):
        assert client.get(f"/api/v1/outbox/{unknown}", headers=admin).status_code == 404
        assert client.post(f"/api/v1/outbox/{unknown}/retry", headers=admin).status_code == 404
    assert message_row(db, other, theirs).status == OutboxStatus.FAILED
    listed = client.get("/api/v1/outbox", headers=admin).json()
    assert listed["items"] == [] and listed["total"] == 0


@pytest.mark.parametrize("role", ["frontdesk", "doctor"])
def test_only_the_admin_reads_or_retries_messages_and_events(
    client: TestClient,
    db: Database,
    ident: Any,
    cipher: FieldCipher,
    tenant: Tenant,
    role: str,
) -> None:
    message_id = failed_message(db, cipher, tenant)
    event_id = failed_event(db, tenant)
    headers = headers_for(db, ident, tenant, role)
    for path in ("/api/v1/outbox", f"/api/v1/outbox/{message_id}", "/api/v1/automation/events"):
        assert client.get(path, headers=headers).status_code == 403
    for path in (
        f"/api/v1/outbox/{message_id}/retry",
        f"/api/v1/automation/events/{event_id}/retry",
    ):
        assert client.post(path, headers=headers).status_code == 403
    assert message_row(db, tenant, message_id).status == OutboxStatus.FAILED
    assert event_row(db, tenant, event_id).status == EventStatus.FAILED


# --------------------------------------------------------------------------- automation


def _scheduled(db: Database, tenant: Tenant, rule: str, when: datetime) -> uuid.UUID:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return automation.schedule(
            session,
            ctx,
            rule=rule,
            entity_type="appointment",
            entity_id=uuid.uuid4(),
            when=when,
            dedupe_key=f"{rule}:{uuid.uuid4()}",
        ).id


def test_the_events_list_puts_failures_then_the_next_to_run_first(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    later = _scheduled(db, tenant, "later-one", now + timedelta(days=3))
    soon = _scheduled(db, tenant, "next-one", now + timedelta(hours=1))
    failed = failed_event(db, tenant, "needs someone")
    answer = client.get("/api/v1/automation/events", headers=admin)
    assert answer.status_code == 200
    body = answer.json()
    assert body["more"] is False
    assert [i["id"] for i in body["items"]] == [str(failed), str(soon), str(later)]
    first = body["items"][0]
    assert (first["rule"], first["status"], first["lastError"]) == (
        "demo",
        "failed",
        "needs someone",
    )
    assert (first["attempts"], first["entityType"], first["leased"]) == (5, "appointment", False)
    uuid.UUID(first["entityId"])
    assert body["items"][1]["scheduledFor"] is not None and body["items"][1]["executedAt"] is None


def test_the_events_list_filters_by_status_and_rule(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    soon = _scheduled(db, tenant, "next-one", now + timedelta(hours=1))
    failed = failed_event(db, tenant)

    def shown(**query: str) -> list[str]:
        answer = client.get("/api/v1/automation/events", params=query, headers=admin)
        assert answer.status_code == 200
        return [i["id"] for i in answer.json()["items"]]

    assert shown(status="failed") == [str(failed)]
    assert shown(status="pending") == [str(soon)]
    assert shown(rule="next-one") == [str(soon)]
    assert shown(rule="next-one", status="failed") == []
    bad = client.get("/api/v1/automation/events", params={"status": "lost"}, headers=admin)
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.status"]


def test_the_events_list_is_cut_at_a_hundred_and_says_so(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    ctx = ctx_for(tenant.id)
    start = datetime.now(UTC) + timedelta(hours=1)
    with transaction(db, ctx) as session:
        automation.schedule_all(
            session,
            ctx,
            entity_type="appointment",
            entity_id=uuid.uuid4(),
            when_by_rule={f"rule-{n:03}": start + timedelta(minutes=n) for n in range(101)},
            key_of=lambda rule: f"{rule}:cut",
        )
    body = client.get("/api/v1/automation/events", headers=admin).json()
    assert body["more"] is True
    assert len(body["items"]) == 100
    assert body["items"][-1]["rule"] == "rule-099"


def test_retrying_a_failed_event_runs_it_again_audited(
    client: TestClient, admin: dict[str, str], db: Database, tenant: Tenant
) -> None:
    event_id = failed_event(db, tenant, "the appointment is gone")
    answer = client.post(f"/api/v1/automation/events/{event_id}/retry", headers=admin)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["id"], body["status"], body["attempts"]) == (str(event_id), "pending", 0)
    event = event_row(db, tenant, event_id)
    assert (event.status, event.attempts) == (EventStatus.PENDING, 0)
    assert audit_moves(db, tenant, "automation_events", event_id)[-1] == (
        "state-transition",
        "failed",
        "pending",
    )
    # Now pending: a second retry is a conflict and changes nothing.
    again = client.post(f"/api/v1/automation/events/{event_id}/retry", headers=admin)
    assert again.status_code == 409
    assert event_row(db, tenant, event_id).status == EventStatus.PENDING


def test_another_clinics_or_an_unknown_event_is_404_and_unchanged(
    client: TestClient, admin: dict[str, str], db: Database
) -> None:
    other = make_tenant(db, "Other Clinic")
    theirs = failed_event(db, other)
    for unknown in (theirs, uuid.uuid4()):
        answer = client.post(f"/api/v1/automation/events/{unknown}/retry", headers=admin)
        assert answer.status_code == 404
    assert event_row(db, other, theirs).status == EventStatus.FAILED
    assert client.get("/api/v1/automation/events", headers=admin).json()["items"] == []


def test_the_api_document_lists_the_message_routes(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    expected = {
        "/api/v1/outbox": {"get"},
        "/api/v1/outbox/{message_id}": {"get"},
        "/api/v1/outbox/{message_id}/retry": {"post"},
        "/api/v1/automation/events": {"get"},
        "/api/v1/automation/events/{event_id}/retry": {"post"},
        "/api/v1/messaging/providers": {"get"},
        "/api/v1/messaging/providers/{channel}": {"put"},
        "/api/v1/messaging/providers/{channel}/test": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert "security" in paths[path][method]
    assert "/api/v1/webhooks/whatsapp/{slug}" not in paths  # callbacks stay out
