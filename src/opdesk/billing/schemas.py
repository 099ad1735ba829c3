"""The billing API's bodies (camelCase, as the seed names the fields). Amounts travel as
decimal strings ("500.00"); numbers are accepted too, never turned into floats.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from opdesk.billing import money
from opdesk.billing.models import LINE_TYPES, Invoice, LedgerEntry, Payment, PaymentRefund
from opdesk.schemas import ApiModel

# Finite (pydantic refuses NaN and infinities for Decimal), at most 12 digits with 2 after
# the point, as NUMERIC(12,2) holds; the services check the ranges and name the field.
Amount = Annotated[Decimal, Field(max_digits=12, decimal_places=2)]
Quantity = Annotated[Decimal, Field(max_digits=7, decimal_places=2)]
Rate = Annotated[Decimal, Field(max_digits=5, decimal_places=2)]
LineType = Literal["consult", "service", "lab", "med", "package"]
assert set(get_args(LineType)) == set(LINE_TYPES)


class LineIn(ApiModel):
    type: LineType
    description: Annotated[str, Field(min_length=1, max_length=300)]
    quantity: Quantity = Decimal(1)
    unit_price: Amount
    tax_rate: Rate = Decimal(0)
    discount_amount: Amount = Decimal(0)
    sac_hsn: Annotated[str | None, Field(pattern=r"^[0-9]{4,8}$")] = None
    ref_id: Annotated[str | None, Field(max_length=100)] = None

    def spec(self) -> money.LineIn:
        return money.LineIn(
            type=self.type,
            description=self.description,
            quantity=self.quantity,
            unit_price=self.unit_price,
            tax_rate=self.tax_rate,
            discount_amount=self.discount_amount,
            sac_hsn=self.sac_hsn,
            ref_id=self.ref_id,
        )


class DraftFields(ApiModel):
    line_items: Annotated[list[LineIn], Field(max_length=200)]
    discount_reason: Annotated[str | None, Field(max_length=300)] = None
    place_of_supply: Annotated[str | None, Field(max_length=60)] = None

    def specs(self) -> list[money.LineIn]:
        return [line.spec() for line in self.line_items]


class InvoiceIn(DraftFields):
    patient_id: uuid.UUID


class LineOut(ApiModel):
    type: str
    ref_id: str | None
    description: str
    sac_hsn: str | None
    quantity: Decimal
    unit_price: Decimal
    discount_amount: Decimal
    tax_rate: Decimal
    taxable: Decimal
    cgst: Decimal
    sgst: Decimal
    igst: Decimal
    tax_amount: Decimal
    total: Decimal


class InvoiceOut(ApiModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    visit_id: uuid.UUID | None
    appointment_id: uuid.UUID | None
    number: str | None
    status: str
    line_items: list[LineOut]
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    cgst_total: Decimal
    sgst_total: Decimal
    igst_total: Decimal
    grand_total: Decimal
    amount_paid: Decimal
    amount_refunded: Decimal
    amount_credited: Decimal
    balance_due: Decimal
    discount_reason: str | None
    place_of_supply: str | None
    inter_state: bool
    payments_applied: list[uuid.UUID]
    issued_at: datetime | None
    paid_at: datetime | None
    refunded_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceOut:
        data: dict[str, Any] = {
            name: getattr(invoice, name) for name in cls.model_fields if name != "line_items"
        }
        data["line_items"] = [
            LineOut.model_validate(item, by_alias=True) for item in invoice.line_items
        ]
        return cls.model_validate(data)


class PartIn(ApiModel):
    method: Literal["cash", "card", "upi"]
    amount: Amount
    reference: Annotated[str | None, Field(max_length=60)] = None


class PaymentIn(ApiModel):
    """One method (``method``, ``amount``, ``reference``) or a split across methods."""

    method: Literal["cash", "card", "upi"] | None = None
    amount: Amount | None = None
    reference: Annotated[str | None, Field(max_length=60)] = None
    split: Annotated[list[PartIn] | None, Field(min_length=2, max_length=4)] = None


class PaymentOut(ApiModel):
    id: uuid.UUID
    invoice_id: uuid.UUID
    patient_id: uuid.UUID
    method: str
    amount: Decimal
    currency: str
    status: str
    reference: str | None
    split: list[dict[str, Any]] | None
    gateway: dict[str, str | None]
    link_url: str | None
    amount_refunded: Decimal
    ledger_impact: list[uuid.UUID]
    failure_reason: str | None
    captured_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, payment: Payment) -> PaymentOut:
        gateway = {
            "provider": payment.gateway_provider,
            "orderId": payment.gateway_order_id,
            "paymentId": payment.gateway_payment_id,
            "refundId": payment.gateway_refund_id,
            "linkId": payment.gateway_link_id,
        }
        data = {n: getattr(payment, n) for n in cls.model_fields if n != "gateway"}
        return cls.model_validate({**data, "gateway": gateway})


class LinkIn(ApiModel):
    """A payment link for the balance due, or for ``amount`` of it."""

    amount: Amount | None = None


class SentOut(ApiModel):
    """How the message went out (``whatsapp``, ``sms``, ``email``)."""

    channel: str


class WebhookOut(ApiModel):
    outcome: str


class RefundIn(ApiModel):
    amount: Amount
    reason: Annotated[str, Field(min_length=1, max_length=300)]
    method: Literal["cash", "card", "upi"] | None = None


class RefundOut(ApiModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    invoice_id: uuid.UUID
    amount: Decimal
    status: str
    method: str
    reason: str
    gateway_refund_id: str | None
    created_at: datetime
    processed_at: datetime | None

    @classmethod
    def of(cls, row: PaymentRefund) -> RefundOut:
        return cls.model_validate(row)


class LedgerEntryOut(ApiModel):
    id: uuid.UUID
    invoice_id: uuid.UUID | None
    payment_id: uuid.UUID | None
    refund_id: uuid.UUID | None
    type: str
    kind: str
    amount: Decimal
    currency: str
    description: str
    created_at: datetime

    @classmethod
    def of(cls, row: LedgerEntry) -> LedgerEntryOut:
        return cls.model_validate(row)


class LedgerOut(ApiModel):
    patient_id: uuid.UUID
    balance: Decimal
    entries: list[LedgerEntryOut]


class PrepaymentOut(ApiModel):
    """Where an online booking's payment stands: ``ready`` (open ``linkUrl`` to pay by
    ``payBy``), ``making`` (ask again in a few seconds), ``failed`` (ask for a new link),
    ``paid`` (the appointment is confirmed) or ``closed`` (cancelled, nothing owed).
    """

    appointment_id: uuid.UUID
    state: Literal["ready", "making", "failed", "paid", "closed"]
    amount: Decimal
    invoice_number: str | None
    link_url: str | None
    pay_by: datetime | None
    failure_reason: str | None
