"""Invoices: a draft (made by hand, from a visit, or as the charge a booking leaves for
checkout), changed freely until it is issued; issuing gives it the next number of the
clinic's financial year and charges the patient's ledger. An issued invoice never
changes again (PostgreSQL refuses it); a correction is a refund or a new invoice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from opdesk import audit, records, states
from opdesk.billing import ledger, money, reminders
from opdesk.billing.models import (
    INVOICE,
    LINE_TYPES,
    BillingSettings,
    ConsultationFee,
    Invoice,
    InvoiceStatus,
    LedgerKind,
)
from opdesk.clinical.models import ClinicService, Order, OrderStatus, Visit, VisitService
from opdesk.context import RequestContext
from opdesk.errors import Conflict, FieldError, InvalidInput
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment, DoctorProfile
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant

ZERO = money.ZERO


def _place(tenant: Tenant, place_of_supply: str | None) -> tuple[str | None, bool]:
    """The place of supply and whether it lies in another state than the clinic's."""
    home = (tenant.address_state or "").strip()
    place = (place_of_supply or "").strip() or home or None
    inter = bool(place and home and place.casefold() != home.casefold())
    return place, inter


def _check(lines: Sequence[money.LineIn], discount_reason: str | None) -> None:
    for i, spec in enumerate(lines):
        if spec.type not in LINE_TYPES:
            raise InvalidInput(
                [FieldError(f"lineItems[{i}].type", f"must be one of {', '.join(LINE_TYPES)}")]
            )
        money.check_line(spec, f"lineItems[{i}]")
    if any(s.discount_amount > 0 for s in lines) and not (discount_reason or "").strip():
        raise InvalidInput([FieldError("discountReason", "is required when a line has a discount")])


def _fill(
    invoice: Invoice,
    lines: Sequence[money.LineIn],
    *,
    inter_state: bool,
) -> None:
    worked = [money.work_out(s, inter_state=inter_state) for s in lines]
    t = money.totals(worked)
    invoice.line_items = [w.as_json() for w in worked]
    invoice.subtotal = t.subtotal
    invoice.discount_total = t.discount_total
    invoice.tax_total = t.tax_total
    invoice.cgst_total = t.cgst_total
    invoice.sgst_total = t.sgst_total
    invoice.igst_total = t.igst_total
    invoice.grand_total = t.grand_total
    invoice.balance_due = t.grand_total


def _snapshot(invoice: Invoice) -> dict[str, Any]:
    return {
        "lineItems": invoice.line_items,
        "grandTotal": invoice.grand_total,
        "discountReason": invoice.discount_reason,
        "placeOfSupply": invoice.place_of_supply,
    }


def create_draft(
    session: Session,
    ctx: RequestContext,
    *,
    patient_id: uuid.UUID,
    lines: Sequence[money.LineIn],
    visit_id: uuid.UUID | None = None,
    appointment_id: uuid.UUID | None = None,
    discount_reason: str | None = None,
    place_of_supply: str | None = None,
) -> Invoice:
    """A new draft for the patient (404 for an unknown patient, 422 for a bad line)."""
    records.by_id(session, Patient, patient_id)
    _check(lines, discount_reason)
    tenant = tenants.get_tenant(session, _tenant(ctx))
    place, inter = _place(tenant, place_of_supply)
    now = ctx.now()
    invoice = Invoice(
        tenant_id=tenant.id,
        patient_id=patient_id,
        visit_id=visit_id,
        appointment_id=appointment_id,
        status=InvoiceStatus.DRAFT,
        amount_paid=ZERO,
        amount_refunded=ZERO,
        amount_credited=ZERO,
        discount_reason=(discount_reason or "").strip() or None,
        place_of_supply=place,
        inter_state=inter,
        payments_applied=[],
        created_by=ctx.actor_id,
        created_at=now,
        updated_at=now,
    )
    _fill(invoice, lines, inter_state=inter)
    session.add(invoice)
    session.flush()
    audit.record(
        ctx,
        entity="invoices",
        entity_id=invoice.id,
        action="create",
        to_state=InvoiceStatus.DRAFT,
        diff=audit.diff_of({}, {"patientId": patient_id, **_snapshot(invoice)}),
    )
    return invoice


def _tenant(ctx: RequestContext) -> uuid.UUID:
    if ctx.tenant_id is None:
        raise RuntimeError("billing acts inside a clinic")
    return ctx.tenant_id


