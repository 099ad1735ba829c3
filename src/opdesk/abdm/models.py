"""ABDM tables: a clinic's link to the ABDM gateway (its facility id and client secret),
the gateway's calls as received (each once), and the Scan & Share queue tokens."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, TenantScoped, encrypted_column

ENVIRONMENTS = ("sandbox", "production")


def settings_row_id(tenant_id: uuid.UUID) -> uuid.UUID:
    """A stable id binding the clinic's client secret's ciphertext to its one row."""
    return uuid.uuid5(tenant_id, "abdm_settings")


def _bound_to_clinic(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    return column, settings_row_id(row["tenant_id"])


class AbdmSettings(Base):
    """One clinic's ABDM registration: the HFR facility id the gateway knows it by (its
    ``X-HIP-ID``), the gateway client it signs in with, and its Scan & Share counters.

    A clinic with no row is not on ABDM. Its facility id is also in ``abdm_facilities``,
    which keeps it one clinic's only.
    """

    __tablename__ = "abdm_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The HFR id (IN2710004770).
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
    # ABDM blocked the clinic's client for asking link tokens too often: no patient's
    # token is asked for until then (the block is the client's, not one patient's).
    token_asks_paused_until: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "environment IN (" + ", ".join(f"'{e}'" for e in ENVIRONMENTS) + ")",
            name="environment_known",
        ),
        CheckConstraint("facility_id ~ '^[A-Z0-9]{4,40}$'", name="facility_id_shape"),
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    )


class AbdmFacility(Base):
    """Which clinic a facility id leads to: the gateway calls one bridge URL for every
    clinic and names the facility (``X-HIP-ID``), before any clinic is known.

    Not a clinic's table (no ``tenant_id``, no row-level security): a facility id is
    unique across clinics, which a table distributed by clinic could not hold, and the
    row says only which clinic claims which public HFR id.
    """

    __tablename__ = "abdm_facilities"

    facility_id: Mapped[str] = mapped_column(Text, primary_key=True)
    clinic_id: Mapped[uuid.UUID]
    claimed_at: Mapped[datetime]

    __table_args__ = (Index("uq_abdm_facilities_clinic_id", "clinic_id", unique=True),)


def _bound_to_request(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    return column, row["request_id"]


class AbdmCallback(Base):
    """A call the gateway made to the clinic's bridge, kept once per ``REQUEST-ID``.

    The gateway retries a call it got no answer to, with the same REQUEST-ID; the primary
    key makes the second arrival a no-op, so each call is acted on once. The body holds
    health identifiers (ABHA address, name, mobile), so it is stored encrypted.
    """

    __tablename__ = "abdm_callbacks"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    request_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # What was called: "patient-share", "consent-notify", ... (abdm.bridge.KINDS).
    kind: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = encrypted_column(bound_to=_bound_to_request)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    # How the work it asked for ended: "answered", or why it could not be.
    outcome: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        Index(None, "tenant_id", "received_at"),
    )


class ShareToken(TenantScoped, Base):
    """A queue token handed to a patient who scanned a counter's QR code.

    Numbered 1, 2, 3 ... per counter per clinic day; a rescan within its 30 minutes gets the
    same token back (ABDM's PHR apps allow one token per 30 minutes).
    """

    __tablename__ = "abdm_share_tokens"

    counter_id: Mapped[str] = mapped_column(Text)
    day: Mapped[date] = mapped_column(Date)
    number: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[uuid.UUID]
    # The blind index of the ABHA address that scanned (patients.service.abha_address_hash).
    abha_address_hash: Mapped[bytes] = mapped_column(LargeBinary)
    request_id: Mapped[uuid.UUID]
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("number > 0", name="number_positive"),
        CheckConstraint("expires_at > issued_at", name="expires_after_issue"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        Index(
            "uq_abdm_share_tokens_counter_day_number",
            "tenant_id",
            "counter_id",
            "day",
            "number",
            unique=True,
        ),
        Index(None, "tenant_id", "abha_address_hash", "counter_id", "expires_at"),
        Index(None, "tenant_id", "day", "counter_id"),
    )


class ShareCounter(Base):
    """The last token number given at a counter on a clinic day (the sequence's one row)."""

    __tablename__ = "abdm_share_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    counter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)

    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),)


class CareContext(TenantScoped, Base):
    """A visit as ABDM knows it: one care context per signed visit, named by a display
    with no clinical detail (when, with whom, where)."""

    __tablename__ = "abdm_care_contexts"

    patient_id: Mapped[uuid.UUID]
    visit_id: Mapped[uuid.UUID]
    # What the gateway and the HIU call it (careContextReference): the visit's id.
    reference: Mapped[str] = mapped_column(Text)
    display: Mapped[str] = mapped_column(Text)
    # When the visit happened: a consent's date range picks care contexts by it.
    happened_at: Mapped[datetime]
    created_at: Mapped[datetime]
    # Linked to the patient's ABHA: by the clinic after the visit ("hip", with the link
    # token) or by the patient from their app ("patient", discovery then an OTP).
    linked_at: Mapped[datetime | None]
    linked_by: Mapped[str | None] = mapped_column(Text)
    # The clinic's last link call for it still awaiting the gateway's answer (REQUEST-ID).
    link_request_id: Mapped[uuid.UUID | None]
    link_asked_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"]),
        # The reference is the visit's id, so one visit is one reference and back.
        CheckConstraint("reference = visit_id::text", name="reference_is_visit"),
        CheckConstraint(
            "(linked_at IS NULL) = (linked_by IS NULL) AND"
            " (linked_by IS NULL OR linked_by IN ('hip', 'patient'))",
            name="linked_says_by_whom",
        ),
        Index(None, "tenant_id", "link_request_id"),
        Index("uq_abdm_care_contexts_visit", "tenant_id", "visit_id", unique=True),
        Index(None, "tenant_id", "reference"),
        Index(None, "tenant_id", "patient_id", "happened_at"),
    )


