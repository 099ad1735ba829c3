"""Prescriptions test data: a draft visit for a booked appointment, prescriptions made
through the service as the visit's doctor, and reading a PDF's text and its QR code
(the squares drawn, rendered to an image and decoded by a real QR reader).
"""

from __future__ import annotations

import re
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import zxingcpp
from PIL import Image

from opdesk import audit
from opdesk.clinical import prescriptions
from opdesk.clinical.models import Prescription, Visit, VisitStatus
from opdesk.clinical.prescriptions import ItemIn
from opdesk.db import Database, new_id
from opdesk.identity.models import User
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import clinic_session, ctx_for
from tests.factories.people import bearer, make_patient, open_session
from tests.factories.scheduling import book, clinic_with_slots

BASE_URL = "http://127.0.0.1:8000"


@dataclass
class Setting:
    tenant: Tenant
    doctor: Any
    patient: Any
    visit_id: uuid.UUID


def doctor_ctx(tenant: Tenant, doctor: Any) -> Any:
    return ctx_for(tenant.id, actor_id=doctor.user_id, role="doctor")


def doctor_headers(db: Database, ident: Any, doctor: Any) -> dict[str, str]:
    """Bearer headers of a signed-in session of the doctor's user."""
    with clinic_session(db, doctor.tenant_id) as session:
        user = session.get_one(User, (doctor.tenant_id, doctor.user_id))
        session.expunge(user)
    return bearer(open_session(db, ident, user))


def make_visit(db: Database, ident: Any, tenant: Tenant, **patient: Any) -> Setting:
    """A draft visit of a new patient with a new doctor (booked, then opened)."""
    _tenant, doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    person = make_patient(db, ident, tenant, **patient)
    appointment = book(db, tenant, slots[0], person)
    ctx = doctor_ctx(tenant, doctor)
    with transaction(db, ctx) as session:
        now = ctx.now()
        visit = Visit(
            tenant_id=tenant.id,
            id=new_id(),
            appointment_id=appointment.id,
            patient_id=person.id,
            doctor_id=doctor.id,
            status=VisitStatus.DRAFT,
            created_at=now,
            updated_at=now,
        )
        session.add(visit)
        session.flush()
        audit.record(ctx, entity="visits", entity_id=visit.id, action="create")
    return Setting(tenant, doctor, person, visit.id)


FEVER = [
    {
        "name": "Paracetamol 650 mg",
        "dose": "1 tablet",
        "frequency": "1-0-1",
        "durationDays": 3,
        "timing": "after-food",
    },
]


def make_prescription(
    db: Database,
    ident: Any,
    tenant: Tenant,
    *,
    items: list[dict[str, Any]] | None = None,
    issue: bool = True,
    setting: Setting | None = None,
    **patient: Any,
) -> tuple[Setting, Prescription]:
    """A prescription (issued unless ``issue=False``) made by the visit's doctor."""
    setting = setting or make_visit(db, ident, tenant, **patient)
    ctx = doctor_ctx(tenant, setting.doctor)
    with transaction(db, ctx) as session:
        made = prescriptions.start(session, ctx, visit_id=setting.visit_id)
        prescriptions.set_items(
            session,
            ctx,
            ident.cipher,
            prescription_id=made.id,
            items=[ItemIn.model_validate(i) for i in (items or FEVER)],
        )
        if issue:
            made = prescriptions.issue(
                session, ctx, ident.cipher, prescription_id=made.id, base_url=BASE_URL
            )
        session.expunge(made)
    return setting, made


def open_draft(
    db: Database, ident: Any, tenant: Tenant, **patient: Any
) -> tuple[Setting, Prescription]:
    """A visit's draft prescription without medicines, as "Write a prescription" opens it."""
    setting = make_visit(db, ident, tenant, **patient)
    ctx = doctor_ctx(tenant, setting.doctor)
    with transaction(db, ctx) as session:
        draft = prescriptions.start(session, ctx, visit_id=setting.visit_id)
        session.expunge(draft)
    return setting, draft


def prescription_id(db: Database, ident: Any, tenant: Tenant) -> uuid.UUID:
    """For the generated route tests: an issued prescription of a new patient."""
    return make_prescription(db, ident, tenant)[1].id


# --------------------------------------------------------------------------- PDFs


def _objects(data: bytes) -> dict[int, bytes]:
    return {
        int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\s*(.*?)endobj", data, re.S)
    }


def _stream(obj: bytes) -> bytes | None:
    found = re.search(rb"stream\r?\n(.*?)\r?\nendstream", obj, re.S)
    if found is None:
        return None
    raw = found.group(1)
    try:
        return zlib.decompress(raw) if b"FlateDecode" in obj else raw
    except zlib.error:
        return None


