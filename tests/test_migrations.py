"""Migrations: they match the models, and they go down and up again cleanly."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from opdesk.db import Base, Database
from opdesk.migrate import alembic_config, head_revision, is_current, upgrade
from opdesk.models import load_all_models


@pytest.mark.filterwarnings("ignore:Expression #:UserWarning")
def test_models_and_migrations_agree(db: Database) -> None:
    load_all_models()
    with db.owner_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        drift = compare_metadata(context, Base.metadata)
    assert drift == []


def test_downgrade_to_nothing_and_back(fresh_database: Database) -> None:
    engine = fresh_database.owner_engine
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), "base")
        conn.commit()
        assert "audit_events" not in inspect(conn).get_table_names()
        assert not is_current(conn)
    upgrade(engine)
    with engine.connect() as conn:
        assert is_current(conn)
        assert head_revision() is not None
        assert "audit_events" in inspect(conn).get_table_names()
