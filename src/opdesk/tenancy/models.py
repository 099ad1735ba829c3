"""``tenants``: one row per clinic (or clinic chain) using OPDesk."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, SoftDeletable, new_id


class Tenant(SoftDeletable, Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default="Asia/Kolkata")
    currency: Mapped[str] = mapped_column(Text, server_default="INR")
    gstin: Mapped[str | None] = mapped_column(Text)
    address_line1: Mapped[str | None] = mapped_column(Text)
    address_line2: Mapped[str | None] = mapped_column(Text)
    address_city: Mapped[str | None] = mapped_column(Text)
    address_state: Mapped[str | None] = mapped_column(Text)
    address_pincode: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    invoice_prefix: Mapped[str] = mapped_column(Text)
    # Roles whose members must use a second factor (TOTP) to sign in.
    mfa_required_roles: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    # Reminders, no-show grace, quiet hours (automation/settings.py reads them, with
    # defaults for what a clinic has not set).
    automation_settings: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("uq_tenants_slug", "slug", unique=True),)

    def snapshot(self) -> dict[str, object]:
        """The fields an audit diff compares."""
        return {
            "name": self.name,
            "slug": self.slug,
            "timezone": self.timezone,
            "currency": self.currency,
            "gstin": self.gstin,
            "addressLine1": self.address_line1,
            "addressLine2": self.address_line2,
            "addressCity": self.address_city,
            "addressState": self.address_state,
            "addressPincode": self.address_pincode,
            "phone": self.phone,
            "invoicePrefix": self.invoice_prefix,
            "mfaRequiredRoles": sorted(self.mfa_required_roles or []),
        }
