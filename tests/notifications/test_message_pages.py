"""The admin's message pages: the outbox (filters, rendered text, retry), the provider
settings (no secret shown back, a test message) and the automation list.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.automation import service as automation
from opdesk.automation.models import AutomationEvent, EventStatus
from opdesk.db import Database
from opdesk.notifications.models import MessageProvider, OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import csrf_of, ctx_for, make_patient, make_tenant, make_user, open_session
from tests.factories.clinics import clinic_session
from tests.factories.messages import (
    fail,
    failed_event,
    failed_message,
    mark_sent,
    message_row,
    queue,
)
from tests.factories.web import browser_for

AUTH_KEY = "msg91-auth-key-7f3a9c21"


def signed_in(app: FastAPI, db: Database, ident: Any, tenant: Tenant, role: str) -> TestClient:
    return browser_for(app, open_session(db, ident, make_user(db, ident, tenant, role)))


@pytest.fixture
def admin(app: FastAPI, db: Database, ident: Any, tenant: Tenant) -> TestClient:
    return signed_in(app, db, ident, tenant, "admin")


def token_of(browser: TestClient, page: str = "/admin/outbox") -> str:
    return csrf_of(browser.get(page).text)


# --------------------------------------------------------------------------- outbox


def test_the_outbox_shows_each_message_as_rendered_to_whom_and_its_state(
    admin: TestClient, db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant, name={"first": "Kavya", "last": "Iyer"})
    queue(
        db,
        cipher,
        tenant,
        patient_id=patient.id,
        recipient="+919800011122",
        payload={"patient": "Kavya", "doctor": "Dr Rao", "startsAt": "Tue 08 Dec, 09:30 AM"},
    )
    page = admin.get("/admin/outbox")
    assert page.status_code == 200
    assert "Kavya, your appointment with Dr Rao" in page.text
    assert "+919800011122" in page.text
    assert "Kavya Iyer" in page.text
    assert "Waiting" in page.text


def test_the_outbox_filters_by_status_channel_kind_and_patient(
    admin: TestClient, db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
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
        text = admin.get("/admin/outbox", params=query).text
        return {n for n in ("+919800000001", "+919800000002", "+919800000003") if n in text}

    assert shown() == {"+919800000001", "+919800000002", "+919800000003"}
    assert shown(status="failed") == {"+919800000001"}
    assert shown(channel="whatsapp") == {"+919800000002"}
    assert shown(template="otp") == {"+919800000003"}
    assert shown(patient=str(ravi.id)) == {"+919800000002"}
    assert shown(status="failed", channel="whatsapp") == set()
    bad = admin.get("/admin/outbox", params={"patient": "Ravi"})
    assert "Patient id is not an id" in bad.text


def test_retrying_a_failed_message_asks_first_then_queues_it_again_audited(
    admin: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    message_id = failed_message(db, cipher, tenant)
    token = token_of(admin)
    asked = admin.post(f"/admin/outbox/{message_id}/retry", data={"csrf_token": token})
    assert asked.status_code == 200
    assert "Send this message again?" in asked.text
    assert "It failed: HTTP 400." in asked.text
    assert message_row(db, tenant, message_id).status == OutboxStatus.FAILED  # only asked
    done = admin.post(
        f"/admin/outbox/{message_id}/retry",
        data={"csrf_token": token, "confirmed": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    row = message_row(db, tenant, message_id)
    assert (row.status, row.attempts, row.scheduled_for) == (OutboxStatus.PENDING, 0, None)
    with clinic_session(db, tenant.id) as session:
        [event] = session.execute(
            select(AuditEvent).where(
                AuditEvent.entity_collection == "notifications_outbox",
                AuditEvent.entity_id == message_id,
                AuditEvent.from_state == "failed",
            )
        ).scalars()
        assert (event.from_state, event.to_state) == ("failed", "pending")


def test_a_message_that_did_not_fail_cannot_be_retried(
    admin: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    message_id = queue(db, cipher, tenant, channel="whatsapp")
    mark_sent(db, tenant, message_id, "wamid.1")
    answer = admin.post(
        f"/admin/outbox/{message_id}/retry",
        data={"csrf_token": token_of(admin), "confirmed": "yes"},
    )
    assert "sent" in answer.text.lower()
    assert message_row(db, tenant, message_id).status == OutboxStatus.SENT


def test_another_clinics_message_is_404_and_stays_failed(
    app: FastAPI, db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    other = make_tenant(db, "Other Clinic")
    theirs = failed_message(db, cipher, other)
    admin = signed_in(app, db, ident, tenant, "admin")
    token = token_of(admin)
    for data in ({"csrf_token": token}, {"csrf_token": token, "confirmed": "yes"}):
        assert admin.post(f"/admin/outbox/{theirs}/retry", data=data).status_code == 404
    assert admin.post(f"/admin/outbox/{uuid.uuid4()}/retry", data=data).status_code == 404
    assert message_row(db, other, theirs).status == OutboxStatus.FAILED


@pytest.mark.parametrize("role", ["frontdesk", "doctor", "pharmacy", "accounts"])
def test_only_an_admin_sees_the_outbox_or_retries(
    app: FastAPI, db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant, role: str
) -> None:
    message_id = failed_message(db, cipher, tenant)
    browser = signed_in(app, db, ident, tenant, role)
    token = csrf_of(browser.get("/account/mfa").text)
    for page in ("/admin/outbox", "/admin/messaging", "/admin/automation"):
        assert browser.get(page).status_code == 403
    answer = browser.post(
        f"/admin/outbox/{message_id}/retry", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert answer.status_code == 403
    assert message_row(db, tenant, message_id).status == OutboxStatus.FAILED


# --------------------------------------------------------------------------- providers


def save_sms(admin: TestClient, **fields: str) -> Any:
    data = {
        "csrf_token": token_of(admin, "/admin/messaging"),
        "channel": "sms",
        "authKey": AUTH_KEY,
        "senderId": "OPDESK",
        "baseUrl": "",
        "templates": '{"otp": {"en": {"templateId": "t1", "dltTemplateId": "1107"}}}',
        "enabled": "on",
        **fields,
    }
    return admin.post("/admin/messaging", data=data, follow_redirects=True)


def test_a_saved_key_is_never_shown_back_only_that_it_is_set(
    admin: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    page = save_sms(admin)
    assert page.status_code == 200
    assert "SMS settings saved." in page.text
    assert AUTH_KEY not in page.text
    assert "Set · ends 9c21" in page.text
    assert AUTH_KEY not in admin.get("/admin/messaging").text
    with clinic_session(db, tenant.id) as session:
        row = session.execute(select(MessageProvider)).scalar_one()
        assert AUTH_KEY.encode() not in bytes(row.settings)  # stored encrypted
        assert (row.provider, row.enabled) == ("msg91", True)
        [event] = session.execute(
            select(AuditEvent).where(AuditEvent.entity_collection == "message_providers")
        ).scalars()
        assert AUTH_KEY not in str(event.diff)
        assert "authKey" in str(event.diff)


def test_a_blank_key_keeps_the_stored_one(
    admin: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    from opdesk.notifications.provider_rows import provider_settings

    save_sms(admin)
    save_sms(admin, authKey="", senderId="CLINIC")
    with clinic_session(db, tenant.id) as session:
        stored = provider_settings(cipher, session.execute(select(MessageProvider)).scalar_one())
    assert (stored["authKey"], stored["senderId"]) == (AUTH_KEY, "CLINIC")


def test_switching_a_provider_on_without_its_key_names_the_field(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    page = save_sms(admin, authKey="")
    assert page.status_code == 422
    assert "Auth key" in page.text or "authKey" in page.text
    assert "is needed to send" in page.text.lower() or "Is needed to send" in page.text
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(MessageProvider)).first() is None


def test_bad_template_json_names_the_field_and_saves_nothing(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    page = save_sms(admin, templates="{not json")
    assert page.status_code == 422
    assert "Is not valid JSON" in page.text
    with clinic_session(db, tenant.id) as session:
        assert session.execute(select(MessageProvider)).first() is None


def test_send_a_test_message_queues_it_and_shows_it_in_the_outbox(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    token = token_of(admin, "/admin/messaging")
    page = admin.post(
        "/admin/messaging/test",
        data={"csrf_token": token, "channel": "sms", "to": "98123 45678"},
    )
    assert page.status_code == 200
    assert "A test SMS message is queued" in page.text
    assert f"This is a test message from {tenant.name} on OPDesk" in page.text
    with clinic_session(db, tenant.id) as session:
        [row] = session.execute(select(OutboxMessage)).scalars()
        assert (row.template, row.channel) == ("test-message", "sms")
    bad = admin.post(
        "/admin/messaging/test",
        data={"csrf_token": token, "channel": "sms", "to": "12"},
    )
    assert "must be a mobile number" in bad.text


# --------------------------------------------------------------------------- automation


def test_the_automation_list_shows_a_failed_job_and_retries_it(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    event_id = failed_event(db, tenant, "the appointment is gone")
    page = admin.get("/admin/automation")
    assert page.status_code == 200
    assert "the appointment is gone" in page.text
    assert "Run again" in page.text
    token = csrf_of(page.text)
    asked = admin.post(f"/admin/automation/{event_id}/retry", data={"csrf_token": token})
    assert "Run this job again?" in asked.text
    admin.post(
        f"/admin/automation/{event_id}/retry", data={"csrf_token": token, "confirmed": "yes"}
    )
    with clinic_session(db, tenant.id) as session:
        event = session.get_one(AutomationEvent, (tenant.id, event_id))
        assert (event.status, event.attempts) == (EventStatus.PENDING, 0)


def test_another_clinics_job_is_404(admin: TestClient, db: Database, tenant: Tenant) -> None:
    other = make_tenant(db, "Other Clinic")
    theirs = failed_event(db, other)
    token = token_of(admin, "/admin/automation")
    answer = admin.post(
        f"/admin/automation/{theirs}/retry", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert answer.status_code == 404
    with clinic_session(db, other.id) as session:
        assert session.get_one(AutomationEvent, (other.id, theirs)).status == EventStatus.FAILED


def test_the_dev_inbox_shows_each_message_as_the_patient_reads_it(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    queue(db, cipher, tenant, channel="whatsapp", language="hi", recipient="+919800077766")
    inbox = client.get("/dev/inbox")
    assert inbox.status_code == 200
    assert "Asha, " + tenant.name + " में Dr Rao के साथ आपका अपॉइंटमेंट" in inbox.text
    assert "/me" in inbox.text  # the link the patient follows


def _scheduled(db: Database, tenant: Tenant, rule: str, when: datetime) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        automation.schedule(
            session,
            ctx,
            rule=rule,
            entity_type="appointment",
            entity_id=uuid.uuid4(),
            when=when,
            dedupe_key=f"{rule}:{uuid.uuid4()}",
        )


def test_the_automation_list_puts_failures_then_the_next_to_run_first(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    _scheduled(db, tenant, "later-one", now + timedelta(days=3))
    _scheduled(db, tenant, "next-one", now + timedelta(hours=1))
    failed_event(db, tenant, "needs someone")
    page = admin.get("/admin/automation").text
    rows = page.split("<tbody>")[1]  # the filter's options name the rules too
    assert rows.index("needs someone") < rows.index("next-one") < rows.index("later-one")
    assert "Showing the first" not in page


def test_the_automation_list_says_when_it_is_cut_short(
    admin: TestClient, db: Database, tenant: Tenant
) -> None:
    ctx = ctx_for(tenant.id)
    start = datetime.now(UTC) + timedelta(hours=1)
    batch = uuid.uuid4()
    with transaction(db, ctx) as session:
        automation.schedule_all(
            session,
            ctx,
            entity_type="appointment",
            entity_id=uuid.uuid4(),
            when_by_rule={f"rule-{n:03}": start + timedelta(minutes=n) for n in range(101)},
            key_of=lambda rule: f"{rule}:{batch}",
        )
    page = admin.get("/admin/automation").text
    assert "Showing the first 100" in page
    assert "rule-099" in page and "rule-100" not in page.split("<tbody>")[1]
