"""WhatsApp Cloud API status webhooks: sent, delivered, read or failed, per message.

Meta posts each change to the clinic's own address (``/api/v1/webhooks/whatsapp/<clinic
code>``: every clinic has its own app and so its own app secret), signed with
``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body with the app secret>``. A
request whose signature does not match changes nothing. Statuses move the message by the
outbox machine, matched by the provider's message id within the clinic; a status the
message has already passed (a late "delivered" after "read") is ignored, and a message
that failed is sent again by SMS when the patient allows it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import states
from opdesk.context import RequestContext
from opdesk.errors import DomainError, Forbidden, NotFound
from opdesk.notifications import policy
from opdesk.notifications.models import OUTBOX, OutboxMessage, OutboxStatus
from opdesk.notifications.provider_rows import provider_row, provider_settings
from opdesk.security.crypto import FieldCipher

log = logging.getLogger(__name__)

STATUSES = {
    "delivered": OutboxStatus.DELIVERED,
    "read": OutboxStatus.READ,
    "failed": OutboxStatus.FAILED,
}


class BadSignature(DomainError):
    status = 400
    title = "Bad signature"


def signature_of(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def signed(secret: str, raw: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of exactly these bytes with the app secret."""
    if not secret or not header:
        return False
    return hmac.compare_digest(signature_of(secret, raw), header.strip())


def whatsapp_settings(session: Session, cipher: FieldCipher) -> dict[str, Any]:
    """The clinic's WhatsApp settings; 404 when it has not set WhatsApp up."""
    row = provider_row(session, "whatsapp")
    if row is None or row.provider != "whatsapp-cloud":
        raise NotFound("this clinic does not send WhatsApp messages")
    return provider_settings(cipher, row)


def verify_subscription(
    session: Session, cipher: FieldCipher, *, mode: str, token: str, challenge: str
) -> str:
    """Meta's GET check when the webhook is set up: echo the challenge if the token fits."""
    settings = whatsapp_settings(session, cipher)
    expected = str(settings.get("verifyToken") or "")
    if mode != "subscribe" or not expected or not hmac.compare_digest(expected, token):
        raise Forbidden("the verify token does not match this clinic's")
    return challenge


def receive(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    raw: bytes,
    signature: str | None,
) -> int:
    """Check the signature over the raw body, then apply each status; returns how many
    messages changed. A bad or missing signature raises before anything is read.
    """
    settings = whatsapp_settings(session, cipher)
    if not signed(str(settings.get("appSecret") or ""), raw, signature):
        raise BadSignature("the X-Hub-Signature-256 header does not match the body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadSignature("the body is not JSON") from exc
    changed = 0
    for status in _statuses(body):
        if apply(session, ctx, cipher, status):
            changed += 1
    return changed


def _statuses(body: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if not isinstance(body, dict):
        return found
    for entry in body.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            value = (change or {}).get("value") or {}
            found.extend(s for s in value.get("statuses") or [] if isinstance(s, dict))
    return found


def apply(
    session: Session, ctx: RequestContext, cipher: FieldCipher, status: dict[str, Any]
) -> bool:
    """Move the message the status names, if the machine allows it from where it is."""
    to = STATUSES.get(str(status.get("status")))
    provider_id = status.get("id")
    if to is None or not provider_id:
        return False  # "sent" (we knew at once), or something we do not track
    message = session.execute(
        select(OutboxMessage)
        .where(OutboxMessage.provider_message_id == str(provider_id))
        .with_for_update()
    ).scalar_one_or_none()
    if message is None:
        log.info("status for an unknown WhatsApp message", extra={"providerId": provider_id})
        return False
    if not OUTBOX.allows(message.status, to):
        return False  # e.g. "delivered" arriving after "read"
    if to == OutboxStatus.FAILED:
        errors = status.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        message.last_error = (
            f"WhatsApp: error {first.get('code', '?')}: "
            f"{first.get('title') or first.get('message') or 'failed'}"
        )[:500]
    at = _timestamp(status.get("timestamp"))
    states.transition(
        session, ctx, message, to, OUTBOX, diff={"providerStatus": status.get("status")}
    )
    # The provider's time, not ours, for delivered/read (it may come late).
    if at is not None and to == OutboxStatus.DELIVERED:
        message.delivered_at = at
    elif at is not None and to == OutboxStatus.READ:
        message.read_at = at
        if message.delivered_at is None:
            message.delivered_at = at  # read implies delivered
    session.flush()
    if to == OutboxStatus.FAILED:
        policy.fall_back(session, ctx, cipher, message)
    return True


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
