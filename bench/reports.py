"""Daily reports at size: building report_daily, and the dashboard over HTTP.

Two clinics are written straight into the tables with ``generate_series`` (as the owner:
a bench database has no audit guard), each appointment followed by the records a day at
a clinic leaves behind: a visit with a note (signed for most, a diagnosis on most), a
prescription for most, a diet plan for a few, a bill paid at the counter or online, a
failed attempt now and then, a refund with its credit note rarely, and the ledger rows.

* **a busy day**: 100 doctors with 100 five-minute slots each, every slot booked:
  10,000 appointments on one day; that day is built, then built again (nothing changed);
* **a year**: 100 doctors x 365 days x 28 quarter-hour slots, 2 % left empty: about
  1,000,000 appointments. The year is built as ``opdesk report build`` builds it (one
  transaction), built again, and the nightly rule's share (yesterday and the six days
  before) is timed;
* **the dashboard** with that year built, one client after a warm-up, over HTTP on
  uvicorn: ``/reports?days=7|30|90`` as the accounts desk, ``/reports/mine`` as a doctor
  and the days CSV, each 40 times; p50 and p95.
"""

from __future__ import annotations

import http.client
import json
import resource
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.clinic import SESSION_FOR, bench_clinic
from bench.http_load import WORKERS, Server, percentile
from bench.patient_search import load as load_patients
from opdesk.automation.later_rules import build_daily_report
from opdesk.config import Settings
from opdesk.context import system_context
from opdesk.db import Database, libpq_url
from opdesk.identity import sessions
from opdesk.identity.service import Identity, create_user
from opdesk.reports.build import Built, build
from opdesk.scheduling import service as scheduling
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import load_keyring
from opdesk.uow import transaction

IST = ZoneInfo("Asia/Kolkata")
DOCTORS = 100
PATIENTS = 20_000
REQUESTS = 40
CSV = "/reports/export/days.csv?days=90"
PAGES = ("/reports?days=7", "/reports?days=30", "/reports?days=90")


@dataclass(frozen=True)
class Shape:
    """How a clinic's calendar is laid out: every doctor works every day of the range."""

    first: date
    days: int
    slots_per_day: int
    minutes: int
    opens_at: int  # hour
    empty: float  # share of slots nobody booked


@dataclass(frozen=True)
class Clinic:
    tenant_id: uuid.UUID
    doctors: list[uuid.UUID]
    doctor_token: str  # the first doctor's bearer token
    accounts_token: str


# ------------------------------------------------------------------ the clinics


def _clinic(db: Database, ident: Identity, cipher: FieldCipher, label: str) -> Clinic:
    tenant_id, _desk = bench_clinic(db, ident)
    ctx = system_context(tenant_id)
    fields = scheduling.DoctorFields(
        display_name="Dr. Bench",
        specialty="General medicine",
        registration_number="BENCH-1",
        consultation_fee=Decimal("500"),
        visit_types=(scheduling.VisitType("consultation", "Consultation", 15),),
    )
    doctors: list[uuid.UUID] = []
    tokens: list[str] = []
    with transaction(db, ctx) as session:
        for i in range(DOCTORS):
            user = create_user(
                session,
                ctx,
                ident,
                name=f"Doctor {i}",
                role="doctor",
                email=f"doctor{i}@{label}.bench.in",
                password="bench password",  # noqa: S106 - a throw-away bench database
            )
            doctors.append(
                scheduling.create_doctor(session, ctx, user_id=user.id, fields=fields).id
            )
            if i == 0:
                tokens.append(_signed_in(session, ctx, user))
        accounts = create_user(
            session,
            ctx,
            ident,
            name="Accounts",
            role="accounts",
            email=f"accounts@{label}.bench.in",
            password="bench password",  # noqa: S106 - a throw-away bench database
        )
        tokens.append(_signed_in(session, ctx, accounts))
    load_patients(db, cipher, tenant_id, 1, PATIENTS + 1)
    return Clinic(tenant_id, doctors, *tokens)


def _signed_in(session: Any, ctx: Any, user: Any) -> str:
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
    return token


