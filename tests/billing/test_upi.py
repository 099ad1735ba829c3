"""The UPI payment link and its QR code (issue 13, item 3): the link as NPCI's linking
specification writes it, validated, and the QR code read back by a real decoder."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import zxingcpp
from PIL import Image

from opdesk.billing.upi import upi_qr_png, upi_qr_svg, upi_reference, upi_uri

GOOD: dict[str, Any] = {
    "payee_vpa": "sharmaclinic@okhdfcbank",
    "payee_name": "Sharma Family Clinic",
    "amount": Decimal("1494.80"),
    "note": "Invoice OPD/2026-27/000123",
    "reference": "OPD202627000123",
}


def decode(image: Image.Image) -> str:
    qr = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = zxingcpp.read_barcodes(image, formats=qr)
    assert len(found) == 1, f"expected one QR code, decoded {len(found)}"
    return str(found[0].text)


def test_the_link_has_the_parameters_in_the_specified_form() -> None:
    uri = upi_uri(**GOOD)
    assert uri == (
        "upi://pay?pa=sharmaclinic@okhdfcbank&pn=Sharma%20Family%20Clinic&am=1494.80"
        "&cu=INR&tn=Invoice%20OPD%2F2026-27%2F000123&tr=OPD202627000123"
    )
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("upi", "pay")
    query = parse_qs(parts.query)
    assert query == {
        "pa": ["sharmaclinic@okhdfcbank"],
        "pn": ["Sharma Family Clinic"],
        "am": ["1494.80"],
        "cu": ["INR"],
        "tn": ["Invoice OPD/2026-27/000123"],
        "tr": ["OPD202627000123"],
    }


@pytest.mark.parametrize(
    ("amount", "am"),
    [
        (Decimal("500"), "500.00"),
        (Decimal("0.01"), "0.01"),
        (Decimal("12.5"), "12.50"),
        (Decimal("1.230"), "1.23"),
        (Decimal("99999.99"), "99999.99"),
    ],
)
def test_the_amount_is_written_with_two_decimals(amount: Decimal, am: str) -> None:
    assert f"&am={am}&" in upi_uri(**{**GOOD, "amount": amount})


def test_a_hindi_payee_name_is_percent_encoded_utf8_and_reads_back() -> None:
    name = "डॉ. सुनीता शर्मा क्लिनिक"
    uri = upi_uri(**{**GOOD, "payee_name": name})
    pn = re.search(r"pn=([^&]*)", uri)
    assert pn is not None
    assert pn.group(1).isascii() and "%E0%A4" in pn.group(1)
    assert unquote(pn.group(1), encoding="utf-8") == name
    assert uri.isascii()


def test_reserved_characters_in_the_name_and_note_cannot_break_the_query() -> None:
    uri = upi_uri(**{**GOOD, "payee_name": "A&B = Clinic?", "note": "50% off + tax #1"})
    query = parse_qs(urlsplit(uri).query)
    assert query["pn"] == ["A&B = Clinic?"] and query["tn"] == ["50% off + tax #1"]
    assert "+" not in uri  # a space is %20, and + itself is %2B


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payee_vpa", "sharmaclinic"),
        ("payee_vpa", "@okhdfcbank"),
        ("payee_vpa", "sharma clinic@okhdfcbank"),
        ("payee_vpa", "sharma@clinic@ok"),
        ("payee_vpa", "sharma@"),
        ("payee_vpa", "sharma@ok-hdfc"),
        ("payee_vpa", ""),
        ("amount", Decimal("0")),
        ("amount", Decimal("-10")),
        ("amount", Decimal("10.005")),
        ("amount", Decimal("NaN")),
        ("amount", Decimal("Infinity")),
        ("amount", Decimal("1000000000")),
        ("payee_name", "   "),
        ("payee_name", "x" * 100),
        ("note", "n" * 51),
        ("reference", ""),
        ("reference", "OPD/2026-27/000123"),
        ("reference", "R" * 36),
        ("reference", "रसीद1"),
    ],
)
def test_a_value_that_cannot_go_into_a_upi_link_is_refused_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        upi_uri(**{**GOOD, field: value})


def test_limits_are_inclusive() -> None:
    uri = upi_uri(**{**GOOD, "note": "n" * 50, "reference": "R" * 35, "payee_name": "x" * 99})
    assert "tr=" + "R" * 35 in uri


def test_an_invoice_number_becomes_a_reference_of_letters_and_digits() -> None:
    assert upi_reference("OPD/2026-27/000123") == "OPD202627000123"
    assert upi_reference("A" * 40 + "-1") == "A" * 34 + "1"
    with pytest.raises(ValueError, match=r"^reference:"):
        upi_reference("/-/")


def test_the_png_qr_code_decodes_to_the_exact_link() -> None:
    uri = upi_uri(**{**GOOD, "payee_name": "सुनीता शर्मा"})
    png = upi_qr_png(uri, scale=6)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert decode(image) == uri
    # The quiet zone: the outer four modules (24 px at scale 6) are white on every side.
    grey = image.convert("L")
    width, height = grey.size
    for x, y in ((0, 0), (23, 23), (width - 1, height - 1), (width - 24, 10), (10, height - 24)):
        assert grey.getpixel((x, y)) == 255


def test_a_bigger_scale_gives_a_bigger_picture_of_the_same_code() -> None:
    uri = upi_uri(**GOOD)
    small = Image.open(io.BytesIO(upi_qr_png(uri, scale=2)))
    big = Image.open(io.BytesIO(upi_qr_png(uri, scale=10)))
    assert big.size[0] == 5 * small.size[0]
    assert decode(big) == uri
    with pytest.raises(ValueError, match=r"^scale:"):
        upi_qr_png(uri, scale=0)


def svg_modules(svg: str) -> tuple[int, set[tuple[int, int]]]:
    """The dark modules of segno's SVG path (horizontal runs ``M x y.5 h n`` and
    relative ``m dx dy h n``) and the size of its viewBox."""
    root = ET.fromstring(svg)  # noqa: S314 (our own SVG, made by segno)
    size = int(root.attrib["viewBox"].split()[2])
    dark: set[tuple[int, int]] = set()
    for path in root.iter("path"):
        if path.attrib.get("stroke") != "#000":
            continue
        x = y = 0.0
        for op, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?:\s+(-?[\d.]+))?", path.attrib["d"]):
            if op == "M":
                x, y = float(a), float(b)
            elif op == "m":
                x, y = x + float(a), y + float(b)
            else:
                run = float(a) - x if op == "H" else float(a)
                for i in range(int(run)):
                    dark.add((int(x) + i, int(y)))
                x += run
    return size, dark


def test_the_svg_qr_code_scales_with_its_box_has_a_quiet_zone_and_decodes() -> None:
    uri = upi_uri(**{**GOOD, "payee_name": "सुनीता शर्मा"})
    svg = upi_qr_svg(uri, title='Pay "Sharma" <clinic>')
    root = ET.fromstring(svg)  # noqa: S314 (our own SVG, made by segno)
    assert root.tag == "svg"  # inline in HTML: no XML declaration or namespace needed
    assert "width" not in root.attrib and "height" not in root.attrib  # CSS sizes it
    assert root.attrib["role"] == "img" and root.attrib["aria-label"] == 'Pay "Sharma" <clinic>'
    size, dark = svg_modules(svg)
    assert dark and all(4 <= x < size - 4 and 4 <= y < size - 4 for x, y in dark)
    # Drawn module by module and decoded, the SVG's code is the link.
    scale = 6
    image = Image.new("L", (size * scale, size * scale), 255)
    for x, y in dark:
        image.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    assert decode(image) == uri
