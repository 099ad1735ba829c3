"""Writing messages to the outbox (in the caller's transaction) and reading them back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.context import RequestContext
from opdesk.db import bind_tenant, new_id
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.notifications.models import (
    CHANNELS,
    OUTBOX,
    MessageProvider,
    OutboxMessage,
    OutboxStatus,
    settings_row_id,
)
from opdesk.notifications.provider_rows import provider_settings
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.validation import ascii_digits, mobile_e164


def _where(message: OutboxMessage, column: str) -> dict[str, Any]:
    return {
        "tenant_id": message.tenant_id,
        "table": "notifications_outbox",
        "column": column,
        "row_id": message.id,
    }


def enqueue(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    channel: str,
    template: str,
    recipient: str,
    payload: dict[str, Any],
    scheduled_for: datetime | None = None,
    dedupe_key: str | None = None,
    patient_id: uuid.UUID | None = None,
    language: str | None = None,
    fallback_of: uuid.UUID | None = None,
) -> OutboxMessage:
    """A message to send after this transaction commits (DESIGN rule 2).

    With a ``dedupe_key`` already in the clinic's outbox this is a no-op returning the
    message that holds it (scheduling twice sends once). ``patient_id`` names whom it is
    about (consent, language, the admin outbox's filter); ``language`` is the text's
    language when there is no patient (the patient's preferred language wins).
    """
    assert ctx.tenant_id is not None
    if dedupe_key is not None:
        existing = _by_dedupe_key(session, dedupe_key)
        if existing is not None:
            return existing
    message_id = new_id()
    where: dict[str, Any] = {
        "tenant_id": ctx.tenant_id,
        "table": "notifications_outbox",
        "row_id": message_id,
    }
    values = {
        "tenant_id": ctx.tenant_id,
        "id": message_id,
        "channel": channel,
        "template": template,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "scheduled_for": scheduled_for,
        "created_at": ctx.now(),
        "dedupe_key": dedupe_key,
        "patient_id": patient_id,
        "language": language or "en",
        "fallback_of": fallback_of,
        "recipient": cipher.encrypt(recipient, column="recipient", **where),
        "payload": cipher.encrypt(json.dumps(payload), column="payload", **where),
    }
    # ON CONFLICT: of two transactions enqueueing the same key, the second gets the first's.
    inserted = session.execute(
        insert(OutboxMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
        .returning(OutboxMessage.id)
    ).first()
    if inserted is None:
        assert dedupe_key is not None
        existing = _by_dedupe_key(session, dedupe_key)
        assert existing is not None
        return existing
    message = session.get(OutboxMessage, (ctx.tenant_id, message_id))
    assert message is not None
    return message


def _by_dedupe_key(session: Session, dedupe_key: str) -> OutboxMessage | None:
    return session.execute(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class InboxItem:
    clinic: str
    channel: str
    template: str
    recipient: str
    payload: dict[str, Any]
    status: OutboxStatus
    created_at: datetime
    # The text as sent (or, not sent yet, as it will read) in the patient's language.
    text: str = ""
    language: str = "en"


def read(cipher: FieldCipher, message: OutboxMessage, clinic: str) -> InboxItem:
    from opdesk.notifications.delivery import preview

    payload = json.loads(cipher.decrypt_str(message.payload, **_where(message, "payload")))
    shown = preview(cipher, message)
    return InboxItem(
        clinic=clinic,
        channel=message.channel,
        template=message.template,
        recipient=cipher.decrypt_str(message.recipient, **_where(message, "recipient")),
        payload=payload,
        status=message.status,
        created_at=message.created_at,
        text=shown,
        language=message.language,
    )


def dev_inbox(session: Session, cipher: FieldCipher, *, per_clinic: int = 20) -> list[InboxItem]:
    """Newest messages of every clinic, for the dev inbox page (development only)."""
    items: list[InboxItem] = []
    clinics = session.execute(text("select id, name from tenants order by name")).all()
    for tenant_id, name in clinics:
        bind_tenant(session, uuid.UUID(str(tenant_id)))
        messages = session.execute(
            select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(per_clinic)
        ).scalars()
        items.extend(read(cipher, m, name) for m in messages)
    bind_tenant(session, None)
    return sorted(items, key=lambda i: i.created_at, reverse=True)


# --------------------------------------------------------------------------- admin's retry


def retry(session: Session, ctx: RequestContext, message_id: uuid.UUID) -> OutboxMessage:
    """An admin's retry of a failed message: pending again, due now, attempts anew.

    404 for an unknown id (or another clinic's); 409 unless it failed.
    """
    message = records.by_id(session, OutboxMessage, message_id, lock=True)
    if not OUTBOX.allows(message.status, OutboxStatus.PENDING):
        raise OUTBOX.refuse(message.status, OutboxStatus.PENDING)
    attempts, error = message.attempts, message.last_error
    message.attempts = 0
    message.scheduled_for = None
    message.claimed_until = None
    message.claimed_by = None
    states.transition(
        session,
        ctx,
        message,
        OutboxStatus.PENDING,
        OUTBOX,
        diff={"updated": {"attempts": {"from": attempts, "to": 0}, "lastError": error}},
    )
    return message


# --------------------------------------------------------------------------- providers


@dataclass(frozen=True)
class ProviderField:
    name: str
    label: str
    secret: bool


@dataclass(frozen=True)
class ProviderChoice:
    """A provider a clinic may choose for a channel, and what it asks for."""

    channel: str
    name: str
    label: str
    fields: tuple[ProviderField, ...]


def provider_choices() -> dict[str, ProviderChoice]:
    from opdesk.notifications.providers import email, sms, whatsapp

    def fields(spec: tuple[tuple[str, str, bool], ...]) -> tuple[ProviderField, ...]:
        return tuple(ProviderField(*f) for f in spec)

    return {
        "sms": ProviderChoice("sms", "msg91", "MSG91 (DLT templates)", fields(sms.FIELDS)),
        "whatsapp": ProviderChoice(
            "whatsapp", "whatsapp-cloud", "WhatsApp Cloud API", fields(whatsapp.FIELDS)
        ),
        "email": ProviderChoice("email", "smtp", "SMTP server", fields(email.FIELDS)),
    }


CHANNEL_LABELS = {"sms": "SMS", "whatsapp": "WhatsApp", "email": "Email"}


@dataclass(frozen=True)
class ShownSetting:
    label: str
    name: str
    secret: bool
    # For a secret, never the value: "set · ends 1234" or "not set".
    shown: str
    # The same, apart: whether a value is stored, and (a secret) the last 4 characters
    # that ``shown`` names, if any.
    is_set: bool = False
    last_four: str | None = None


@dataclass(frozen=True)
class ProviderView:
    channel: str
    channel_label: str
    provider: str  # "log" when the clinic has set none
    provider_label: str
    enabled: bool
    settings: tuple[ShownSetting, ...]
    templates: str  # the template mapping as JSON, for editing (ids, not secrets)
    updated_at: datetime | None


def mask(value: str) -> str:
    """What a page shows of a stored secret: that it is set, and its last 4 characters."""
    if not value:
        return "not set"
    if len(value) <= 8:
        return "set"
    return f"set · ends {value[-4:]}"


def _shown(f: ProviderField, value: str) -> ShownSetting:
    if not f.secret:
        return ShownSetting(f.label, f.name, False, value, is_set=bool(value))
    shown = mask(value)
    return ShownSetting(
        f.label,
        f.name,
        True,
        shown,
        is_set=bool(value),
        last_four=value[-4:] if shown.startswith("set · ends") else None,
    )


def provider_choice(channel: str) -> ProviderChoice:
    """The provider a channel takes; 404 for a channel OPDesk does not send on."""
    choice = provider_choices().get(channel)
    if choice is None:
        raise NotFound(f"no message channel {channel!r}; the channels are {', '.join(CHANNELS)}")
    return choice


def refuse_unknown_settings(channel: str, names: Iterable[str]) -> None:
    """422 naming each setting the channel's provider does not take (the API's check; a
    page's form carries only the provider's own fields).
    """
    known = {f.name for f in provider_choice(channel).fields}
    unknown = sorted(set(names) - known)
    if unknown:
        choices = ", ".join(sorted(known))
        raise InvalidInput(
            [
                FieldError(f"settings.{n}", f"is not a setting of {channel}; use {choices}")
                for n in unknown
            ]
        )


def providers(session: Session, cipher: FieldCipher) -> list[ProviderView]:
    """Each channel's provider as the clinic set it (or the dev inbox), secrets masked."""
    rows = {r.channel: r for r in session.execute(select(MessageProvider)).scalars()}
    views = []
    for channel in CHANNELS:
        choice = provider_choices()[channel]
        row = rows.get(channel)
        stored = provider_settings(cipher, row) if row is not None else {}
        shown = tuple(_shown(f, str(stored.get(f.name) or "")) for f in choice.fields)
        views.append(
            ProviderView(
                channel=channel,
                channel_label=CHANNEL_LABELS[channel],
                provider=row.provider if row is not None else "log",
                provider_label=choice.label if row is not None else "Dev inbox (log)",
                enabled=bool(row.enabled) if row is not None else False,
                settings=shown,
                templates=json.dumps(stored.get("templates") or {}, ensure_ascii=False, indent=2),
                updated_at=row.updated_at if row is not None else None,
            )
        )
    return views


def save_provider(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    channel: str,
    values: dict[str, str],
    templates: str,
    enabled: bool,
) -> MessageProvider:
    """Set a channel's provider. A secret left blank keeps the stored one.

    The audit event names the settings that changed, never their values.
    """
    assert ctx.tenant_id is not None
    choice = provider_choices().get(channel)
    if choice is None:
        raise InvalidInput([FieldError("channel", f"must be one of {', '.join(CHANNELS)}")])
    try:
        mapping = json.loads(templates) if templates.strip() else {}
    except ValueError as exc:
        raise InvalidInput([FieldError("templates", f"is not valid JSON ({exc})")]) from exc
    if not isinstance(mapping, dict):
        raise InvalidInput([FieldError("templates", "must be a JSON object")])
    row = session.execute(
        select(MessageProvider).where(MessageProvider.channel == channel).with_for_update()
    ).scalar_one_or_none()
    before = provider_settings(cipher, row) if row is not None else {}
    after: dict[str, Any] = {}
    for f in choice.fields:
        given = (values.get(f.name) or "").strip()
        if f.secret and not given:
            given = str(before.get(f.name) or "")
        if given:
            after[f.name] = int(given) if f.name == "port" and ascii_digits(given) else given
    if mapping:
        after["templates"] = mapping
    if enabled:
        missing = [
            f.label for f in choice.fields if _required(channel, f.name) and not after.get(f.name)
        ]
        if missing:
            raise InvalidInput(
                [
                    FieldError(f.name, "is needed to send")
                    for f in choice.fields
                    if f.label in missing
                ]
            )
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if row is None:
        row = MessageProvider(tenant_id=ctx.tenant_id, channel=channel)
        session.add(row)
        action = "create"
    else:
        action = "update"
    was_enabled = bool(row.enabled) if action == "update" else None
    row.provider = choice.name
    row.enabled = enabled
    row.updated_at = ctx.now()
    row.settings = cipher.encrypt(
        json.dumps(after),
        tenant_id=ctx.tenant_id,
        table="message_providers",
        column="settings",
        row_id=settings_row_id(ctx.tenant_id, channel),
    )
    session.flush()
    audit.record(
        ctx,
        entity="message_providers",
        entity_id=settings_row_id(ctx.tenant_id, channel),
        action=action,
        diff={
            "channel": channel,
            "provider": choice.name,
            "changed": changed,
            "enabled": {"from": was_enabled, "to": enabled},
        },
    )
    return row


REQUIRED = {
    "sms": ("authKey", "senderId"),
    "whatsapp": ("accessToken", "phoneNumberId", "appSecret"),
    "email": ("host", "fromAddress"),
}


def _required(channel: str, name: str) -> bool:
    return name in REQUIRED.get(channel, ())


def send_test(
    session: Session, ctx: RequestContext, cipher: FieldCipher, *, channel: str, to: str
) -> OutboxMessage:
    """A test message through the channel's provider, sent by the worker like any other."""
    assert ctx.tenant_id is not None
    if channel not in CHANNELS:
        raise InvalidInput([FieldError("channel", f"must be one of {', '.join(CHANNELS)}")])
    to = to.strip()
    if channel == "email":
        if "@" not in to:
            raise InvalidInput([FieldError("to", "must be an email address")])
    else:
        phone = _e164(to)
        if phone is None:
            raise InvalidInput([FieldError("to", "must be a mobile number, e.g. +91 98123 45678")])
        to = phone
    tenant = session.get(Tenant, ctx.tenant_id)
    assert tenant is not None
    message = enqueue(
        session,
        ctx,
        cipher,
        channel=channel,
        template="test-message",
        recipient=to,
        payload={"clinic": tenant.name},
    )
    audit.record(
        ctx,
        entity="notifications_outbox",
        entity_id=message.id,
        action="create",
        diff={"template": "test-message", "channel": channel},
    )
    return message


def _e164(value: str) -> str | None:
    try:
        return mobile_e164(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- to a patient


def preferred_channel(session: Session, patient_id: uuid.UUID) -> str | None:
    """WhatsApp when the clinic sends WhatsApp and the patient agreed to it; else SMS when
    they agreed to SMS; else None (no channel the patient allows). The clinic's session
    must be bound (its provider rows are read through row-level security).
    """
    from opdesk.consents import service as consents
    from opdesk.notifications.provider_rows import provider_row

    whatsapp = provider_row(session, "whatsapp")
    if whatsapp is not None and consents.allows(session, patient_id, "whatsapp"):
        return "whatsapp"
    if consents.allows(session, patient_id, "sms"):
        return "sms"
    return None


def send_to_patient(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    patient_id: uuid.UUID,
    template: str,
    payload: dict[str, Any],
    dedupe_key: str,
    scheduled_for: datetime | None = None,
) -> OutboxMessage | None:
    """A message to a patient on the channel they prefer (WhatsApp, then SMS, which is
    also where a failed WhatsApp message falls back to), in their language, to their own
    phone or their guardian's. None when they allow no channel or have no phone.

    ``dedupe_key`` names the reason ("reminder-24h:<appointment id>"): sending for the
    same reason twice is one message.
    """
    from opdesk.patients.models import Patient
    from opdesk.patients.service import contact_phone

    patient = records.by_id(session, Patient, patient_id)
    channel = preferred_channel(session, patient_id)
    phone = contact_phone(session, cipher, patient)
    if channel is None or phone is None:
        return None
    return enqueue(
        session,
        ctx,
        cipher,
        channel=channel,
        template=template,
        recipient=phone,
        payload=payload,
        scheduled_for=scheduled_for,
        dedupe_key=dedupe_key,
        patient_id=patient_id,
        language=patient.preferred_language or "en",
    )
