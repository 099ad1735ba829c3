"""The clinical benchmark (issue 12): the consultation screen, ICD-10 search, and issuing
prescriptions with their PDF and signature.

1. Consultation screen: one patient with 500 past signed visits (each with a SOAP note,
   one or two diagnoses and five vitals) and 1,000 issued, signed prescriptions (two per
   visit), bulk-loaded with COPY as the services would write them (the same ciphertexts,
   bound to the same associated data, and real Ed25519 signatures). Then
   ``GET /consult/{appointment_id}`` of a new checked-in appointment of that patient, N
   times through the real app in process (a signed-in doctor's cookie). The server time
   is what the access log measures around the whole ASGI call; the round trip through
   the test client is printed beside it.
2. ICD-10 search through :func:`opdesk.clinical.icd.search`, each in its own transaction
   as a request would be: code prefixes and words (some misspelt), 2,000 searches.
3. Prescriptions: M drafts of three medicines each are issued through
   :func:`opdesk.clinical.prescriptions.issue` and printed as the PDF route prints them;
   then the PDF alone and the signature alone.

Benches are not tests: nothing is asserted about time; the figures are printed.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from opdesk.app import create_app
from opdesk.bootstrap import Services
from opdesk.clinical import icd, prescriptions, rx_pdf, signing, visits
from opdesk.clinical.models import Prescription, version_row_id
from opdesk.clinical.web.rx import document_of
from opdesk.config import Settings
from opdesk.context import RequestContext, system_context
from opdesk.db import Database, libpq_url
from opdesk.identity import sessions
from opdesk.identity.service import Identity, create_user
from opdesk.patients.schemas import PatientCreate
from opdesk.patients.service import register
from opdesk.scheduling import service as scheduling
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import new_keyring
from opdesk.tenancy.schemas import TenantCreate
from opdesk.tenancy.service import create_tenant
from opdesk.uow import transaction
from opdesk.web.deps import SESSION_COOKIE

PAST_VISITS = 500
RX_PER_VISIT = 2
CONSULT_GETS = 200
CONSULT_WARM_UP = 10
ICD_SEARCHES = 2000
ISSUES = 40
PDFS = 30
SIGNATURES = 2000
SESSION_FOR = timedelta(hours=6)
BASE_URL = "https://bench.opdesk.in"

# Recordable WHO ICD-10 codes an Indian OPD writes often.
CODES = ("A09", "J06.9", "E11.9", "I10", "K29.7", "R50.9", "A01.0", "J45.9", "M54.5", "N39.0")
VITALS = (
    ("bp-systolic", "mmHg", (110, 160)),
    ("bp-diastolic", "mmHg", (70, 100)),
    ("pulse", "/min", (60, 100)),
    ("temperature", "°F", (97, 102)),
    ("weight", "kg", (55, 80)),
)
MEDICINES = (
    ("Paracetamol", "500 mg", "tablet", "1 tablet", "1-0-1", 5, "after food"),
    ("Amlodipine", "5 mg", "tablet", "1 tablet", "1-0-0", 30, "after food"),
    ("Metformin", "500 mg", "tablet", "1 tablet", "1-0-1", 30, "after food"),
    ("Pantoprazole", "40 mg", "tablet", "1 tablet", "1-0-0", 14, "before food"),
    ("Cetirizine", "10 mg", "tablet", "1 tablet", "0-0-1", 5, None),
    ("Azithromycin", "500 mg", "tablet", "1 tablet", "OD", 3, "after food"),
)
ICD_QUERIES = (
    # code prefixes
    "E11",
    "J0",
    "A0",
    "I10",
    "K29.7",
    "r50",
    # words
    "typhoid",
    "diabetes mellitus",
    "fever",
    "hypertension",
    "asthma",
    "urinary tract infection",
    "gastritis",
    "low back pain",
    # misspellings (the trigram index is asked; every word must still appear)
    "diabetis",
    "hypertention",
    "typhiod",
)


@dataclass(frozen=True)
class Clinic:
    tenant_id: uuid.UUID
    doctor_id: uuid.UUID  # the doctor profile
    doctor_user_id: uuid.UUID
    patient_id: uuid.UUID
    token: str  # the doctor's session

    def ctx(self) -> RequestContext:
        ctx = system_context(self.tenant_id)
        ctx.actor_id = self.doctor_user_id
        ctx.role = "doctor"
        return ctx


# --------------------------------------------------------------------------- figures


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(len(ordered) * q) - 1)] * 1000


def _spread(samples: list[float]) -> str:
    return (
        f"p50 {_ms(samples, 0.50):7.2f} ms   p95 {_ms(samples, 0.95):7.2f} ms   "
        f"p99 {_ms(samples, 0.99):7.2f} ms"
    )


def _rate(label: str, count: int, seconds: float) -> None:
    print(
        f"  {label:<34} {count / seconds:8.1f} per second   "
        f"({count} in {seconds:5.2f} s, {seconds / count * 1000:6.2f} ms each)"
    )


# --------------------------------------------------------------------------- the clinic


def _clinic(db: Database, ident: Identity) -> Clinic:
    ctx = system_context(None)
    with transaction(db, ctx) as session:
        tenant = create_tenant(
            session,
            ctx,
            data=TenantCreate(name="Bench Clinic", slug=f"bench-{uuid.uuid4().hex[:8]}"),
        )
    ctx = system_context(tenant.id)
    with transaction(db, ctx) as session:
        user = create_user(
            session,
            ctx,
            ident,
            name="Dr. Bench",
            role="doctor",
            email="doctor@bench.in",
            password="bench password",  # noqa: S106 - a throw-away bench database
        )
        doctor = scheduling.create_doctor(
            session,
            ctx,
            user_id=user.id,
            fields=scheduling.DoctorFields(
                display_name="Dr. Bench",
                specialty="General medicine",
                registration_number="MMC-2011-04512",
                consultation_fee=Decimal("500"),
                visit_types=(scheduling.VisitType("consultation", "Consultation", 15),),
            ),
        )
        patient = register(
            session,
            ctx,
            ident,
            data=PatientCreate.model_validate(
                {
                    "name": {"first": "सुनीता", "last": "शर्मा"},
                    "phone": "+919812345678",
                    "ageYears": 52,
                    "gender": "female",
                }
            ),
        )
        _, token = sessions.start(
            session,
            ctx,
            user=user,
            stage="active",
            method="bench",
            device_id=None,
            idle=SESSION_FOR,
            lifetime=SESSION_FOR,
        )
    return Clinic(tenant.id, doctor.id, user.id, patient.id, token)


def _appointments(cur: Any, c: Clinic, when: list[datetime], status: str) -> list[uuid.UUID]:
    """Walk-in appointments (no slot) of the patient with the doctor, one per moment."""
    ids = [uuid.uuid4() for _ in when]
    columns = (
        "tenant_id, id, patient_id, doctor_id, visit_type, channel, status, "
        "timeline_requested_at, timeline_confirmed_at, timeline_checked_in_at, "
        "timeline_in_consult_at, timeline_completed_at, updated_at"
    )
    done = status == "completed"
    with cur.copy(f"COPY appointments ({columns}) FROM STDIN") as copy:
        for row_id, at in zip(ids, when, strict=True):
            copy.write_row(
                (
                    c.tenant_id,
                    row_id,
                    c.patient_id,
                    c.doctor_id,
                    "consultation",
                    "walk-in",
                    status,
                    at,
                    at,
                    at,
                    at if done else None,
                    at + timedelta(minutes=12) if done else None,
                    at,
                )
            )
    return ids


def _seal(
    cipher: FieldCipher, c: Clinic, value: str, table: str, column: str, row: uuid.UUID
) -> bytes:
    return cipher.encrypt(value, tenant_id=c.tenant_id, table=table, column=column, row_id=row)


def load_history(db: Database, cipher: FieldCipher, c: Clinic, rng: random.Random) -> int:
    """The patient's past: visits with notes, diagnoses and vitals, signed; two issued
    prescriptions each. Written as the services write them; returns the rows written.
    """
    import psycopg

    with transaction(db, c.ctx()) as session:
        key = signing.current_key(session, c.ctx(), cipher)
        key_id = key.id
    now = datetime.now(UTC)
    when = [now - timedelta(days=3 * (i + 1), hours=rng.randint(0, 6)) for i in range(PAST_VISITS)]
    rows = 0
    with psycopg.connect(libpq_url(db.owner_url)) as conn, conn.cursor() as cur:
        appointments = _appointments(cur, c, when, "completed")
        visit_ids = [uuid.uuid4() for _ in when]
        with cur.copy(
            "COPY visits (tenant_id, id, appointment_id, patient_id, doctor_id, status, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            for visit_id, appointment_id, at in zip(visit_ids, appointments, when, strict=True):
                copy.write_row(
                    (
                        c.tenant_id,
                        visit_id,
                        appointment_id,
                        c.patient_id,
                        c.doctor_id,
                        "draft",
                        at,
                        at,
                    )
                )
        rows += 2 * PAST_VISITS
        # The note, as visits.save_note keeps a version.
        with cur.copy(
            "COPY visits_soap_versions (tenant_id, visit_id, v, s_encrypted, o_encrypted, "
            "a_encrypted, p_encrypted, created_at, created_by) FROM STDIN"
        ) as copy:
            for n, (visit_id, at) in enumerate(zip(visit_ids, when, strict=True)):
                row_id = version_row_id(visit_id, 1)
                note = {
                    "s": f"Fever and body ache for {n % 5 + 1} days; no cough.",
                    "o": "Alert, afebrile now. Chest clear. BP as charted.",
                    "a": "Viral fever; diabetes and hypertension under follow-up.",
                    "p": "Paracetamol as needed, fluids, review in a week.",
                }
                sealed = [
                    _seal(cipher, c, note[p], "visits_soap_versions", f"{p}_encrypted", row_id)
                    for p in visits.SOAP_PARTS
                ]
                copy.write_row((c.tenant_id, visit_id, 1, *sealed, at, c.doctor_user_id))
                rows += 1
        with cur.copy(
            "COPY visits_diagnoses (tenant_id, id, visit_id, patient_id, doctor_id, code, "
            "text_encrypted, is_primary, position, created_at) FROM STDIN"
        ) as copy:
            for visit_id, at in zip(visit_ids, when, strict=True):
                for position, code in enumerate(rng.sample(CODES, rng.choice((1, 2))), start=1):
                    row_id = uuid.uuid4()
                    said = (
                        _seal(
                            cipher,
                            c,
                            "since childhood",
                            "visits_diagnoses",
                            "text_encrypted",
                            row_id,
                        )
                        if position == 2
                        else None
                    )
                    copy.write_row(
                        (
                            c.tenant_id,
                            row_id,
                            visit_id,
                            c.patient_id,
                            c.doctor_id,
                            code,
                            said,
                            position == 1,
                            position,
                            at,
                        )
                    )
                    rows += 1
        with cur.copy(
            "COPY visits_vitals (tenant_id, id, visit_id, patient_id, type, value_encrypted, "
            "unit, collected_at, recorded_by, created_at) FROM STDIN"
        ) as copy:
            for visit_id, at in zip(visit_ids, when, strict=True):
                for kind, unit, (low, high) in VITALS:
                    row_id = uuid.uuid4()
                    value = str(rng.randint(low, high))
                    reading = _seal(cipher, c, value, "visits_vitals", "value_encrypted", row_id)
                    copy.write_row(
                        (
                            c.tenant_id,
                            row_id,
                            visit_id,
                            c.patient_id,
                            kind,
                            reading,
                            unit,
                            at,
                            c.doctor_user_id,
                            at,
                        )
                    )
                    rows += 1
        cur.execute(
            "UPDATE visits SET status = 'signed', soap_signed_version = 1, "
            "soap_locked_at = updated_at + interval '15 minutes', signed_by = %s "
            "WHERE tenant_id = %s AND id = ANY(%s)",
            (c.doctor_user_id, c.tenant_id, visit_ids),
        )
        rows += _load_prescriptions(cur, cipher, c, key, key_id, visit_ids, when, rng)
        cur.execute(
            "ANALYZE appointments, visits, visits_soap_versions, visits_diagnoses, "
            "visits_vitals, prescriptions, prescriptions_items"
        )
        conn.commit()
    return rows


def _load_prescriptions(
    cur: Any,
    cipher: FieldCipher,
    c: Clinic,
    key: Any,
    key_id: uuid.UUID,
    visit_ids: list[uuid.UUID],
    when: list[datetime],
    rng: random.Random,
) -> int:
    """Two issued prescriptions per visit: drafts with their medicines, then the issue
    (hash, Ed25519 signature, QR URL) as prescriptions.issue writes it.
    """
    made: list[tuple[uuid.UUID, uuid.UUID, datetime, list[prescriptions.ItemView]]] = []
    with cur.copy(
        "COPY prescriptions (tenant_id, id, visit_id, patient_id, doctor_id, version, "
        "created_at, updated_at) FROM STDIN"
    ) as copy:
        for visit_id, at in zip(visit_ids, when, strict=True):
            for _ in range(RX_PER_VISIT):
                rx_id = uuid.uuid4()
                copy.write_row((c.tenant_id, rx_id, visit_id, c.patient_id, c.doctor_id, 1, at, at))
                made.append((rx_id, visit_id, at, []))
    items = 0
    with cur.copy(
        "COPY prescriptions_items (tenant_id, prescription_id, position, name_encrypted, "
        "strength, form, route, dose, frequency, duration_days, timing, generic_allowed, "
        "refill_allowed, refill_remaining) FROM STDIN"
    ) as copy:
        for rx_id, _, _, views in made:
            for position, med in enumerate(rng.sample(MEDICINES, 3), start=1):
                name, strength, form, dose, frequency, days, timing = med
                column = f"name_encrypted#{position}"
                sealed = _seal(cipher, c, name, "prescriptions_items", column, rx_id)
                copy.write_row(
                    (
                        c.tenant_id,
                        rx_id,
                        position,
                        sealed,
                        strength,
                        form,
                        "oral",
                        dose,
                        frequency,
                        days,
                        timing,
                        True,
                        False,
                        0,
                    )
                )
                views.append(
                    prescriptions.ItemView(
                        position=position,
                        drug_id=None,
                        name=name,
                        strength=strength,
                        form=form,
                        route="oral",
                        dose=dose,
                        frequency=frequency,
                        frequency_words=None,
                        duration_days=days,
                        timing=timing,
                        timing_words=None,
                        instructions=None,
                        generic_allowed=True,
                        refill_allowed=False,
                        refill_remaining=0,
                        refill_interval_days=None,
                    )
                )
                items += 1
    cur.execute(
        "CREATE TEMP TABLE bench_issued (id uuid, issued_at timestamptz, signed_hash text, "
        "signature bytea, qr_data text) ON COMMIT DROP"
    )
    with cur.copy("COPY bench_issued FROM STDIN") as copy:
        for rx_id, visit_id, at, views in made:
            issued_at = at + timedelta(minutes=10)
            signed = {  # prescriptions.payload, for a row written without the ORM
                "type": "opdesk-prescription",
                "id": str(rx_id),
                "clinicId": str(c.tenant_id),
                "visitId": str(visit_id),
                "patientId": str(c.patient_id),
                "doctorId": str(c.doctor_id),
                "version": 1,
                "supersedes": None,
                "issuedAt": issued_at.astimezone(UTC).isoformat(timespec="microseconds"),
                "signingKeyId": str(key_id),
                "items": [v.signed() for v in views],
                "allergyFlags": [],
            }
            digest = signing.digest(signed)
            shown = Prescription(tenant_id=c.tenant_id, id=rx_id, signed_hash=digest)
            url = BASE_URL + prescriptions.VERIFY_PATH + prescriptions.token_of(shown)
            copy.write_row((rx_id, issued_at, digest, signing.sign(cipher, key, signed), url))
    cur.execute(
        "UPDATE prescriptions p SET issued_at = b.issued_at, signed_hash = b.signed_hash, "
        "signature = b.signature, signing_key_id = %s, qr_data = b.qr_data, "
        "updated_at = b.issued_at FROM bench_issued b WHERE p.tenant_id = %s AND p.id = b.id",
        (key_id, c.tenant_id),
    )
    return len(made) + items


def _checks_out(db: Database, cipher: FieldCipher, c: Clinic) -> str:
    """One loaded prescription through the verification the QR code leads to."""
    with transaction(db, c.ctx()) as session:
        rx = session.execute(
            select(Prescription).where(Prescription.issued_at.is_not(None)).limit(1)
        ).scalar_one()
        assert rx.signed_hash is not None
        return prescriptions.check(session, cipher, rx, rx.signed_hash[:32]).status


# --------------------------------------------------------------------------- 1. consult


class _ServerTimes(logging.Handler):
    """The access log's own measure of each request (opdesk.web.middleware)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ms: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        ms = getattr(record, "ms", None)
        if ms is not None:
            self.ms.append(float(ms))


