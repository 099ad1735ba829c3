"""Billing's pages: checkout from a visit (or the queue), an invoice with its payments
and refunds, taking money at the desk (cash, card, UPI QR, split), the invoice list, the
accounts view of a day, a patient's ledger, the clinic's billing settings, and the
patient's own bills in the portal.

Every form goes through :func:`opdesk.web.pages.attempt` around the billing services;
a refused form is drawn again with each bad field named as the form labels it (422),
or with the reason it cannot be done (409).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk import records
from opdesk.billing import day as days
from opdesk.billing import gateway, invoices, ledger, money, payments, queries, upi
from opdesk.billing import settings as billing_settings
from opdesk.billing.deps import GatewayEventInPath, InvoiceInPath, PayAheadDep, PaymentInPath
from opdesk.billing.models import GatewayEvent, Invoice, InvoiceStatus, LedgerKind, Payment
from opdesk.billing.razorpay_client import parse_event
from opdesk.clinical.models import Visit
from opdesk.context import RequestContext
from opdesk.errors import Conflict, DomainError, FieldError, InvalidInput, NotFound
from opdesk.formatting import rupees
from opdesk.identity.sessions import Principal
from opdesk.patients.deps import MyFamily, PatientInPath
from opdesk.patients.models import Patient
from opdesk.scheduling.models import Appointment
from opdesk.security.permissions import allowed
from opdesk.tenancy import service as tenants
from opdesk.validation import ascii_digits
from opdesk.web.deps import Cipher, Ctx, DbSession, acting
from opdesk.web.pages import PostedForm, attempt, flash, redirect, render
from opdesk.web.templating import NavEntry

router = APIRouter(include_in_schema=False)
NAV: tuple[NavEntry, ...] = (
    NavEntry("Invoices", "/billing/invoices", "invoices:read", "billing"),
    NavEntry("Accounts day", "/billing/day", "reports:read", "billing"),
    NavEntry("Payments to check", "/billing/gateway-events", "payments:refund", "billing"),
    NavEntry("Billing and payments", "/admin/billing", "clinic:manage", "admin"),
    NavEntry("My bills", "/me/invoices", "portal:self", "patient"),
)
Reader = Annotated[Principal, acting("invoices:read")]
Writer = Annotated[Principal, acting("invoices:write")]
Collector = Annotated[Principal, acting("payments:collect")]
Refunder = Annotated[Principal, acting("payments:refund")]
Accounts = Annotated[Principal, acting("reports:read")]
Manager = Annotated[Principal, acting("clinic:manage")]
Me = Annotated[Principal, acting("portal:self")]

SETTINGS_PAGE = "/admin/billing"
STATUS_LABELS = {
    "draft": "Draft",
    "issued": "Due",
    "partial": "Part paid",
    "paid": "Paid",
    "refunded": "Refunded",
}
METHOD_LABELS = {
    "cash": "Cash",
    "card": "Card",
    "upi": "UPI",
    "link": "Payment link",
    "gateway": "Through the gateway",
}
PAYMENT_STATUS_LABELS = {
    "pending": "Waiting",
    "captured": "Received",
    "failed": "Failed",
    "refunded": "Refunded",
    "partial": "Part refunded",
}
LINE_TYPE_LABELS = {
    "consult": "Consultation",
    "service": "Service",
    "lab": "Test",
    "med": "Medicine",
    "package": "Package",
}
# The line types the desk adds by hand (the consultation comes from the booking).
HAND_TYPES = ("service", "med", "lab", "package")
TABS = ("cash", "card", "upi", "split")
SPLIT_ROWS = 3
LEDGER_LABELS = {
    LedgerKind.INVOICE: "Invoice",
    LedgerKind.PAYMENT: "Payment",
    LedgerKind.REFUND: "Refund",
    LedgerKind.CREDIT_NOTE: "Credit note",
}


def inr(value: Any) -> str:
    """Money for a page, from a Decimal or a stored line's string: ``₹1,23,456.50``."""
    if value is None or value == "":
        return ""
    return rupees(value if isinstance(value, Decimal) else Decimal(str(value)))


def rate(value: Any) -> str:
    """A GST rate as people write it: ``18%``, ``0.25%``, ``Exempt`` for nothing."""
    amount = Decimal(str(value))
    return "Exempt" if amount == 0 else f"{amount.normalize():f}%"


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """:func:`render` with billing's words and money helpers."""
    return render(
        request,
        template,
        status_code,
        inr=inr,
        rate=rate,
        status_labels=STATUS_LABELS,
        method_labels=METHOD_LABELS,
        payment_status_labels=PAYMENT_STATUS_LABELS,
        line_type_labels=LINE_TYPE_LABELS,
        **context,
    )


def field_errors(error: DomainError, rename: Callable[[str], str] = str) -> dict[str, str]:
    if not isinstance(error, InvalidInput):
        return {}
    return {rename(e.field): e.reason for e in error.errors}


