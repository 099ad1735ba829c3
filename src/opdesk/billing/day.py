"""What billing's pages read that the API does not: one day's money at the desk (taken
in, by method; given back, by method; the cash to hand over) and the balances still
owed, oldest first.

The clinic's time zone decides the day: a payment at 23:50 IST belongs to that day,
not to the UTC date it was stored under.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from opdesk.billing.ledger import MONEY_IN
from opdesk.billing.models import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentRefund,
    RefundStatus,
)
from opdesk.patients.models import Patient

ZERO = Decimal("0.00")
# The order methods are shown in: the desk's three, then the payment link.
METHOD_ORDER = ("cash", "card", "upi", "link", "gateway")


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The first moment of ``day`` at the clinic and the first of the next day."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


@dataclass
class ByMethod:
    """Amounts by method, and how many payments (or refunds) each counts."""

    amounts: dict[str, Decimal] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, method: str, amount: Decimal) -> None:
        self.amounts[method] = self.amounts.get(method, ZERO) + amount
        self.counts[method] = self.counts.get(method, 0) + 1

    def of(self, method: str) -> Decimal:
        return self.amounts.get(method, ZERO)

    @property
    def total(self) -> Decimal:
        return sum(self.amounts.values(), ZERO)

    def rows(self) -> list[tuple[str, Decimal, int]]:
        """``(method, amount, count)`` in the usual order of methods."""
        known = [m for m in METHOD_ORDER if m in self.amounts]
        others = sorted(m for m in self.amounts if m not in METHOD_ORDER)
        return [(m, self.amounts[m], self.counts[m]) for m in [*known, *others]]


def parts_of(payment: Payment) -> Iterable[tuple[str, Decimal]]:
    """A payment's money by method: a split payment by its parts' methods."""
    if payment.split:
        for part in payment.split:
            yield str(part["method"]), Decimal(str(part["amount"]))
    else:
        yield payment.method, payment.amount


@dataclass(frozen=True)
class Day:
    day: date
    collected: ByMethod
    refunded: ByMethod

    @property
    def cash_in(self) -> Decimal:
        return self.collected.of("cash")

    @property
    def cash_out(self) -> Decimal:
        return self.refunded.of("cash")

    @property
    def cash_to_hand_over(self) -> Decimal:
        return self.cash_in - self.cash_out


def day_summary(session: Session, day: date, zone: ZoneInfo) -> Day:
    """The money of one clinic day: received (money that came in that day, whatever
    happened to it later) and given back, each by method.
    """
    start, end = day_bounds(day, zone)
    collected = ByMethod()
    for payment in session.scalars(
        select(Payment).where(
            Payment.status.in_(MONEY_IN),
            Payment.captured_at >= start,
            Payment.captured_at < end,
        )
    ):
        for method, amount in parts_of(payment):
            collected.add(method, amount)
    refunded = ByMethod()
    for refund in session.scalars(
        select(PaymentRefund).where(
            PaymentRefund.status == RefundStatus.PROCESSED,
            PaymentRefund.processed_at >= start,
            PaymentRefund.processed_at < end,
        )
    ):
        refunded.add(refund.method, refund.amount)
    return Day(day, collected, refunded)


@dataclass(frozen=True)
class Outstanding:
    invoice: Invoice
    patient: Patient
    age_days: int


def outstanding(
    session: Session, today: date, zone: ZoneInfo, limit: int = 200
) -> list[Outstanding]:
    """Issued and partly paid invoices with a balance still due, the oldest first."""
    rows = session.execute(
        select(Invoice, Patient)
        .join(
            Patient,
            (Patient.tenant_id == Invoice.tenant_id) & (Patient.id == Invoice.patient_id),
        )
        .where(
            Invoice.status.in_((InvoiceStatus.ISSUED, InvoiceStatus.PARTIAL)),
            Invoice.balance_due > 0,
        )
        .order_by(Invoice.issued_at, Invoice.id)
        .limit(limit)
    ).all()
    found = []
    for invoice, patient in rows:
        issued_on = invoice.issued_at.astimezone(zone).date() if invoice.issued_at else today
        found.append(Outstanding(invoice, patient, max((today - issued_on).days, 0)))
    return found


def patients_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Patient]:
    """The patients of a list of invoices, in one query."""
    wanted = set(ids)
    if not wanted:
        return {}
    return {p.id: p for p in session.scalars(select(Patient).where(Patient.id.in_(wanted)))}
