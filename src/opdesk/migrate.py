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


def schema_problem(conn: Connection) -> str | None:
    """Why this release cannot run on the database's schema, said for an operator; or None."""
    current, head = current_revision(conn), head_revision()
    if current == head:
        return None
    if current is None:
        return (
            "The database has no OPDesk schema yet. Run `opdesk migrate` to create it, "
            "then start again."
        )
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        return (
            f"The database is at migration {current}, which this OPDesk release does not "
            "know: it was upgraded by a newer release. Run that release, or restore a "
            "backup taken before the upgrade."
        )
    return (
        f"The database is at migration {current}; this release needs {head}. Take a backup "
        "(`opdesk backup`), run `opdesk migrate`, then start again."
    )