def parse_amount(text: str, field: str, *, blank: Decimal | None = None) -> Decimal:
    """A form's amount of money (checked for sense by the services); 422 naming ``field``
    when it is not a number at all.
    """
    text = text.strip().replace(",", "").removeprefix("₹").strip()
    if not text and blank is not None:
        return blank
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidInput(
            [FieldError(field, "enter an amount in rupees, such as 500 or 500.50")]
        ) from None


def _patient(session: Session, patient_id: uuid.UUID) -> Patient:
    return records.by_id(session, Patient, patient_id, include_deleted=True)


def _invoice_url(invoice: Invoice) -> str:
    return f"/billing/invoices/{invoice.id}"


def _editor_url(invoice: Invoice) -> str:
    """Where a draft is changed: its visit's checkout, else the editor by hand."""
    if invoice.visit_id is not None:
        return _visit_checkout_url(invoice.visit_id)
    return f"/billing/invoices/{invoice.id}/edit"


def _zone(session: Session, ctx: RequestContext) -> Any:
    assert ctx.tenant_id is not None
    return tenants.zone_of(session, ctx.tenant_id)


# Every route names who may call it first: the permission is checked before a record in
# the path is looked up, so a visitor who is not signed in is sent to sign in, not 404.

# --------------------------------------------------------------------------- the list