def _draft(session: Session, invoice: Invoice) -> None:
    records.lock(session, invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(
            f"invoice {invoice.number} is {invoice.status} and cannot change; "
            "refund it or make a new invoice"
        )


def revise_draft(
    session: Session,
    ctx: RequestContext,
    invoice: Invoice,
    *,
    lines: Sequence[money.LineIn],
    discount_reason: str | None,
    place_of_supply: str | None,
) -> Invoice:
    """Replace a draft's lines, discount reason and place of supply (409 once issued)."""
    _draft(session, invoice)
    _check(lines, discount_reason)
    before = _snapshot(invoice)
    tenant = tenants.get_tenant(session, invoice.tenant_id)
    invoice.place_of_supply, invoice.inter_state = _place(tenant, place_of_supply)
    invoice.discount_reason = (discount_reason or "").strip() or None
    _fill(invoice, lines, inter_state=invoice.inter_state)
    invoice.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="invoices",
        entity_id=invoice.id,
        action="update",
        diff=audit.diff_of(before, _snapshot(invoice)),
    )
    return invoice


def discard(session: Session, ctx: RequestContext, invoice: Invoice) -> None:
    """Throw a draft away (it has no number and charged nothing); 409 once issued."""
    _draft(session, invoice)
    session.execute(delete(Invoice).where(Invoice.id == invoice.id))
    audit.record(
        ctx,
        entity="invoices",
        entity_id=invoice.id,
        action="delete",
        from_state=InvoiceStatus.DRAFT,
        diff=audit.diff_of(_snapshot(invoice), {}),
    )


def _next_number(session: Session, tenant: Tenant, year: str) -> str:
    """The next number of the clinic's financial year, gapless: the counter row stays
    locked until this transaction ends, and a rollback gives the number back.
    """
    seq = session.execute(
        text(
            "INSERT INTO invoice_counters (tenant_id, financial_year, last_number) "
            "VALUES (:tenant, :year, 1) ON CONFLICT (tenant_id, financial_year) "
            "DO UPDATE SET last_number = invoice_counters.last_number + 1 "
            "RETURNING last_number"
        ),
        {"tenant": tenant.id, "year": year},
    ).scalar_one()
    return money.invoice_number(tenant.invoice_prefix, year, int(seq))


def issue(session: Session, ctx: RequestContext, invoice: Invoice) -> Invoice:
    """Number the draft, freeze it and charge the patient's ledger its grand total.

    An invoice of nothing (a free follow-up) is paid the moment it is issued.
    """
    _draft(session, invoice)
    if not invoice.line_items:
        raise InvalidInput([FieldError("lineItems", "add at least one line before issuing")])
    tenant = tenants.get_tenant(session, invoice.tenant_id)
    today = tenants.today_at_clinic(session, ctx)
    invoice.number = _next_number(session, tenant, money.financial_year(today))
    states.transition(session, ctx, invoice, InvoiceStatus.ISSUED, INVOICE)
    if invoice.grand_total > 0:
        entry = ledger.append(
            session,
            ctx,
            patient_id=invoice.patient_id,
            kind=LedgerKind.INVOICE,
            amount=invoice.grand_total,
            description=f"Invoice {invoice.number}",
            invoice_id=invoice.id,
        )
        audit.record(
            ctx,
            entity="invoices",
            entity_id=invoice.id,
            action="update",
            diff=audit.diff_of({}, {"number": invoice.number, "ledgerEntryId": entry}),
        )
        reminders.remind_later(session, ctx, invoice)
    else:
        states.transition(session, ctx, invoice, InvoiceStatus.PAID, INVOICE)
    return invoice


def cancel_unpaid(session: Session, ctx: RequestContext, invoice: Invoice, reason: str) -> Invoice:
    """Cancel an issued invoice nothing was paid on with a credit note for its whole total
    (the ledger gets the credit; the invoice keeps its number and becomes ``refunded``:
    nothing is owed either way). 409 once anything was paid: refund that instead.
    """
    records.lock(session, invoice)
    if invoice.status != InvoiceStatus.ISSUED or invoice.amount_paid > 0:
        raise Conflict(
            f"invoice {invoice.number} is {invoice.status} with ₹{invoice.amount_paid} paid; "
            "refund the payment instead"
        )
    owed = invoice.grand_total - invoice.amount_credited
    entry = ledger.append(
        session,
        ctx,
        patient_id=invoice.patient_id,
        kind=LedgerKind.CREDIT_NOTE,
        amount=owed,
        description=f"Credit note on {invoice.number}: {reason}",
        invoice_id=invoice.id,
    )
    before = {"amountCredited": invoice.amount_credited, "balanceDue": invoice.balance_due}
    invoice.amount_credited = invoice.grand_total
    invoice.balance_due = ZERO
    after = {"amountCredited": invoice.amount_credited, "balanceDue": invoice.balance_due}
    diff = audit.diff_of(before, {**after, "reason": reason, "ledgerEntryId": entry})
    states.transition(session, ctx, invoice, InvoiceStatus.REFUNDED, INVOICE, diff=diff)
    reminders.settled(session, ctx, invoice)
    return invoice


