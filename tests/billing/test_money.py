"""Invoice arithmetic, held by properties over many generated invoices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opdesk.billing import money
from opdesk.errors import InvalidInput

RATES = sorted(money.GST_RATES)


@st.composite
def lines(draw: st.DrawFn) -> money.LineIn:
    quantity = Decimal(draw(st.integers(1, 100_00))) / 100
    unit_price = Decimal(draw(st.integers(0, 5_000_000))) / 100
    gross = money.paise(quantity * unit_price)
    discount = Decimal(draw(st.integers(0, int(gross * 100)))) / 100
    return money.LineIn(
        type="service",
        description="x",
        quantity=quantity,
        unit_price=unit_price,
        tax_rate=draw(st.sampled_from(RATES)),
        discount_amount=discount,
    )


@given(st.lists(lines(), min_size=1, max_size=30), st.booleans())
def test_the_totals_are_the_sums_of_the_lines(specs: list[money.LineIn], inter: bool) -> None:
    worked = [money.work_out(s, inter_state=inter) for s in specs]
    for spec in specs:
        money.check_line(spec, "line")  # every generated line is one a clinic may write
    t = money.totals(worked)
    assert t.subtotal == sum(w.gross for w in worked)
    assert t.discount_total == sum(s.discount_amount for s in specs)
    assert t.grand_total == sum(w.total for w in worked)
    assert t.grand_total == t.subtotal - t.discount_total + t.tax_total
    for amount in (t.subtotal, t.tax_total, t.grand_total):
        assert amount == amount.quantize(money.PAISA)


@given(st.lists(lines(), min_size=1, max_size=30), st.booleans())
def test_the_tax_splits_add_up_to_the_tax_total(specs: list[money.LineIn], inter: bool) -> None:
    worked = [money.work_out(s, inter_state=inter) for s in specs]
    t = money.totals(worked)
    assert t.tax_total == t.cgst_total + t.sgst_total + t.igst_total
    if inter:
        assert t.cgst_total == t.sgst_total == 0
    else:
        assert t.igst_total == 0
        assert all(w.cgst == w.sgst for w in worked)
    for w in worked:
        # each half (or the whole IGST) is the rate applied to the taxable value, to the paisa
        exact = w.taxable * w.spec.tax_rate / 100
        assert abs(w.tax - exact) <= Decimal("0.01")


def test_gst_is_rounded_half_up_per_half_inside_the_state() -> None:
    # 18% of 12.50 = 2.25: CGST 9% = 1.125 -> 1.13, SGST the same; IGST 2.25 exactly
    spec = money.LineIn("med", "Syrup", Decimal(1), Decimal("12.50"), Decimal(18))
    intra = money.work_out(spec, inter_state=False)
    assert (intra.cgst, intra.sgst, intra.igst, intra.total) == (
        Decimal("1.13"),
        Decimal("1.13"),
        Decimal("0.00"),
        Decimal("14.76"),
    )
    inter = money.work_out(spec, inter_state=True)
    assert (inter.igst, inter.total) == (Decimal("2.25"), Decimal("14.75"))


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"quantity": Decimal(0)}, "line.quantity", "must be more than zero"),
        ({"quantity": Decimal(-1)}, "line.quantity", "must be more than zero"),
        ({"quantity": Decimal("NaN")}, "line.quantity", "must be more than zero"),
        ({"quantity": Decimal("Infinity")}, "line.quantity", "must be more than zero"),
        ({"quantity": Decimal(10001)}, "line.quantity", "cannot be more than 10000"),
        ({"unit_price": Decimal(-5)}, "line.unitPrice", "cannot be negative"),
        ({"unit_price": Decimal("NaN")}, "line.unitPrice", "cannot be negative"),
        ({"unit_price": Decimal("1000000.01")}, "line.unitPrice", "is more than"),
        ({"unit_price": Decimal("1.001")}, "line.unitPrice", "more than two decimal places"),
        ({"tax_rate": Decimal(17)}, "line.taxRate", "must be a GST rate"),
        ({"discount_amount": Decimal(-1)}, "line.discountAmount", "cannot be negative"),
        ({"discount_amount": Decimal(501)}, "line.discountAmount", "more than the line's amount"),
        ({"description": "  "}, "line.description", "is required"),
    ],
)
def test_a_line_no_clinic_means_is_refused_naming_the_field(
    change: dict[str, object], field: str, reason: str
) -> None:
    base = {
        "type": "service",
        "description": "ECG",
        "quantity": Decimal(1),
        "unit_price": Decimal(500),
    }
    with pytest.raises(InvalidInput) as refused:
        money.check_line(money.LineIn(**{**base, **change}), "line")  # type: ignore[arg-type]
    (error,) = refused.value.errors
    assert error.field == field
    assert reason in error.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1", "must be more than zero"),
        ("0", "must be more than zero"),
        ("NaN", "must be an amount"),
        ("Infinity", "must be an amount"),
        ("1e12", "too large"),
        ("12.345", "more than two decimal places"),
        ("abc", "must be an amount"),
    ],
)
def test_an_amount_is_finite_positive_and_paisa_exact(value: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        money.amount_of(value, "amount", positive=True)
    assert refused.value.errors[0].field == "amount"
    assert reason in refused.value.errors[0].reason


@pytest.mark.parametrize(
    ("day", "year"),
    [
        ("2026-03-31", "2025-26"),
        ("2026-04-01", "2026-27"),
        ("2027-01-15", "2026-27"),
        ("2099-12-31", "2099-00"),
    ],
)
def test_the_financial_year_runs_april_to_march(day: str, year: str) -> None:
    from datetime import date

    assert money.financial_year(date.fromisoformat(day)) == year
    # The number writes the year short, to stay within GST's sixteen characters.
    assert money.invoice_number("OPD", year, 123) == f"OPD/{year[2:]}/000123"
    assert len(money.invoice_number("OPD", year, 999_999)) == 16
