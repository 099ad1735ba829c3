"""The database owner of docs/deploy.md: a login that is not a superuser migrates a fresh
database, and backs it up only once it may see every clinic's rows (BYPASSRLS)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from opdesk.db import APP_ROLE, Database
from tests.conftest import PgServer
from tests.factories.cli import opdesk

LOOKUP_ROLE = "opdesk_phone_lookup"


@pytest.fixture
def plain_owner(pg: PgServer) -> Iterator[Database]:
    """A CREATEROLE login owning an empty database. Roles the migrations make that the
    test server already has are granted to it, as docs/deploy.md says; the others it makes
    itself."""
    name = f"opdesk_plain_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN CREATEROLE NOSUPERUSER"))
        for role in (APP_ROLE, LOOKUP_ROLE):
            exists = conn.execute(text("select 1 from pg_roles where rolname = :r"), {"r": role})
            if exists.scalar():
                conn.execute(text(f"GRANT {role} TO {name} WITH ADMIN OPTION"))
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER {name}'))
    database = Database(pg.server_url.set(database=name, username=name, password=None))
    try:
        yield database
    finally:
        database.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
        admin.dispose()


def test_a_plain_owner_migrates_and_backs_up_with_bypassrls(
    plain_owner: Database, pg: PgServer, tmp_path: Path
) -> None:
    migrated = opdesk("migrate", database=plain_owner, data_dir=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    with plain_owner.owner_engine.connect() as conn:
        assert not conn.execute(
            text("select rolsuper from pg_roles where rolname = current_user")
        ).scalar()
        # The migration's temporary right to create in the schema is gone again.
        assert not conn.execute(
            text("select has_schema_privilege(:r, 'public', 'CREATE')"), {"r": LOOKUP_ROLE}
        ).scalar()

    refused = opdesk("backup", database=plain_owner, data_dir=tmp_path)
    assert refused.returncode == 1
    assert "a login that has BYPASSRLS" in refused.stderr

    admin = create_engine(pg.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"ALTER ROLE {plain_owner.owner_url.username} BYPASSRLS"))
    admin.dispose()
    made = opdesk("backup", database=plain_owner, data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert list((tmp_path / "backups").glob("*.opdesk-backup"))