CONSENT_STATUSES = ("GRANTED", "REVOKED", "EXPIRED", "DENIED")


class ConsentArtefact(TenantScoped, Base):
    """A consent the patient gave (through their consent manager) for an HIU to receive
    some of this clinic's records: which care contexts, which kinds, which dates, until
    when. Kept for every status the gateway notified; only a GRANTED one, not yet
    expired, lets records leave."""

    __tablename__ = "abdm_consents"

    consent_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    # The ABHA address the consent is for (the consent manager's patient id).
    abha_address: Mapped[str | None] = mapped_column(Text)
    hi_types: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # [{"patientReference": ..., "careContextReference": ...}]
    care_contexts: Mapped[list[dict[str, str]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    date_from: Mapped[datetime | None]
    date_to: Mapped[datetime | None]
    data_erase_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in CONSENT_STATUSES) + ")",
            name="status_known",
        ),
        CheckConstraint(
            "status <> 'GRANTED' OR (date_from IS NOT NULL AND date_to IS NOT NULL"
            " AND data_erase_at IS NOT NULL)",
            name="granted_has_range",
        ),
        Index("uq_abdm_consents_consent_id", "tenant_id", "consent_id", unique=True),
    )


TRANSFER_STATUSES = ("requested", "sent", "refused", "failed")


class Transfer(TenantScoped, Base):
    """One health-information request under a consent, and what became of it: what was
    sent (which care contexts, how many records), when, or why not. No record content is
    kept here."""

    __tablename__ = "abdm_transfers"

    consent_id: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[str] = mapped_column(Text)
    request_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(Text)
    date_from: Mapped[datetime]
    date_to: Mapped[datetime]
    data_push_url: Mapped[str] = mapped_column(Text)
    # The HIU's public key material for this transfer (public: no secret in it).
    key_material: Mapped[dict[str, object]] = mapped_column(JSONB)
    # [{"careContextReference": ..., "records": n}]
    sent: Mapped[list[dict[str, object]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in TRANSFER_STATUSES) + ")",
            name="status_known",
        ),
        Index("uq_abdm_transfers_transaction", "tenant_id", "transaction_id", unique=True),
        Index(None, "tenant_id", "consent_id"),
    )


class LinkToken(TenantScoped, Base):
    """The link token ABDM gave the clinic for one patient's ABHA address: it lets the
    clinic link each new visit to the ABHA with no OTP, for six months.

    ABDM blocks a client for 24 hours that asks for tokens over and over, so the clinic
    asks once per patient and keeps the answer: the token while it lasts, a question in
    flight (``ask_request_id``), or a refusal and until when not to ask again.
    """

    __tablename__ = "abdm_link_tokens"

    patient_id: Mapped[uuid.UUID]
    # The ABHA address the token is for; a patient whose address changes needs a new one.
    abha_address_hash: Mapped[bytes] = mapped_column(LargeBinary)
    token_encrypted: Mapped[bytes | None] = encrypted_column()
    expires_at: Mapped[datetime | None]
    asked_at: Mapped[datetime | None]
    ask_request_id: Mapped[uuid.UUID | None]
    not_before: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint(
            "(token_encrypted IS NULL) = (expires_at IS NULL)", name="token_has_expiry"
        ),
        Index("uq_abdm_link_tokens_patient", "tenant_id", "patient_id", unique=True),
        Index(None, "tenant_id", "ask_request_id"),
    )


LINK_REQUEST_STATUSES = ("pending", "linked", "refused")


class LinkRequest(TenantScoped, Base):
    """A patient's request, from their ABHA app, to link visits they discovered here: the
    OTP the clinic sent them (kept only as a keyed hash), how many wrong tries, the end."""

    __tablename__ = "abdm_link_requests"

    # What on-init told the consent manager, and what confirm quotes back.
    reference: Mapped[str] = mapped_column(Text)
    transaction_id: Mapped[str] = mapped_column(Text)
    patient_id: Mapped[uuid.UUID]
    abha_address: Mapped[str] = mapped_column(Text)
    care_contexts: Mapped[list[str]] = mapped_column(JSONB)
    otp_hash: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    # The gateway's init call that made it, and the last confirm call that tried a code:
    # a call answered again (the worker's retry) finds its own outcome, not a new one.
    init_request_id: Mapped[uuid.UUID]
    last_try_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in LINK_REQUEST_STATUSES) + ")",
            name="status_known",
        ),
        CheckConstraint("attempts >= 0", name="attempts_counted"),
        Index("uq_abdm_link_requests_reference", "tenant_id", "reference", unique=True),
        Index("uq_abdm_link_requests_init", "tenant_id", "init_request_id", unique=True),
        Index(None, "tenant_id", "patient_id", "created_at"),
    )
