"""Audit events appended per second: 1 and 8 writers, on one tenant and on eight.

Every writer is its own process with its own connection pool, and commits one
transaction per event, as a request that changes one record does.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy.engine import URL

from opdesk import audit
from opdesk.audit.verify import verify_tenant
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.tenancy.schemas import TenantCreate
from opdesk.tenancy.service import create_tenant
from opdesk.uow import transaction


def _writer(
    owner: str, app: str | None, tenant_id: uuid.UUID, start_at: float, seconds: float
) -> int:
    db = Database(_url(owner), _url(app) if app else None, pool_size=1)
    written = 0
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    while time.time() < deadline:
        ctx = system_context(tenant_id)
        with transaction(db, ctx):
            audit.record(ctx, entity="appointments", entity_id=uuid.uuid4(), action="update")
        written += 1
    db.dispose()
    return written


def _url(text: str) -> URL:
    from opdesk.db import psycopg_url

    return psycopg_url(text)


def _tenants(db: Database, count: int) -> list[uuid.UUID]:
    ids = []
    for _ in range(count):
        ctx = system_context(None)
        data = TenantCreate(name="Bench Clinic", slug=f"bench-{uuid.uuid4().hex[:10]}")
        with transaction(db, ctx) as session:
            ids.append(create_tenant(session, ctx, data=data).id)
    return ids


def scenario(db: Database, writers: int, tenants: int, seconds: float) -> float:
    tenant_ids = _tenants(db, tenants)
    owner = db.owner_url.render_as_string(hide_password=False)
    app = db.app_url.render_as_string(hide_password=False) if db.app_url else None
    start_at = time.time() + 1.5  # let every process connect first
    with ProcessPoolExecutor(writers, mp_context=mp.get_context("spawn")) as pool:
        futures = [
            pool.submit(_writer, owner, app, tenant_ids[i % tenants], start_at, seconds)
            for i in range(writers)
        ]
        total = sum(f.result() for f in futures)
    with db.owner_engine.connect() as conn:
        for tenant_id in tenant_ids:
            report = verify_tenant(conn, tenant_id)
            assert report.ok, report.describe()
    return total / seconds


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def run(db: Database, seconds: float = 5.0) -> None:
    print(f"\naudit events appended per second ({seconds:g} s each, one event per transaction)")
    for writers, tenants in ((1, 1), (8, 1), (1, 8), (8, 8)):
        rate = scenario(db, writers, tenants, seconds)
        label = f"{_count(writers, 'writer')}, {_count(tenants, 'tenant')}"
        print(f"  {label:<22} {rate:9.0f} events/s   (chains verified)")
