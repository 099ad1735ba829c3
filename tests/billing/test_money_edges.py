"""Invoice arithmetic at its edges: exact limits, exact messages, stored lines read back.

Every expected value here is worked out by hand, not by the code under test. These pin the
behaviour the property tests in test_money.py leave loose (they check ``reason in message``
and never sit exactly on a limit).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from opdesk.billing import money
from opdesk.errors import InvalidInput

NOT_AN_AMOUNT = "must be an amount in rupees, such as 500.00"


def refusal(value: object, field: str, *, positive: bool = False) -> tuple[str, str]:
    """The one (field, reason) ``amount_of`` refuses ``value`` with."""
    with pytest.raises(InvalidInput) as refused:
        money.amount_of(value, field, positive=positive)
    (error,) = refused.value.errors
    return error.field, error.reason


# --- amount_of: what it accepts ---------------------------------------------------------


def test_zero_is_an_amount_when_the_field_is_not_required_to_be_positive() -> None:
    # a discount or a waiver of nothing: zero rupees, written to the paisa
    assert str(money.amount_of("0", "discount")) == "0.00"
    assert str(money.amount_of(Decimal(0), "discount")) == "0.00"


def test_an_amount_under_one_rupee_is_accepted() -> None:
    assert str(money.amount_of("0.50", "amount", positive=True)) == "0.50"
    assert str(money.amount_of("0.01", "discount")) == "0.01"


def test_an_amount_is_written_to_the_paisa_whatever_form_it_came_in() -> None:
    assert str(money.amount_of(" 500 ", "amount", positive=True)) == "500.00"
    assert str(money.amount_of(500, "amount", positive=True)) == "500.00"
    assert str(money.amount_of(Decimal("12.5"), "amount", positive=True)) == "12.50"
    # zeros past the paisa change nothing, so they are not "more than two decimals"
    assert str(money.amount_of("12.340", "amount", positive=True)) == "12.34"


def test_ten_thousand_units_at_ten_lakh_each_is_the_largest_amount_accepted() -> None:
    # 10,000 x ₹10,00,000 = ₹10,00,00,00,000 (ten billion rupees) exactly
    assert str(money.amount_of("10000000000.00", "amount", positive=True)) == "10000000000.00"


# --- amount_of: what it refuses, and how it says so ---------------------------------------


def test_zero_is_refused_when_the_amount_must_be_positive() -> None:
    assert refusal("0", "amount", positive=True) == ("amount", "must be more than zero")
    assert refusal("-5", "amount", positive=True) == ("amount", "must be more than zero")


def test_a_negative_amount_is_refused_as_negative_when_zero_is_allowed() -> None:
    assert refusal("-0.01", "discount") == ("discount", "cannot be negative")
    assert refusal(Decimal("-500"), "waiver") == ("waiver", "cannot be negative")


@pytest.mark.parametrize("value", ["abc", "", "   ", "12,50", "₹500", None])
def test_text_that_is_no_number_is_refused_with_an_example(value: object) -> None:
    assert refusal(value, "payments[0].amount") == ("payments[0].amount", NOT_AN_AMOUNT)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", Decimal("NaN")])
def test_a_number_that_is_not_finite_is_refused_with_an_example(value: object) -> None:
    assert refusal(value, "amount", positive=True) == ("amount", NOT_AN_AMOUNT)


@pytest.mark.parametrize("value", ["12.345", "0.001", Decimal("500.005")])
def test_an_amount_with_three_decimals_is_refused_naming_its_field(value: object) -> None:
    assert refusal(value, "amount", positive=True) == (
        "amount",
        "has more than two decimal places (paise)",
    )


def test_one_paisa_more_than_the_largest_amount_is_refused_as_too_large() -> None:
    assert refusal("10000000000.01", "amount", positive=True) == (
        "amount",
        "is too large for one invoice",
    )


def test_an_absurdly_large_amount_is_refused_as_too_large() -> None:
    assert refusal("1e30", "amount", positive=True) == ("amount", "is too large for one invoice")


# --- check_line ---------------------------------------------------------------------------


def line(**change: object) -> money.LineIn:
    base: dict[str, object] = {
        "type": "service",
        "description": "ECG",
        "quantity": Decimal(1),
        "unit_price": Decimal(500),
    }
    return money.LineIn(**{**base, **change})  # type: ignore[arg-type]


def test_a_line_exactly_at_the_quantity_and_price_limits_is_accepted() -> None:
    money.check_line(line(quantity=Decimal(10000), unit_price=Decimal(1)), "lineItems[0]")
    money.check_line(line(unit_price=Decimal("1000000.00")), "lineItems[0]")
    # a discount of the whole line leaves nothing to pay, which is allowed
    money.check_line(line(discount_amount=Decimal("500.00")), "lineItems[0]")


def test_an_absurdly_large_discount_is_refused_naming_its_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        money.check_line(line(discount_amount=Decimal("1e30")), "lineItems[0]")
    assert refused.value.errors[0].field == "lineItems[0].discountAmount"


ALL_RATES = "0, 0.1, 0.25, 1, 1.5, 3, 5, 6, 12, 18, 28, 40"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"quantity": Decimal(0)}, "quantity", "must be more than zero"),
        ({"quantity": Decimal(10001)}, "quantity", "cannot be more than 10000"),
        ({"quantity": Decimal("1.005")}, "quantity", "has more than two decimal places"),
        ({"unit_price": Decimal("-0.01")}, "unitPrice", "cannot be negative"),
        (
            {"unit_price": Decimal("1000000.01")},
            "unitPrice",
            "is more than ₹10,00,000 for one unit",
        ),
        (
            {"unit_price": Decimal("99.999")},
            "unitPrice",
            "has more than two decimal places (paise)",
        ),
        ({"tax_rate": Decimal(17)}, "taxRate", f"must be a GST rate: {ALL_RATES}"),
        ({"discount_amount": Decimal("-1")}, "discountAmount", "cannot be negative"),
        (
            {"discount_amount": Decimal("1.005")},
            "discountAmount",
            "has more than two decimal places",
        ),
        (
            {"discount_amount": Decimal("500.01")},
            "discountAmount",
            "cannot be more than the line's amount",
        ),
        ({"description": " \t "}, "description", "is required"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_a_bad_line_is_refused_with_its_field_and_the_exact_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        money.check_line(line(**change), "lineItems[2]")
    assert [(e.field, e.reason) for e in refused.value.errors] == [
        (f"lineItems[2].{field}", reason)
    ]


# --- line_from_json -----------------------------------------------------------------------

STORED = {
    "type": "med",
    "refId": "rx-7",
    "description": "Paracetamol 500 mg, strip of 10",
    "sacHsn": "3004",
    "quantity": "2",
    "unitPrice": "35.50",
    "discountAmount": "5.00",
    "taxRate": "12",
    "taxable": "66.00",
    "cgst": "3.96",
    "sgst": "3.96",
    "igst": "0.00",
    "taxAmount": "7.92",
    "total": "73.92",
}


def test_a_stored_line_reads_back_as_it_was_asked_for() -> None:
    assert money.line_from_json(STORED) == money.LineIn(
        type="med",
        description="Paracetamol 500 mg, strip of 10",
        quantity=Decimal(2),
        unit_price=Decimal("35.50"),
        tax_rate=Decimal(12),
        discount_amount=Decimal(5),
        sac_hsn="3004",
        ref_id="rx-7",
    )


def test_a_line_written_out_and_read_back_is_the_same_line() -> None:
    asked = money.LineIn(
        type="lab",
        description="Lipid profile",
        quantity=Decimal(1),
        unit_price=Decimal("850.00"),
        tax_rate=Decimal(18),
        discount_amount=Decimal("50.00"),
        sac_hsn="999316",
        ref_id="lab-42",
    )
    stored = money.work_out(asked, inter_state=True).as_json()
    # 850 - 50 = 800 taxable; IGST 18% = 144.00; total 944.00
    assert (stored["taxable"], stored["igst"], stored["total"]) == ("800.00", "144.00", "944.00")
    assert money.line_from_json(stored) == asked


@pytest.mark.parametrize("missing", [None, "", "absent"])
def test_a_stored_line_without_a_discount_reads_back_with_none(missing: str | None) -> None:
    item = {k: v for k, v in STORED.items() if k != "discountAmount"}
    if missing != "absent":
        item["discountAmount"] = missing  # type: ignore[assignment]
    assert money.line_from_json(item).discount_amount == Decimal(0)


def test_a_stored_line_without_sac_or_ref_reads_back_without_them() -> None:
    item = {k: v for k, v in STORED.items() if k not in ("sacHsn", "refId")}
    read = money.line_from_json(item)
    assert (read.sac_hsn, read.ref_id) == (None, None)


# --- totals -------------------------------------------------------------------------------


def test_an_invoice_with_no_lines_totals_zero_rupees_to_the_paisa() -> None:
    t = money.totals([])
    assert [str(v) for v in vars(t).values()] == ["0.00"] * 7


def test_totals_are_written_to_the_paisa_when_a_discount_is_in_whole_rupees() -> None:
    # 2 x 35.50 = 71.00, less ₹5 = 66.00 taxable; 6% + 6% of 66.00 = 3.96 each
    syrup = line(
        type="med",
        description="Cough syrup",
        quantity=Decimal(2),
        unit_price=Decimal("35.50"),
        tax_rate=Decimal(12),
        discount_amount=Decimal(5),
    )
    t = money.totals([money.work_out(syrup, inter_state=False)])
    assert {k: str(v) for k, v in vars(t).items()} == {
        "subtotal": "71.00",
        "discount_total": "5.00",
        "tax_total": "7.92",
        "cgst_total": "3.96",
        "sgst_total": "3.96",
        "igst_total": "0.00",
        "grand_total": "73.92",
    }
