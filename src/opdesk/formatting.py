"""Dates and times as a clinic in India reads them, for pages, PDFs and messages alike."""

from __future__ import annotations

from datetime import date, datetime
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
