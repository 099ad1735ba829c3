"""Sending one outbox message: the interface between the worker and the providers.

The worker owns the message's status and its lease. For each message it claims it calls,
in this order:

1. :func:`prepare` inside a short transaction: reads the clinic's provider, the patient's
   consent and language, renders the text (stored in ``message.body``) and returns an
   :class:`Outgoing` that needs no database afterwards. It may raise :class:`Deferred`
   (quiet hours; not an attempt) or :class:`Undeliverable` (no consent, no address).
2. :func:`transmit` with no transaction open: the provider call. It returns the
   provider's message id or raises :class:`RetryLater` / :class:`Undeliverable`.
3. In a new transaction, after moving the row to ``sent``: :func:`after_sent` (redacts a
   sign-in code); after the last attempt failed: :func:`after_failed` (WhatsApp failed ->
   the same message by SMS, ``fallback_of``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.notifications import messages, policy
from opdesk.notifications.models import OutboxMessage
from opdesk.notifications.provider_rows import provider_row, provider_settings
from opdesk.security.crypto import FieldCipher


class RetryLater(Exception):
    """A transient failure (timeout, connection refused, HTTP 429 or 5xx): try again later."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after  # seconds, from a Retry-After header if there was one


class Undeliverable(Exception):
    """A permanent failure (a 4xx other than 429, no consent, no address): fail it now."""


class Deferred(Exception):
    """Not now (quiet hours for a non-urgent message): try at ``until``; not an attempt."""

    def __init__(self, reason: str, *, until: datetime) -> None:
        super().__init__(reason)
        self.until = until


@dataclass(frozen=True)
class Outgoing:
    """Everything one provider call needs; read before the transaction ends."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    channel: str
    provider: str  # "log", "msg91", "whatsapp-cloud", "smtp"
    settings: Mapping[str, Any]  # the provider's decrypted settings (keys, sender id…)
    recipient: str  # the address as sent: E.164 phone or email address
    template: str  # our template name ("otp", "waitlist-offer"…)
    language: str  # ISO 639-1 code of the text actually rendered
    text: str  # the rendered message
    subject: str  # the email subject (other channels ignore it)
    params: tuple[str, ...] = field(default=())  # template variables, in the template's order
    dedupe_key: str | None = None


def _where(message: OutboxMessage, column: str) -> dict[str, Any]:
    return {
        "tenant_id": message.tenant_id,
        "table": "notifications_outbox",
        "column": column,
        "row_id": message.id,
    }


def payload_of(cipher: FieldCipher, message: OutboxMessage) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        cipher.decrypt_str(message.payload, **_where(message, "payload"))
    )
    return payload


def recipient_of(cipher: FieldCipher, message: OutboxMessage) -> str:
    return cipher.decrypt_str(message.recipient, **_where(message, "recipient"))


def body_of(cipher: FieldCipher, message: OutboxMessage) -> str | None:
    if message.body is None:
        return None
    return cipher.decrypt_str(message.body, **_where(message, "body"))


class Providers:
    """A clinic's enabled provider per channel, read and decrypted once per batch (the
    worker prepares a batch of one clinic's messages in one transaction).
    """

    def __init__(self, cipher: FieldCipher) -> None:
        self.cipher = cipher
        self._by_channel: dict[str, tuple[str, Mapping[str, Any]]] = {}

    def of(self, session: Session, channel: str) -> tuple[str, Mapping[str, Any]]:
        """(provider name, decrypted settings) for ``channel``: ``log`` if none is set."""
        found = self._by_channel.get(channel)
        if found is None:
            row = provider_row(session, channel)
            if row is None:
                found = ("log", {})
            else:
                found = (row.provider, provider_settings(self.cipher, row))
            self._by_channel[channel] = found
        return found


def prepare(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    message: OutboxMessage,
    *,
    providers: Providers | None = None,
) -> Outgoing:
    """Check consent and quiet hours, render the text, and say how to send it.

    The row's new values (text, language, provider) are written with the caller's next
    flush or commit, so a batch of messages goes to the database together.
    """
    assert ctx.tenant_id is not None
    policy.check_quiet_hours(session, ctx, message.template)
    policy.check_consent(session, message)
    payload = payload_of(cipher, message)
    payload.setdefault("link", portal_link())
    language = policy.language_for(session, message)
    rendered = messages.render(message.template, message.channel, language, payload)
    name, settings = (providers or Providers(cipher)).of(session, message.channel)
    message.language = rendered.language
    message.body = cipher.encrypt(rendered.text, **_where(message, "body"))
    message.provider = name
    return Outgoing(
        message_id=message.id,
        tenant_id=message.tenant_id,
        channel=message.channel,
        provider=name,
        settings=settings,
        recipient=recipient_of(cipher, message),
        template=message.template,
        language=rendered.language,
        text=rendered.text,
        subject=rendered.subject,
        params=rendered.params,
        dedupe_key=message.dedupe_key or str(message.id),
    )


def portal_link() -> str:
    """Where a patient answers an offer or changes a booking: the portal's home."""
    from opdesk.config import get_settings

    return get_settings().base_url.rstrip("/") + "/me"


def preview(cipher: FieldCipher, message: OutboxMessage) -> str:
    """The text as sent, or (not prepared yet) as it will read in the message's language."""
    sent = body_of(cipher, message)
    if sent is not None:
        return sent
    payload = payload_of(cipher, message)
    payload.setdefault("link", portal_link())
    return messages.render(message.template, message.channel, message.language, payload).text


def transmit(outgoing: Outgoing, *, timeout: float) -> str:
    """Hand the message to its provider; returns the provider's id for it."""
    from opdesk.notifications.providers import adapter_for

    return adapter_for(outgoing.provider).send(outgoing, timeout=timeout)


def after_sent(
    session: Session, ctx: RequestContext, cipher: FieldCipher, message: OutboxMessage
) -> None:
    """A sign-in code leaves no trace once sent (the ``log`` provider's dev inbox keeps it)."""
    policy.redact_if_secret(session, cipher, message)


def after_failed(
    session: Session, ctx: RequestContext, cipher: FieldCipher, message: OutboxMessage
) -> None:
    """A WhatsApp message that failed is sent again by SMS, if the patient allows SMS."""
    policy.fall_back(session, ctx, cipher, message)
