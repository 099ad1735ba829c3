"""Alembic environment: always run with a connection handed over by ``opdesk.migrate``."""

from __future__ import annotations

from alembic import context

from opdesk.db import Base
from opdesk.models import load_all_models

load_all_models()
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `opdesk migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
