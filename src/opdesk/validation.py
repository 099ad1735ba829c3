"""Validators for Indian identifiers and other shared inputs.

Each returns the normalised value or raises ``ValueError`` with a reason a clinic
receptionist can act on; pydantic reports it against the field's name.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberType
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.in_ import gstin as _gstin

DEFAULT_REGION = "IN"
_DIALLABLE = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.VOIP,
}


def phone_e164(value: str, region: str = DEFAULT_REGION) -> str:
    """Any reasonable way of writing a phone number, as E.164 (``+919876543210``)."""
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    if phonenumbers.number_type(number) not in _DIALLABLE:
        raise ValueError("not a number that can be called")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mobile_e164(value: str, region: str = DEFAULT_REGION) -> str:
    """A mobile number (for OTP and WhatsApp): landlines are refused."""
    normalized = phone_e164(value, region)
    kind = phonenumbers.number_type(phonenumbers.parse(normalized))
    if kind not in {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}:
        raise ValueError("must be a mobile number, not a landline")
    return normalized


def gstin(value: str) -> str:
    """A 15-character GSTIN with a correct check character, upper-cased."""
    try:
        return str(_gstin.validate(value))
    except StdnumError as exc:
        raise ValueError(f"not a valid GSTIN ({exc})") from exc


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone(value: str) -> str:
    if value not in _known_zones():
        raise ValueError("not a known IANA time zone such as Asia/Kolkata")
    return value


def phone_display(e164: str | None) -> str:
    """``+912025531234`` as people write it: ``+91 20 2553 1234``."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, DEFAULT_REGION)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def email(value: str) -> str:
    """A syntactically valid address, lower-cased (addresses are compared that way)."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address ({exc})") from exc
    return checked.normalized.lower()


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more of the digits 0-9 (``str.isdigit`` also takes "¹"
    or "٣", which ``int`` then refuses)."""
    return text.isascii() and text.isdigit()
