"""Patient lookup by phone and search by name, at 100,000 and 1,000,000 patients.

Patients are bulk-loaded with COPY (the same encrypted columns, blind indexes and search
keys the service writes); their names come from :mod:`bench.names` (about 2,000 first and
2,000 last names, Zipf-like, a fifth written in Devanagari). Lookups then go through the
real read path: the service-layer query in its own tenant-scoped transaction, and the
HTTP API of a live uvicorn server. Name searches are reported by kind and together.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from bench.clinic import bench_clinic
from bench.names import vocabulary
from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.context import system_context
from opdesk.db import Database, libpq_url
from opdesk.identity.service import Identity
from opdesk.patients import queries, sounds
from opdesk.patients.service import phone_part_keys
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import new_keyring
from opdesk.uow import transaction

LOOKUPS = 2000
DEVANAGARI_SHARE = 0.2
VOCABULARY = vocabulary()
COLUMNS = (
    "tenant_id, id, number, phone_hash, phone_encrypted, name_first, name_last, first_sound, "
    "last_sound, dob, gender, city, chronic_conditions, consents, flags_vip, flags_blocked, "
    "created_at, updated_at"
)


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"


def _timed(fn: Callable[[str], object], inputs: list[str]) -> list[float]:
    """Seconds taken by ``fn`` for each input, in order."""
    samples = []
    for item in inputs:
        start = time.perf_counter()
        fn(item)
        samples.append(time.perf_counter() - start)
    return samples


def _report(label: str, samples: list[float]) -> None:
    print(f"    {label:<22} {_percentiles(samples)}")


def load(
    db: Database, cipher: FieldCipher, tenant_id: uuid.UUID, start: int, stop: int
) -> list[str]:
    """COPY patients ``start`` .. ``stop`` - 1 into the clinic; returns some of their phones."""
    import psycopg

    rng = random.Random(start)
    now = datetime.now(UTC)
    sample: list[str] = []
    names = VOCABULARY.draw(rng, stop - start, DEVANAGARI_SHARE)
    sound: dict[str, str] = {}
    with psycopg.connect(libpq_url(db.owner_url)) as conn, conn.cursor() as cur:
        keys: list[tuple[uuid.UUID, bytes]] = []
        with cur.copy(f"COPY patients ({COLUMNS}) FROM STDIN") as copy:
            for number, (first, last) in zip(range(start, stop), names, strict=True):
                phone = f"+9198{number:08d}"
                row_id = uuid.uuid4()
                sealed = cipher.encrypt(
                    phone,
                    tenant_id=tenant_id,
                    table="patients",
                    column="phone_encrypted",
                    row_id=row_id,
                )
                for name in (first, last):
                    if name not in sound:
                        sound[name] = sounds.name_key(name)
                copy.write_row(
                    (
                        tenant_id,
                        row_id,
                        number,
                        cipher.blind_index(phone, purpose="phone"),
                        sealed,
                        first,
                        last,
                        sound[first],
                        sound[last],
                        date(rng.randint(1940, 2020), rng.randint(1, 12), rng.randint(1, 28)),
                        rng.choice(("female", "male")),
                        "Pune",
                        "[]",
                        "[]",
                        False,
                        False,
                        now,
                        now,
                    )
                )
                keys += [(row_id, key) for key in phone_part_keys(cipher, phone)]
                if number % 97 == 0:
                    sample.append(phone)
        with cur.copy("COPY patient_phone_keys (tenant_id, key, patient_id) FROM STDIN") as copy:
            for row_id, key in keys:
                copy.write_row((tenant_id, key, row_id))
        # The name vocabulary the service keeps in step, rebuilt for the loaded rows.
        conn.execute(
            "insert into patient_names (tenant_id, key, patients) "
            "select %(t)s, key, count(*) from ("
            "  select first_key as key from patients where tenant_id = %(t)s"
            "  union all select last_key from patients where tenant_id = %(t)s and last_key <> ''"
            ") names group by key "
            "on conflict (tenant_id, key) do update set patients = excluded.patients",
            {"t": tenant_id},
        )
        conn.execute("ANALYZE patients")
        conn.execute("ANALYZE patient_names")
        conn.execute("ANALYZE patient_phone_keys")
        conn.commit()
    return sample


def _misspell(rng: random.Random, name: str) -> str:
    """One letter dropped, doubled or swapped for a neighbour's: a desk's typing slip."""
    i = rng.randrange(1, len(name))
    kind = rng.randrange(3)
    if kind == 0:
        return name[:i] + name[i + 1 :]
    if kind == 1:
        return name[:i] + name[i] + name[i:]
    return name[:i] + rng.choice("aeiourshn") + name[i + 1 :]


def _name_queries(rng: random.Random) -> list[tuple[str, str]]:
    """(kind, what the desk types): a name's start, both names' starts, a misspelt full
    name, a full name in the other script, a name's start in Devanagari.
    """
    asked = []
    for _ in range(LOOKUPS):
        (first, hindi_first), (last, hindi_last) = (
            rng.choice(VOCABULARY.firsts[:800]),
            rng.choice(VOCABULARY.lasts[:800]),
        )
        kind = rng.random()
        if kind < 0.4:
            name = rng.choice((first, last))
            asked.append(("prefix", name[: rng.randint(2, 5)].lower()))
        elif kind < 0.6:
            asked.append(("first+last", f"{first[:3]} {last[:2]}".lower()))
        elif kind < 0.8:
            asked.append(("misspelt", f"{_misspell(rng, first)} {_misspell(rng, last)}"))
        elif kind < 0.9:
            asked.append(("other script", f"{hindi_first} {hindi_last}"))
        else:
            asked.append(("devanagari prefix", hindi_first[: rng.randint(2, 3)]))
    return asked


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run(db: Database, sizes: tuple[int, ...] = (100_000, 1_000_000)) -> None:
    keyring = StaticKeyring(new_keyring())
    cipher = FieldCipher(keyring)
    settings = Settings(_env_file=None, fast_password_hashing=True)
    ident = Identity.create(settings, cipher)
    tenant_id, token = bench_clinic(db, ident)
    print("\npatient lookup (service: query in its own tenant transaction; HTTP: live uvicorn)")
    loaded, phones = 0, []
    rng = random.Random(7)
    app = create_app(settings, database=db, keyring=keyring)
    for size in sizes:
        started = time.perf_counter()
        phones += load(db, cipher, tenant_id, loaded + 1, size + 1)
        loaded = size
        print(f"  {size:>9,} patients (loaded in {time.perf_counter() - started:5.1f} s)")
        wanted = [rng.choice(phones) for _ in range(LOOKUPS)]
        asked = _name_queries(rng)
        names = [q for _, q in asked]
        digits = [p[-rng.choice((5, 6, 7)) :] if rng.random() < 0.5 else p[3:8] for p in wanted]

        def phone_lookup(phone: str) -> None:
            with transaction(db, system_context(tenant_id)) as session:
                assert len(queries.by_phone(session, cipher, phone)) == 1

        def name_search(q: str) -> None:
            with transaction(db, system_context(tenant_id)) as session:
                queries.by_name(session, q)

        def digits_search(typed: str) -> None:
            with transaction(db, system_context(tenant_id)) as session:
                assert queries.search(session, cipher, typed)

        _report("service  phone lookup", _timed(phone_lookup, wanted))
        _report("service  phone digits", _timed(digits_search, digits))
        timings = _timed(name_search, names)
        _report("service  name search", timings)
        for kind in dict.fromkeys(k for k, _ in asked):
            of_kind = [t for t, (k, _) in zip(timings, asked, strict=True) if k == kind]
            _report(f"  {kind}", of_kind)
        slowest = sorted(zip(timings, names, strict=True), reverse=True)[:6]
        print("      slowest: " + ", ".join(f"{q!r} {t * 1000:.0f} ms" for t, q in slowest))
        headers = {"Authorization": f"Bearer {token}"}
        with LiveServer(app) as base, httpx.Client(base_url=base, headers=headers) as http:

            def api(q: str, http: httpx.Client = http) -> None:
                response = http.get("/api/v1/patients", params={"q": q})
                assert response.status_code == 200, response.text

            _report("HTTP     phone lookup", _timed(api, wanted))
            _report("HTTP     phone digits", _timed(api, digits))
            _report("HTTP     name search", _timed(api, names))
    with db.owner_engine.begin() as conn:
        conn.execute(text("delete from patient_phone_keys where tenant_id = :t"), {"t": tenant_id})
        conn.execute(text("delete from patients where tenant_id = :t"), {"t": tenant_id})
        conn.execute(text("delete from patient_names where tenant_id = :t"), {"t": tenant_id})