def page_contents(data: bytes) -> list[bytes]:
    """The decompressed content streams that draw text or shapes."""
    streams = (_stream(o) for o in _objects(data).values())
    return [s for s in streams if s and (b" Tj" in s or b" re" in s)]


def pdf_runs(data: bytes) -> list[tuple[float, float, str]]:
    """The PDF's text runs as fpdf2 writes them (Type0 fonts, 2-byte glyph codes, one
    ``BT x y Td ... ET`` block each), mapped back to Unicode through each font's ToUnicode
    CMap: (x, y, text) with x and y in points from the page's bottom left.
    """
    objects = _objects(data)
    maps: dict[str, dict[int, str]] = {}
    for obj in objects.values():
        for font, ref in re.findall(rb"/(F\d+) (\d+) 0 R", obj):
            cmap_ref = re.search(rb"/ToUnicode (\d+) 0 R", objects.get(int(ref), b""))
            cmap = _stream(objects[int(cmap_ref.group(1))]) if cmap_ref else None
            if not cmap:
                continue
            codes: dict[int, str] = {}
            for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
                for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                    codes[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
            maps[font.decode()] = codes
    simple = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}

    def unescape(m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        return bytes([int(code, 8)]) if code[:1].isdigit() else simple.get(code, code)

    runs: list[tuple[float, float, str]] = []
    pattern = rb"/(F\d+) [\d.]+ Tf|BT (-?[\d.]+) (-?[\d.]+) Td|\(((?:\\.|[^\\)])*)\) Tj|ET"
    for content in page_contents(data):
        glyphs: dict[int, str] = {}
        at = (0.0, 0.0)
        text: list[str] = []
        for m in re.finditer(pattern, content, re.S):
            if m.group(1):
                glyphs = maps.get(m.group(1).decode(), {})
            elif m.group(2):
                at = (float(m.group(2)), float(m.group(3)))
            elif m.group(0) == b"ET":
                if text:  # not a block that only switches the font
                    runs.append((*at, "".join(text)))
                text = []
            else:
                raw = re.sub(rb"\\([0-7]{1,3}|.)", unescape, m.group(4), flags=re.S)
                text.append(
                    "".join(
                        glyphs.get(int.from_bytes(raw[i : i + 2], "big"), "")
                        for i in range(0, len(raw), 2)
                    )
                )
    return runs


def pdf_text(data: bytes) -> str:
    """A PDF's text, run after run (each run ends with a new line)."""
    return "".join(text + "\n" for _x, _y, text in pdf_runs(data))


def qr_from_pdf(data: bytes) -> list[list[bool]]:
    """The QR code's modules read back from the filled squares the PDF draws.

    The squares of the QR code are the only small filled squares of one size; their
    positions on a grid of that size give the matrix.
    """
    squares: list[tuple[float, float, float]] = []
    for content in page_contents(data):
        for m in re.finditer(rb"(-?[\d.]+) (-?[\d.]+) (-?[\d.]+) (-?[\d.]+) re f", content):
            x, y, w, h = (float(v) for v in m.groups())
            if abs(w - abs(h)) < 0.01 and 0 < w < 5:
                squares.append((x, y, w))
    assert squares, "no QR squares in the PDF"
    step = max({s[2] for s in squares}, key=lambda w: sum(1 for s in squares if s[2] == w))
    cells = [(x, y) for x, y, w in squares if w == step]
    left, top = min(x for x, _ in cells), max(y for _, y in cells)
    size = round((max(x for x, _ in cells) - left) / step) + 1
    matrix = [[False] * size for _ in range(size)]
    for x, y in cells:
        matrix[round((top - y) / step)][round((x - left) / step)] = True
    return matrix


def qr_image(matrix: list[list[bool]], *, scale: int = 8, quiet: int = 4) -> Image.Image:
    """The modules as a black-on-white picture with a quiet zone, as a camera sees them."""
    size = (len(matrix) + 2 * quiet) * scale
    image = Image.new("L", (size, size), 255)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                left, top = (c + quiet) * scale, (r + quiet) * scale
                image.paste(0, (left, top, left + scale, top + scale))
    return image


def qr_text(data: bytes) -> str:
    """The text of the PDF's QR code, decoded by zxing-cpp (exactly one code expected)."""
    qr = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = zxingcpp.read_barcodes(qr_image(qr_from_pdf(data)), formats=qr)
    assert len(found) == 1, f"expected one QR code in the PDF, decoded {len(found)}"
    return found[0].text