# Every statement reads the plan (one row per slot) and writes one table; ``%(t)s`` is the
# clinic. The shares: 2 % of slots empty (the shape says), then of the booked ones 10 %
# cancelled, 8 % missed, the rest seen; a seen patient's note is signed 9 times in 10,
# with a diagnosis 85 in 100; 60 % get a prescription, 5 % a diet plan; 3 % of bills are
# still owed, 1.5 % had a failed attempt first, 0.3 % were partly refunded.
PLAN = """
CREATE TEMP TABLE plan ON COMMIT DROP AS
SELECT gen_random_uuid() AS slot_id, gen_random_uuid() AS appointment_id,
       gen_random_uuid() AS visit_id, gen_random_uuid() AS invoice_id,
       gen_random_uuid() AS payment_id, doc.id AS doctor_id, d.day::date AS day,
       (d.day + make_interval(hours => %(opens)s, mins => n * %(minutes)s))
           AT TIME ZONE 'Asia/Kolkata' AS starts_at,
       pat.ids[1 + floor(random() * array_length(pat.ids, 1))::int] AS patient_id,
       random() AS r, random() AS r2, random() AS r3, random() AS r4,
       row_number() OVER () AS n
FROM unnest(%(doctors)s::uuid[]) doc(id)
CROSS JOIN generate_series(%(first)s::timestamp, %(last)s::timestamp, '1 day') d(day)
CROSS JOIN generate_series(0, %(slots)s - 1) n
CROSS JOIN (SELECT array_agg(id) AS ids FROM patients WHERE tenant_id = %(t)s) pat;
ALTER TABLE plan ADD COLUMN status text, ADD COLUMN channel text,
    ADD COLUMN requested timestamptz, ADD COLUMN confirmed timestamptz;
UPDATE plan SET
    status = CASE WHEN r < %(empty)s THEN NULL WHEN r < %(empty)s + 0.10 THEN 'cancelled'
                  WHEN r < %(empty)s + 0.18 THEN 'no-show' ELSE 'completed' END,
    channel = CASE WHEN r2 < 0.35 THEN 'phone' WHEN r2 < 0.65 THEN 'web'
                   WHEN r2 < 0.80 THEN 'whatsapp' ELSE 'walk-in' END;
UPDATE plan SET requested = CASE WHEN channel = 'walk-in'
                                 THEN starts_at - r3 * interval '20 minutes'
                                 ELSE starts_at - r3 * interval '7 days' END;
UPDATE plan SET confirmed = requested + CASE WHEN channel IN ('web', 'whatsapp')
                                             THEN r4 * interval '30 minutes'
                                             ELSE interval '0' END;
ANALYZE plan;
"""