def _invoice_rows(
    session: Session,
    *,
    status: InvoiceStatus | None,
    patient_id: uuid.UUID | None,
    name: str,
    limit: int = 100,
) -> list[tuple[Invoice, Patient]]:
    stmt = (
        select(Invoice, Patient)
        .join(
            Patient,
            (Patient.tenant_id == Invoice.tenant_id) & (Patient.id == Invoice.patient_id),
        )
        .order_by(Invoice.created_at.desc(), Invoice.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(Invoice.status == status)
    if patient_id is not None:
        stmt = stmt.where(Invoice.patient_id == patient_id)
    key = name.strip().lower()
    if key:
        # A prefix of the first or last name (range comparisons: see Patient.first_key).
        stmt = stmt.where(
            ((Patient.first_key >= key) & (Patient.first_key < key + "\uffff"))
            | ((Patient.last_key >= key) & (Patient.last_key < key + "\uffff"))
        )
    return [(i, p) for i, p in session.execute(stmt).all()]


@router.get("/billing/invoices")
def invoices_page(
    request: Request,
    who: Reader,
    session: DbSession,
    status: str = "",
    patient_id: uuid.UUID | None = None,
    q: str = "",
) -> Response:
    """Invoices, newest first; by status and by patient (a name, or one patient's)."""
    chosen = InvoiceStatus(status) if status in STATUS_LABELS else None
    patient = _patient(session, patient_id) if patient_id is not None else None
    rows = _invoice_rows(session, status=chosen, patient_id=patient_id, name=q[:60])
    return page(
        request,
        "billing/invoices.html",
        rows=rows,
        status=chosen.value if chosen else "",
        q=q[:60],
        patient=patient,
        may_write=allowed(who.role, "invoices:write"),
    )


@router.post("/billing/invoices")
def new_invoice(
    request: Request, _: Writer, session: DbSession, ctx: Ctx, form: PostedForm
) -> Response:
    """An empty draft for the patient, opened in the editor to add its lines."""
    try:
        patient_id = uuid.UUID(form.get("patient_id", ""))
    except ValueError:
        return flash(request, "/billing/invoices", "Choose the patient first.", "error")
    return attempt(
        request,
        session,
        lambda: invoices.create_draft(session, ctx, patient_id=patient_id, lines=[]),
        done=lambda made: redirect(request, _editor_url(made)),
        failed="/billing/invoices",
    )


# --------------------------------------------------------------------------- checkout


def _from_visit(built: Sequence[money.LineIn], item: dict[str, Any]) -> bool:
    refs = {line.ref_id for line in built}
    return item.get("refId") in refs or item["type"] == "consult"


def _billed(session: Session, appointment_id: uuid.UUID) -> Invoice | None:
    """The booking's invoice once issued (the queue's checkout with no visit opened)."""
    return session.scalar(
        select(Invoice)
        .where(Invoice.appointment_id == appointment_id, Invoice.status != InvoiceStatus.DRAFT)
        .order_by(Invoice.created_at.desc())
        .limit(1)
    )


@router.get("/billing/visits/{visit_id}/checkout")
def checkout_page(
    request: Request, who: Writer, visit_id: uuid.UUID, session: DbSession
) -> Response:
    """The visit's checkout draft, when it is in step with the visit. Reads only: when
    the draft is not built yet, or the visit changed since (a service or a test added),
    a page with one button that prepares it (a POST to this address).
    """
    visit = records.by_id(session, Visit, visit_id)
    billed = invoices.billed_on(session, visit)
    if billed is not None:
        return _billed_on(request, billed)
    draft = invoices.draft_in_step(session, visit)
    if draft is None:
        appointment = records.by_id(session, Appointment, visit.appointment_id)
        return _prepare_page(request, session, who, appointment, visit=visit)
    return _editor(request, session, draft, visit=visit)


@router.post("/billing/visits/{visit_id}/checkout")
def prepare_visit_checkout(
    request: Request, _: Writer, visit_id: uuid.UUID, session: DbSession, ctx: Ctx
) -> Response:
    """Prepare the visit's checkout draft: the booking's charge with the visit's services
    and priced tests brought onto it (or a new draft), then the draft's page.
    """
    visit = records.by_id(session, Visit, visit_id)
    appointment = records.by_id(session, Appointment, visit.appointment_id, lock=True)
    return _prepare_visit(request, session, ctx, appointment, visit)


@router.get("/billing/appointments/{appointment_id}/checkout")
def checkout_from_queue(
    request: Request, who: Writer, appointment_id: uuid.UUID, session: DbSession
) -> Response:
    """Where the queue's "Checkout" leads, read only: the visit's checkout, the booking's
    invoice or its draft; with no draft at all, a page that prepares it.
    """
    appointment = records.by_id(session, Appointment, appointment_id)
    visit = _visit_of(session, appointment)
    if visit is not None:
        return redirect(request, _visit_checkout_url(visit.id))
    billed = _billed(session, appointment.id)
    if billed is not None:
        return redirect(request, _invoice_url(billed))
    draft = invoices.draft_for_appointment(session, appointment.id)
    if draft is not None:
        return redirect(request, _editor_url(draft))
    return _prepare_page(request, session, who, appointment)


@router.post("/billing/appointments/{appointment_id}/checkout")
def prepare_queue_checkout(
    request: Request, _: Writer, appointment_id: uuid.UUID, session: DbSession, ctx: Ctx
) -> Response:
    """The queue's "Checkout" button: the visit's draft brought up to date, or the
    booking's charge (the consultation alone) when the doctor has not opened a visit; made
    once however often it is pressed. Then the draft's page (or the issued invoice).
    """
    # Locked so that two presses at once make one draft, not a second that fails.
    appointment = records.by_id(session, Appointment, appointment_id, lock=True)
    visit = _visit_of(session, appointment)
    if visit is not None:
        return _prepare_visit(request, session, ctx, appointment, visit)
    billed = _billed(session, appointment.id)
    if billed is not None:
        return redirect(request, _invoice_url(billed))
    draft = invoices.draft_for_appointment(session, appointment.id)
    if draft is not None:
        return redirect(request, _editor_url(draft))
    return attempt(
        request,
        session,
        lambda: invoices.charge_booking(session, ctx, appointment),
        done=lambda made: redirect(request, _editor_url(made)),
        failed=f"/billing/appointments/{appointment.id}/checkout",
    )


def _visit_checkout_url(visit_id: uuid.UUID) -> str:
    return f"/billing/visits/{visit_id}/checkout"


def _visit_of(session: Session, appointment: Appointment) -> Visit | None:
    return session.scalar(select(Visit).where(Visit.appointment_id == appointment.id))


def _billed_on(request: Request, billed: Invoice) -> Response:
    return flash(
        request,
        _invoice_url(billed),
        f"This visit is billed on invoice {billed.number}.",
        "info",
    )


def _prepare_visit(
    request: Request,
    session: Session,
    ctx: RequestContext,
    appointment: Appointment,
    visit: Visit,
) -> Response:
    """The visit's draft made or brought up to date (the caller holds the appointment's
    lock, so two at once make one draft), then its checkout page.
    """
    billed = invoices.billed_on(session, visit)
    if billed is not None:
        return _billed_on(request, billed)
    page = _visit_checkout_url(visit.id)
    return attempt(
        request,
        session,
        lambda: invoices.draft_from_visit(session, ctx, visit_id=visit.id),
        done=lambda _draft: redirect(request, page),
        failed=page,
    )


def _prepare_page(
    request: Request,
    session: Session,
    who: Principal,
    appointment: Appointment,
    *,
    visit: Visit | None = None,
) -> Response:
    """The one button that prepares the bill, with what it will put on it. Writes nothing."""
    built = (
        invoices.visit_lines(session, visit)
        if visit is not None
        else [invoices.consult_line(session, appointment)]
    )
    draft = invoices.draft_for_appointment(session, appointment.id)
    action = (
        _visit_checkout_url(visit.id)
        if visit is not None
        else f"/billing/appointments/{appointment.id}/checkout"
    )
    return page(
        request,
        "billing/prepare.html",
        patient=_patient(session, appointment.patient_id),
        visit=visit,
        draft=draft,
        action=action,
        back=("/queue", "Back to the queue")
        if allowed(who.role, "appointments:read")
        else ("/billing/invoices", "Back to the invoices"),
        preview=[(line, money.paise(line.quantity * line.unit_price)) for line in built],
    )


@router.get("/billing/invoices/{invoice_id}/edit")
def edit_page(request: Request, _: Writer, invoice: InvoiceInPath, session: DbSession) -> Response:
    """A draft's lines, discounts and Issue; an issued invoice opens as it is."""
    if invoice.status != InvoiceStatus.DRAFT:
        return redirect(request, _invoice_url(invoice))
    if invoice.visit_id is not None:
        return redirect(request, _editor_url(invoice))
    return _editor(request, session, invoice)


def _editor(
    request: Request,
    session: Session,
    invoice: Invoice,
    *,
    visit: Visit | None = None,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    refusal: str | None = None,
) -> Response:
    if visit is None and invoice.visit_id is not None:
        visit = records.by_id(session, Visit, invoice.visit_id)
    built = invoices.visit_lines(session, visit) if visit is not None else []
    lines = [
        {**item, "index": i, "by_hand": not (visit is not None and _from_visit(built, item))}
        for i, item in enumerate(invoice.line_items)
    ]
    discounts = {
        f"discount.{i}": _plain(item.get("discountAmount"))
        for i, item in enumerate(invoice.line_items)
    }
    shown = {
        "quantity": "1",
        "taxRate": "0",
        "type": "service",
        "discountReason": invoice.discount_reason or "",
        **discounts,
        **(values or {}),
    }
    return page(
        request,
        "billing/checkout.html",
        status_code,
        invoice=invoice,
        patient=_patient(session, invoice.patient_id),
        visit=visit,
        lines=lines,
        errors=errors or {},
        values=shown,
        refusal=refusal,
        hand_types=HAND_TYPES,
        gst_rates=[f"{r.normalize():f}" for r in sorted(money.GST_RATES)],
    )


def _plain(value: Any) -> str:
    amount = Decimal(str(value or "0"))
    return "" if amount == 0 else f"{amount:f}"


def _lines_of(invoice: Invoice) -> list[money.LineIn]:
    return [money.line_from_json(item) for item in invoice.line_items]


def _revise(
    session: Session,
    ctx: RequestContext,
    invoice: Invoice,
    lines: list[money.LineIn],
    *,
    discount_reason: str | None = None,
) -> Invoice:
    return invoices.revise_draft(
        session,
        ctx,
        invoice,
        lines=lines,
        discount_reason=invoice.discount_reason if discount_reason is None else discount_reason,
        place_of_supply=invoice.place_of_supply,
    )


def _refused_editor(
    request: Request,
    session: Session,
    invoice: Invoice,
    form: dict[str, str],
    rename: Callable[[str], str] = str,
) -> Callable[[DomainError], Response]:
    def refused(error: DomainError) -> Response:
        session.refresh(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            return flash(request, _invoice_url(invoice), str(error), "error")
        values = {k: v for k, v in form.items() if k != "csrf_token"}
        return _editor(
            request,
            session,
            invoice,
            status_code=error.status,
            errors=field_errors(error, rename),
            values=values,
            refusal=None if isinstance(error, InvalidInput) else str(error),
        )

    return refused


@router.post("/billing/invoices/{invoice_id}/lines")
def add_line(
    request: Request,
    _: Writer,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    """Add a line by hand (a dressing, a medicine sold at the desk)."""
    prefix = f"lineItems[{len(invoice.line_items)}]."

    def act() -> Invoice:
        kind = form.get("type", "service")
        if kind not in HAND_TYPES:
            raise InvalidInput([FieldError("type", "choose one of the options")])
        spec = money.LineIn(
            type=kind,
            description=form.get("description", "").strip(),
            quantity=parse_amount(form.get("quantity", ""), "quantity", blank=Decimal(1)),
            unit_price=parse_amount(form.get("unitPrice", ""), "unitPrice"),
            tax_rate=parse_amount(form.get("taxRate", ""), "taxRate", blank=Decimal(0)),
            sac_hsn=form.get("sacHsn", "").strip() or None,
        )
        return _revise(session, ctx, invoice, [*_lines_of(invoice), spec])

    return attempt(
        request,
        session,
        act,
        done=lambda saved: flash(request, _editor_url(saved), "Line added."),
        failed=_refused_editor(
            request, session, invoice, form, lambda field: field.removeprefix(prefix)
        ),
    )


@router.post("/billing/invoices/{invoice_id}/lines/remove")
def remove_line(
    request: Request,
    _: Writer,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    """Take off a line added by hand (the visit's own lines come from the visit)."""

    def act() -> Invoice:
        try:
            index = int(form.get("line", ""))
            item = invoice.line_items[index]
        except (ValueError, IndexError):
            raise InvalidInput([FieldError("line", "choose a line of this invoice")]) from None
        if invoice.visit_id is not None:
            visit = records.by_id(session, Visit, invoice.visit_id)
            if _from_visit(invoices.visit_lines(session, visit), item):
                raise Conflict(
                    "this line comes from the visit; the doctor changes the visit's services"
                )
        kept = [spec for i, spec in enumerate(_lines_of(invoice)) if i != index]
        return _revise(session, ctx, invoice, kept)

    return attempt(
        request,
        session,
        act,
        done=lambda saved: flash(request, _editor_url(saved), "Line removed."),
        failed=_refused_editor(request, session, invoice, form),
    )


@router.post("/billing/invoices/{invoice_id}/discounts")
def save_discounts(
    request: Request,
    _: Writer,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    """Each line's discount in rupees, and the reason (needed when any is given)."""

    def act() -> Invoice:
        lines = []
        for i, spec in enumerate(_lines_of(invoice)):
            off = parse_amount(form.get(f"discount.{i}", ""), f"discount.{i}", blank=money.ZERO)
            lines.append(replace(spec, discount_amount=off))
        reason = form.get("discountReason", "").strip()
        return _revise(session, ctx, invoice, lines, discount_reason=reason)

    def rename(field: str) -> str:
        if field.startswith("lineItems[") and field.endswith("].discountAmount"):
            return "discount." + field[len("lineItems[") : -len("].discountAmount")]
        return field

    return attempt(
        request,
        session,
        act,
        done=lambda saved: flash(request, _editor_url(saved), "Discounts saved."),
        failed=_refused_editor(request, session, invoice, form, rename),
    )


@router.post("/billing/invoices/{invoice_id}/issue")
def issue_invoice(
    request: Request, _: Writer, invoice: InvoiceInPath, session: DbSession, ctx: Ctx
) -> Response:
    """Number the draft and charge the patient; it cannot change after this."""
    return attempt(
        request,
        session,
        lambda: invoices.issue(session, ctx, invoice),
        done=lambda issued: flash(
            request,
            _invoice_url(issued),
            f"Invoice {issued.number} issued for {inr(issued.grand_total)}.",
        ),
        failed=_refused_editor(request, session, invoice, {}),
    )


@router.post("/billing/invoices/{invoice_id}/discard")
def discard_invoice(
    request: Request, _: Writer, invoice: InvoiceInPath, session: DbSession, ctx: Ctx
) -> Response:
    """Throw the draft away (nothing was charged; it had no number)."""
    return attempt(
        request,
        session,
        lambda: invoices.discard(session, ctx, invoice),
        done="/billing/invoices",
        message="Draft discarded.",
        failed=_invoice_url(invoice),
    )


# --------------------------------------------------------------------------- the invoice


def _payments(session: Session, invoice: Invoice) -> list[tuple[Payment, list[Any]]]:
    return [
        (p, payments.refunds_of(session, p.id)) for p in queries.payments_of(session, invoice.id)
    ]


def _upi_qr(session: Session, cipher: Any, invoice: Invoice) -> dict[str, Any]:
    """The QR for the exact balance, or why there is none."""
    settings = billing_settings.of(session, cipher, invoice.tenant_id)
    if not settings.upi_vpa or not settings.upi_payee_name or invoice.balance_due <= 0:
        return {"missing": True}
    uri = upi.upi_uri(
        payee_vpa=settings.upi_vpa,
        payee_name=settings.upi_payee_name,
        amount=invoice.balance_due,
        note=f"Invoice {invoice.number}"[: upi.NOTE_MAX],
        reference=upi.upi_reference(invoice.number or str(invoice.id)),
    )
    title = f"UPI QR code for {inr(invoice.balance_due)} to {settings.upi_payee_name}"
    return {
        "missing": False,
        "svg": upi.upi_qr_svg(uri, title=title),
        "vpa": settings.upi_vpa,
        "payee": settings.upi_payee_name,
    }


def _invoice_page(
    request: Request,
    session: Session,
    cipher: Any,
    who: Principal,
    invoice: Invoice,
    *,
    method: str = "cash",
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    refusal: str | None = None,
) -> Response:
    method = method if method in TABS else "cash"
    may_collect = allowed(who.role, "payments:collect")
    due = invoice.status in payments.OPEN and invoice.balance_due > 0
    return page(
        request,
        "billing/invoice.html",
        status_code,
        invoice=invoice,
        patient=_patient(session, invoice.patient_id),
        taken=_payments(session, invoice),
        refundable=payments.refundable,
        may_collect=may_collect and due,
        may_refund=allowed(who.role, "payments:refund"),
        may_write=allowed(who.role, "invoices:write"),
        may_manage=allowed(who.role, "clinic:manage"),
        method=method,
        tabs=TABS,
        qr=_upi_qr(session, cipher, invoice) if may_collect and due and method == "upi" else None,
        split_rows=range(SPLIT_ROWS),
        errors=errors or {},
        values={"amount": f"{invoice.balance_due:f}", **(values or {})},
        refusal=refusal,
        zone=who.timezone,
    )


@router.get("/billing/invoices/{invoice_id}")
def invoice_page(
    request: Request,
    who: Reader,
    invoice: InvoiceInPath,
    session: DbSession,
    cipher: Cipher,
    method: str = "cash",
) -> Response:
    """The invoice, what was paid and given back, and (for the desk) taking payment."""
    return _invoice_page(request, session, cipher, who, invoice, method=method)


def _parts(form: dict[str, str]) -> list[payments.Part]:
    """The posted payment as parts: one for cash, card or UPI; two or three for a split."""
    method = form.get("method", "cash")
    if method != "split":
        amount = parse_amount(form.get("amount", ""), "amount")
        return [payments.Part(method, amount, form.get("reference") or None)]
    parts: list[payments.Part] = []
    for i in range(SPLIT_ROWS):
        text = form.get(f"split[{i}].amount", "").strip()
        if not text:
            continue
        amount = parse_amount(text, f"split[{len(parts)}].amount")
        kind = form.get(f"split[{i}].method", "cash")
        parts.append(payments.Part(kind, amount, form.get(f"split[{i}].reference") or None))
    if len(parts) < 2:
        raise InvalidInput([FieldError("split", "fill in the amounts of at least two parts")])
    return parts


@router.post("/billing/invoices/{invoice_id}/payments")
def collect_payment(
    request: Request,
    who: Collector,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    form: PostedForm,
) -> Response:
    """Record money taken at the desk against the invoice."""
    method = form.get("method", "cash")
    # Rows left blank in a split are skipped: the service's part numbers are turned back
    # into the rows of the form, so each error sits under its own row.
    filled = [i for i in range(SPLIT_ROWS) if form.get(f"split[{i}].amount", "").strip()]

    def rename(field: str) -> str:
        if method == "split" and field.startswith("split["):
            number, _, rest = field[len("split[") :].partition("]")
            if ascii_digits(number) and int(number) < len(filled):
                return f"split[{filled[int(number)]}]{rest}"
        return field

    def refused(error: DomainError) -> Response:
        session.refresh(invoice)
        values = {k: v for k, v in form.items() if k != "csrf_token"}
        return _invoice_page(
            request,
            session,
            cipher,
            who,
            invoice,
            method=method,
            status_code=error.status,
            errors=field_errors(error, rename),
            values=values,
            refusal=None if isinstance(error, InvalidInput) else str(error),
        )

    def done(payment: Payment) -> Response:
        left = invoice.balance_due
        tail = f" {inr(left)} still due." if left > 0 else " Paid in full."
        return flash(request, _invoice_url(invoice), f"{inr(payment.amount)} received.{tail}")

    return attempt(
        request,
        session,
        lambda: payments.collect(session, ctx, invoice, parts=_parts(form)),
        done=done,
        failed=refused,
    )


# --------------------------------------------------------------------------- refunds


def _refund_page(
    request: Request,
    session: Session,
    payment: Payment,
    *,
    confirm: bool,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    refusal: str | None = None,
) -> Response:
    invoice = records.by_id(session, Invoice, payment.invoice_id)
    left = payments.refundable(payment)
    default_method = "cash" if payment.method in ("cash", "link") else payment.method
    shown = {"amount": f"{left:f}", "method": default_method, "reason": "", **(values or {})}
    return page(
        request,
        "billing/refund.html",
        status_code,
        payment=payment,
        invoice=invoice,
        patient=_patient(session, invoice.patient_id),
        left=left,
        confirm=confirm,
        errors=errors or {},
        values=shown,
        refusal=refusal,
        methods=("cash", "card", "upi"),
    )


@router.get("/billing/payments/{payment_id}/refund")
def refund_page(
    request: Request,
    _: Refunder,
    payment: PaymentInPath,
    session: DbSession,
    amount: str = "",
    reason: str = "",
    method: str = "",
    review: str = "",
) -> Response:
    """Say how much to give back and why, then confirm (naming the amount and patient)."""
    values = {k: v for k, v in (("amount", amount), ("reason", reason), ("method", method)) if v}
    if not review:
        return _refund_page(request, session, payment, confirm=False, values=values)
    errors: dict[str, str] = {}
    try:
        value = money.amount_of(parse_amount(amount, "amount"), "amount", positive=True)
        if value > payments.refundable(payment):
            errors["amount"] = (
                f"only {inr(payments.refundable(payment))} of this payment is left to refund"
            )
        values["amount"] = f"{value:f}"
    except InvalidInput as bad:
        errors.update({e.field: e.reason for e in bad.errors})
    if not reason.strip():
        errors["reason"] = "say why the money is given back"
    if method not in ("cash", "card", "upi"):
        errors["method"] = "choose how the money goes back"
    if errors:
        return _refund_page(
            request, session, payment, confirm=False, status_code=422, errors=errors, values=values
        )
    return _refund_page(request, session, payment, confirm=True, values=values)


@router.post("/billing/payments/{payment_id}/refunds")
def refund_payment(
    request: Request,
    _: Refunder,
    payment: PaymentInPath,
    session: DbSession,
    ctx: Ctx,
    form: PostedForm,
) -> Response:
    """Give the money back (after the confirmation); more than is left is refused."""
    values = {k: form.get(k, "") for k in ("amount", "reason", "method")}

    def act() -> Any:
        amount = parse_amount(values["amount"], "amount")
        return payments.refund(
            session, ctx, payment, amount=amount, reason=values["reason"], method=values["method"]
        )

    def refused(error: DomainError) -> Response:
        session.refresh(payment)
        return _refund_page(
            request,
            session,
            payment,
            confirm=False,
            status_code=error.status,
            errors=field_errors(error),
            values=values,
            refusal=None if isinstance(error, InvalidInput) else str(error),
        )

    def done(row: Any) -> Response:
        how = METHOD_LABELS.get(row.method, row.method).lower()
        return flash(
            request,
            f"/billing/invoices/{payment.invoice_id}",
            f"{inr(row.amount)} refunded ({how}).",
        )

    return attempt(request, session, act, done=done, failed=refused)


# --------------------------------------------------------------------------- accounts day


@router.get("/billing/day")
def day_page(
    request: Request,
    _: Accounts,
    session: DbSession,
    ctx: Ctx,
    chosen: Annotated[str, Query(alias="date")] = "",
) -> Response:
    """The day's money by method, the cash to hand over, and what is still owed."""
    zone = _zone(session, ctx)
    today = tenants.today_at_clinic(session, ctx)
    errors: dict[str, str] = {}
    try:
        day = date.fromisoformat(chosen[:20]) if chosen else today
    except ValueError:
        day, errors = today, {"date": "enter a date such as 2026-12-01"}
    owed = days.outstanding(session, today, zone)
    return page(
        request,
        "billing/day.html",
        422 if errors else 200,
        summary=days.day_summary(session, day, zone),
        day=day,
        today=today,
        owed=owed,
        owed_total=sum((o.invoice.balance_due for o in owed), money.ZERO),
        errors=errors,
        values={"date": chosen[:20] if errors else day.isoformat()},
    )


# --------------------------------------------------------------------------- ledger


@router.get("/billing/patients/{patient_id}/ledger")
def ledger_page(
    request: Request, who: Reader, patient: PatientInPath, session: DbSession
) -> Response:
    """The patient's account: every charge, payment and refund with the running balance."""
    rows = []
    running = money.ZERO
    for entry in ledger.entries(session, patient.id):
        running += entry.amount if entry.type == "debit" else -entry.amount
        rows.append((entry, running))
    numbers = {i.id: i.number for i in queries.invoices(session, patient_id=patient.id, limit=500)}
    return page(
        request,
        "billing/ledger.html",
        patient=patient,
        rows=rows,
        balance=ledger.balance(session, patient.id),
        numbers=numbers,
        kinds=LEDGER_LABELS,
        may_write=allowed(who.role, "invoices:write"),
        zone=who.timezone,
    )


# --------------------------------------------------------------------------- settings


def _settings_values(saved: billing_settings.Billing) -> dict[str, str]:
    return {
        "upiVpa": saved.upi_vpa or "",
        "upiPayeeName": saved.upi_payee_name or "",
        "razorpayKeyId": saved.razorpay.key_id if saved.razorpay else "",
        "prepayOnline": "on" if saved.prepay_online else "",
        "prepayMinutes": str(saved.prepay_minutes),
        "consultSac": saved.consult_sac,
    }


def _settings_page(
    request: Request,
    session: Session,
    cipher: Any,
    ctx: RequestContext,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    assert ctx.tenant_id is not None
    saved = billing_settings.of(session, cipher, ctx.tenant_id)
    return page(
        request,
        "billing/settings.html",
        status_code,
        saved=saved,
        errors=errors or {},
        values=values if values is not None else _settings_values(saved),
    )


@router.get(SETTINGS_PAGE)
def settings_page(
    request: Request, _: Manager, session: DbSession, ctx: Ctx, cipher: Cipher
) -> Response:
    """The clinic's UPI id, Razorpay account, prepayment and consultation SAC code."""
    return _settings_page(request, session, cipher, ctx)


def _from_form(form: dict[str, str], current: billing_settings.Billing) -> billing_settings.Billing:
    """The posted settings; a secret left blank keeps the one saved."""
    key_id = form.get("razorpayKeyId", "").strip()
    razorpay = None
    if key_id:
        kept = current.razorpay
        secret = form.get("razorpayKeySecret", "").strip() or (kept.key_secret if kept else "")
        hook = form.get("razorpayWebhookSecret", "").strip() or (
            kept.webhook_secret if kept else ""
        )
        missing = [
            FieldError(name, "is required the first time (it is kept once saved)")
            for name, value in (("razorpayKeySecret", secret), ("razorpayWebhookSecret", hook))
            if not value
        ]
        if missing:
            raise InvalidInput(missing)
        razorpay = billing_settings.Razorpay(key_id, secret, hook)
    minutes = form.get("prepayMinutes", "").strip()
    if not ascii_digits(minutes):
        raise InvalidInput([FieldError("prepayMinutes", "enter a whole number of minutes")])
    return billing_settings.Billing(
        upi_vpa=form.get("upiVpa", "").strip() or None,
        upi_payee_name=form.get("upiPayeeName", "").strip() or None,
        razorpay=razorpay,
        prepay_online=form.get("prepayOnline") == "on",
        prepay_minutes=int(minutes),
        consult_sac=form.get("consultSac", "").strip(),
    )


@router.post(SETTINGS_PAGE)
def save_settings(
    request: Request, _: Manager, session: DbSession, ctx: Ctx, cipher: Cipher, form: PostedForm
) -> Response:
    """Save the billing settings; a bad value shows by its field and nothing is saved."""
    assert ctx.tenant_id is not None
    tenant_id = ctx.tenant_id

    def refused(error: DomainError) -> Response:
        secrets = ("csrf_token", "razorpayKeySecret", "razorpayWebhookSecret")
        shown = {k: v for k, v in form.items() if k not in secrets}
        return _settings_page(
            request,
            session,
            cipher,
            ctx,
            status_code=error.status,
            errors=field_errors(error),
            values=shown,
        )

    return attempt(
        request,
        session,
        lambda: billing_settings.save(
            session, ctx, cipher, _from_form(form, billing_settings.of(session, cipher, tenant_id))
        ),
        done=lambda _saved: flash(request, SETTINGS_PAGE, "Billing settings saved."),
        failed=refused,
    )


# --------------------------------------------------------------------------- to check


@dataclass(frozen=True)
class KeptDelivery:
    """A Razorpay delivery kept for a person, as the list shows it."""

    row: GatewayEvent
    gateway_payment: str | None
    amount: Decimal | None
    invoice: Invoice | None


def _kept(session: Session, row: GatewayEvent) -> KeptDelivery:
    try:
        told = parse_event(json.dumps(row.payload).encode(), row.event_id)
        paid_id, amount = told.payment_id, told.amount
    except ValueError:
        paid_id, amount = None, None
    invoice = None
    if row.payment_id is not None:
        ours = session.get(Payment, (row.tenant_id, row.payment_id))
        invoice = session.get(Invoice, (row.tenant_id, ours.invoice_id)) if ours else None
    return KeptDelivery(row, paid_id, amount, invoice)


# Razorpay's event names in the words of the page.
EVENT_WORDS = {
    "payment.captured": "Payment received",
    "payment_link.paid": "Payment link paid",
    "payment.failed": "Payment failed",
    "payment_link.expired": "Payment link expired",
    "payment_link.cancelled": "Payment link cancelled",
    "refund.processed": "Refund made",
    "refund.failed": "Refund failed",
}


@router.get("/billing/gateway-events")
def kept_deliveries_page(request: Request, _: Refunder, session: DbSession) -> Response:
    """Money Razorpay reported that OPDesk could not apply on its own: a payment it does
    not know, or one that arrived on a link already given up (to be refunded by hand).
    """
    return page(
        request,
        "billing/gateway_events.html",
        kept=[_kept(session, row) for row in gateway.for_review(session)],
        event_words=EVENT_WORDS,
    )


@router.post("/billing/gateway-events/{gateway_event_id}/reviewed")
def mark_delivery_reviewed(
    request: Request,
    _: Refunder,
    delivery: GatewayEventInPath,
    session: DbSession,
    ctx: Ctx,
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    back = "/billing/gateway-events"
    return attempt(
        request,
        session,
        lambda: gateway.mark_reviewed(session, ctx, delivery.id, note),
        done=back,
        message="Marked as dealt with.",
        failed=back,
    )


# --------------------------------------------------------------------------- portal


def my_invoice(invoice_id: uuid.UUID, session: DbSession, family: MyFamily) -> Invoice:
    """An issued invoice of the signed-in patient's family, else 404."""
    found = records.by_id(session, Invoice, invoice_id)
    if found.patient_id not in family.patient_ids or found.status == InvoiceStatus.DRAFT:
        raise NotFound(f"no invoice with id {invoice_id}")
    return found


Mine = Annotated[Invoice, Depends(my_invoice)]


@router.get("/me/invoices")
def my_invoices_page(request: Request, _: Me, session: DbSession, family: MyFamily) -> Response:
    """The family's issued invoices, what each still asks for."""
    found = session.scalars(
        select(Invoice)
        .where(Invoice.patient_id.in_(family.ids), Invoice.status != InvoiceStatus.DRAFT)
        .order_by(Invoice.issued_at.desc(), Invoice.id.desc())
        .limit(200)
    ).all()
    people = days.patients_by_id(session, {i.patient_id for i in found})
    return page(
        request,
        "billing/my_invoices.html",
        rows=[(i, people.get(i.patient_id)) for i in found],
        due=sum((i.balance_due for i in found), money.ZERO),
        family_size=len(family.patient_ids),
    )


@router.get("/me/invoices/{invoice_id}")
def my_invoice_page(
    request: Request, who: Me, invoice: Mine, session: DbSession, ctx: Ctx
) -> Response:
    """One of the family's invoices with its lines and payments, and a way to pay what is
    due online when the clinic takes payment links. While a link is being made, the pay
    box asks for itself again (htmx) until the link is there.
    """
    pay_box: dict[str, Any] = {
        "online": billing_settings.takes_links(session, invoice.tenant_id),
        "link": gateway.live_link(session, ctx, invoice),
    }
    if request.headers.get("HX-Request") == "true":
        return page(request, "billing/_my_pay_box.html", invoice=invoice, **pay_box)
    return page(
        request,
        "billing/my_invoice.html",
        invoice=invoice,
        patient=_patient(session, invoice.patient_id),
        taken=_payments(session, invoice),
        zone=who.timezone,
        **pay_box,
    )


@router.post("/me/invoices/{invoice_id}/pay")
def pay_my_invoice(
    request: Request,
    _: Me,
    invoice: Mine,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    pay: PayAheadDep,
) -> Response:
    """A payment link for what is due (the one already open, if there is one)."""
    back = f"/me/invoices/{invoice.id}"

    def open_one() -> None:
        if gateway.live_link(session, ctx, invoice) is None:
            pay.balance(session, ctx, cipher, invoice)

    return attempt(
        request,
        session,
        open_one,
        done=back,
        message="Getting your payment link ready…",
        failed=back,
    )