# --------------------------------------------------------------------------- from a visit


def consultation_fee(session: Session, doctor: DoctorProfile, visit_type: str) -> Decimal:
    """The doctor's fee for this visit type, else their usual consultation fee."""
    fee = session.scalar(
        select(ConsultationFee.amount).where(
            ConsultationFee.doctor_id == doctor.id, ConsultationFee.visit_type == visit_type
        )
    )
    return fee if fee is not None else doctor.consultation_fee


def _consult_sac(session: Session, tenant_id: uuid.UUID) -> str:
    found = session.scalar(
        select(BillingSettings.consult_sac).where(BillingSettings.tenant_id == tenant_id)
    )
    return found or "999312"


def consult_line(session: Session, appointment: Appointment) -> money.LineIn:
    doctor = records.by_id(session, DoctorProfile, appointment.doctor_id)
    label = next(
        (
            str(v.get("label"))
            for v in doctor.visit_types
            if v.get("code") == appointment.visit_type
        ),
        appointment.visit_type.replace("-", " ").capitalize(),
    )
    kind = "" if label.casefold() == "consultation" else f" ({label})"
    return money.LineIn(
        type="consult",
        description=f"Consultation{kind} with {doctor.display_name}",
        quantity=Decimal(1),
        unit_price=consultation_fee(session, doctor, appointment.visit_type),
        sac_hsn=_consult_sac(session, appointment.tenant_id),
        ref_id=str(appointment.id),
    )


def _service_lines(session: Session, visit: Visit) -> list[money.LineIn]:
    rows = session.scalars(
        select(VisitService)
        .where(VisitService.visit_id == visit.id)
        .order_by(VisitService.created_at)
    )
    return [
        money.LineIn(
            type="service",
            description=row.description,
            quantity=Decimal(row.quantity),
            unit_price=row.unit_price,
            tax_rate=row.tax_rate,
            sac_hsn=row.sac_hsn,
            ref_id=str(row.id),
        )
        for row in rows
    ]


def _order_lines(session: Session, visit: Visit) -> list[money.LineIn]:
    """Each ordered test the clinic's catalogue prices (by code); others are not billed
    here (an outside lab bills the patient itself).
    """
    catalogue = {s.code: s for s in session.scalars(select(ClinicService))}
    lines = []
    for order in session.scalars(
        select(Order)
        .where(Order.visit_id == visit.id, Order.status != OrderStatus.CANCELLED)
        .order_by(Order.created_at)
    ):
        for item in order.items:
            service = catalogue.get(item.get("code") or "")
            if service is None:
                continue
            lines.append(
                money.LineIn(
                    type="lab" if order.type == "lab" else "service",
                    description=service.name,
                    quantity=Decimal(1),
                    unit_price=service.price,
                    tax_rate=service.tax_rate,
                    sac_hsn=service.sac_hsn,
                    ref_id=str(order.id),
                )
            )
    return lines


def booking_charge_issued(session: Session, appointment_id: uuid.UUID) -> Invoice | None:
    """The booking's charge once issued before any visit was billed on it (paid ahead
    online, or issued from the queue before the doctor opened a visit): the consultation
    is billed there, and the visit's checkout bills only what the visit added.
    """
    return session.scalar(
        select(Invoice)
        .where(
            Invoice.appointment_id == appointment_id,
            Invoice.status != InvoiceStatus.DRAFT,
            Invoice.visit_id.is_(None),
        )
        .order_by(Invoice.created_at)
        .limit(1)
    )


def visit_lines(session: Session, visit: Visit) -> list[money.LineIn]:
    """What the visit bills: the consultation (unless the booking's charge already did),
    its services and its priced tests.
    """
    lines = [*_service_lines(session, visit), *_order_lines(session, visit)]
    if booking_charge_issued(session, visit.appointment_id) is None:
        appointment = records.by_id(session, Appointment, visit.appointment_id)
        lines.insert(0, consult_line(session, appointment))
    return lines


def _visit_draft(session: Session, visit: Visit) -> Invoice | None:
    """The draft the visit's checkout works on: the booking's, or the visit's own."""
    return draft_for_appointment(session, visit.appointment_id) or session.scalar(
        select(Invoice).where(Invoice.visit_id == visit.id, Invoice.status == InvoiceStatus.DRAFT)
    )


