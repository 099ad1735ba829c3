"""Shared fixtures: one real PostgreSQL per test worker, a migrated template, fresh clones.

With ``OPDESK_DATABASE_URL`` set, tests create their databases on that server; without
it, each pytest worker starts the embedded server once in a temporary folder.

Isolation: every test that writes creates its own clinic (tenant) with a random code,
and everything it touches is scoped to that tenant, so tests never see each other's
rows and need no truncation. Tests that need a database of their own (whole-database
checks such as ``audit verify`` over all tenants) take ``fresh_database``, a clone of
the migrated template made in a few tens of milliseconds.

Time: no test depends on the hour or the day it runs. Tests either freeze the clock
(``time_machine``, or a ``clock`` on the context) or choose their days: ``clinic_today()``
and ``coming(weekday)`` below, never the machine's ``date.today()``. To check, run with
the whole clock moved (Python, the embedded PostgreSQL and Chromium alike; Debian's
``faketime``), e.g. at 23:50 and 00:10 in India (UTC+05:30)::

    faketime -f "$(( $(date -d '2027-03-01 18:20 UTC' +%s) - $(date +%s) ))" \
        .venv/bin/pytest tests/browser tests/scheduling tests/consents tests/identity

A signed offset (seconds) rather than ``@date`` moves every process by the same amount;
``@date`` starts each process's clock afresh, so PostgreSQL and Chromium would lag behind.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from opdesk.app import create_app
from opdesk.audit import guard as audit_guard
from opdesk.config import Settings
from opdesk.context import RequestContext, system_context
from opdesk.db import (
    APP_ROLE,
    Database,
    EmbeddedServer,
    drop_database,
    ensure_app_login,
    ensure_database,
    psycopg_url,
)
from opdesk.identity.models import User
from opdesk.identity.service import Identity, create_user
from opdesk.migrate import upgrade
from opdesk.security import sessions
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import new_keyring
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantCreate
from opdesk.tenancy.service import create_tenant
from opdesk.uow import transaction


class PgServer:
    """A PostgreSQL server the tests may create databases on."""

    def __init__(self, server_url: URL, embedded: bool) -> None:
        self.server_url = server_url
        self.embedded = embedded

    def owner_url(self, name: str) -> URL:
        return self.server_url.set(database=name)

    def app_url(self, name: str) -> URL | None:
        # Embedded: the app role logs in itself. External: owner login + SET ROLE.
        return self.owner_url(name).set(username=APP_ROLE, password=None) if self.embedded else None

    def database(self, name: str) -> Database:
        return Database(self.owner_url(name), self.app_url(name), pool_size=4, max_overflow=20)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    external = os.environ.get("OPDESK_DATABASE_URL")
    if external:
        yield PgServer(psycopg_url(external), embedded=False)
        return
    with tempfile.TemporaryDirectory(prefix=f"opdesk-test-{_worker()}-") as tmp:
        server = EmbeddedServer(Path(tmp) / "pg", cleanup_mode="delete")
        ensure_app_login(server.superuser_url)
        yield PgServer(server.superuser_url, embedded=True)
        server.stop()


@pytest.fixture(scope="session")
def template_name(pg: PgServer) -> Iterator[str]:
    """A migrated database that fresh test databases are cloned from."""
    name = f"opdesk_template_{_worker()}"
    drop_database(pg.server_url, name)
    ensure_database(pg.server_url, name)
    engine = create_engine(pg.owner_url(name))
    upgrade(engine)
    audit_guard.install(engine)
    engine.dispose()
    yield name
    drop_database(pg.server_url, name)


def clone_database(pg: PgServer, template: str) -> tuple[str, Database]:
    name = f"opdesk_t_{_worker()}_{secrets.token_hex(4)}"
    ensure_database(pg.server_url, name, template=template)
    return name, pg.database(name)


@pytest.fixture(scope="session")
def db(pg: PgServer, template_name: str) -> Iterator[Database]:
    """The shared test database of this worker (tests isolate by tenant)."""
    name, database = clone_database(pg, template_name)
    yield database
    database.dispose()
    drop_database(pg.server_url, name)


@pytest.fixture
def fresh_database(pg: PgServer, template_name: str) -> Iterator[Database]:
    """A database of the test's own, migrated and empty."""
    name, database = clone_database(pg, template_name)
    yield database
    database.dispose()
    drop_database(pg.server_url, name)


