"""Billing's REST API: invoices (drafts, checkout from a visit, issue), payments taken at
the desk, refunds, and a patient's ledger.

Taking a payment and refunding accept an ``Idempotency-Key``: a retry with the same key
gets the first answer and moves no money twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from opdesk import idempotency, records
from opdesk.billing import (
    documents,
    gateway,
    invoices,
    ledger,
    outside,
    payments,
    queries,
    reminders,
)
from opdesk.billing.deps import DatabaseDep, GatewaysDep, InvoiceInPath, PaymentInPath, RawBody
from opdesk.billing.models import InvoiceStatus, Payment, PaymentRefund
from opdesk.billing.schemas import (
    DraftFields,
    InvoiceIn,
    InvoiceOut,
    LedgerEntryOut,
    LedgerOut,
    LinkIn,
    PaymentIn,
    PaymentOut,
    RefundIn,
    RefundOut,
    SentOut,
    WebhookOut,
)
from opdesk.context import RequestContext
from opdesk.errors import FieldError, InvalidInput
from opdesk.identity.sessions import Principal
from opdesk.patients.models import Patient
from opdesk.scheduling.deps import IdempotencyKey, clinic_in_path
from opdesk.schemas import PROBLEM_RESPONSES
from opdesk.security.permissions import PUBLIC
from opdesk.tenancy.models import Tenant
from opdesk.web.deps import AppSettings, Cipher, Ctx, DbSession, acting, answer

router = APIRouter(tags=["billing"], responses=PROBLEM_RESPONSES)

Reader = Annotated[Principal, acting("invoices:read")]
Writer = Annotated[Principal, acting("invoices:write")]
Collector = Annotated[Principal, acting("payments:collect")]
Refunder = Annotated[Principal, acting("payments:refund")]
Anyone = Annotated[Principal | None, acting(PUBLIC)]


@router.post("/invoices", response_model=InvoiceOut, status_code=201)
def create_invoice(
    _: Writer,
    body: InvoiceIn,
    session: DbSession,
    ctx: Ctx,
) -> Any:
    """A draft invoice made by hand; it takes a number when issued."""
    return InvoiceOut.of(
        invoices.create_draft(
            session,
            ctx,
            patient_id=body.patient_id,
            lines=body.specs(),
            discount_reason=body.discount_reason,
            place_of_supply=body.place_of_supply,
        )
    )


@router.post("/visits/{visit_id}/invoice", response_model=InvoiceOut, status_code=201)
def checkout_visit(
    _: Writer,
    visit_id: uuid.UUID,
    session: DbSession,
    ctx: Ctx,
) -> Any:
    """The visit's checkout draft: the booking's charge brought up to date with the
    services and priced tests of the visit (lines added by hand are kept).
    """
    return InvoiceOut.of(invoices.draft_from_visit(session, ctx, visit_id=visit_id))


@router.get("/invoices", response_model=list[InvoiceOut])
def list_invoices(
    _: Reader,
    session: DbSession,
    patient_id: Annotated[uuid.UUID | None, Query(alias="patientId")] = None,
    status: InvoiceStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    if patient_id is not None:
        records.by_id(session, Patient, patient_id)
    found = queries.invoices(session, patient_id=patient_id, status=status, limit=limit)
    return [InvoiceOut.of(i) for i in found]


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(
    _: Reader,
    invoice: InvoiceInPath,
) -> Any:
    return InvoiceOut.of(invoice)


@router.put("/invoices/{invoice_id}", response_model=InvoiceOut)
def revise_invoice(
    _: Writer,
    invoice: InvoiceInPath,
    body: DraftFields,
    session: DbSession,
    ctx: Ctx,
) -> Any:
    """Replace a draft's lines (409 once it is issued: refund it or make a new one)."""
    return InvoiceOut.of(
        invoices.revise_draft(
            session,
            ctx,
            invoice,
            lines=body.specs(),
            discount_reason=body.discount_reason,
            place_of_supply=body.place_of_supply,
        )
    )


