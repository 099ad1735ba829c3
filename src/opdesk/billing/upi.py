"""The UPI payment link for one invoice's balance, and its QR code for the desk's screen.

The link follows NPCI's "UPI Linking Specifications" (the ``upi://pay`` URL that any UPI
app opens or scans):

- ``pa`` payee address (VPA, ``name@handle``) and ``pn`` payee name are required;
- ``am`` the amount in rupees with two decimals (``500.00``), ``cu`` the currency, INR
  only;
- ``tn`` a short note shown to the payer (at most 50 characters here);
- ``tr`` the payee's own reference for reconciling the payment (an order or bill id):
  at most 35 characters, and only letters and digits, since some UPI apps refuse a
  reference with anything else (``upi_reference`` turns an invoice number into one);
- every value is percent-encoded as UTF-8 (a space as ``%20``, never ``+``), so a Hindi
  payee name travels intact.

The QR code uses medium error correction and a quiet zone of four modules (the size
the QR standard asks for), on white, so that it scans on a dark screen too.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import segno

NOTE_MAX = 50
REFERENCE_MAX = 35
NAME_MAX = 99
# The part before @ as banks issue them (letters, digits, dot, hyphen, underscore); the
# handle is the bank's or app's name (letters and digits).
VPA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}@[A-Za-z][A-Za-z0-9]{1,63}")
REFERENCE = re.compile(r"[A-Za-z0-9]{1,35}")
QUIET_ZONE = 4


def _encode(value: str, *, safe: str = "") -> str:
    return quote(value, safe=safe, encoding="utf-8")


def upi_reference(text: str) -> str:
    """An invoice or receipt number as a UPI transaction reference: only its letters and
    digits, the last 35 of them (``OPD/2026-27/000123`` → ``OPD202627000123``).
    """
    kept = "".join(ch for ch in text if ch.isascii() and ch.isalnum())
    if not kept:
        raise ValueError(f"reference: no letters or digits in {text!r}")
    return kept[-REFERENCE_MAX:]


def _amount(amount: Decimal) -> str:
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"amount: not a number: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"amount: not a number: {amount}")
    if value <= 0:
        raise ValueError(f"amount: must be more than zero, got {amount}")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"amount: not a whole number of paise: {amount}")
    if value > Decimal("999999999.99"):
        raise ValueError(f"amount: too large: {amount}")
    return f"{value.quantize(Decimal('0.01')):f}"


def upi_uri(*, payee_vpa: str, payee_name: str, amount: Decimal, note: str, reference: str) -> str:
    """``upi://pay?pa=…&pn=…&am=…&cu=INR&tn=…&tr=…`` for exactly ``amount``.

    ValueError naming the field (payee_vpa, payee_name, amount, note, reference) when a
    value cannot go into a UPI link.
    """
    vpa = payee_vpa.strip()
    if not VPA.fullmatch(vpa):
        raise ValueError(f"payee_vpa: not a UPI id of the form name@bank: {payee_vpa!r}")
    name = " ".join(payee_name.split())
    if not name:
        raise ValueError("payee_name: is empty")
    if len(name) > NAME_MAX:
        raise ValueError(f"payee_name: longer than {NAME_MAX} characters")
    am = _amount(amount)
    text = " ".join(note.split())
    if len(text) > NOTE_MAX:
        raise ValueError(f"note: longer than {NOTE_MAX} characters ({len(text)})")
    if not REFERENCE.fullmatch(reference):
        raise ValueError(
            f"reference: must be 1 to {REFERENCE_MAX} letters or digits, got {reference!r}"
        )
    parts = [
        f"pa={_encode(vpa, safe='@')}",
        f"pn={_encode(name)}",
        f"am={am}",
        "cu=INR",
    ]
    if text:
        parts.append(f"tn={_encode(text)}")
    parts.append(f"tr={reference}")
    return "upi://pay?" + "&".join(parts)


def _code(uri: str) -> segno.QRCode:
    return segno.make(uri, error="m", micro=False)


def upi_qr_svg(uri: str, *, title: str = "UPI QR code") -> str:
    """The QR code as inline SVG for a page: no fixed size (only a viewBox), so it takes
    the width CSS gives it and stays sharp; dark modules on white with the quiet zone.
    """
    svg = _code(uri).svg_inline(
        scale=1, border=QUIET_ZONE, dark="#000", light="#fff", omitsize=True, title=title
    )
    # Crisp module edges at any scale; role and label for screen readers.
    return svg.replace(
        "<svg ",
        f'<svg role="img" aria-label="{_attr(title)}" shape-rendering="crispEdges" ',
        1,
    )


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def upi_qr_png(uri: str, scale: int = 8) -> bytes:
    """The QR code as a PNG, ``scale`` pixels per module, with the quiet zone."""
    if scale < 1:
        raise ValueError(f"scale: must be at least 1, got {scale}")
    out = io.BytesIO()
    _code(uri).save(out, kind="png", scale=scale, border=QUIET_ZONE, dark="#000", light="#fff")
    return out.getvalue()
