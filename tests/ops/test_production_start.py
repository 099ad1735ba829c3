"""Production mode (``OPDESK_ENV=prod``) refuses a start that would be unsafe, and says why.

Each case runs the real ``opdesk serve`` (or ``worker``) as a process against a real
database; a refused start exits 1 before it listens, with every refusal in one message.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, text

from opdesk.db import Database, drop_database, ensure_database
from opdesk.migrate import alembic_config, head_revision
from opdesk.security.keys import KEYRING_FILE, FileKeyring, keyring_env, new_keyring
from tests.conftest import PgServer
from tests.factories.cli import opdesk
from tests.factories.serve import serving

HTTPS = "https://clinic.example.in"


def prod(**extra: str) -> dict[str, str]:
    """A production environment that passes every check, with ``extra`` laid over it."""
    return {
        **keyring_env(new_keyring()),
        "OPDESK_ENV": "prod",
        "OPDESK_BASE_URL": HTTPS,
        **extra,
    }


def refused(done: object) -> str:
    assert getattr(done, "returncode", None) == 1, getattr(done, "stdout", "")
    message: str = getattr(done, "stderr", "")
    assert "Production start refused" in message or "schema" in message, message
    return message


@pytest.mark.parametrize("command_", ["serve", "worker"])
def test_an_http_base_url_is_refused(
    fresh_database: Database, tmp_path: Path, command_: str
) -> None:
    done = opdesk(
        command_,
        database=fresh_database,
        data_dir=tmp_path,
        **prod(OPDESK_BASE_URL="http://clinic.example.in"),
    )
    message = refused(done)
    assert "OPDESK_BASE_URL must be an https:// address" in message
    assert "'http://clinic.example.in'" in message


def test_the_dev_inbox_is_refused(fresh_database: Database, tmp_path: Path) -> None:
    done = opdesk("serve", database=fresh_database, data_dir=tmp_path, **prod(OPDESK_DEV_INBOX="1"))
    assert "OPDESK_DEV_INBOX is on" in refused(done)


def test_missing_keys_are_refused(fresh_database: Database, tmp_path: Path) -> None:
    environ = prod()
    del environ["OPDESK_SIGNING_KEY"]
    done = opdesk("serve", database=fresh_database, data_dir=tmp_path, **environ)
    assert done.returncode == 1
    assert "OPDESK_SIGNING_KEY not set" in done.stderr


def test_the_development_keys_are_refused_even_from_the_environment(
    fresh_database: Database, tmp_path: Path
) -> None:
    dev = new_keyring()
    FileKeyring(tmp_path / "keys" / KEYRING_FILE).save(dev)
    done = opdesk("serve", database=fresh_database, data_dir=tmp_path, **prod(**keyring_env(dev)))
    message = refused(done)
    assert "are the development keys of" in message
    assert str(tmp_path / "keys" / KEYRING_FILE) in message


def test_every_refusal_is_said_at_once(fresh_database: Database, tmp_path: Path) -> None:
    dev = new_keyring()
    FileKeyring(tmp_path / "keys" / KEYRING_FILE).save(dev)
    environ = prod(**keyring_env(dev), OPDESK_BASE_URL="http://x.in", OPDESK_DEV_INBOX="true")
    message = refused(opdesk("serve", database=fresh_database, data_dir=tmp_path, **environ))
    assert message.count("\n  - ") == 3, message


@pytest.fixture
def empty_database(pg: PgServer) -> Iterator[Database]:
    name = f"opdesk_empty_{secrets.token_hex(4)}"
    ensure_database(pg.server_url, name)
    database = pg.database(name)
    yield database
    database.dispose()
    drop_database(pg.server_url, name)


def test_production_never_migrates_an_empty_database_by_itself(
    empty_database: Database, tmp_path: Path
) -> None:
    done = opdesk("serve", database=empty_database, data_dir=tmp_path, **prod())
    assert done.returncode == 1
    assert "has no OPDesk schema yet. Run `opdesk migrate`" in done.stderr
    with empty_database.owner_engine.connect() as conn:
        assert conn.execute(text("select to_regclass('public.tenants')")).scalar() is None


def test_production_refuses_a_schema_behind_this_release(
    empty_database: Database, tmp_path: Path
) -> None:
    engine = create_engine(empty_database.owner_url)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        command.downgrade(alembic_config(conn), "-1")
        conn.commit()
        behind = conn.execute(text("select version_num from alembic_version")).scalar_one()
    engine.dispose()
    done = opdesk("worker", "--once", database=empty_database, data_dir=tmp_path, **prod())
    assert done.returncode == 1
    assert f"is at migration {behind}; this release needs {head_revision()}" in done.stderr
    assert "run `opdesk migrate`" in done.stderr
    # The operator's step, then the start goes on.
    assert opdesk("migrate", database=empty_database, data_dir=tmp_path, **prod()).returncode == 0
    again = opdesk("worker", "--once", database=empty_database, data_dir=tmp_path, **prod())
    assert again.returncode == 0, again.stderr


def test_production_refuses_a_schema_from_a_newer_release(
    fresh_database: Database, tmp_path: Path
) -> None:
    with fresh_database.owner_engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999_from_the_future'"))
    done = opdesk("serve", database=fresh_database, data_dir=tmp_path, **prod())
    assert done.returncode == 1
    assert "9999_from_the_future, which this OPDesk release does not know" in done.stderr


def test_a_good_production_start_serves_with_hsts_and_no_dev_inbox(
    fresh_database: Database, tmp_path: Path
) -> None:
    with serving(fresh_database, tmp_path, fresh_keys=False, env=prod()) as base:
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.headers["strict-transport-security"].startswith("max-age=")
        assert httpx.get(f"{base}/dev/inbox", timeout=10).status_code == 404
        # No demo clinic in production.
        with fresh_database.owner_engine.connect() as conn:
            assert conn.execute(text("select count(*) from tenants")).scalar() == 0
    assert not (tmp_path / "keys" / KEYRING_FILE).exists()