def consultation(db: Database, cipher: FieldCipher, app: Any, c: Clinic) -> None:
    import psycopg

    with psycopg.connect(libpq_url(db.owner_url)) as conn, conn.cursor() as cur:
        (appointment_id,) = _appointments(cur, c, [datetime.now(UTC)], "checked-in")
        conn.commit()
    access = logging.getLogger("opdesk.access")
    times = _ServerTimes()
    level = access.level
    access.setLevel(logging.INFO)
    access.addHandler(times)
    round_trips: list[float] = []
    try:
        with TestClient(app) as client:
            client.cookies.set(SESSION_COOKIE, c.token)
            url = f"/consult/{appointment_id}"
            for n in range(CONSULT_WARM_UP + CONSULT_GETS):
                if n == CONSULT_WARM_UP:
                    times.ms.clear()
                started = time.perf_counter()
                page = client.get(url)
                took = time.perf_counter() - started
                if page.status_code != 200:
                    raise RuntimeError(f"GET {url}: {page.status_code} {page.text[:300]}")
                if n >= CONSULT_WARM_UP:
                    round_trips.append(took)
    finally:
        access.removeHandler(times)
        access.setLevel(level)
    server = [ms / 1000 for ms in times.ms]
    size = len(page.content) / 1024
    print(f"  GET /consult/{{id}}  server     {_spread(server)}   ({len(server)} requests)")
    print(f"  GET /consult/{{id}}  round trip {_spread(round_trips)}   ({size:.0f} KiB page)")


