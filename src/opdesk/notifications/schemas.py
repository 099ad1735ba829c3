"""Request and response bodies for the outbox, automation events and message providers.

Built from the same rows the admin's pages show (``notifications.queries``,
``notifications.service``): the text as the patient got it, secrets only as "set" and
their last four characters.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from opdesk.automation.models import EventStatus
from opdesk.notifications import queries, service
from opdesk.notifications.models import OutboxStatus
from opdesk.schemas import ApiModel

Channel = Literal["whatsapp", "sms", "email"]


class OutboxItem(ApiModel):
    """A message in the clinic's outbox, as the admin's outbox page shows it."""

    id: uuid.UUID
    template: str
    channel: Channel
    status: OutboxStatus
    to: str = Field(description="The address as sent")
    patient_id: uuid.UUID | None
    language: str
    text: str = Field(
        description="The text as sent (a sign-in code redacted once sent) or, not sent "
        "yet, as it will read"
    )
    attempts: int
    last_error: str | None
    provider: str | None
    created_at: datetime
    scheduled_for: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    fallback_of: uuid.UUID | None = Field(
        description="The failed message (WhatsApp) this one was sent instead of"
    )

    @classmethod
    def of(cls, row: queries.OutboxRow) -> OutboxItem:
        return cls.model_validate(row)


class OutboxList(ApiModel):
    """One page of the outbox, newest first (``pageSize`` to a page, as the page lists)."""

    items: list[OutboxItem]
    total: int
    page: int
    pages: int
    page_size: int

    @classmethod
    def of(cls, found: queries.OutboxPage) -> OutboxList:
        return cls(
            items=[OutboxItem.of(r) for r in found.rows],
            total=found.total,
            page=found.page,
            pages=found.pages,
            page_size=queries.PAGE_SIZE,
        )


class EventItem(ApiModel):
    """A clinic's automation event: what runs, for which record, when, and how it went."""

    id: uuid.UUID
    rule: str
    entity_type: str
    entity_id: uuid.UUID
    status: EventStatus
    scheduled_for: datetime
    executed_at: datetime | None
    attempts: int
    last_error: str | None
    leased: bool = Field(description="A worker holds it right now")

    @classmethod
    def of(cls, row: queries.EventRow) -> EventItem:
        return cls.model_validate(row)


class EventList(ApiModel):
    """Failed events first, then those still to run (soonest first), then those that ran
    (latest first); ``more`` says the list was cut at its limit.
    """

    items: list[EventItem]
    more: bool


class SettingOut(ApiModel):
    name: str
    label: str
    secret: bool
    is_set: bool
    value: str | None = Field(description="The value; never given for a secret")
    last_four: str | None = Field(
        description="A secret's last four characters (only for one longer than eight)"
    )

    @classmethod
    def of(cls, shown: service.ShownSetting) -> SettingOut:
        return cls(
            name=shown.name,
            label=shown.label,
            secret=shown.secret,
            is_set=shown.is_set,
            value=None if shown.secret else (shown.shown or None),
            last_four=shown.last_four,
        )


class ProviderOut(ApiModel):
    """A channel's provider: ``log`` (the dev inbox) until the clinic sets one."""

    channel: Channel
    provider: str
    provider_label: str
    enabled: bool
    settings: list[SettingOut]
    templates: dict[str, Any] = Field(
        description="The clinic's template ids (DLT ids, WhatsApp template names) by template"
    )
    updated_at: datetime | None

    @classmethod
    def of(cls, view: service.ProviderView) -> ProviderOut:
        return cls(
            channel=view.channel,
            provider=view.provider,
            provider_label=view.provider_label,
            enabled=view.enabled,
            settings=[SettingOut.of(s) for s in view.settings],
            templates=json.loads(view.templates),
            updated_at=view.updated_at,
        )


SettingValue = Annotated[str, Field(max_length=2000)] | int


class ProviderUpdate(ApiModel):
    """A channel's provider settings, by name (those ``GET`` lists). A secret left out or
    blank keeps the one stored; an enabled provider needs the settings it sends with.
    """

    enabled: bool
    settings: dict[str, SettingValue] = Field(default_factory=dict)
    templates: dict[str, Any] = Field(default_factory=dict)

    def values(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.settings.items()}

    def templates_json(self) -> str:
        return json.dumps(self.templates, ensure_ascii=False) if self.templates else ""


class SendTest(ApiModel):
    """Whom to send the test message to: a mobile number, or an email address for email."""

    to: Annotated[str, Field(min_length=1, max_length=320)]
