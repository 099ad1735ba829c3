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
and ``coming(weekday)`` from ``tests/factories``, never the machine's ``date.today()``. To
check, run with the whole clock moved (Python, the embedded PostgreSQL and Chromium alike;
Debian's ``faketime``), e.g. at 23:50 and 00:10 in India (UTC+05:30)::

    faketime -f "$(( $(date -d '2027-03-01 18:20 UTC' +%s) - $(date +%s) ))" \
        .venv/bin/pytest tests/browser tests/scheduling tests/consents tests/identity

A signed offset (seconds) rather than ``@date`` moves every process by the same amount;
``@date`` starts each process's clock afresh, so PostgreSQL and Chromium would lag behind.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from opdesk.app import create_app
from opdesk.audit import guard as audit_guard
from opdesk.bootstrap import Services
from opdesk.config import Settings
from opdesk.db import (
    APP_ROLE,
    Database,
    EmbeddedServer,
    drop_database,
    ensure_app_login,
    ensure_database,
    psycopg_url,
)
from opdesk.identity.service import Identity
from opdesk.migrate import upgrade
from opdesk.security.crypto import FieldCipher, StaticKeyring
from opdesk.security.keys import new_keyring
from opdesk.tenancy.models import Tenant
from tests.factories import make_tenant


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


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db, "Asha Clinic")


@pytest.fixture
def other_tenant(db: Database) -> Tenant:
    return make_tenant(db, "Bharat Clinic")


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
    services: Services = app.state.services
    return services.identity