def billed_on(session: Session, visit: Visit) -> Invoice | None:
    """The issued invoice that leaves nothing of the visit to bill: one made for it, or
    the booking's charge when the visit added nothing to the consultation.
    """
    made = session.scalar(
        select(Invoice).where(Invoice.visit_id == visit.id, Invoice.status != InvoiceStatus.DRAFT)
    )
    if made is not None:
        return made
    charge = booking_charge_issued(session, visit.appointment_id)
    if charge is not None and not visit_lines(session, visit):
        return charge
    return None


def draft_for_appointment(session: Session, appointment_id: uuid.UUID) -> Invoice | None:
    return session.scalar(
        select(Invoice).where(
            Invoice.appointment_id == appointment_id, Invoice.status == InvoiceStatus.DRAFT
        )
    )


def draft_from_visit(session: Session, ctx: RequestContext, *, visit_id: uuid.UUID) -> Invoice:
    """The visit's checkout draft: the booking's charge brought up to date with what the
    visit added (services, priced tests), or a new draft when there is none. A draft
    already in step is returned as it is (opening checkout again writes nothing).

    Lines added by hand to the draft are kept; lines from the visit are rebuilt.
    """
    visit = records.by_id(session, Visit, visit_id)
    existing = billed_on(session, visit)
    if existing is not None:
        raise Conflict(f"this visit is already billed on invoice {existing.number}")
    built = visit_lines(session, visit)
    draft = _visit_draft(session, visit)
    if draft is None:
        charged = booking_charge_issued(session, visit.appointment_id)
        return create_draft(
            session,
            ctx,
            patient_id=visit.patient_id,
            lines=built,
            visit_id=visit.id,
            # The booking's own charge is issued: this second bill is the visit's alone.
            appointment_id=visit.appointment_id if charged is None else None,
        )
    earlier, lines = _rebuilt(draft, built)
    if draft.visit_id == visit.id and earlier == lines:
        return draft  # already in step with the visit: nothing to write
    draft.visit_id = visit.id
    return revise_draft(
        session,
        ctx,
        draft,
        lines=lines,
        discount_reason=draft.discount_reason,
        place_of_supply=draft.place_of_supply,
    )


def draft_in_step(session: Session, visit: Visit) -> Invoice | None:
    """The visit's draft if :func:`draft_from_visit` would find nothing to change; None
    when there is none yet or the visit changed since. Reads only.
    """
    draft = _visit_draft(session, visit)
    if draft is None or draft.visit_id != visit.id:
        return None
    earlier, lines = _rebuilt(draft, visit_lines(session, visit))
    return draft if earlier == lines else None


def _rebuilt(
    draft: Invoice, built: list[money.LineIn]
) -> tuple[list[money.LineIn], list[money.LineIn]]:
    """The draft's lines as they are, and as the visit makes them now: the visit's lines
    (keeping the discounts the desk gave them), then the lines added by hand.
    """
    from_visit = {line.ref_id for line in built}
    earlier = [money.line_from_json(item) for item in draft.line_items]
    by_hand = [x for x in earlier if x.ref_id not in from_visit and x.type != "consult"]
    return earlier, [*_keep_discounts(built, earlier), *by_hand]


def _keep_discounts(built: list[money.LineIn], earlier: list[money.LineIn]) -> list[money.LineIn]:
    """A visit line brought up to date keeps the discount the desk gave it (by its
    reference), as far as its new amount allows.
    """
    given = {(x.type, x.ref_id): x.discount_amount for x in earlier if x.discount_amount > 0}
    kept = []
    for line in built:
        discount = given.get((line.type, line.ref_id), ZERO)
        gross = money.paise(line.quantity * line.unit_price)
        kept.append(replace(line, discount_amount=min(discount, gross)) if discount else line)
    return kept


def charge_booking(session: Session, ctx: RequestContext, appointment: Appointment) -> Invoice:
    """The draft a booking leaves for checkout: the consultation fee, so it is not forgotten.
    Safe to run twice: an appointment already charged keeps its invoice.
    """
    charged = session.scalar(
        select(Invoice).where(Invoice.appointment_id == appointment.id).limit(1)
    )
    if charged is not None:
        return charged
    return create_draft(
        session,
        ctx,
        patient_id=appointment.patient_id,
        lines=[consult_line(session, appointment)],
        appointment_id=appointment.id,
    )


def drop_booking_charge(session: Session, ctx: RequestContext, appointment_id: uuid.UUID) -> None:
    """A cancelled booking's draft goes with it (an issued invoice stays; refund it)."""
    draft = draft_for_appointment(session, appointment_id)
    if draft is not None:
        discard(session, ctx, draft)