@pytest.fixture(scope="session")
def keyring() -> StaticKeyring:
    return StaticKeyring(new_keyring())


@pytest.fixture(scope="session")
def cipher(keyring: StaticKeyring) -> FieldCipher:
    return FieldCipher(keyring)


def unique_slug(prefix: str = "clinic") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def make_tenant(database: Database, name: str = "Test Clinic", **fields: object) -> Tenant:
    ctx = system_context(None)
    data = TenantCreate.model_validate({"name": name, "slug": unique_slug(), **fields})
    with transaction(database, ctx) as session:
        return create_tenant(session, ctx, data=data)


CLINIC_ZONE = ZoneInfo("Asia/Kolkata")  # a new clinic's time zone unless a test sets one


def clinic_today(zone: ZoneInfo = CLINIC_ZONE) -> date:
    """Today where the clinic is (the machine's ``date.today()`` may be a day off)."""
    return datetime.now(zone).date()


def coming(weekday: int, zone: ZoneInfo = CLINIC_ZONE) -> date:
    """The first ``weekday`` (0 = Monday) at least a week after today in the clinic's zone:
    all of that day lies ahead at whatever hour the tests run (and start), and it falls
    well inside every booking window.
    """
    first = clinic_today(zone) + timedelta(days=7)
    return first + timedelta(days=(weekday - first.weekday()) % 7)


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db, "Asha Clinic")


@pytest.fixture
def other_tenant(db: Database) -> Tenant:
    return make_tenant(db, "Bharat Clinic")


def ctx_for(tenant_id: uuid.UUID | None, **overrides: object) -> RequestContext:
    ctx = system_context(tenant_id)
    for key, value in overrides.items():
        setattr(ctx, key, value)
    return ctx


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="dev",
        data_dir=tmp_path_factory.mktemp("data"),
        fast_password_hashing=True,
        _env_file=None,
    )


@pytest.fixture(scope="session")
def app(settings: Settings, db: Database, keyring: StaticKeyring) -> FastAPI:
    return create_app(settings, database=db, keyring=keyring)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client with an address of its own, so per-IP limits never leak between tests."""
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    with TestClient(app, client=(address, 50000)) as test_client:
        yield test_client


# --------------------------------------------------------------------------- people


@pytest.fixture(scope="session")
def ident(app: FastAPI) -> Identity:
    identity: Identity = app.state.identity
    return identity


STAFF_PASSWORD = "correct horse battery"
_phone_counter = iter(range(10_000_000))


def unique_mobile() -> str:
    """A valid Indian mobile number nobody else in the test run uses."""
    return f"+9198{next(_phone_counter) + secrets.randbelow(10) * 10_000_000:08d}"


def make_user(
    database: Database, ident: Identity, tenant: Tenant, role: str, **fields: Any
) -> User:
    ctx = system_context(tenant.id)
    if role == "patient":
        fields.setdefault("phone", unique_mobile())
    else:
        fields.setdefault("email", f"{role}-{secrets.token_hex(3)}@example.in")
        fields.setdefault("password", STAFF_PASSWORD)
    fields.setdefault("name", f"Test {role.title()}")
    with transaction(database, ctx) as session:
        return create_user(session, ctx, ident, role=role, **fields)


def open_session(
    database: Database,
    ident: Identity,
    user: User,
    stage: str = "active",
    clock: Callable[[], datetime] | None = None,
) -> str:
    """A session token for ``user`` without going through the sign-in steps."""
    ctx = system_context(user.tenant_id)
    if clock is not None:
        ctx.clock = clock
    with transaction(database, ctx) as session:
        _, token = sessions.start(
            session,
            ctx,
            user=user,
            stage=stage,
            method="test",
            device_id=None,
            idle=ident.idle(user.role),
            lifetime=ident.lifetime,
        )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
