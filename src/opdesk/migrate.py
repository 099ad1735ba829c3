"""Running Alembic from code, and asking whether the schema is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(owner_engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; runs as the owner, one transaction per migration."""
    with owner_engine.connect() as conn:
        # Only one process migrates at a time (several app servers may start together).
        conn.exec_driver_sql("select pg_advisory_lock(727274)")
        try:
            command.upgrade(alembic_config(conn), revision)
            conn.commit()
        finally:
            conn.exec_driver_sql("select pg_advisory_unlock(727274)")
            conn.commit()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def is_current(conn: Connection) -> bool:
    return current_revision(conn) == head_revision()
