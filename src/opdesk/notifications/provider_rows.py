"""A clinic's provider row for a channel and its (encrypted) settings.

Apart from delivery so that the notifications service can read and write provider
settings without importing delivery, which reaches consents, documents, patients and
identity — and identity's sign-in codes import the notifications service.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.notifications.models import MessageProvider, settings_row_id
from opdesk.security.crypto import FieldCipher


def provider_row(session: Session, channel: str) -> MessageProvider | None:
    """The clinic's enabled provider for a channel (the session is bound to the clinic)."""
    return session.execute(
        select(MessageProvider).where(
            MessageProvider.channel == channel, MessageProvider.enabled.is_(True)
        )
    ).scalar_one_or_none()


def provider_settings(cipher: FieldCipher, row: MessageProvider) -> dict[str, Any]:
    plain = cipher.decrypt_str(
        row.settings,
        tenant_id=row.tenant_id,
        table="message_providers",
        column="settings",
        row_id=settings_row_id(row.tenant_id, row.channel),
    )
    settings: dict[str, Any] = json.loads(plain)
    return settings
