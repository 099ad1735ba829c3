"""What ``delivery.prepare`` decides before a message goes: consent, language, quiet hours;
and what happens after: sign-in codes redacted, WhatsApp failures sent again by SMS.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from opdesk.db import Database
from opdesk.notifications import delivery
from opdesk.notifications import service as outbox
from opdesk.notifications.delivery import Deferred, Undeliverable
from opdesk.notifications.models import OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories import make_patient, make_tenant
from tests.factories.clinics import clinic_session, ctx_for
from tests.factories.messages import consent_to, fail, queue, set_provider, withdraw
from tests.fakes.sms_server import SmsServer

NOON_IST = datetime(2027, 3, 1, 6, 30, tzinfo=UTC)  # 12:00 in India


def prepare(
    db: Database, cipher: FieldCipher, tenant: Tenant, message_id: uuid.UUID, at: datetime
) -> delivery.Outgoing:
    ctx = ctx_for(tenant.id, clock=lambda: at)
    with transaction(db, ctx) as session:
        message = session.get_one(OutboxMessage, (tenant.id, message_id))
        return delivery.prepare(session, ctx, cipher, message)


# --------------------------------------------------------------------------- consent


def test_sms_needs_the_patients_sms_consent(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    message_id = queue(db, cipher, tenant, channel="sms", patient_id=patient.id)
    with pytest.raises(Undeliverable, match="not consented to sms"):
        prepare(db, cipher, tenant, message_id, NOON_IST)
    consent_to(db, cipher, tenant, patient.id, "sms")
    assert prepare(db, cipher, tenant, message_id, NOON_IST).channel == "sms"


def test_a_withdrawn_whatsapp_consent_stops_whatsapp_but_not_sms(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    consent_to(db, cipher, tenant, patient.id, "sms")
    withdraw(db, tenant, consent_to(db, cipher, tenant, patient.id, "whatsapp"))
    whatsapp = queue(db, cipher, tenant, channel="whatsapp", patient_id=patient.id)
    sms = queue(db, cipher, tenant, channel="sms", patient_id=patient.id)
    with pytest.raises(Undeliverable, match="whatsapp"):
        prepare(db, cipher, tenant, whatsapp, NOON_IST)
    assert prepare(db, cipher, tenant, sms, NOON_IST).recipient == "+919812345678"


def test_a_sign_in_code_goes_without_any_consent(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    code = queue(
        db,
        cipher,
        tenant,
        template="otp",
        patient_id=patient.id,
        payload={"code": "482913", "clinic": "Sunrise", "minutes": 10},
    )
    assert "482913" in prepare(db, cipher, tenant, code, NOON_IST).text


def test_a_waitlist_offer_goes_without_a_messaging_consent(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    """Joining the waitlist asks the clinic for this very message."""
    patient = make_patient(db, ident, tenant)
    offer = queue(
        db,
        cipher,
        tenant,
        template="waitlist-offer",
        patient_id=patient.id,
        payload={
            "patient": "Asha",
            "doctor": "Dr Rao",
            "startsAt": "Mon 07 Dec, 09:00 AM",
            "offerId": "1",
            "minutes": 15,
        },
    )
    assert "Dr Rao" in prepare(db, cipher, tenant, offer, NOON_IST).text
    booked = queue(db, cipher, tenant, patient_id=patient.id)
    with pytest.raises(Undeliverable):
        prepare(db, cipher, tenant, booked, NOON_IST)


def test_a_message_about_nobody_is_sent_only_if_it_needs_no_consent(
    db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    with pytest.raises(Undeliverable):
        prepare(db, cipher, tenant, queue(db, cipher, tenant), NOON_IST)


# --------------------------------------------------------------------------- language


def test_the_text_is_in_the_patients_preferred_language(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant, preferredLanguage="hi")
    consent_to(db, cipher, tenant, patient.id, "sms")
    message_id = queue(db, cipher, tenant, patient_id=patient.id)
    outgoing = prepare(db, cipher, tenant, message_id, NOON_IST)
    assert outgoing.language == "hi"
    assert "बुक हो गया है" in outgoing.text
    with clinic_session(db, tenant.id) as session:
        row = session.get_one(OutboxMessage, (tenant.id, message_id))
        assert row.language == "hi"
        assert delivery.body_of(cipher, row) == outgoing.text
        assert row.provider == "log"


def test_a_language_without_texts_is_sent_in_english_and_recorded_so(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant, preferredLanguage="bn")
    consent_to(db, cipher, tenant, patient.id, "sms")
    outgoing = prepare(
        db, cipher, tenant, queue(db, cipher, tenant, patient_id=patient.id), NOON_IST
    )
    assert outgoing.language == "en"
    assert outgoing.text.startswith("Asha, your appointment with Dr Rao")


# --------------------------------------------------------------------------- quiet hours


@pytest.fixture
def consenting(db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant) -> uuid.UUID:
    patient = make_patient(db, ident, tenant)
    consent_to(db, cipher, tenant, patient.id, "sms")
    return patient.id


@pytest.mark.parametrize(
    ("utc", "until_utc"),
    [
        # 21:00 IST: quiet starts; deferred to 08:00 IST the next morning (02:30 UTC).
        (datetime(2027, 3, 1, 15, 30, tzinfo=UTC), datetime(2027, 3, 2, 2, 30, tzinfo=UTC)),
        # 23:59 IST, one minute before India's midnight.
        (datetime(2027, 3, 1, 18, 29, tzinfo=UTC), datetime(2027, 3, 2, 2, 30, tzinfo=UTC)),
        # 00:01 IST, past India's midnight but still 1 March in UTC: the same morning.
        (datetime(2027, 3, 1, 18, 31, tzinfo=UTC), datetime(2027, 3, 2, 2, 30, tzinfo=UTC)),
        # 07:59 IST.
        (datetime(2027, 3, 2, 2, 29, tzinfo=UTC), datetime(2027, 3, 2, 2, 30, tzinfo=UTC)),
    ],
)
def test_a_reminder_in_quiet_hours_is_deferred_to_eight_in_the_morning_clinic_time(
    db: Database,
    cipher: FieldCipher,
    tenant: Tenant,
    consenting: uuid.UUID,
    utc: datetime,
    until_utc: datetime,
) -> None:
    message_id = queue(db, cipher, tenant, template="appointment-reminder", patient_id=consenting)
    with time_machine.travel(utc, tick=False):
        ctx = ctx_for(tenant.id)
        with pytest.raises(Deferred) as deferred, transaction(db, ctx) as session:
            message = session.get_one(OutboxMessage, (tenant.id, message_id))
            delivery.prepare(session, ctx, cipher, message)
    assert deferred.value.until == until_utc
    # Deferred is not a failure: the message is still waiting, nothing counted.
    with clinic_session(db, tenant.id) as session:
        row = session.get_one(OutboxMessage, (tenant.id, message_id))
        assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)


@pytest.mark.parametrize(
    "utc",
    [
        datetime(2027, 3, 1, 2, 30, tzinfo=UTC),  # 08:00 IST: quiet is over
        datetime(2027, 3, 1, 15, 29, tzinfo=UTC),  # 20:59 IST
    ],
)
def test_a_reminder_outside_quiet_hours_goes(
    db: Database, cipher: FieldCipher, tenant: Tenant, consenting: uuid.UUID, utc: datetime
) -> None:
    message_id = queue(db, cipher, tenant, template="appointment-reminder", patient_id=consenting)
    assert prepare(db, cipher, tenant, message_id, utc).template == "appointment-reminder"


@pytest.mark.parametrize("template", ["otp", "waitlist-offer"])
def test_sign_in_codes_and_waitlist_offers_go_at_night(
    db: Database, cipher: FieldCipher, tenant: Tenant, consenting: uuid.UUID, template: str
) -> None:
    message_id = queue(
        db, cipher, tenant, template=template, patient_id=consenting, payload={"code": "1"}
    )
    midnight_ist = datetime(2027, 3, 1, 18, 30, tzinfo=UTC)
    assert prepare(db, cipher, tenant, message_id, midnight_ist).template == template


def test_quiet_hours_follow_the_clinics_own_time_zone(
    db: Database, ident: Any, cipher: FieldCipher
) -> None:
    """22:00 in India is 17:30 in Dubai: the Dubai clinic sends; at 21:30 Dubai it waits
    until 08:00 Dubai (04:00 UTC), not 08:00 India."""
    dubai = make_tenant(db, "Gulf Clinic", timezone="Asia/Dubai")
    patient = make_patient(db, ident, dubai)
    consent_to(db, cipher, dubai, patient.id, "sms")
    first = queue(db, cipher, dubai, template="appointment-reminder", patient_id=patient.id)
    ten_pm_india = datetime(2027, 3, 1, 16, 30, tzinfo=UTC)
    assert prepare(db, cipher, dubai, first, ten_pm_india).template == "appointment-reminder"
    second = queue(db, cipher, dubai, template="appointment-reminder", patient_id=patient.id)
    with pytest.raises(Deferred) as deferred:
        prepare(db, cipher, dubai, second, datetime(2027, 3, 1, 17, 30, tzinfo=UTC))
    assert deferred.value.until == datetime(2027, 3, 2, 4, 0, tzinfo=UTC)


def test_a_clinic_may_set_its_own_quiet_hours(
    db: Database, ident: Any, cipher: FieldCipher
) -> None:
    clinic = make_tenant(db, "Early Clinic")
    with clinic_session(db, clinic.id) as session:
        from tests.factories import unaudited

        unaudited(session)  # tenants.automation_settings has no page of ours yet
        row = session.get_one(Tenant, clinic.id)
        row.automation_settings = {"quietHours": {"start": "20:00", "end": "07:00"}}
    patient = make_patient(db, ident, clinic)
    consent_to(db, cipher, clinic, patient.id, "sms")
    message_id = queue(db, cipher, clinic, template="appointment-reminder", patient_id=patient.id)
    with pytest.raises(Deferred) as deferred:
        prepare(db, cipher, clinic, message_id, datetime(2027, 3, 1, 14, 45, tzinfo=UTC))  # 20:15
    assert deferred.value.until == datetime(2027, 3, 2, 1, 30, tzinfo=UTC)  # 07:00 IST


# --------------------------------------------------------------------------- after sending


@pytest.fixture
def sms_server() -> Iterator[SmsServer]:
    with SmsServer(auth_key="k") as server:
        yield server  # type: ignore[misc]


def test_a_sign_in_code_sent_by_sms_is_redacted_from_the_row(
    db: Database, cipher: FieldCipher, tenant: Tenant, sms_server: SmsServer
) -> None:
    set_provider(
        db,
        cipher,
        tenant,
        "sms",
        templates='{"otp": {"en": {"templateId": "t1", "dltTemplateId": "1107"}}}',
        authKey="k",
        senderId="OPDESK",
        baseUrl=sms_server.url,
    )
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        message_id = outbox.enqueue(
            session,
            ctx,
            cipher,
            channel="sms",
            template="otp",
            recipient="+919812345678",
            payload={"code": "482913", "clinic": "Sunrise", "minutes": 10},
        ).id
    outgoing = prepare(db, cipher, tenant, message_id, NOON_IST)
    assert outgoing.provider == "msg91"
    delivery.transmit(outgoing, timeout=5)
    assert sms_server.messages()[0]["var1"] == "482913"  # the patient got the code
    with transaction(db, ctx) as session:
        row = session.get_one(OutboxMessage, (tenant.id, message_id))
        delivery.after_sent(session, ctx, cipher, row)
    with clinic_session(db, tenant.id) as session:
        row = session.get_one(OutboxMessage, (tenant.id, message_id))
        assert delivery.payload_of(cipher, row)["code"] == "••••••"
        body = delivery.body_of(cipher, row) or ""
        assert "482913" not in body
        assert body.startswith("•••••• is your sign-in code for Sunrise")
        raw = session.execute(
            select(OutboxMessage.payload, OutboxMessage.body).where(OutboxMessage.id == message_id)
        ).one()
        assert all(b"482913" not in bytes(column) for column in raw)


def test_a_failed_whatsapp_message_is_sent_again_by_sms_once(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant, preferredLanguage="ta")
    consent_to(db, cipher, tenant, patient.id, "sms")
    message_id = queue(
        db, cipher, tenant, channel="whatsapp", patient_id=patient.id, dedupe_key="confirm:1"
    )
    fail(db, tenant, message_id, "WhatsApp: error 131026: Message undeliverable")
    ctx = ctx_for(tenant.id)
    for _ in range(2):  # a second call (a worker's retry of the hook) makes no second SMS
        with transaction(db, ctx) as session:
            row = session.get_one(OutboxMessage, (tenant.id, message_id))
            delivery.after_failed(session, ctx, cipher, row)
    with clinic_session(db, tenant.id) as session:
        [fallback] = session.execute(
            select(OutboxMessage).where(OutboxMessage.fallback_of == message_id)
        ).scalars()
        assert fallback.channel == "sms"
        assert fallback.status == OutboxStatus.PENDING
        assert fallback.patient_id == patient.id
        assert fallback.dedupe_key == "confirm:1:sms-fallback"
        assert delivery.recipient_of(cipher, fallback) == "+919812345678"


def test_no_sms_fallback_without_sms_consent(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    patient = make_patient(db, ident, tenant)
    message_id = queue(db, cipher, tenant, channel="whatsapp", patient_id=patient.id)
    fail(db, tenant, message_id)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        row = session.get_one(OutboxMessage, (tenant.id, message_id))
        delivery.after_failed(session, ctx, cipher, row)
        assert (
            session.execute(
                select(OutboxMessage).where(OutboxMessage.fallback_of == message_id)
            ).first()
            is None
        )


# --------------------------------------------------------------------------- enqueue


def test_enqueueing_a_dedupe_key_twice_makes_one_message(
    db: Database, cipher: FieldCipher, tenant: Tenant
) -> None:
    first = queue(db, cipher, tenant, dedupe_key="reminder-24h:appt-1")
    second = queue(db, cipher, tenant, dedupe_key="reminder-24h:appt-1", channel="whatsapp")
    assert first == second
    with clinic_session(db, tenant.id) as session:
        rows = (
            session.execute(
                select(OutboxMessage).where(OutboxMessage.dedupe_key == "reminder-24h:appt-1")
            )
            .scalars()
            .all()
        )
        assert [r.channel for r in rows] == ["sms"]


def test_the_same_dedupe_key_in_two_clinics_is_two_messages(
    db: Database, cipher: FieldCipher, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert queue(db, cipher, tenant, dedupe_key="k") != queue(
        db, cipher, other_tenant, dedupe_key="k"
    )


# --------------------------------------------------------------------------- channel choice


def test_a_patient_gets_whatsapp_when_the_clinic_sends_it_and_they_agreed_else_sms(
    db: Database, ident: Any, cipher: FieldCipher, tenant: Tenant
) -> None:
    nobody, sms_only, both = (make_patient(db, ident, tenant) for _ in range(3))
    consent_to(db, cipher, tenant, sms_only.id, "sms")
    consent_to(db, cipher, tenant, both.id, "sms")
    consent_to(db, cipher, tenant, both.id, "whatsapp")
    ctx = ctx_for(tenant.id)

    def send(patient_id: uuid.UUID, reason: str) -> str | None:
        with transaction(db, ctx) as session:
            sent = outbox.send_to_patient(
                session,
                ctx,
                cipher,
                patient_id=patient_id,
                template="appointment-reminder",
                payload={"patient": "Asha"},
                dedupe_key=reason,
            )
            return sent.channel if sent is not None else None

    assert send(nobody.id, "a") is None
    assert send(sms_only.id, "b") == "sms"
    assert send(both.id, "c") == "sms"  # the clinic has no WhatsApp provider yet
    set_provider(db, cipher, tenant, "whatsapp", accessToken="t", phoneNumberId="1", appSecret="s")
    assert send(both.id, "d") == "whatsapp"
    assert send(sms_only.id, "e") == "sms"
    assert send(both.id, "d") == "whatsapp"  # the same reason again: the same message
    with clinic_session(db, tenant.id) as session:
        assert len(session.execute(select(OutboxMessage.id)).all()) == 4
