"""SQL that every migration creating a tenant-scoped table repeats, and the way to run
a script of SQL functions.
"""

from __future__ import annotations

from alembic import op

from opdesk.db import APP_ROLE, CREATE_APP_ROLE

CURRENT_TENANT = "opdesk_current_tenant()"


def create_app_role() -> None:
    """The role the application runs as: owns nothing, cannot bypass row-level security."""
    op.execute(CREATE_APP_ROLE)
    op.execute(f"GRANT {APP_ROLE} TO current_user")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {CURRENT_TENANT} RETURNS uuid
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$
        """
    )


def enable_tenant_rls(table: str, column: str = "tenant_id") -> None:
    """Rows of ``table`` are visible and writable only inside their own tenant."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({column} = {CURRENT_TENANT}) WITH CHECK ({column} = {CURRENT_TENANT})"
    )


def grant_app(table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")


def run_script(sql: str) -> None:
    """Run ``sql`` (function bodies and all) exactly as written: straight to psycopg without
    parameters, since SQLAlchemy would read ``:MI`` in a format string as a parameter, and
    a parameterised psycopg call ``%`` as a placeholder.
    """
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    driver.execute(sql)