# --------------------------------------------------------------------------- 2. ICD-10


def icd_search(db: Database, c: Clinic) -> None:
    rng = random.Random(11)
    asked = [rng.choice(ICD_QUERIES) for _ in range(ICD_SEARCHES)]
    per_query: dict[str, list[float]] = {q: [] for q in ICD_QUERIES}
    found: dict[str, int] = {}
    ctx = c.ctx()
    for q in ICD_QUERIES[:3]:  # warm up
        with transaction(db, ctx) as session:
            icd.search(session, q)
    samples: list[float] = []
    for q in asked:
        started = time.perf_counter()
        with transaction(db, ctx) as session:
            found[q] = len(icd.search(session, q))
        took = time.perf_counter() - started
        samples.append(took)
        per_query[q].append(took)
    print(
        f"  icd.search, {ICD_SEARCHES} searches, each in its own transaction   {_spread(samples)}"
    )
    alone: list[float] = []
    with transaction(db, ctx) as session:
        for q in asked:
            started = time.perf_counter()
            icd.search(session, q)
            alone.append(time.perf_counter() - started)
    print(f"  icd.search, {ICD_SEARCHES} searches in one transaction          {_spread(alone)}")
    slowest = sorted(per_query, key=lambda q: -statistics.median(per_query[q] or [0.0]))
    for q in slowest[:4]:
        print(
            f"    slowest median: {q!r:<28} {statistics.median(per_query[q]) * 1000:6.2f} ms "
            f"({found[q]} found)"
        )
    empty = [q for q in ICD_QUERIES if found.get(q) == 0]
    if empty:
        print(f"    found nothing for: {', '.join(repr(q) for q in empty)}")