WRITES = [
    """INSERT INTO slots (tenant_id, id, doctor_id, date, starts_at, ends_at, occupied_from,
           occupied_until, status, meta)
       SELECT %(t)s, slot_id, doctor_id, day, starts_at, starts_at + %(minutes)s * interval '1m',
              starts_at, starts_at + %(minutes)s * interval '1m',
              CASE WHEN status IN ('no-show', 'completed') THEN 'booked' ELSE 'free' END,
              '{"visitType": ["consultation"], "bufferBefore": 0, "bufferAfter": 0}'
       FROM plan""",
    """INSERT INTO appointments (tenant_id, id, patient_id, doctor_id, slot_id, visit_type,
           channel, status, timeline_requested_at, timeline_confirmed_at,
           timeline_completed_at, timeline_no_show_at, timeline_cancelled_at, updated_at)
       SELECT %(t)s, appointment_id, patient_id, doctor_id, slot_id, 'consultation', channel,
              status, requested, confirmed,
              CASE WHEN status = 'completed' THEN starts_at + interval '15m' END,
              CASE WHEN status = 'no-show' THEN starts_at + interval '30m' END,
              CASE WHEN status = 'cancelled' THEN confirmed + (starts_at - confirmed) * r4 END,
              greatest(confirmed, starts_at + interval '30m')
       FROM plan WHERE status IS NOT NULL""",
    # Drafts first: a signed note's diagnoses are frozen, so they go in before signing.
    """INSERT INTO visits (tenant_id, id, appointment_id, patient_id, doctor_id, status,
           created_at, updated_at)
       SELECT %(t)s, visit_id, appointment_id, patient_id, doctor_id, 'draft',
              starts_at + interval '2m', starts_at + interval '2m'
       FROM plan WHERE status = 'completed'""",
    """INSERT INTO visits_diagnoses (tenant_id, id, visit_id, patient_id, doctor_id, code,
           is_primary, position, created_at)
       SELECT %(t)s, gen_random_uuid(), visit_id, patient_id, doctor_id, 'J06.9', true, 0,
              starts_at + interval '8m'
       FROM plan WHERE status = 'completed' AND r4 < 0.85""",
    # (plan is analyzed above: unanalyzed, it is joined by nested loop, for hours.)
    """UPDATE visits v SET status = 'signed', soap_signed_version = 1,
           soap_locked_at = p.starts_at + interval '12m', updated_at = p.starts_at + interval '12m'
       FROM plan p
       WHERE v.tenant_id = %(t)s AND v.id = p.visit_id AND p.status = 'completed'
         AND p.r3 < 0.9""",
    """INSERT INTO signing_keys (tenant_id, id, public_key, private_key_encrypted, created_at)
       VALUES (%(t)s, %(key)s, '\\x00', '\\x00', now())""",
    """INSERT INTO prescriptions (tenant_id, id, visit_id, patient_id, doctor_id, version,
           issued_at, signed_hash, signature, signing_key_id, qr_data, created_at, updated_at)
       SELECT %(t)s, gen_random_uuid(), visit_id, patient_id, doctor_id, 1,
              starts_at + interval '10m', repeat('0', 64), '\\x00', %(key)s, 'rx',
              starts_at + interval '10m', starts_at + interval '10m'
       FROM plan WHERE status = 'completed' AND r2 < 0.6""",
    """INSERT INTO diet_plans (tenant_id, id, visit_id, patient_id, doctor_id, version,
           schedule, issued_at, created_at, updated_at)
       SELECT %(t)s, gen_random_uuid(), visit_id, patient_id, doctor_id, 1, '[]',
              starts_at + interval '11m', starts_at + interval '11m', starts_at + interval '11m'
       FROM plan WHERE status = 'completed' AND r2 > 0.95""",
    # 500.00 a consultation, 50.00 off for one in five; owed (issued) for 3 in 100.
    """INSERT INTO invoices (tenant_id, id, patient_id, appointment_id, visit_id, number,
           status, line_items, subtotal, tax_total, discount_total, grand_total, balance_due,
           cgst_total, sgst_total, igst_total, amount_paid, amount_refunded,
           amount_credited, issued_at, created_at, updated_at)
       SELECT %(t)s, invoice_id, patient_id, appointment_id, visit_id,
              'BENCH/' || n, CASE WHEN r3 > 0.97 THEN 'issued' ELSE 'paid' END, '[]', 500,
              0, CASE WHEN r4 < 0.2 THEN 50 ELSE 0 END,
              CASE WHEN r4 < 0.2 THEN 450 ELSE 500 END,
              CASE WHEN r3 > 0.97 THEN CASE WHEN r4 < 0.2 THEN 450 ELSE 500 END ELSE 0 END,
              0, 0, 0,
              CASE WHEN r3 > 0.97 THEN 0 ELSE CASE WHEN r4 < 0.2 THEN 450 ELSE 500 END END,
              0, 0, starts_at + interval '20m', starts_at + interval '20m',
              starts_at + interval '21m'
       FROM plan WHERE status = 'completed'""",
    """INSERT INTO payments (tenant_id, id, invoice_id, patient_id, method, amount, status,
           captured_at, created_at, updated_at)
       SELECT %(t)s, payment_id, invoice_id, patient_id,
              CASE WHEN r2 < 0.5 THEN 'upi' WHEN r2 < 0.8 THEN 'cash' ELSE 'card' END,
              CASE WHEN r4 < 0.2 THEN 450 ELSE 500 END, 'captured',
              starts_at + interval '21m', starts_at + interval '21m', starts_at + interval '21m'
       FROM plan WHERE status = 'completed' AND r3 <= 0.97""",
    """INSERT INTO payments (tenant_id, id, invoice_id, patient_id, method, amount, status,
           failed_at, failure_reason, created_at, updated_at)
       SELECT %(t)s, gen_random_uuid(), invoice_id, patient_id, 'card', 500, 'failed',
              starts_at + interval '20m', 'declined', starts_at + interval '20m',
              starts_at + interval '20m'
       FROM plan WHERE status = 'completed' AND r < 0.98 AND r > 0.965""",
    """INSERT INTO ledger_entries (tenant_id, id, patient_id, invoice_id, type, kind, amount,
           description, created_at)
       SELECT %(t)s, gen_random_uuid(), patient_id, invoice_id, 'debit', 'invoice',
              CASE WHEN r4 < 0.2 THEN 450 ELSE 500 END, 'Invoice BENCH/' || n,
              starts_at + interval '20m'
       FROM plan WHERE status = 'completed'""",
    """INSERT INTO ledger_entries (tenant_id, id, patient_id, invoice_id, payment_id, type,
           kind, amount, description, created_at)
       SELECT %(t)s, gen_random_uuid(), patient_id, invoice_id, payment_id, 'credit',
              'payment', CASE WHEN r4 < 0.2 THEN 450 ELSE 500 END, 'Payment',
              starts_at + interval '21m'
       FROM plan WHERE status = 'completed' AND r3 <= 0.97""",
    """CREATE TEMP TABLE refunded ON COMMIT DROP AS
       SELECT gen_random_uuid() AS refund_id, * FROM plan
       WHERE status = 'completed' AND r3 < 0.003""",
    """INSERT INTO payments_refunds (tenant_id, id, payment_id, invoice_id, amount, status,
           method, reason, created_at, processed_at)
       SELECT %(t)s, refund_id, payment_id, invoice_id, 100, 'processed', 'cash',
              'overcharged', starts_at + interval '2 days', starts_at + interval '2 days'
       FROM refunded""",
    """INSERT INTO ledger_entries (tenant_id, id, patient_id, invoice_id, payment_id,
           refund_id, type, kind, amount, description, created_at)
       SELECT %(t)s, gen_random_uuid(), patient_id, invoice_id, payment_id, refund_id,
              kind.type, kind.kind, 100, 'Refund', starts_at + interval '2 days'
       FROM refunded
       CROSS JOIN (VALUES ('debit', 'refund'), ('credit', 'credit-note')) kind(type, kind)""",
]

