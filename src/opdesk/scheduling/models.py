"""Doctors' profiles, weekly availability, exceptions, ``slots`` and ``appointments``
(seed), the waitlist, and the state machines of slots, appointments, waitlist entries and
offers (:mod:`opdesk.states`).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    Text,
    Time,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from opdesk.db import Base, EnumText, TenantScoped, one_of
from opdesk.states import Machine


class SlotStatus(StrEnum):
    FREE = "free"
    HELD = "held"
    BOOKED = "booked"
    BLOCKED = "blocked"


class DoctorProfile(TenantScoped, Base):
    """What patients and the desk need to know about a doctor (one per doctor user)."""

    __tablename__ = "doctor_profiles"

    user_id: Mapped[uuid.UUID]
    display_name: Mapped[str] = mapped_column(Text)
    specialty: Mapped[str] = mapped_column(Text)
    registration_number: Mapped[str] = mapped_column(Text)
    consultation_fee: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    # [{"code": "new", "label": "New patient", "minutes": 20}, ...]
    visit_types: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"]),
        Index("uq_doctor_profiles_tenant_id_user_id", "tenant_id", "user_id", unique=True),
        Index(None, "tenant_id", "specialty"),
    )


class AvailabilityTemplate(TenantScoped, Base):
    """A weekly opening: e.g. Mondays 10:00-13:00, 15-minute slots, 5 minutes after each."""

    __tablename__ = "availability_templates"

    doctor_id: Mapped[uuid.UUID]
    weekday: Mapped[int] = mapped_column(Integer)  # Monday = 0, as Python's date.weekday()
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    slot_minutes: Mapped[int] = mapped_column(Integer)
    buffer_before: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    buffer_after: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    visit_types: Mapped[list[str]] = mapped_column(JSONB)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("end_time > start_time", name="ends_after_start"),
        CheckConstraint("slot_minutes BETWEEN 5 AND 240", name="slot_length"),
        CheckConstraint("buffer_before >= 0 AND buffer_after >= 0", name="buffers_positive"),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index(None, "tenant_id", "doctor_id", "weekday"),
    )


class AvailabilityException(TenantScoped, Base):
    """Time the doctor is away (leave, a holiday, a blocked afternoon)."""

    __tablename__ = "availability_exceptions"

    doctor_id: Mapped[uuid.UUID]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index(None, "tenant_id", "doctor_id", "starts_at"),
    )


class Slot(TenantScoped, Base):
    __tablename__ = "slots"

    doctor_id: Mapped[uuid.UUID]
    # The clinic-local date, for the doctor's day view (seed index doctorId + date).
    date: Mapped[date] = mapped_column(Date)
    # ``start``/``end``: END is a reserved word (docs/seed-deviations.toml).
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # The time the slot takes from the doctor's day, buffers included; no two overlap.
    occupied_from: Mapped[datetime]
    occupied_until: Mapped[datetime]
    status: Mapped[SlotStatus] = mapped_column(
        EnumText(SlotStatus), server_default=text(f"'{SlotStatus.FREE}'")
    )
    hold_expires_at: Mapped[datetime | None]
    meta: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (
        CheckConstraint(one_of("status", SlotStatus), name="status_known"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        ExcludeConstraint(
            ("tenant_id", "="),
            ("doctor_id", "="),
            (text("tstzrange(occupied_from, occupied_until)"), "&&"),
            name="ex_slots_no_overlap",
            using="gist",
        ),
        Index(None, "tenant_id", "doctor_id", "date"),
        Index(None, "tenant_id", "status"),
        Index(None, "tenant_id", "hold_expires_at"),
    )


# Holding, booking and releasing are the hot path: each is one conditional UPDATE whose
# condition allows only moves of this table (booking.claimable, booking.take_slot, ...).
SLOT = Machine(
    Slot,
    SlotStatus,
    {
        SlotStatus.FREE: {SlotStatus.HELD, SlotStatus.BOOKED, SlotStatus.BLOCKED},
        # A hold past its expiry counts as free: it may be held again, booked or blocked.
        SlotStatus.HELD: {SlotStatus.HELD, SlotStatus.BOOKED, SlotStatus.FREE, SlotStatus.BLOCKED},
        SlotStatus.BOOKED: {SlotStatus.FREE},  # cancelled, rescheduled or a future no-show
        SlotStatus.BLOCKED: {SlotStatus.FREE},
    },
    noun="a slot",
)


class AppointmentStatus(StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked-in"
    IN_CONSULT = "in-consult"
    COMPLETED = "completed"
    NO_SHOW = "no-show"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


# An appointment that no longer keeps its slot: the slot may carry another one.
SLOT_GIVEN_UP = (AppointmentStatus.CANCELLED, AppointmentStatus.REFUNDED, AppointmentStatus.NO_SHOW)
CHANNELS = ("web", "whatsapp", "phone", "walk-in")


class Appointment(TenantScoped, Base):
    __tablename__ = "appointments"

    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    slot_id: Mapped[uuid.UUID | None]
    visit_type: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    status: Mapped[AppointmentStatus] = mapped_column(EnumText(AppointmentStatus))
    timeline_requested_at: Mapped[datetime]
    timeline_confirmed_at: Mapped[datetime | None]
    timeline_checked_in_at: Mapped[datetime | None]
    timeline_in_consult_at: Mapped[datetime | None]
    timeline_completed_at: Mapped[datetime | None]
    timeline_no_show_at: Mapped[datetime | None]
    timeline_cancelled_at: Mapped[datetime | None]
    timeline_refunded_at: Mapped[datetime | None]
    notes: Mapped[str | None] = mapped_column(Text)
    waitlist_origin: Mapped[uuid.UUID | None]
    reschedule_of: Mapped[uuid.UUID | None]
    follow_up_for: Mapped[uuid.UUID | None]
    created_by: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime]
    # OPD token: handed out at check-in, counted per doctor per clinic-local day.
    token_number: Mapped[int | None] = mapped_column(Integer)
    queue_date: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        CheckConstraint(one_of("status", AppointmentStatus), name="status_known"),
        CheckConstraint(one_of("channel", CHANNELS), name="channel_known"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        ForeignKeyConstraint(["tenant_id", "slot_id"], ["slots.tenant_id", "slots.id"]),
        Index(None, "tenant_id", "patient_id", "status"),
        Index(None, "tenant_id", "doctor_id", "status", "timeline_requested_at"),
        Index(None, "tenant_id", "status", "timeline_no_show_at"),
        # The reports read a day's confirmations and visits seen by time (the requested
        # time is served by the doctor-and-status index above, skipping through it).
        Index(
            "ix_appointments_report_confirmed",
            "tenant_id",
            "timeline_confirmed_at",
            postgresql_where=text("timeline_confirmed_at IS NOT NULL"),
        ),
        Index(
            "ix_appointments_report_completed",
            "tenant_id",
            "timeline_completed_at",
            postgresql_where=text("timeline_completed_at IS NOT NULL"),
        ),
        # A slot carries at most one live appointment, whatever the application does.
        Index(
            "uq_appointments_tenant_id_slot_id_live",
            "tenant_id",
            "slot_id",
            unique=True,
            # A future slot freed by a no-show may be booked again.
            postgresql_where=text(
                "status NOT IN (" + ", ".join(f"'{s}'" for s in SLOT_GIVEN_UP) + ") "
                "AND slot_id IS NOT NULL"
            ),
        ),
        Index(
            "uq_appointments_token",
            "tenant_id",
            "doctor_id",
            "queue_date",
            "token_number",
            unique=True,
            postgresql_where=text("token_number IS NOT NULL"),
        ),
    )


# Where each status may go next. ``refunded`` is billing's to set (a later issue).
APPOINTMENT = Machine(
    Appointment,
    AppointmentStatus,
    {
        AppointmentStatus.REQUESTED: {AppointmentStatus.CONFIRMED, AppointmentStatus.CANCELLED},
        AppointmentStatus.CONFIRMED: {
            AppointmentStatus.CHECKED_IN,
            AppointmentStatus.NO_SHOW,
            AppointmentStatus.CANCELLED,
        },
        # A patient marked no-show who turns up late is checked in after all.
        AppointmentStatus.NO_SHOW: {AppointmentStatus.CHECKED_IN, AppointmentStatus.REFUNDED},
        AppointmentStatus.CHECKED_IN: {AppointmentStatus.IN_CONSULT, AppointmentStatus.CANCELLED},
        AppointmentStatus.IN_CONSULT: {AppointmentStatus.COMPLETED},
        AppointmentStatus.COMPLETED: {AppointmentStatus.REFUNDED},
        AppointmentStatus.CANCELLED: {AppointmentStatus.REFUNDED},
        AppointmentStatus.REFUNDED: set(),
    },
    noun="an appointment",
    timeline={s: f"timeline_{s.value.replace('-', '_')}_at" for s in AppointmentStatus},
    touch="updated_at",
)


class QueueCounter(Base):
    """The last token handed out for one doctor on one day (one row, bumped atomically)."""

    __tablename__ = "queue_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    doctor_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    last_token: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
    )


class WaitlistStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    BOOKED = "booked"
    WITHDRAWN = "withdrawn"


# Entries still in line: waiting, or holding an offer.
IN_LINE = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


class WaitlistEntry(TenantScoped, Base):
    """A patient waiting for any slot of one doctor between two dates."""

    __tablename__ = "waitlist_entries"

    patient_id: Mapped[uuid.UUID]
    doctor_id: Mapped[uuid.UUID]
    from_date: Mapped[date] = mapped_column(Date)
    until_date: Mapped[date] = mapped_column(Date)
    visit_type: Mapped[str] = mapped_column(Text)
    status: Mapped[WaitlistStatus] = mapped_column(EnumText(WaitlistStatus))
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None]

    __table_args__ = (
        CheckConstraint(one_of("status", WaitlistStatus), name="status_known"),
        CheckConstraint("until_date >= from_date", name="until_after_from"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "doctor_id"], ["doctor_profiles.tenant_id", "doctor_profiles.id"]
        ),
        Index(None, "tenant_id", "doctor_id", "status", "created_at"),
        Index(None, "tenant_id", "patient_id"),
    )


WAITLIST_ENTRY = Machine(
    WaitlistEntry,
    WaitlistStatus,
    {
        WaitlistStatus.WAITING: {WaitlistStatus.OFFERED, WaitlistStatus.WITHDRAWN},
        # Declined or lapsed offers put the patient back in line.
        WaitlistStatus.OFFERED: {
            WaitlistStatus.BOOKED,
            WaitlistStatus.WAITING,
            WaitlistStatus.WITHDRAWN,
        },
        WaitlistStatus.BOOKED: set(),
        # Leaving the line keeps an offer already made open: accepting it still books.
        WaitlistStatus.WITHDRAWN: {WaitlistStatus.BOOKED},
    },
    noun="a waitlist entry",
    refusal="a {from_} waitlist entry cannot be {to}",
)


class OfferStatus(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"


class WaitlistLock(TenantScoped, Base):
    """A freed slot kept for one waiting patient until ``expires_at`` (seed)."""

    __tablename__ = "waitlist_locks"

    slot_id: Mapped[uuid.UUID]
    patient_id: Mapped[uuid.UUID]
    entry_id: Mapped[uuid.UUID]
    expires_at: Mapped[datetime]
    status: Mapped[OfferStatus] = mapped_column(EnumText(OfferStatus))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(one_of("status", OfferStatus), name="status_known"),
        ForeignKeyConstraint(["tenant_id", "slot_id"], ["slots.tenant_id", "slots.id"]),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "entry_id"], ["waitlist_entries.tenant_id", "waitlist_entries.id"]
        ),
        # The seed's TTL index: the sweeper finds lapsed offers through it.
        Index(None, "tenant_id", "expires_at"),
        # One open offer per slot at a time.
        Index(
            "uq_waitlist_locks_open_slot",
            "tenant_id",
            "slot_id",
            unique=True,
            postgresql_where=text(f"status = '{OfferStatus.OFFERED}'"),
        ),
    )


WAITLIST_OFFER = Machine(
    WaitlistLock,
    OfferStatus,
    {
        OfferStatus.OFFERED: {OfferStatus.ACCEPTED, OfferStatus.DECLINED, OfferStatus.EXPIRED},
        OfferStatus.ACCEPTED: set(),
        OfferStatus.DECLINED: set(),
        OfferStatus.EXPIRED: set(),
    },
    noun="an offer",
    refusal="this offer was already {from_}",
)
