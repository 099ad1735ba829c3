"""Money in figures (formatting.rupees) and in words (billing.words.rupees_in_words), as an
Indian invoice prints them (issue 13, item 8)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from opdesk.billing.words import rupees_in_words
from opdesk.formatting import rupees

# ------------------------------------------------------------------ figures


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("123456.5", "₹1,23,456.50"),
        ("0", "₹0.00"),
        ("5", "₹5.00"),
        ("999", "₹999.00"),
        ("1000", "₹1,000.00"),
        ("99999.99", "₹99,999.99"),
        ("100000", "₹1,00,000.00"),
        ("1234567.8", "₹12,34,567.80"),
        ("10000000", "₹1,00,00,000.00"),
        ("999999999.99", "₹99,99,99,999.99"),
        ("12345678901", "₹12,34,56,78,901.00"),
    ],
)
def test_rupees_group_in_lakhs_and_crores_with_two_decimals(amount: str, shown: str) -> None:
    assert rupees(Decimal(amount)) == shown


def test_a_negative_amount_has_a_minus_sign_before_the_rupee_sign() -> None:
    assert rupees(Decimal("-500")) == "\N{MINUS SIGN}₹500.00"
    assert rupees(Decimal("-123456.5")) == "\N{MINUS SIGN}₹1,23,456.50"


def test_rupees_round_half_up_to_the_paisa_and_never_show_minus_zero() -> None:
    assert rupees(Decimal("10.005")) == "₹10.01"
    assert rupees(Decimal("10.004")) == "₹10.00"
    assert rupees(Decimal("999.995")) == "₹1,000.00"
    assert rupees(Decimal("-0.001")) == "₹0.00"


def test_no_amount_shows_nothing_and_not_a_number_is_refused() -> None:
    assert rupees(None) == ""
    for bad in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="not an amount of money"):
            rupees(Decimal(bad))


# ------------------------------------------------------------------ words


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        (
            "123456.50",
            "Rupees One Lakh Twenty-Three Thousand Four Hundred Fifty-Six and Fifty Paise Only",
        ),
        ("0", "Rupees Zero Only"),
        ("1", "Rupees One Only"),
        ("0.05", "Rupees Zero and Five Paise Only"),
        ("0.01", "Rupees Zero and One Paisa Only"),
        ("2.01", "Rupees Two and One Paisa Only"),
        ("10", "Rupees Ten Only"),
        ("19", "Rupees Nineteen Only"),
        ("21", "Rupees Twenty-One Only"),
        ("99.99", "Rupees Ninety-Nine and Ninety-Nine Paise Only"),
        ("100", "Rupees One Hundred Only"),
        ("101", "Rupees One Hundred One Only"),
        ("1000", "Rupees One Thousand Only"),
        ("100000", "Rupees One Lakh Only"),
        ("10000000", "Rupees One Crore Only"),
        ("10000001", "Rupees One Crore One Only"),
        ("20500000", "Rupees Two Crore Five Lakh Only"),
        ("1494.80", "Rupees One Thousand Four Hundred Ninety-Four and Eighty Paise Only"),
        ("1.230", "Rupees One and Twenty-Three Paise Only"),
        (
            "999999999.99",
            "Rupees Ninety-Nine Crore Ninety-Nine Lakh Ninety-Nine Thousand Nine Hundred "
            "Ninety-Nine and Ninety-Nine Paise Only",
        ),
    ],
)
def test_amounts_in_words_in_indian_numbering(amount: str, words: str) -> None:
    assert rupees_in_words(Decimal(amount)) == words


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        (Decimal("-1"), "negative"),
        (Decimal("-0.01"), "negative"),
        (Decimal("1.005"), "paise"),
        (Decimal("0.001"), "paise"),
        (Decimal("1000000000"), "99,99,99,999.99"),
        (Decimal("1000000000.00"), "99,99,99,999.99"),
        (Decimal("NaN"), "not a number"),
        (Decimal("Infinity"), "not a number"),
    ],
)
def test_words_refuse_negative_fractional_paise_and_absurd_amounts(
    amount: Decimal, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        rupees_in_words(amount)


# A small parser of the words, independent of the writer: values per word, and the place
# words (Hundred, Thousand, Lakh, Crore) multiply what came before them.
ONES = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]
TEENS = ["Ten", "Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen"]
TEENS += ["Seventeen", "Eighteen", "Nineteen"]
TENS = ["Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety"]
UNITS = {word: n for n, word in enumerate(ONES + TEENS)}
UNITS.update({word: 10 * n for n, word in enumerate(TENS, start=2)})
SCALES = {"Thousand": 1_000, "Lakh": 100_000, "Crore": 10_000_000}


def parse_number(words: list[str]) -> int:
    total, group = 0, 0
    for word in words:
        if word == "Hundred":
            group *= 100
        elif word in SCALES:
            total += group * SCALES[word]
            group = 0
        else:
            group += sum(UNITS[part] for part in word.split("-"))
    return total + group


def parse_amount(text: str) -> Decimal:
    words = text.split()
    assert words[0] == "Rupees" and words[-1] == "Only", text
    body = words[1:-1]
    paise = 0
    if "and" in body:
        at = body.index("and")
        assert body[-1] in ("Paise", "Paisa"), text
        paise = parse_number(body[at + 1 : -1])
        assert (body[-1] == "Paisa") == (paise == 1), text
        body = body[:at]
    return Decimal(parse_number(body)) + Decimal(paise) / 100


@given(st.integers(min_value=0, max_value=99_999_999_999))  # up to 99,99,99,999.99
@example(0)
@example(1)
@example(10**9)  # one crore
@example(99_999_999_999)
def test_the_words_read_back_as_the_amount(paise: int) -> None:
    amount = Decimal(paise) / 100
    words = rupees_in_words(amount)
    assert parse_amount(words) == amount
    # Hyphenated tens, no doubled spaces, no "and" inside the rupees.
    assert "  " not in words and words.count(" and ") <= (1 if paise % 100 else 0)


@given(st.integers(min_value=0, max_value=99_999_999_999))  # up to 99,99,99,999.99
@example(0)
@example(1)
@example(10**9)  # one crore
@example(99_999_999_999)
def test_figures_read_back_as_the_amount(paise: int) -> None:
    amount = Decimal(paise) / 100
    shown = rupees(amount)
    assert Decimal(shown.removeprefix("₹").replace(",", "")) == amount
    whole = shown.removeprefix("₹").split(".")[0].split(",")
    # Indian grouping: the last group three digits, every other one two.
    assert len(whole[-1]) <= 3 and all(len(group) == 2 for group in whole[1:-1])
