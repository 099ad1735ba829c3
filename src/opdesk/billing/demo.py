"""The demo clinic's bills: the signed consultations checked out, and invoices in every
state (draft, issued, partly paid, paid, refunded) paid in every way (cash, card, UPI,
split, a payment link). Run after the clinical demo; a clinic that already has issued
invoices is left as it is.

The payment link's Razorpay account is a made-up test account (its secrets generated here
at the first run); its payment is recorded through the webhook handler with an event
written by the demo, as Razorpay would send it.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opdesk.billing import gateway, invoices, money, payments
from opdesk.billing import settings as billing_settings
from opdesk.billing.models import Invoice, InvoiceStatus
from opdesk.billing.razorpay_client import GatewayEvent, PaymentLink
from opdesk.clinical.models import Visit, VisitStatus
from opdesk.context import RequestContext
from opdesk.identity.models import User
from opdesk.patients.models import Patient
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant

DESK_ROLE, ACCOUNTS_ROLE = "frontdesk", "accounts"
# What each checked-out visit shows, in turn: how it was paid.
PLAN = ("cash", "upi", "card", "split", "partial", "refunded", "link-paid", "link-pending")


def _acting(ctx: RequestContext, session: Session, tenant: Tenant, role: str) -> RequestContext:
    lived = ctx.for_tenant(tenant.id)
    lived.actor_id = session.scalar(
        select(User.id).where(User.role == role).order_by(User.created_at).limit(1)
    )
    lived.role = role
    lived.pending_audit = ctx.pending_audit  # one transaction, one trail
    return lived


def _utr(n: int) -> str:
    return f"6{secrets.randbelow(10**10):010d}{n % 10}"


def _ensure_settings(
    session: Session, ctx: RequestContext, cipher: FieldCipher, tenant: Tenant
) -> None:
    current = billing_settings.of(session, cipher, tenant.id)
    if current.upi_vpa and current.razorpay:
        return
    billing_settings.save(
        session,
        ctx,
        cipher,
        billing_settings.Billing(
            upi_vpa="sunrise.clinic@okaxis",
            upi_payee_name=tenant.name,
            razorpay=billing_settings.Razorpay(
                key_id="rzp_test_" + secrets.token_hex(7),
                key_secret=secrets.token_urlsafe(18),
                webhook_secret=secrets.token_urlsafe(18),
            ),
        ),
    )


def refresh_demo_billing(
    session: Session, ctx: RequestContext, cipher: FieldCipher, tenant: Tenant
) -> int:
    """Check out the demo's signed visits in every way of paying; returns invoices issued."""
    issued_before = session.scalar(
        select(func.count()).select_from(Invoice).where(Invoice.status != InvoiceStatus.DRAFT)
    )
    if issued_before:
        return 0
    desk = _acting(ctx, session, tenant, DESK_ROLE)
    accounts = _acting(ctx, session, tenant, ACCOUNTS_ROLE)
    _ensure_settings(session, accounts, cipher, tenant)
    visits = session.scalars(
        select(Visit).where(Visit.status == VisitStatus.SIGNED).order_by(Visit.created_at)
    ).all()
    made = 0
    for n, visit in enumerate(visits[: len(PLAN)]):
        invoice = invoices.draft_from_visit(session, desk, visit_id=visit.id)
        if n == 1:  # a medicine sold at the desk, taxed, with a senior citizen's discount
            lines = [money.line_from_json(item) for item in invoice.line_items]
            lines.append(
                money.LineIn(
                    type="med",
                    description="Digital thermometer",
                    quantity=Decimal(1),
                    unit_price=Decimal("250.00"),
                    tax_rate=Decimal(18),
                    discount_amount=Decimal("25.00"),
                    sac_hsn="9025",
                )
            )
            invoices.revise_draft(
                session,
                desk,
                invoice,
                lines=lines,
                discount_reason="senior citizen",
                place_of_supply=invoice.place_of_supply,
            )
        invoices.issue(session, desk, invoice)
        made += 1
        _settle(session, desk, accounts, cipher, invoice, PLAN[n], n)
    made += _by_hand(session, desk)
    return made


def _settle(
    session: Session,
    desk: RequestContext,
    accounts: RequestContext,
    cipher: FieldCipher,
    invoice: Invoice,
    how: str,
    n: int,
) -> None:
    due = invoice.balance_due
    if due == 0:
        return
    if how in ("cash", "card", "upi"):
        reference = {"cash": None, "card": f"APPR{4000 + n}", "upi": _utr(n)}[how]
        payments.collect(session, desk, invoice, parts=[payments.Part(how, due, reference)])
    elif how == "split":
        cash = money.paise(due / 3)
        parts = [payments.Part("cash", cash), payments.Part("upi", due - cash, _utr(n))]
        payments.collect(session, desk, invoice, parts=parts)
    elif how == "partial":
        payments.collect(
            session, desk, invoice, parts=[payments.Part("cash", money.paise(due / 2))]
        )
    elif how == "refunded":
        paid = payments.collect(session, desk, invoice, parts=[payments.Part("cash", due)])
        payments.refund(
            session, accounts, paid, amount=due, reason="doctor called away; visit not charged"
        )
    elif how.startswith("link"):
        request = gateway.open_link(session, desk, cipher, invoice)
        link_id = "plink_demo" + secrets.token_hex(5)
        gateway.record_link(
            session,
            desk,
            request.payment_id,
            PaymentLink(
                link_id,
                f"https://rzp.io/i/demo{n}",
                "created",
                request.amount,
                gateway.reference(request.payment_id),
            ),
        )
        if how == "link-paid":
            _demo_webhook(session, accounts, request, link_id)


def _demo_webhook(
    session: Session, ctx: RequestContext, request: gateway.LinkRequest, link_id: str
) -> None:
    payment_id = "pay_demo" + secrets.token_hex(5)
    event = GatewayEvent(
        event_id="evt_demo" + secrets.token_hex(8),
        kind="payment_link.paid",
        payment_id=payment_id,
        order_id="order_demo" + secrets.token_hex(5),
        link_id=link_id,
        refund_id=None,
        reference_id=gateway.reference(request.payment_id),
        amount=request.amount,
        method="upi",
        error=None,
        raw={"event": "payment_link.paid", "demo": True, "payment": payment_id},
    )
    gateway.receive(session, ctx, event)


def _by_hand(session: Session, desk: RequestContext) -> int:
    """A dressing billed by hand and left issued, unpaid (an outstanding balance), and a
    draft not yet issued.
    """
    patients = session.scalars(select(Patient).order_by(Patient.number).limit(2)).all()
    if len(patients) < 2:
        return 0
    dressing = money.LineIn(
        type="service",
        description="Wound dressing",
        quantity=Decimal(1),
        unit_price=Decimal("300.00"),
        sac_hsn="999312",
    )
    outstanding = invoices.create_draft(session, desk, patient_id=patients[0].id, lines=[dressing])
    invoices.issue(session, desk, outstanding)
    invoices.create_draft(
        session,
        desk,
        patient_id=patients[1].id,
        lines=[replace(dressing, description="Nebulisation", unit_price=Decimal("200.00"))],
    )
    return 1
