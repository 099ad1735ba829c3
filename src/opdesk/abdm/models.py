"""ABDM tables: a clinic's link to the ABDM gateway (its facility id and client secret)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKeyConstraint, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, encrypted_column

ENVIRONMENTS = ("sandbox", "production")


def settings_row_id(tenant_id: uuid.UUID) -> uuid.UUID:
    """A stable id binding the clinic's client secret's ciphertext to its one row."""
    return uuid.uuid5(tenant_id, "abdm_settings")


def _bound_to_clinic(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    return column, settings_row_id(row["tenant_id"])


class AbdmSettings(Base):
    """One clinic's ABDM registration: the HFR facility id the gateway knows it by (its
    ``X-HIP-ID``), the gateway client it signs in with, and its Scan & Share counters.

    A clinic with no row is not on ABDM.
    """

    __tablename__ = "abdm_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The HFR id (IN2710004770). One bridge URL serves every clinic and the gateway names
    # the facility in each callback, so a facility id belongs to one clinic only.
    facility_id: Mapped[str] = mapped_column(Text)
    facility_name: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(Text)
    client_secret: Mapped[bytes] = encrypted_column(bound_to=_bound_to_clinic)
    environment: Mapped[str] = mapped_column(Text, server_default=text("'sandbox'"))
    # Off: the clinic keeps its settings but answers no gateway call and sends none.
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The desks a patient can scan at: [{"id": "desk-1", "label": "Front desk"}].
    counters: Mapped[list[dict[str, str]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "environment IN (" + ", ".join(f"'{e}'" for e in ENVIRONMENTS) + ")",
            name="environment_known",
        ),
        CheckConstraint("facility_id ~ '^[A-Z0-9]{4,40}$'", name="facility_id_shape"),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        Index("uq_abdm_settings_facility_id", "facility_id", unique=True),
    )