COUNTED = (
    "slots",
    "appointments",
    "visits",
    "visits_diagnoses",
    "prescriptions",
    "diet_plans",
    "invoices",
    "payments",
    "payments_refunds",
    "ledger_entries",
)


def write_history(db: Database, clinic: Clinic, shape: Shape) -> dict[str, int]:
    """The clinic's calendar and what followed each appointment; rows written per table."""
    import psycopg

    last = shape.first + timedelta(days=shape.days - 1)
    params = {
        "t": clinic.tenant_id,
        "doctors": clinic.doctors,
        "first": shape.first,
        "last": last,
        "slots": shape.slots_per_day,
        "minutes": shape.minutes,
        "opens": shape.opens_at,
        "empty": shape.empty,
        "key": uuid.uuid4(),
    }
    with psycopg.connect(libpq_url(db.owner_url)) as conn:
        before = _counts(conn, clinic.tenant_id)
        with conn.transaction():
            for statement in [*PLAN.split(";\n")[:-1], *WRITES]:
                conn.execute(statement, params)
        conn.execute("ANALYZE")
        after = _counts(conn, clinic.tenant_id)
    return {name: after[name] - before[name] for name in COUNTED}


def _counts(conn: Any, tenant_id: uuid.UUID) -> dict[str, int]:
    return {
        name: conn.execute(
            f"SELECT count(*) FROM {name} WHERE tenant_id = %s",
            (tenant_id,),
        ).fetchone()[0]
        for name in COUNTED
    }


# ------------------------------------------------------------------ building


def timed_build(db: Database, tenant_id: uuid.UUID, first: date, last: date) -> tuple[Built, float]:
    """One transaction building ``first``..``last``, as ``opdesk report build`` does."""
    ctx = system_context(tenant_id)
    started = time.perf_counter()
    with transaction(db, ctx) as session:
        built = build(session, ctx, IST, first, last)
    return built, time.perf_counter() - started


