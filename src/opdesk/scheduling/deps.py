"""What the scheduling routers share (desk, admin and patient pages, REST): path loaders,
the services as this deployment built them, and the status words the pages show.

Routers import these from here, never from one another.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opdesk import idempotency, records
from opdesk.context import RequestContext
from opdesk.errors import Conflict
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import MyFamily
from opdesk.scheduling import lifecycle, queries, waitlist
from opdesk.scheduling.models import Appointment, AppointmentStatus, DoctorProfile, WaitlistLock
from opdesk.security import throttle
from opdesk.tenancy import service as tenants
from opdesk.tenancy.deps import SlugPath
from opdesk.tenancy.models import Tenant
from opdesk.uow import enter_tenant
from opdesk.web import pages
from opdesk.web.deps import Ctx, DbSession, acting, services

Me = Annotated[Principal, acting("portal:self")]

# Enough for a family booking a few visits; too few to hold a doctor's whole day.
PUBLIC_HOLDS = throttle.Limit("public-hold", 10, timedelta(minutes=15))

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=idempotency.MAX_KEY_LENGTH,
        description="Retrying with the same key returns the first answer.",
    ),
]

STATUS_LABELS = {
    "free": "Free",
    "held": "Held",
    "booked": "Booked",
    "blocked": "Blocked",
    "requested": "Requested",
    "confirmed": "Confirmed",
    "checked-in": "Checked in",
    "in-consult": "With doctor",
    "completed": "Done",
    "no-show": "No-show",
    "cancelled": "Cancelled",
    "refunded": "Refunded",
}


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A scheduling page, with the status words at hand as ``labels``."""
    context.setdefault("labels", STATUS_LABELS)
    return pages.render(request, template, status_code, **context)


# ------------------------------------------------------------------ services


async def _hold_for(request: Request) -> timedelta:
    return services(request).hold_for


async def _offers(request: Request) -> waitlist.Offers:
    return services(request).offers


# How long a held slot is kept (``OPDESK_HOLD_MINUTES``).
HoldFor = Annotated[timedelta, Depends(_hold_for)]
# Waitlist offers as this deployment makes them (its cipher, its offer time).
Offers = Annotated[waitlist.Offers, Depends(_offers)]


# ------------------------------------------------------------------ path loaders


def doctor_in_path(doctor_id: uuid.UUID, session: DbSession) -> DoctorProfile:
    """The doctor named in the path; a foreign or unknown id is 404 before the body."""
    return records.by_id(session, DoctorProfile, doctor_id)


def appointment_in_path(appointment_id: uuid.UUID, session: DbSession) -> Appointment:
    return records.by_id(session, Appointment, appointment_id)


DoctorInPath = Annotated[DoctorProfile, Depends(doctor_in_path)]
AppointmentInPath = Annotated[Appointment, Depends(appointment_in_path)]


def clinic_in_path(slug: SlugPath, session: DbSession, ctx: Ctx) -> Tenant:
    """The clinic of the public page; the request then acts inside that clinic."""
    tenant = tenants.get_by_slug(session, slug)
    enter_tenant(session, ctx, tenant.id)
    return tenant


Clinic = Annotated[Tenant, Depends(clinic_in_path)]


def my_appointment(appointment_id: uuid.UUID, session: DbSession, family: MyFamily) -> Appointment:
    """One of the signed-in patient's family's appointments, else 404 (before the body)."""
    appointment = queries.appointment(session, appointment_id)
    family.check(appointment.patient_id)
    return appointment


Mine = Annotated[Appointment, Depends(my_appointment)]


# ------------------------------------------------------------------ patients online


def hold_key(ctx: RequestContext, clinic: Tenant) -> bytes:
    """Public holds are counted per clinic and address."""
    return hashlib.sha256(f"{clinic.id}|{ctx.ip}".encode()).digest()


def check_changeable(ctx: RequestContext, session: Session, appointment: Appointment) -> None:
    """Patients change only upcoming, not yet started appointments online."""
    if appointment.status not in lifecycle.RESCHEDULABLE:
        raise Conflict(f"a {appointment.status} appointment cannot be changed online")
    slot = queries.slot_of(session, appointment)
    if slot is not None and slot.starts_at <= ctx.now():
        raise Conflict("this appointment has already started; please call the clinic")


def check_movable(appointment: Appointment) -> None:
    """A booking waiting for its online payment is paid for or cancelled, not moved: a
    move books the new time as a new appointment, which would skip the payment.
    """
    if appointment.status == AppointmentStatus.REQUESTED:
        raise Conflict("pay for this appointment first, or cancel it and book another time")


def my_offer(offer_id: uuid.UUID, session: DbSession, family: MyFamily) -> WaitlistLock:
    """A waitlist offer to the signed-in patient or their family, else 404."""
    offer = waitlist.offer(session, offer_id)
    family.check(offer.patient_id)
    return offer


MyOffer = Annotated[WaitlistLock, Depends(my_offer)]
