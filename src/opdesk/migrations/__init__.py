"""Alembic migrations and the helpers they share."""
