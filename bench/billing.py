"""Billing throughput: invoice issue + payment under N concurrent clients over HTTP, next
to pgbench TPC-B on the same server (as bench/booking.py does for bookings).

Each client process repeats, for a random patient of the bench clinic: create a draft
invoice of two lines (a consultation, a taxed medicine with a discount), issue it (the
next number of the financial year), and take the payment in cash. One "checkout" is the
three requests. Afterwards the run checks that the numbers are consecutive with no gap or
duplicate and that ``ledger.check`` finds the books agreeing.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.booking import pgbench_tps
from bench.clinic import bench_clinic
from bench.http_load import SERVER, WARM_UP, WORKERS, Http, Server, fan_out, measured, percentile
from bench.patient_search import load as load_patients
from opdesk.billing import ledger
from opdesk.config import Settings
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import load_keyring
from opdesk.uow import transaction

PATIENTS = 2000
LINES = [
    {"type": "consult", "description": "Consultation", "unitPrice": "600.00", "sacHsn": "999312"},
    {
        "type": "med",
        "description": "Paracetamol 500 mg, strip of 10",
        "quantity": "2",
        "unitPrice": "32.50",
        "taxRate": "12",
        "discountAmount": "5.00",
        "sacHsn": "3004",
    },
]


@dataclass(frozen=True)
class Job:
    base: str
    token: str
    patients: list[str]
    seconds: float
    seed: int


@dataclass(frozen=True)
class Outcome:
    checkouts: list[float]  # seconds for the three requests of one checkout
    requests: list[float]  # seconds per request
    errors: list[str]


def client(job: Job) -> Outcome:
    rng = random.Random(job.seed)
    http = Http(job.base, job.token)
    checkouts: list[float] = []
    requests: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + job.seconds

    def call(path: str, body: dict[str, Any] | None, expect: int) -> Any:
        started = time.perf_counter()
        status, answer = http.post(path, body)
        requests.append(time.perf_counter() - started)
        if status != expect:
            errors.append(f"{path.rsplit('/', 1)[-1]} {status}")
            return None
        return answer

    while time.monotonic() < deadline:
        started = time.perf_counter()
        draft = call(
            "/api/v1/invoices",
            {"patientId": rng.choice(job.patients), "lineItems": LINES, "discountReason": "bench"},
            201,
        )
        if draft is None:
            continue
        issued = call(f"/api/v1/invoices/{draft['id']}/issue", None, 200)
        if issued is None:
            continue
        paid = call(
            f"/api/v1/invoices/{draft['id']}/payments",
            {"method": "cash", "amount": issued["grandTotal"]},
            201,
        )
        if paid is not None:
            checkouts.append(time.perf_counter() - started)
    return Outcome(checkouts, requests, errors)


def run_clients(
    base: str, token: str, patients: list[str], *, clients: int, seconds: float
) -> tuple[Outcome, float]:
    jobs = [Job(base, token, patients, seconds, seed) for seed in range(clients)]
    outcomes, wall = fan_out(client, jobs)
    merged = Outcome(
        [t for o in outcomes for t in o.checkouts],
        [t for o in outcomes for t in o.requests],
        [e for o in outcomes for e in o.errors],
    )
    return merged, wall


def numbers_are_consecutive(db: Database, tenant_id: Any) -> tuple[int, bool]:
    with transaction(db, system_context(tenant_id)) as session:
        seqs = sorted(
            int(n.rsplit("/", 1)[1])
            for n in session.execute(
                text("select number from invoices where number is not null")
            ).scalars()
        )
    return len(seqs), seqs == list(range(1, len(seqs) + 1))


def run(db: Database, data_dir: Path, *, clients: int = 16, seconds: float = 15.0) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, fast_password_hashing=True)
    print(f"\nbilling ({clients} client processes, OPDesk on {SERVER} with {WORKERS} workers)")
    cipher = FieldCipher(load_keyring(settings))
    tenant_id, token = bench_clinic(db, Identity.create(settings, cipher))
    load_patients(db, cipher, tenant_id, 1, PATIENTS + 1)
    with transaction(db, system_context(tenant_id)) as session:
        patients = list(session.execute(text("select id::text from patients")).scalars())
    tps = pgbench_tps(db, clients, int(seconds))
    print(f"  pgbench TPC-B, {clients} clients, same server: {tps:8.0f} tps")
    server = Server(db, data_dir, workers=WORKERS)
    with server as base:
        run_clients(base, token, patients, clients=clients, seconds=WARM_UP)
        job = partial(run_clients, base, token, patients, clients=clients, seconds=seconds)
        (outcome, wall), cpu = measured(server.process.pid, db, job)
    rate = len(outcome.checkouts) / wall
    print(
        f"  issue + pay  {rate:7.1f} checkouts/s ({rate / tps:5.1%} of pgbench)   "
        f"p50 {statistics.median(outcome.checkouts) * 1000:6.1f} ms   "
        f"p99 {percentile(outcome.checkouts, 0.99):6.1f} ms   errors {len(outcome.errors)}"
    )
    print(
        f"  per request  p50 {statistics.median(outcome.requests) * 1000:6.1f} ms   "
        f"p99 {percentile(outcome.requests, 0.99):6.1f} ms ({len(outcome.requests)} requests)"
    )
    print(f"    {cpu.per(len(outcome.checkouts), 'checkout')}")
    count, consecutive = numbers_are_consecutive(db, tenant_id)
    print(f"  {count} invoices numbered; consecutive with no gap or duplicate: {consecutive}")
    with transaction(db, system_context(tenant_id)) as session:
        problems = ledger.check(session)
    print(f"  ledger check: {'clean' if not problems else f'{len(problems)} differences'}")
