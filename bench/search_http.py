"""Patient search under load: N front desks calling ``GET /api/v1/patients?q=`` at once.

The booking bench's OPDesk server (uvicorn, two workers per core) over a clinic of 20,000
patients, bulk-loaded as bench/patient_search.py loads them. Each client process, signed
in as the front desk with a bearer token, asks for what a desk types, drawn at random:
half names (a prefix, first and last name, or a misspelling that takes the fuzzy path),
a quarter phones and a quarter patient numbers, each written in more than one way. A
phone or number that finds no one counts as an error, as does any answer but 200.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

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
from bench.patient_search import _name_queries
from bench.patient_search import load as load_patients
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.security.crypto import FieldCipher
from opdesk.security.keys import load_keyring

PATIENTS = 20_000


@dataclass(frozen=True)
class Job:
    base: str
    token: str
    asks: list[tuple[str, str]]  # (kind, what the desk types)
    seconds: float
    seed: int


def client(job: Job) -> Answers:
    """One client process: search until time is up."""
    rng = random.Random(job.seed)
    answered: list[float] = []
    errors: list[str] = []
    http = Http(job.base, job.token)
    deadline = time.monotonic() + job.seconds
    while time.monotonic() < deadline:
        kind, q = rng.choice(job.asks)
        started = time.perf_counter()
        status, found = http.get("/api/v1/patients?" + urlencode({"q": q}))
        if status != 200:
            errors.append(f"{kind} {status}")
        elif kind != "name" and not found:
            errors.append(f"{kind} {q!r} found no one")
        else:
            answered.append(time.perf_counter() - started)
    return Answers(answered, errors)


def asks(rng: random.Random, phones: list[str]) -> list[tuple[str, str]]:
    """What the desks will type: names, phones and patient numbers, 2:1:1."""
    names = [("name", q) for _, q in _name_queries(rng)]
    wanted = [rng.choice(phones) for _ in range(len(names) // 2)]
    # +919800000097 as stored, or 98000 00097 as read out over the phone
    typed = [("phone", p if rng.random() < 0.5 else f"{p[3:8]} {p[8:]}") for p in wanted]
    numbers = [rng.randint(1, PATIENTS) for _ in range(len(names) // 2)]
    written = [("number", rng.choice((f"P-{n:06d}", f"p{n}", str(n)))) for n in numbers]
    return names + typed + written


def run(db: Database, data_dir: Path, *, clients: int = 16, seconds: float = 15.0) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, fast_password_hashing=True)
    print(
        f"\npatient search over HTTP ({clients} client processes, OPDesk on {SERVER} with "
        f"{WORKERS} workers)"
    )
    cipher = FieldCipher(load_keyring(settings))
    tenant_id, token = bench_clinic(db, Identity.create(settings, cipher))
    started = time.perf_counter()
    phones = load_patients(db, cipher, tenant_id, 1, PATIENTS + 1)
    print(f"  {PATIENTS:,} patients (loaded in {time.perf_counter() - started:.0f} s)")
    mix = asks(random.Random(13), phones)
    server = Server(db, data_dir)
    with server as base:
        fan_out(client, [Job(base, token, mix, WARM_UP, seed) for seed in range(clients)])
        jobs = [Job(base, token, mix, seconds, seed) for seed in range(clients)]
        (outcomes, wall), cpu = measured(server.process.pid, db, lambda: fan_out(client, jobs))
    answered = [t for o in outcomes for t in o.answered]
    errors = [e for o in outcomes for e in o.errors]
    print(
        f"  GET /api/v1/patients?q=  {len(answered) / wall:7.1f} requests/s   "
        f"p50 {statistics.median(answered) * 1000:6.1f} ms   "
        f"p99 {percentile(answered, 0.99):6.1f} ms   errors {len(errors)}"
    )
    if errors:
        print(f"    first errors: {errors[:5]}")
    print(f"    {cpu.per(len(answered), 'request')}")
