"""/metrics: only for the scraper's token; requests by route template, bookings and
sign-ins by outcome, the queues, workers and backup age; added up across uvicorn workers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from opdesk.app import create_app
from opdesk.config import Settings
from opdesk.db import Database
from opdesk.errors import Conflict
from opdesk.identity.service import Identity
from opdesk.security.crypto import StaticKeyring
from tests.factories import make_tenant
from tests.factories.automation import make_event
from tests.factories.people import make_patient
from tests.factories.scheduling import book, clinic_with_slots
from tests.factories.serve import serving

TOKEN = "scrape-me-0123456789abcdef"


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(body: str, name: str, **labels: str) -> float:
    return samples(body).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def scraped(
    fresh_database: Database, keyring: StaticKeyring, settings: Settings
) -> Iterator[TestClient]:
    with_token = settings.model_copy(
        update={"metrics_token": SecretStr(TOKEN), "daily_backup": False}
    )
    app = create_app(with_token, database=fresh_database, keyring=keyring)
    with TestClient(app) as client:
        yield client


def scrape(client: TestClient) -> str:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


def test_only_the_scraper_with_the_token_reads_it(
    scraped: TestClient, fresh_database: Database, keyring: StaticKeyring, settings: Settings
) -> None:
    assert scraped.get("/metrics").status_code == 401
    wrong = scraped.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401
    with TestClient(create_app(settings, database=fresh_database, keyring=keyring)) as plain:
        assert plain.get("/metrics").status_code == 404  # no token set: no page


def test_requests_are_counted_by_route_template_never_by_id(scraped: TestClient) -> None:
    before = scrape(scraped)
    unknown = "0192f0c2-0000-7000-8000-000000000001"
    for _ in range(3):
        scraped.get(f"/api/v1/patients/{unknown}")
    after = scrape(scraped)
    route = {"method": "GET", "route": "/api/v1/patients/{patient_id}", "status": "4xx"}
    count = "opdesk_request_seconds_count"
    assert value(after, count, **route) - value(before, count, **route) == 3
    assert unknown not in after


def test_bookings_and_sign_ins_by_outcome(
    scraped: TestClient, db: Database, ident: Identity
) -> None:
    tenant, _, slots = clinic_with_slots(db, ident, 1)
    first, second = make_patient(db, ident, tenant), make_patient(db, ident, tenant)
    before = scrape(scraped)
    book(db, tenant, slots[0], first)
    with pytest.raises(Conflict):
        book(db, tenant, slots[0], second)
    scraped.post(
        "/api/v1/auth/sign-in",
        json={"clinic": tenant.slug, "email": "nobody@example.in", "password": "wrong-wrong"},
    )
    after = scrape(scraped)

    def more(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert more("opdesk_bookings_total", outcome="confirmed") == 1
    assert more("opdesk_bookings_total", outcome="conflict") == 1
    assert more("opdesk_sign_ins_total", kind="password", outcome="refused") == 1
    assert more("opdesk_sign_ins_total", kind="password", outcome="signed-in") == 0


def test_queues_workers_and_backup_age(scraped: TestClient, fresh_database: Database) -> None:
    body = scrape(scraped)
    assert value(body, "opdesk_queue_due", queue="automation") == 0
    assert value(body, "opdesk_backup_age_seconds") == -1
    tenant = make_tenant(fresh_database)
    make_event(fresh_database, tenant.id, when=datetime.now(UTC) - timedelta(minutes=10))
    body = scrape(scraped)
    assert value(body, "opdesk_queue_due", queue="automation") == 1
    assert 590 < value(body, "opdesk_queue_oldest_due_seconds", queue="automation") < 900
    assert value(body, "opdesk_workers_connected") == 0
    assert ("opdesk_db_pool_in_use", ()) in samples(body)


def test_several_uvicorn_workers_are_added_up(fresh_database: Database, tmp_path: Path) -> None:
    with (
        serving(fresh_database, tmp_path, "--workers", "2", OPDESK_METRICS_TOKEN=TOKEN) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            httpx.get(f"{base}/healthz", timeout=10)
        body = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    route = {"method": "GET", "route": "/healthz", "status": "2xx"}
    assert value(body, "opdesk_request_seconds_count", **route) >= 40
    assert value(body, "opdesk_workers_connected") == 1  # serve's own worker