@router.delete("/invoices/{invoice_id}", status_code=204)
def discard_invoice(
    _: Writer,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """Throw a draft away (409 once it is issued)."""
    invoices.discard(session, ctx, invoice)
    return Response(status_code=204)


@router.post("/invoices/{invoice_id}/issue", response_model=InvoiceOut)
def issue_invoice(
    _: Writer,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
) -> Any:
    """Give the draft the next number of the financial year and charge the patient."""
    return InvoiceOut.of(invoices.issue(session, ctx, invoice))


@router.post("/invoices/{invoice_id}/send", response_model=SentOut, status_code=202)
def send_invoice(
    _: Writer,
    invoice: InvoiceInPath,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
) -> Any:
    """Message the patient their bill with a link to it (WhatsApp or SMS, as they prefer;
    once per invoice). 409 for a draft, or a patient who cannot be messaged.
    """
    return SentOut(channel=reminders.send_invoice(session, ctx, cipher, invoice))


def _once(
    session: Session,
    ctx: RequestContext,
    who: Principal,
    key: str | None,
    operation: str,
    body: BaseModel,
    act: Callable[[], BaseModel],
    status_code: int,
) -> Any:
    """Run a money-moving ``act`` once per Idempotency-Key of this caller."""
    return answer(
        idempotency.run_once(
            session,
            ctx,
            actor_key=str(who.user_id),
            key=key,
            operation=operation,
            body=body.model_dump(mode="json"),
            act=act,
            status_code=status_code,
        )
    )


def _parts(body: PaymentIn) -> list[payments.Part]:
    if body.split is not None:
        if body.method is not None or body.amount is not None:
            raise InvalidInput([FieldError("split", "give either split or method and amount")])
        return [payments.Part(p.method, p.amount, p.reference) for p in body.split]
    if body.method is None or body.amount is None:
        raise InvalidInput(
            [
                FieldError(name, "is required (or give split)")
                for name, value in (("method", body.method), ("amount", body.amount))
                if value is None
            ]
        )
    return [payments.Part(body.method, body.amount, body.reference)]


@router.post("/invoices/{invoice_id}/payments", response_model=PaymentOut, status_code=201)
def collect_payment(
    who: Collector,
    invoice: InvoiceInPath,
    body: PaymentIn,
    session: DbSession,
    ctx: Ctx,
    key: IdempotencyKey = None,
) -> Any:
    """Record money taken at the desk: cash, card (the terminal's approval code) or UPI
    (the transfer's 12-digit UTR), or a split across them. Never more than the balance
    due (422); a paid invoice answers 409.
    """
    return _once(
        session,
        ctx,
        who,
        key,
        f"collect:{invoice.id}",
        body,
        lambda: PaymentOut.of(payments.collect(session, ctx, invoice, parts=_parts(body))),
        201,
    )


@router.get("/invoices/{invoice_id}/payments", response_model=list[PaymentOut])
def list_payments(
    _: Reader,
    invoice: InvoiceInPath,
    session: DbSession,
) -> Any:
    return [PaymentOut.of(p) for p in queries.payments_of(session, invoice.id)]


@router.get("/payments/{payment_id}", response_model=PaymentOut)
def get_payment(
    _: Reader,
    payment: PaymentInPath,
) -> Any:
    return PaymentOut.of(payment)


@router.post("/payments/{payment_id}/refunds", response_model=RefundOut, status_code=201)
def refund_payment(
    who: Refunder,
    payment: PaymentInPath,
    body: RefundIn,
    session: DbSession,
    ctx: Ctx,
    key: IdempotencyKey = None,
) -> Any:
    """Give back (part of) a payment; more than is left of it is 409."""
    return _once(
        session,
        ctx,
        who,
        key,
        f"refund:{payment.id}",
        body,
        lambda: RefundOut.of(
            payments.refund(
                session,
                ctx,
                payment,
                amount=body.amount,
                reason=body.reason,
                method=body.method,
            )
        ),
        201,
    )


@router.get("/payments/{payment_id}/refunds", response_model=list[RefundOut])
def list_refunds(
    _: Reader,
    payment: PaymentInPath,
    session: DbSession,
) -> Any:
    return [RefundOut.of(r) for r in payments.refunds_of(session, payment.id)]


@router.get("/patients/{patient_id}/ledger", response_model=LedgerOut)
def patient_ledger(
    _: Reader,
    patient_id: uuid.UUID,
    session: DbSession,
) -> Any:
    """Every charge, payment, refund and credit note of the patient, and the balance
    (what they owe; negative: what the clinic owes them).
    """
    records.by_id(session, Patient, patient_id)
    rows = ledger.entries(session, patient_id)
    return LedgerOut(
        patient_id=patient_id,
        balance=ledger.balance(session, patient_id),
        entries=[LedgerEntryOut.of(r) for r in rows],
    )


# --------------------------------------------------------------------------- the gateway


@router.post("/invoices/{invoice_id}/payment-link", response_model=PaymentOut, status_code=202)
def send_payment_link(
    _: Collector,
    invoice: InvoiceInPath,
    body: LinkIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    gateways: GatewaysDep,
    db: DatabaseDep,
    tasks: BackgroundTasks,
) -> Any:
    """A Razorpay payment link for the balance due (or ``amount``). The answer is the
    pending payment at once (202); the link's address (``linkUrl``) is on the payment a
    moment later, or the payment is ``failed`` with the reason if Razorpay refused. The
    webhook captures it when the patient pays.
    """
    request = gateway.open_link(session, ctx, cipher, invoice, amount=body.amount)
    tasks.add_task(outside.make_link, db, outside.detached(ctx), cipher, gateways, request)
    return PaymentOut.of(records.by_id(session, Payment, request.payment_id))


@router.post("/payments/{payment_id}/gateway-refunds", response_model=RefundOut, status_code=202)
def refund_through_gateway(
    who: Refunder,
    payment: PaymentInPath,
    body: RefundIn,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    gateways: GatewaysDep,
    db: DatabaseDep,
    tasks: BackgroundTasks,
    key: IdempotencyKey = None,
) -> Any:
    """Refund (part of) a payment-link payment through Razorpay. The refund is ``pending``
    at once (202) and counted against what is left of the payment; it is ``processed``
    when Razorpay says so (its answer or its webhook), or ``failed`` with the reason.
    """

    def act() -> RefundOut:
        request = gateway.open_refund(session, ctx, payment, amount=body.amount, reason=body.reason)
        tasks.add_task(outside.make_refund, db, outside.detached(ctx), cipher, gateways, request)
        return RefundOut.of(records.by_id(session, PaymentRefund, request.refund_id))

    return _once(
        session,
        ctx,
        who,
        key,
        f"gateway-refund:{payment.id}",
        body,
        act,
        202,
    )


@router.post("/billing/webhooks/razorpay/{slug}", response_model=WebhookOut)
def razorpay_webhook(
    _: Anyone,
    raw: RawBody,
    session: DbSession,
    ctx: Ctx,
    cipher: Cipher,
    tenant: Annotated[Tenant, Depends(clinic_in_path)],
    signature: Annotated[str | None, Header(alias="X-Razorpay-Signature")] = None,
    event_id: Annotated[str | None, Header(alias="X-Razorpay-Event-Id")] = None,
) -> Any:
    """Razorpay's webhook for one clinic. The signature is checked over the raw body (400,
    nothing kept, when it does not match); each event id is applied once, however often
    and in whatever order it arrives; an event about an unknown payment is kept for review.
    """
    event = gateway.verified_event(session, cipher, tenant.id, raw, signature, event_id)
    outcome = gateway.receive(session, ctx, event)
    return WebhookOut(outcome=outcome.outcome)


# --------------------------------------------------------------------------- documents


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
    )


@router.get("/invoices/{invoice_id}/pdf", response_class=Response)
def invoice_pdf(
    _: Reader,
    invoice: InvoiceInPath,
    session: DbSession,
    settings: AppSettings,
) -> Response:
    """The issued invoice as a GST tax invoice (or bill of supply) PDF; a draft is 409."""
    data = documents.invoice_file(session, settings.data_dir / "fonts", invoice)
    return _pdf(data, (invoice.number or "invoice").replace("/", "-"))


@router.get("/payments/{payment_id}/receipt", response_class=Response)
def receipt_pdf(
    _: Reader,
    payment: PaymentInPath,
    session: DbSession,
    settings: AppSettings,
) -> Response:
    """The receipt of a payment received (409 for one pending or failed)."""
    data = documents.receipt_file(session, settings.data_dir / "fonts", payment)
    return _pdf(data, f"receipt-{payment.id.hex[:12]}")
