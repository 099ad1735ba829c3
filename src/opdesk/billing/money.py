"""Invoice arithmetic: exact, in rupees and paise, rounded half-up once per amount.

A line's gross is quantity times unit price; its discount comes off that to give the taxable
value; GST is charged on the taxable value at the line's rate (healthcare services are
usually exempt, medicines and goods are not, so the rate lives on each line). Inside the
clinic's state the tax is split into CGST and SGST at half the rate each, each rounded on
its own, so the two halves are always equal; to another state it is IGST at the full rate.
The invoice's totals are the sums of its lines, so they always add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from opdesk.errors import FieldError, InvalidInput

PAISA = Decimal("0.01")
ZERO = Decimal("0.00")
# The most one line may charge per unit, and the most units: anything larger is a typo.
MAX_UNIT_PRICE = Decimal("1000000.00")
MAX_QUANTITY = Decimal("10000")
# The most one invoice (or one amount typed into it) can come to.
MAX_INVOICE_AMOUNT = MAX_UNIT_PRICE * MAX_QUANTITY
# GST rates in force (the 2025 slabs 5/18/40 and the earlier 12/28, and the special rates).
GST_RATES = frozenset(
    Decimal(r) for r in ("0", "0.1", "0.25", "1", "1.5", "3", "5", "6", "12", "18", "28", "40")
)


def paise(amount: Decimal) -> Decimal:
    """``amount`` rounded half-up to the paisa."""
    return amount.quantize(PAISA, rounding=ROUND_HALF_UP)


def amount_of(value: Any, field: str, *, positive: bool = False) -> Decimal:
    """A sum of money from user input: finite, paisa-exact, not negative (or above zero),
    at most :data:`MAX_UNIT_PRICE` times :data:`MAX_QUANTITY`; else 422 naming ``field``.
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidInput(
            [FieldError(field, "must be an amount in rupees, such as 500.00")]
        ) from None
    if not amount.is_finite():
        raise InvalidInput([FieldError(field, "must be an amount in rupees, such as 500.00")])
    if amount < 0 or (positive and amount == 0):
        raise InvalidInput(
            [FieldError(field, "must be more than zero" if positive else "cannot be negative")]
        )
    # The size is checked before rounding: quantizing 1e30 to the paisa overflows
    # Decimal's 28 digits and would raise instead of refusing.
    if amount > MAX_INVOICE_AMOUNT:
        raise InvalidInput([FieldError(field, "is too large for one invoice")])
    if amount != amount.quantize(PAISA, rounding=ROUND_HALF_UP):
        raise InvalidInput([FieldError(field, "has more than two decimal places (paise)")])
    return paise(amount)


@dataclass(frozen=True)
class LineIn:
    """One line as asked for (by hand, or built from a visit)."""

    type: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal = ZERO
    discount_amount: Decimal = ZERO
    sac_hsn: str | None = None
    ref_id: str | None = None


@dataclass(frozen=True)
class Line:
    """A line with its amounts worked out."""

    spec: LineIn
    gross: Decimal
    taxable: Decimal
    cgst: Decimal
    sgst: Decimal
    igst: Decimal

    @property
    def tax(self) -> Decimal:
        return self.cgst + self.sgst + self.igst

    @property
    def total(self) -> Decimal:
        return self.taxable + self.tax

    def as_json(self) -> dict[str, Any]:
        """The seed's ``lineItems`` entry, amounts as strings so JSON keeps them exact."""
        s = self.spec
        return {
            "type": s.type,
            "refId": s.ref_id,
            "description": s.description,
            "sacHsn": s.sac_hsn,
            "quantity": str(s.quantity),
            "unitPrice": str(s.unit_price),
            "discountAmount": str(s.discount_amount),
            "taxRate": str(s.tax_rate),
            "taxable": str(self.taxable),
            "cgst": str(self.cgst),
            "sgst": str(self.sgst),
            "igst": str(self.igst),
            "taxAmount": str(self.tax),
            "total": str(self.total),
        }


