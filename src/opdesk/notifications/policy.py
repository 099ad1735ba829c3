"""Whether, when and in which language a message may go, and what happens after it went.

- Consent: WhatsApp and SMS go only to a patient whose newest consent of that channel
  stands (``consents.allows``); a sign-in code goes to whoever asked for it. Email has
  no consent type of its own: it goes to a patient who gave the clinic an address.
- Quiet hours: no non-urgent message between 21:00 and 08:00 clinic time, or the hours
  the clinic set (``automation.settings``, the "Reminders and messages" page); it is
  deferred to the end of the quiet period, not dropped.
- A sign-in code is redacted from the row once sent by a real provider.
- A WhatsApp message that failed is sent again by SMS (``fallback_of``).
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import audit
from opdesk.automation import settings as automation_settings
from opdesk.consents import service as consents
from opdesk.context import RequestContext
from opdesk.notifications import messages
from opdesk.notifications.models import OutboxMessage, OutboxStatus
from opdesk.patients.models import Patient
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant

# Templates that go whatever the patient's consents: the patient asked for them (a code
# to sign in; a waitlist offer, which is what joining the waitlist asks the clinic for).
CONSENT_FREE = frozenset({"otp", "abdm-link-otp", "waitlist-offer"})
# Templates whose payload holds a secret, redacted once the message is sent.
SECRET_FIELDS = {"otp": ("code",), "abdm-link-otp": ("code",)}
REDACTED = "••••••"


def _where(message: OutboxMessage, column: str) -> dict[str, Any]:
    return {
        "tenant_id": message.tenant_id,
        "table": "notifications_outbox",
        "column": column,
        "row_id": message.id,
    }


def quiet_hours(tenant: Tenant) -> tuple[time, time]:
    """The clinic's quiet hours (start, end) in its own time; 21:00-08:00 unless set."""
    return automation_settings.of_tenant(tenant).quiet_hours.times


def quiet_until(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """When the quiet period ``now`` falls in ends (as an aware datetime), or None."""
    local = now.astimezone(zone)
    at = local.time().replace(tzinfo=None)
    if start == end:
        return None
    if start < end:  # a quiet period inside one day, e.g. 13:00-15:00
        inside = start <= at < end
        end_day = local.date()
    else:  # across midnight, e.g. 21:00-08:00
        inside = at >= start or at < end
        end_day = local.date() + timedelta(days=1) if at >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone)


def check_quiet_hours(session: Session, ctx: RequestContext, template: str) -> None:
    from opdesk.notifications.delivery import Deferred

    if messages.is_urgent(template):
        return
    assert ctx.tenant_id is not None
    tenant = session.get(Tenant, ctx.tenant_id)
    assert tenant is not None
    start, end = quiet_hours(tenant)
    until = quiet_until(ctx.now(), ZoneInfo(tenant.timezone), start, end)
    if until is not None:
        raise Deferred(
            f"quiet hours ({start:%H:%M}-{end:%H:%M} clinic time) until {until:%Y-%m-%d %H:%M}",
            until=until,
        )


def channel_allowed(session: Session, message: OutboxMessage) -> bool:
    if message.template in CONSENT_FREE or message.channel == "email":
        return True
    if message.patient_id is None:
        return False  # nobody to have consented
    return consents.allows(session, message.patient_id, message.channel)


def check_consent(session: Session, message: OutboxMessage) -> None:
    from opdesk.notifications.delivery import Undeliverable

    if not channel_allowed(session, message):
        raise Undeliverable(f"the patient has not consented to {message.channel} messages")


def language_for(session: Session, message: OutboxMessage) -> str:
    """The patient's preferred language, else the language the message was written in."""
    if message.patient_id is not None:
        patient = session.get(Patient, (message.tenant_id, message.patient_id))
        if patient is not None and patient.preferred_language:
            return patient.preferred_language
    return message.language or messages.DEFAULT_LANGUAGE


def redact_if_secret(session: Session, cipher: FieldCipher, message: OutboxMessage) -> None:
    """Blank a sign-in code in the payload and the rendered text of a sent message.

    The ``log`` provider *is* the dev inbox: there the text is the delivered message, so
    it stays (a developer signs in with it).
    """
    fields = SECRET_FIELDS.get(message.template)
    if not fields or message.provider == "log":
        return
    payload = json.loads(cipher.decrypt_str(message.payload, **_where(message, "payload")))
    secrets = [str(payload[f]) for f in fields if payload.get(f)]
    if not secrets:
        return
    for f in fields:
        if f in payload:
            payload[f] = REDACTED
    message.payload = cipher.encrypt(json.dumps(payload), **_where(message, "payload"))
    if message.body is not None:
        body = cipher.decrypt_str(message.body, **_where(message, "body"))
        for secret in secrets:
            body = body.replace(secret, REDACTED)
        message.body = cipher.encrypt(body, **_where(message, "body"))
    session.flush()


def fall_back(
    session: Session, ctx: RequestContext, cipher: FieldCipher, message: OutboxMessage
) -> OutboxMessage | None:
    """After a WhatsApp message failed: the same message by SMS, once, if allowed."""
    from opdesk.notifications import service

    if message.channel != "whatsapp" or message.status != OutboxStatus.FAILED:
        return None
    already = session.execute(
        select(OutboxMessage.id).where(OutboxMessage.fallback_of == message.id)
    ).first()
    if already is not None:
        return None
    if message.patient_id is not None and not consents.allows(session, message.patient_id, "sms"):
        return None
    payload = json.loads(cipher.decrypt_str(message.payload, **_where(message, "payload")))
    recipient = cipher.decrypt_str(message.recipient, **_where(message, "recipient"))
    fallback = service.enqueue(
        session,
        ctx,
        cipher,
        channel="sms",
        template=message.template,
        recipient=recipient,
        payload=payload,
        patient_id=message.patient_id,
        language=message.language,
        dedupe_key=f"{message.dedupe_key or message.id}:sms-fallback",
        fallback_of=message.id,
    )
    audit.record(
        ctx,
        entity="notifications_outbox",
        entity_id=fallback.id,
        action="create",
        diff=audit.diff_of({}, {"fallbackOf": str(message.id), "channel": "sms"}),
    )
    return fallback
