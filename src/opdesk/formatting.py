"""Dates and times as a clinic in India reads them, for pages, PDFs and messages alike."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo


def local_time(moment: datetime | None, timezone: str = "Asia/Kolkata") -> str:
    """A timestamp as the clinic reads it: ``25 Nov 2026, 3:04 pm``."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%d %b %Y, %-I:%M %p").replace("AM", "am").replace("PM", "pm")


def clock_time(moment: datetime | None, timezone: str = "Asia/Kolkata") -> str:
    """Only the time of day, as a clinic says it: ``9:15 am``."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%-I:%M %p").replace("AM", "am").replace("PM", "pm")


def day_name(day: date) -> str:
    """``Mon 7 Dec``."""
    return day.strftime("%a %-d %b")


def short_date(day: date | None) -> str:
    """A date as clinics in India write it: ``25/11/2026`` (day first)."""
    return day.strftime("%d/%m/%Y") if day is not None else ""


def abha_number(digits: str | None) -> str:
    """The 14 digits of an ABHA number as the ABHA card prints them: ``91-1234-5678-9012``."""
    if not digits:
        return ""
    return f"{digits[:2]}-{digits[2:6]}-{digits[6:10]}-{digits[10:]}"


def _indian_grouping(digits: str) -> str:
    """``12345678`` → ``1,23,45,678``: the last three digits, then pairs (lakh, crore)."""
    if len(digits) <= 3:
        return digits
    head, tail = digits[:-3], digits[-3:]
    pairs: list[str] = []
    while len(head) > 2:
        pairs.insert(0, head[-2:])
        head = head[:-2]
    return ",".join([head, *pairs, tail])


def rupees(amount: Decimal | None) -> str:
    """Money as clinics in India print it: ``₹1,23,456.50`` (lakh and crore grouping,
    always two decimals, rounded half-up to the paisa); a negative amount with a minus
    sign (U+2212), ``\N{MINUS SIGN}₹500.00``; nothing for None.
    """
    if amount is None:
        return ""
    if not amount.is_finite():
        raise ValueError(f"not an amount of money: {amount}")
    paise = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    whole, _, fraction = f"{abs(paise):f}".partition(".")
    sign = "\N{MINUS SIGN}" if paise < 0 else ""
    return f"{sign}\N{INDIAN RUPEE SIGN}{_indian_grouping(whole)}.{fraction}"