def check_line(spec: LineIn, at: str) -> None:
    """Refuse a line no clinic means (422 naming ``<at>.<field>``)."""
    errors: list[FieldError] = []
    if not spec.quantity.is_finite() or spec.quantity <= 0:
        errors.append(FieldError(f"{at}.quantity", "must be more than zero"))
    elif spec.quantity > MAX_QUANTITY:
        errors.append(FieldError(f"{at}.quantity", f"cannot be more than {MAX_QUANTITY}"))
    elif spec.quantity != spec.quantity.quantize(PAISA):
        errors.append(FieldError(f"{at}.quantity", "has more than two decimal places"))
    if not spec.unit_price.is_finite() or spec.unit_price < 0:
        errors.append(FieldError(f"{at}.unitPrice", "cannot be negative"))
    elif spec.unit_price > MAX_UNIT_PRICE:
        errors.append(FieldError(f"{at}.unitPrice", "is more than ₹10,00,000 for one unit"))
    elif spec.unit_price != paise(spec.unit_price):
        errors.append(FieldError(f"{at}.unitPrice", "has more than two decimal places (paise)"))
    if spec.tax_rate not in GST_RATES:
        rates = ", ".join(f"{r.normalize():f}" for r in sorted(GST_RATES))
        errors.append(FieldError(f"{at}.taxRate", f"must be a GST rate: {rates}"))
    if not spec.discount_amount.is_finite() or spec.discount_amount < 0:
        errors.append(FieldError(f"{at}.discountAmount", "cannot be negative"))
    elif spec.discount_amount > MAX_INVOICE_AMOUNT:
        errors.append(FieldError(f"{at}.discountAmount", "is too large for one invoice"))
    elif spec.discount_amount != paise(spec.discount_amount):
        errors.append(FieldError(f"{at}.discountAmount", "has more than two decimal places"))
    if not spec.description.strip():
        errors.append(FieldError(f"{at}.description", "is required"))
    if errors:
        raise InvalidInput(errors)
    if spec.discount_amount > paise(spec.quantity * spec.unit_price):
        raise InvalidInput(
            [FieldError(f"{at}.discountAmount", "cannot be more than the line's amount")]
        )


def work_out(spec: LineIn, *, inter_state: bool) -> Line:
    gross = paise(spec.quantity * spec.unit_price)
    taxable = gross - spec.discount_amount
    if inter_state:
        return Line(spec, gross, taxable, ZERO, ZERO, paise(taxable * spec.tax_rate / 100))
    half = paise(taxable * spec.tax_rate / 200)
    return Line(spec, gross, taxable, half, half, ZERO)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    cgst_total: Decimal
    sgst_total: Decimal
    igst_total: Decimal
    grand_total: Decimal


def totals(lines: Sequence[Line]) -> Totals:
    def total(values: Iterable[Decimal]) -> Decimal:
        return sum(values, ZERO)

    subtotal = total(line.gross for line in lines)
    discount = total(line.spec.discount_amount for line in lines)
    cgst = total(line.cgst for line in lines)
    sgst = total(line.sgst for line in lines)
    igst = total(line.igst for line in lines)
    tax = cgst + sgst + igst
    return Totals(subtotal, discount, tax, cgst, sgst, igst, subtotal - discount + tax)


def line_from_json(item: dict[str, Any]) -> LineIn:
    """A stored line back as it was asked for (a draft is worked out again on change)."""
    return LineIn(
        type=item["type"],
        description=item["description"],
        quantity=Decimal(item["quantity"]),
        unit_price=Decimal(item["unitPrice"]),
        tax_rate=Decimal(item["taxRate"]),
        discount_amount=Decimal(item.get("discountAmount") or "0"),
        sac_hsn=item.get("sacHsn"),
        ref_id=item.get("refId"),
    )


def financial_year(day: date) -> str:
    """India's financial year of ``day`` (April to March): ``2026-27``."""
    start = day.year if day.month >= 4 else day.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def invoice_number(prefix: str, year: str, seq: int) -> str:
    """``OPD/26-27/000123``: the clinic's prefix (up to three characters), the financial
    year ``2026-27`` written short, six digits. GST's Rule 46(b) allows sixteen
    characters at most: three, a slash, five, a slash and six make exactly that.
    """
    return f"{prefix}/{year[2:]}/{seq:06d}"
