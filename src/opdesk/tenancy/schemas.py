"""Request and response bodies for clinics (tenants)."""

from __future__ import annotations

import uuid

from pydantic import Field

from opdesk.schemas import (
    ApiModel,
    Gstin,
    InvoicePrefix,
    PhoneE164,
    Pincode,
    ShortText,
    Slug,
    TimeZone,
)


class Address(ApiModel):
    line1: ShortText | None = None
    line2: ShortText | None = None
    city: ShortText | None = None
    state: ShortText | None = None
    pincode: Pincode | None = None


class TenantCreate(ApiModel):
    name: ShortText
    slug: Slug
    timezone: TimeZone = "Asia/Kolkata"
    gstin: Gstin | None = None
    address: Address = Field(default_factory=Address)
    phone: PhoneE164 | None = None
    invoice_prefix: InvoicePrefix = "INV"


class TenantUpdate(ApiModel):
    name: ShortText | None = None
    timezone: TimeZone | None = None
    gstin: Gstin | None = None
    address: Address | None = None
    phone: PhoneE164 | None = None
    invoice_prefix: InvoicePrefix | None = None


class ClinicPublic(ApiModel):
    """What anyone may know about a clinic: its public profile."""

    id: uuid.UUID
    name: str
    slug: str
    timezone: str
    currency: str
    gstin: str | None
    address: Address
    phone: str | None