def nightly(db: Database, tenant_id: uuid.UUID, day: date) -> float:
    """The worker's daily rule at the clinic's midnight: ``day`` and the six before it."""
    ctx = system_context(tenant_id)
    started = time.perf_counter()
    with transaction(db, ctx) as session:
        build_daily_report(session, ctx, day=day)
    return time.perf_counter() - started


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ the dashboard


def page_timings(base: str, token: str, path: str, count: int) -> list[float]:
    """``count`` GETs of ``path`` on one keep-alive connection; each must answer 200."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    timings: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        timings.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    conn.close()
    return timings


def _print_page(label: str, timings: list[float]) -> None:
    print(
        f"  {label:<34} p50 {statistics.median(timings) * 1000:7.1f} ms   "
        f"p95 {percentile(timings, 0.95):7.1f} ms   ({len(timings)} requests)"
    )


def dashboard(db: Database, data_dir: Path, clinic: Clinic) -> None:
    server = Server(db, data_dir, workers=WORKERS)
    pages: list[tuple[str, str, str]] = [
        *((f"accounts  GET {p}", clinic.accounts_token, p) for p in PAGES),
        ("doctor    GET /reports/mine?days=30", clinic.doctor_token, "/reports/mine?days=30"),
        ("accounts  GET /reports/export/days.csv", clinic.accounts_token, CSV),
    ]  # fmt: skip
    with server as base:
        for _label, token, path in pages:  # warm-up: templates, plans, the pool
            page_timings(base, token, path, 3)
        for label, token, path in pages:
            _print_page(label, page_timings(base, token, path, REQUESTS))


# ------------------------------------------------------------------ the run


def _step(label: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = work()
    print(f"  {label} in {time.perf_counter() - started:.0f} s")
    return result


def _line(label: str, seconds: float, built: Built | None = None) -> None:
    rows = ""
    if built is not None:
        rows = f"  ({built.days} days, {built.doctor_rows} doctor rows, {built.changed} changed)"
    print(f"  {label:<44} {seconds:7.2f} s{rows}")


def run(db: Database, data_dir: Path, **_: Any) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, fast_password_hashing=True)
    cipher = FieldCipher(load_keyring(settings))
    ident = Identity.create(settings, cipher)
    yesterday = datetime.now(UTC).astimezone(IST).date() - timedelta(days=1)
    print("\nreports")

    busy = _step("busy clinic made", lambda: _clinic(db, ident, cipher, "busy"))
    shape = Shape(yesterday, 1, 100, 5, 8, empty=0.0)
    written = _step("busy day written", lambda: write_history(db, busy, shape))
    print(f"    {json.dumps(written)}")
    label = f"build one day, {written['appointments']:,} appointments"
    _line(label, *_swap(timed_build(db, busy.tenant_id, yesterday, yesterday)))
    _line("the same day again", *_swap(timed_build(db, busy.tenant_id, yesterday, yesterday)))

    year = _step("year clinic made", lambda: _clinic(db, ident, cipher, "year"))
    shape = Shape(yesterday - timedelta(days=364), 365, 28, 15, 9, empty=0.02)
    written = _step("year written", lambda: write_history(db, year, shape))
    print(f"    {json.dumps(written)}")
    label = f"build a year, {written['appointments']:,} appointments"
    _line(label, *_swap(timed_build(db, year.tenant_id, shape.first, yesterday)))
    _line("the same year again", *_swap(timed_build(db, year.tenant_id, shape.first, yesterday)))
    _line("one day of that year", *_swap(timed_build(db, year.tenant_id, yesterday, yesterday)))
    _line("the nightly rule (yesterday + 6 days)", nightly(db, year.tenant_id, yesterday))
    print(f"  bench process peak RSS: {_peak_rss_mib():.0f} MiB")

    print(f"  dashboard with the year built (uvicorn, {WORKERS} workers, one client):")
    dashboard(db, data_dir, year)


def _swap(result: tuple[Built, float]) -> tuple[float, Built]:
    return result[1], result[0]