# --------------------------------------------------------------------------- 3. prescriptions


def _drafts(db: Database, cipher: FieldCipher, c: Clinic, count: int) -> list[uuid.UUID]:
    """``count`` drafts of three medicines, each on a visit of its own, made by the services."""
    import psycopg

    with psycopg.connect(libpq_url(db.owner_url)) as conn, conn.cursor() as cur:
        appointments = _appointments(cur, c, [datetime.now(UTC)] * count, "in-consult")
        conn.commit()
    rng = random.Random(5)
    made = []
    ctx = c.ctx()
    for appointment_id in appointments:
        with transaction(db, ctx) as session:
            visit = visits.open_visit(session, ctx, appointment_id=appointment_id)
            draft = prescriptions.start(session, ctx, visit_id=visit.id)
            items = [
                prescriptions.ItemIn(
                    name=name,
                    strength=strength,
                    form=form,
                    dose=dose,
                    frequency=frequency,
                    duration_days=days,
                    timing=timing,
                )
                for name, strength, form, dose, frequency, days, timing in rng.sample(MEDICINES, 3)
            ]
            prescriptions.set_items(session, ctx, cipher, prescription_id=draft.id, items=items)
            made.append(draft.id)
    return made


def _timed(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return time.perf_counter() - started


def prescribing(db: Database, cipher: FieldCipher, c: Clinic, fonts: Path) -> None:
    ctx = c.ctx()
    drafts = _drafts(db, cipher, c, ISSUES * 2)
    with_pdf, alone = drafts[:ISSUES], drafts[ISSUES:]

    def issue(rx_id: uuid.UUID, *, pdf: bool) -> None:
        with transaction(db, ctx) as session:
            rx = prescriptions.issue(session, ctx, cipher, prescription_id=rx_id, base_url=BASE_URL)
            if pdf:
                rx_pdf.render(fonts, document_of(session, cipher, rx))

    # The first PDF converts the fonts into the cache: not measured.
    with transaction(db, ctx) as session:
        rx = prescriptions.issue(
            session, ctx, cipher, prescription_id=alone.pop(), base_url=BASE_URL
        )
        rx_pdf.render(fonts, document_of(session, cipher, rx))
        issued_id = rx.id

    pending = iter(with_pdf)
    _rate(
        "issue + PDF (service, own txn)",
        len(with_pdf),
        _timed(lambda: issue(next(pending), pdf=True), len(with_pdf)),
    )
    pending = iter(alone)
    _rate(
        "issue only (service, own txn)",
        len(alone),
        _timed(lambda: issue(next(pending), pdf=False), len(alone)),
    )

    with transaction(db, ctx) as session:
        rx = session.get_one(Prescription, (c.tenant_id, issued_id))
        document = document_of(session, cipher, rx)
        key = signing.current_key(session, ctx, cipher)
        signed = prescriptions.payload(session, cipher, rx)
    _rate("PDF only (render)", PDFS, _timed(lambda: rx_pdf.render(fonts, document), PDFS))

    def sign() -> None:
        signing.digest(signed)
        signing.sign(cipher, key, signed)

    _rate("sign only (hash + Ed25519)", SIGNATURES, _timed(sign, SIGNATURES))


# --------------------------------------------------------------------------- runner


def run(db: Database, data_dir: Path) -> None:
    keyring = StaticKeyring(new_keyring())
    settings = Settings(_env_file=None, data_dir=data_dir, fast_password_hashing=True)
    app = create_app(settings, database=db, keyring=keyring)
    services: Services = app.state.services
    cipher = services.cipher
    print(
        f"\nclinical (issue 12): a patient with {PAST_VISITS} past signed visits and "
        f"{PAST_VISITS * RX_PER_VISIT:,} issued prescriptions"
    )
    started = time.perf_counter()
    c = _clinic(db, services.identity)
    rows = load_history(db, cipher, c, random.Random(3))
    print(
        f"  loaded {rows:,} rows in {time.perf_counter() - started:.1f} s; a loaded "
        f"prescription checks as {_checks_out(db, cipher, c)!r}"
    )
    consultation(db, cipher, app, c)
    icd_search(db, c)
    prescribing(db, cipher, c, settings.data_dir / "fonts")
