"""Request and response bodies for doctors, availability, slots, appointments, waitlist."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from opdesk.scheduling.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    Slot,
    SlotStatus,
    WaitlistStatus,
)
from opdesk.schemas import ApiModel, ShortText

Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
Channel = Literal["web", "whatsapp", "phone", "walk-in"]
Minutes = Annotated[int, Field(ge=1, le=240)]
Buffer = Annotated[int, Field(ge=0, le=120)]
Reason = Annotated[str, Field(max_length=500)]


class VisitTypeIn(ApiModel):
    code: Code
    label: ShortText
    minutes: Minutes


class DoctorFieldsIn(ApiModel):
    display_name: ShortText
    specialty: ShortText
    registration_number: Annotated[str, Field(min_length=3, max_length=40)]
    consultation_fee: Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=2)]
    visit_types: Annotated[list[VisitTypeIn], Field(min_length=1, max_length=20)]
    active: bool = True


class DoctorCreate(DoctorFieldsIn):
    user_id: uuid.UUID


class DoctorOut(ApiModel):
    id: uuid.UUID
    user_id: uuid.UUID
    display_name: str
    specialty: str
    registration_number: str
    consultation_fee: Decimal
    visit_types: list[VisitTypeIn]
    active: bool


class PublicDoctor(ApiModel):
    """What anyone may see about a doctor on the clinic's booking page."""

    id: uuid.UUID
    display_name: str
    specialty: str
    consultation_fee: Decimal
    visit_types: list[VisitTypeIn]


class OpeningIn(ApiModel):
    weekday: Annotated[int, Field(ge=0, le=6, description="0 = Monday .. 6 = Sunday")]
    start_time: time
    end_time: time
    slot_minutes: Minutes
    buffer_before: Buffer = 0
    buffer_after: Buffer = 0
    visit_types: Annotated[list[Code], Field(min_length=1, max_length=20)]


class TemplatesIn(ApiModel):
    valid_from: date | None = None
    templates: Annotated[list[OpeningIn], Field(max_length=70)]


class TemplateOut(OpeningIn):
    id: uuid.UUID
    valid_from: date


class ExceptionIn(ApiModel):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: Annotated[str, Field(max_length=200)] | None = None


class ExceptionOut(ApiModel):
    id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    reason: str | None


class ExceptionCreated(ExceptionOut):
    booked_inside: int = Field(description="booked or held slots inside the absence (kept)")


class GenerateIn(ApiModel):
    # Absent: the clinic setting (OPDESK_SLOT_DAYS_AHEAD).
    days: Annotated[int | None, Field(ge=1, le=180)] = None


class GenerateOut(ApiModel):
    created: int


class SlotMeta(ApiModel):
    visit_type: list[str]
    buffer_before: int
    buffer_after: int


class SlotOut(ApiModel):
    """A slot with the seed's field names (``start``/``end``; the columns are renamed)."""

    id: uuid.UUID
    doctor_id: uuid.UUID
    date: date
    start: datetime
    end: datetime
    status: SlotStatus
    hold_expires_at: datetime | None
    meta: SlotMeta

    @classmethod
    def of(cls, slot: Slot, now: datetime) -> SlotOut:
        """A hold that has run out is shown as what it is: free."""
        lapsed = slot.status == SlotStatus.HELD and slot.hold_expires_at is not None
        lapsed = lapsed and slot.hold_expires_at <= now  # type: ignore[operator]
        return cls(
            id=slot.id,
            doctor_id=slot.doctor_id,
            date=slot.date,
            start=slot.starts_at,
            end=slot.ends_at,
            status=SlotStatus.FREE if lapsed else slot.status,
            hold_expires_at=None if lapsed else slot.hold_expires_at,
            meta=SlotMeta.model_validate(
                {
                    k: v
                    for k, v in slot.meta.items()
                    if k in ("visitType", "bufferBefore", "bufferAfter")
                }
            ),
        )


class NextSlot(ApiModel):
    doctor: PublicDoctor
    slot: SlotOut


class HoldOut(ApiModel):
    slot_id: uuid.UUID
    hold_token: str
    expires_at: datetime


