"""Tenant isolation: row-level security is the backstop under every query."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from opdesk.audit.models import AuditEvent
from opdesk.db import APP_ROLE, Base, Database, TenantScoped
from opdesk.errors import NotFound
from opdesk.models import load_all_models
from opdesk.tenancy import service
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantUpdate
from opdesk.uow import transaction
from tests.factories import clinic_session, ctx_for, unaudited

load_all_models()
TENANT_TABLES = sorted(
    str(getattr(m.class_, "__tablename__"))  # noqa: B009 - mixin has no static attribute
    for m in Base.registry.mappers
    if issubclass(m.class_, TenantScoped)
)


def test_app_connects_as_a_role_that_owns_nothing_and_cannot_bypass_rls(db: Database) -> None:
    with db.app_engine.connect() as conn:
        user, superuser, bypass = conn.execute(
            text(
                "select current_user, rolsuper, rolbypassrls from pg_roles "
                "where rolname = current_user"
            )
        ).one()
        owned = conn.execute(
            text(
                "select count(*) from pg_tables where schemaname = 'public' "
                "and tableowner = current_user"
            )
        ).scalar()
    assert user == APP_ROLE
    assert (superuser, bypass, owned) == (False, False, 0)


TABLES_WITH_TENANT = sorted(
    t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.c and t.name != "tenants"
)


@pytest.mark.parametrize("table", TABLES_WITH_TENANT)
def test_every_tenant_table_forces_row_level_security(db: Database, table: str) -> None:
    with db.owner_engine.connect() as conn:
        enabled, forced = conn.execute(
            text("select relrowsecurity, relforcerowsecurity from pg_class where relname = :t"),
            {"t": table},
        ).one()
        policies = conn.execute(
            text("select count(*) from pg_policies where tablename = :t"), {"t": table}
        ).scalar()
    assert (enabled, forced) == (True, True)
    assert policies
    assert policies >= 1


def test_tenant_scoped_tables_lead_keys_with_tenant_id(db: Database) -> None:
    for name in TENANT_TABLES:
        table = Base.metadata.tables[name]
        assert next(c.name for c in table.primary_key.columns) == "tenant_id"
        for index in table.indexes:
            assert next(iter(index.columns)).name == "tenant_id", index.name
        for constraint in table.constraints:
            cols = [c.name for c in getattr(constraint, "columns", [])]
            if cols and constraint is not table.primary_key and "tenant_id" in cols:
                assert cols[0] == "tenant_id", constraint.name


def test_without_a_tenant_queries_see_no_rows(db: Database, tenant: Tenant) -> None:
    with clinic_session(db, tenant.id) as session:
        mine = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    assert mine >= 1  # creating the clinic was audited
    with clinic_session(db, None) as session:
        assert session.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == 0
        assert session.execute(text("select count(*) from audit_chain_heads")).scalar_one() == 0


def test_a_tenant_sees_only_its_own_audit_events(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    with clinic_session(db, tenant.id) as session:
        seen = set(session.execute(select(AuditEvent.tenant_id)).scalars())
    assert seen == {tenant.id}


def test_reading_another_tenants_record_by_id_is_not_found(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session, pytest.raises(NotFound):
        service.update_tenant(
            session, ctx, tenant_id=other_tenant.id, changes=TenantUpdate(name="Hijacked")
        )
    with transaction(db, ctx) as session:
        assert session.get(Tenant, other_tenant.id).name == "Bharat Clinic"  # type: ignore[union-attr]


def test_rls_blocks_writes_into_another_tenant_even_with_raw_sql(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    with clinic_session(db, tenant.id) as session:
        unaudited(session)  # the point is what row-level security lets through
        changed = session.execute(
            text("update tenants set name = 'Hijacked' where id = :id"), {"id": other_tenant.id}
        ).rowcount  # type: ignore[attr-defined]
    assert changed == 0
    with pytest.raises(DBAPIError, match="row-level security"), clinic_session(db, tenant.id) as s:
        unaudited(s)
        s.execute(
            text(
                "insert into audit_chain_heads (tenant_id, last_seq, last_hash) "
                "values (:t, 99, 'x')"
            ),
            {"t": other_tenant.id},
        )


def test_the_app_role_cannot_change_or_delete_audit_events(db: Database, tenant: Tenant) -> None:
    for statement in (
        "update audit_events set action = 'delete'",
        "delete from audit_events",
        "truncate audit_events",
    ):
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            clinic_session(db, tenant.id) as session,
        ):
            unaudited(session)  # the point is what the app role's grants refuse
            session.execute(text(statement))
