"""An amount of money in words, as an Indian invoice writes it below the total:
``Rupees One Lakh Twenty-Three Thousand Four Hundred Fifty-Six and Fifty Paise Only``.

Indian numbering (crore, lakh, thousand, hundred), no "and" inside the rupees, 21 to 99
hyphenated. The paise follow "and" when there are any; with no rupees the words still
start "Rupees Zero" (``Rupees Zero and Five Paise Only``), so every amount reads the same
way. One paisa is singular: ``Rupees Zero and One Paisa Only``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

LARGEST = Decimal("999999999.99")  # 99,99,99,999.99: below a hundred crore

ONES = [
    *("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"),
    *("Ten", "Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen"),
    *("Seventeen", "Eighteen", "Nineteen"),
]
TENS = ["", "", "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety"]
# (size, name), largest first: the Indian places above a hundred
PLACES = ((10_000_000, "Crore"), (100_000, "Lakh"), (1_000, "Thousand"))


def _below_hundred(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] if ones == 0 else f"{TENS[tens]}-{ONES[ones]}"


def _below_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "Hundred"] if hundreds else []
    if rest:
        words.append(_below_hundred(rest))
    return words


def number_in_words(n: int) -> str:
    """A whole number below a thousand crore in Indian numbering: ``One Lakh Five``."""
    if not 0 <= n < 10_000_000_000:
        raise ValueError(f"out of range: {n}")
    if n == 0:
        return "Zero"
    words: list[str] = []
    for size, name in PLACES:
        count, n = divmod(n, size)
        if count:
            # Only crores can count past ninety-nine (up to 999 crore).
            words += [*_below_thousand(count), name]
    words += _below_thousand(n)
    return " ".join(words)


def rupees_in_words(amount: Decimal) -> str:
    """``Rupees … and … Paise Only`` for 0 to 99,99,99,999.99, exact to the paisa.

    ValueError for a negative amount, one that is not a whole number of paise
    (``1.005``), not a number, or past 99,99,99,999.99.
    """
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"amount is not a number: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"amount is not a number: {amount}")
    if value < 0:
        raise ValueError(f"amount is negative: {amount}")
    if value > LARGEST:
        raise ValueError(f"amount is more than 99,99,99,999.99: {amount}")
    paise_total = value * 100
    if paise_total != paise_total.to_integral_value():
        raise ValueError(f"amount is not a whole number of paise: {amount}")
    whole, paise = divmod(int(paise_total), 100)
    words = f"Rupees {number_in_words(whole)}"
    if paise:
        words += f" and {number_in_words(paise)} {'Paisa' if paise == 1 else 'Paise'}"
    return f"{words} Only"