class BookingIn(ApiModel):
    slot_id: uuid.UUID
    patient_id: uuid.UUID
    visit_type: Code
    channel: Channel = "phone"
    reason: Reason | None = None
    notes: Reason | None = None
    hold_token: Annotated[str, Field(max_length=100)] | None = None
    follow_up_for: uuid.UUID | None = None
    allow_near_duplicate: Annotated[
        bool,
        Field(
            description="Book even though the patient already has an appointment with this "
            "doctor within 30 minutes of this slot on the same day (else 409 naming it)."
        ),
    ] = False


class PortalBookingIn(ApiModel):
    slot_id: uuid.UUID
    patient_id: uuid.UUID
    visit_type: Code
    hold_token: Annotated[str, Field(min_length=1, max_length=100)]
    reason: Reason | None = None


class Timeline(ApiModel):
    requested_at: datetime | None
    confirmed_at: datetime | None
    checked_in_at: datetime | None
    in_consult_at: datetime | None
    completed_at: datetime | None
    no_show_at: datetime | None
    cancelled_at: datetime | None
    refunded_at: datetime | None


class AppointmentOut(ApiModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    slot_id: uuid.UUID | None
    visit_type: str
    reason: str | None
    channel: str
    status: AppointmentStatus
    timeline: Timeline
    notes: str | None
    waitlist_origin: uuid.UUID | None
    reschedule_of: uuid.UUID | None
    follow_up_for: uuid.UUID | None
    created_by: uuid.UUID | None
    updated_at: datetime
    token_number: int | None
    queue_date: date | None

    @classmethod
    def of(cls, appointment: Appointment) -> AppointmentOut:
        fields: dict[str, Any] = {
            name: getattr(appointment, name) for name in cls.model_fields if name != "timeline"
        }
        timeline = {
            name: getattr(appointment, f"timeline_{name}") for name in Timeline.model_fields
        }
        return cls(**fields, timeline=Timeline(**timeline))


# The statuses staff set through the status endpoint (``requested`` comes from booking
# requests, ``refunded`` from billing); each is an AppointmentStatus.
StaffTarget = Literal["confirmed", "checked-in", "in-consult", "completed", "no-show", "cancelled"]


class TransitionIn(ApiModel):
    status: StaffTarget


class RescheduleIn(ApiModel):
    slot_id: uuid.UUID
    hold_token: Annotated[str, Field(max_length=100)] | None = None
    visit_type: Code | None = None


class WalkInIn(ApiModel):
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    visit_type: Code
    reason: Reason | None = None


class WaitlistIn(ApiModel):
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    from_date: date
    until_date: date
    visit_type: Code


class WaitlistOut(ApiModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    doctor_id: uuid.UUID
    from_date: date
    until_date: date
    visit_type: str
    status: WaitlistStatus
    created_at: datetime


class OfferOut(ApiModel):
    id: uuid.UUID
    slot_id: uuid.UUID
    patient_id: uuid.UUID
    entry_id: uuid.UUID
    expires_at: datetime
    status: OfferStatus


class AwayAppointment(ApiModel):
    """A patient booked inside a doctor's time away, as the desk needs them to call or
    message: ``phone`` only for staff who may read patients' details.
    """

    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    phone: str | None
    start: datetime
    end: datetime
    status: AppointmentStatus
    channel: Literal["whatsapp", "sms"] | None = Field(
        description="the channel a message goes by; null when the patient allows none"
    )
    messaged: bool = Field(description="the rebooking message was already queued")
    message_status: str | None
    not_messaged: str | None = Field(
        description="why no message goes to this patient, e.g. 'cannot be messaged — call'"
    )


class AwayAffectedOut(ApiModel):
    exception: ExceptionOut
    doctor_id: uuid.UUID
    appointments: list[AwayAppointment]
    next_free: list[SlotOut] = Field(description="the doctor's next bookable slots after it")


class AwayMessagedOut(ApiModel):
    queued: list[uuid.UUID] = Field(description="appointments whose patients were messaged now")
    already_messaged: list[uuid.UUID]
    to_call: list[uuid.UUID] = Field(description="appointments whose patients cannot be messaged")
