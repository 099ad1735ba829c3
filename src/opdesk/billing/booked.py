"""What money does to an appointment: a booking waiting for its payment is confirmed once
its charge is paid, and a cancelled (or missed) appointment whose charge was given back in
full becomes ``refunded`` (the scheduling machine keeps that move for billing).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from opdesk import records, states
from opdesk.billing.models import Invoice, InvoiceStatus
from opdesk.context import RequestContext
from opdesk.scheduling.models import APPOINTMENT, Appointment, AppointmentStatus

# Where a full refund of the booking's charge takes an appointment to ``refunded``.
REFUNDABLE = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW})


def _appointment(session: Session, invoice: Invoice) -> Appointment | None:
    if invoice.appointment_id is None:
        return None
    return records.by_id(session, Appointment, invoice.appointment_id, lock=True)


def paid(session: Session, ctx: RequestContext, invoice: Invoice) -> None:
    """The invoice was paid in full: its booking, if it waited for this, is confirmed."""
    if invoice.status != InvoiceStatus.PAID:
        return
    appointment = _appointment(session, invoice)
    if appointment is None or appointment.status != AppointmentStatus.REQUESTED:
        return
    # Imported here: the lifecycle's hooks lead back into billing (the booking's charge).
    from opdesk.scheduling import lifecycle

    lifecycle.confirm(session, ctx, appointment.id)


def refunded(session: Session, ctx: RequestContext, invoice: Invoice) -> None:
    """The invoice was given back in full: a cancelled or missed booking is ``refunded``."""
    if invoice.status != InvoiceStatus.REFUNDED or invoice.amount_refunded == 0:
        return
    appointment = _appointment(session, invoice)
    if appointment is None or appointment.status not in REFUNDABLE:
        return
    states.transition(session, ctx, appointment, AppointmentStatus.REFUNDED, APPOINTMENT)
