"""WhatsApp status webhooks: signed with the clinic's app secret over the raw body, then
each status moves its message by the outbox machine within that clinic only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.db import Database
from opdesk.notifications.models import OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from tests.factories import make_tenant
from tests.factories.clinics import clinic_session
from tests.factories.messages import mark_sent, message_row, queue, set_provider
from tests.fakes.whatsapp_server import signature, status_update

SECRET = "app-secret-of-this-clinic"


def whatsapp_clinic(db: Database, cipher: FieldCipher, tenant: Tenant) -> None:
    set_provider(
        db,
        cipher,
        tenant,
        "whatsapp",
        accessToken="EAAG-token",
        phoneNumberId="1234567890",
        appSecret=SECRET,
        verifyToken="verify-me",
    )


def sent_whatsapp(db: Database, cipher: FieldCipher, tenant: Tenant) -> tuple[uuid.UUID, str]:
    message_id = queue(db, cipher, tenant, channel="whatsapp")
    wamid = f"wamid.{uuid.uuid4().hex}"
    mark_sent(db, tenant, message_id, wamid)
    return message_id, wamid


def post(client: TestClient, tenant: Tenant, raw: bytes, sig: str | None) -> Any:
    headers = {"content-type": "application/json"}
    if sig is not None:
        headers["x-hub-signature-256"] = sig
    return client.post(f"/api/v1/webhooks/whatsapp/{tenant.slug}", content=raw, headers=headers)


def snapshot(db: Database, tenant: Tenant) -> tuple[list[tuple[Any, ...]], int]:
    with clinic_session(db, tenant.id) as session:
        rows = session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.status,
                OutboxMessage.delivered_at,
                OutboxMessage.read_at,
                OutboxMessage.last_error,
            ).order_by(OutboxMessage.id)
        ).all()
        events = len(session.execute(select(AuditEvent.id)).all())
        return [tuple(r) for r in rows], events


def test_delivered_then_read_move_the_message_with_the_providers_times(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    whatsapp_clinic(db, cipher, tenant)
    message_id, wamid = sent_whatsapp(db, cipher, tenant)
    raw = status_update(wamid, "delivered", timestamp=1_800_000_000)
    answer = post(client, tenant, raw, signature(SECRET, raw))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"changed": 1}
    row = message_row(db, tenant, message_id)
    assert row.status == OutboxStatus.DELIVERED
    assert row.delivered_at == datetime.fromtimestamp(1_800_000_000, UTC)
    raw = status_update(wamid, "read", timestamp=1_800_000_060)
    assert post(client, tenant, raw, signature(SECRET, raw)).json() == {"changed": 1}
    row = message_row(db, tenant, message_id)
    assert row.status == OutboxStatus.READ
    assert row.read_at == datetime.fromtimestamp(1_800_000_060, UTC)


def test_a_late_delivered_after_read_changes_nothing(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    whatsapp_clinic(db, cipher, tenant)
    message_id, wamid = sent_whatsapp(db, cipher, tenant)
    read = status_update(wamid, "read")
    post(client, tenant, read, signature(SECRET, read))
    late = status_update(wamid, "delivered")
    assert post(client, tenant, late, signature(SECRET, late)).json() == {"changed": 0}
    row = message_row(db, tenant, message_id)
    assert row.status == OutboxStatus.READ
    assert row.delivered_at is not None  # read implies delivered


@pytest.mark.parametrize(
    "how",
    ["wrong secret", "missing", "body changed after signing", "not sha256=", "empty"],
)
def test_a_bad_or_missing_signature_is_400_and_changes_nothing(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant, how: str
) -> None:
    whatsapp_clinic(db, cipher, tenant)
    message_id, wamid = sent_whatsapp(db, cipher, tenant)
    raw = status_update(wamid, "failed", errors=[{"code": 131026, "title": "Undeliverable"}])
    sig: str | None = {
        "wrong secret": signature("another-secret", raw),
        "missing": None,
        "body changed after signing": signature(SECRET, raw.replace(b"failed", b"read")),
        "not sha256=": signature(SECRET, raw).removeprefix("sha256="),
        "empty": "",
    }[how]
    before = snapshot(db, tenant)
    answer = post(client, tenant, raw, sig)
    assert answer.status_code == 400, answer.text
    assert snapshot(db, tenant) == before
    assert message_row(db, tenant, message_id).status == OutboxStatus.SENT


def test_the_signature_is_checked_over_the_raw_bytes_not_a_re_encoding(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    """Meta escapes non-ASCII as \\uXXXX; re-serialising the JSON would change the bytes."""
    whatsapp_clinic(db, cipher, tenant)
    message_id, wamid = sent_whatsapp(db, cipher, tenant)
    raw = status_update(wamid, "delivered").replace(
        b'"whatsapp"}', b'"whatsapp", "x": "\\u0906"}', 1
    )
    assert post(client, tenant, raw, signature(SECRET, raw)).status_code == 200
    assert message_row(db, tenant, message_id).status == OutboxStatus.DELIVERED


def test_failed_marks_the_message_failed_and_queues_the_sms_instead(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    whatsapp_clinic(db, cipher, tenant)
    message_id, wamid = sent_whatsapp(db, cipher, tenant)
    raw = status_update(
        wamid, "failed", errors=[{"code": 131026, "title": "Message undeliverable"}]
    )
    assert post(client, tenant, raw, signature(SECRET, raw)).json() == {"changed": 1}
    row = message_row(db, tenant, message_id)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error == "WhatsApp: error 131026: Message undeliverable"
    with clinic_session(db, tenant.id) as session:
        [fallback] = session.execute(
            select(OutboxMessage).where(OutboxMessage.fallback_of == message_id)
        ).scalars()
        assert (fallback.channel, fallback.status) == ("sms", OutboxStatus.PENDING)


def test_another_clinics_message_id_is_not_touched(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    """Clinic B's webhook, correctly signed with B's secret, naming clinic A's message."""
    other = make_tenant(db, "Other Clinic")
    whatsapp_clinic(db, cipher, tenant)
    whatsapp_clinic(db, cipher, other)
    message_id, wamid = sent_whatsapp(db, cipher, tenant)
    raw = status_update(wamid, "read")
    assert post(client, other, raw, signature(SECRET, raw)).json() == {"changed": 0}
    assert message_row(db, tenant, message_id).status == OutboxStatus.SENT


def test_a_clinic_without_whatsapp_has_no_webhook(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    raw = status_update("wamid.x", "read")
    assert post(client, tenant, raw, signature(SECRET, raw)).status_code == 404
    assert client.post("/api/v1/webhooks/whatsapp/no-such-clinic", content=raw).status_code == 404


def test_the_subscription_check_echoes_the_challenge_for_the_right_token(
    client: TestClient, db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    whatsapp_clinic(db, cipher, tenant)
    url = f"/api/v1/webhooks/whatsapp/{tenant.slug}"
    good = client.get(
        url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "verify-me",
            "hub.challenge": "ch-83175",
        },
    )
    assert (good.status_code, good.text) == (200, "ch-83175")
    bad = client.get(
        url,
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "ch-83175"},
    )
    assert bad.status_code == 403
    assert "ch-83175" not in bad.text
