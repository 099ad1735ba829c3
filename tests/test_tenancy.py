"""Clinics: validation, creation, updates with audited diffs, soft delete and restore."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from opdesk.audit.models import AuditEvent
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.errors import Conflict, NotFound
from opdesk.tenancy import service
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantCreate, TenantUpdate
from opdesk.uow import transaction
from tests.factories import clinic_session, ctx_for, make_tenant, unaudited, unique_slug


def audit_trail(db: Database, tenant: Tenant) -> list[AuditEvent]:
    with clinic_session(db, tenant.id) as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("gstin", "27AAPFU0939F1ZX", "not a valid GSTIN"),
        ("gstin", "hello", "not a valid GSTIN"),
        ("phone", "12345", "not a valid phone number"),
        ("phone", "call me", "not a phone number"),
        ("timezone", "Asia/Bombay-ish", "not a known IANA time zone"),
        ("slug", "Has Spaces", "should match pattern"),
        ("invoicePrefix", "i/", "should match pattern"),
        ("invoicePrefix", "OPDX", "at most 3 characters"),
        ("name", "", "at least 1 character"),
    ],
)
def test_bad_clinic_input_names_the_field_and_reason(field: str, value: str, reason: str) -> None:
    doc = {"name": "Clinic", "slug": unique_slug(), field: value}
    with pytest.raises(ValidationError) as info:
        TenantCreate.model_validate(doc)
    errors = info.value.errors()
    assert [e["loc"][0] for e in errors] == [field]
    assert reason in errors[0]["msg"]


def test_phone_and_gstin_are_normalised() -> None:
    data = TenantCreate.model_validate(
        {"name": "C", "slug": "c-one", "phone": "020 2553 1234", "gstin": "27aapfu0939f1zv"}
    )
    assert data.phone == "+912025531234"
    assert data.gstin == "27AAPFU0939F1ZV"


def test_create_sets_defaults_and_audits(db: Database) -> None:
    tenant = make_tenant(db, "Kaveri Clinic", address={"city": "Mysuru", "pincode": "570001"})
    assert (tenant.timezone, tenant.currency, tenant.invoice_prefix) == (
        "Asia/Kolkata",
        "INR",
        "INV",
    )
    [event] = audit_trail(db, tenant)
    assert (event.entity_collection, event.entity_id, event.action) == (
        "tenants",
        tenant.id,
        "create",
    )
    assert event.diff["added"]["addressCity"] == "Mysuru"


def test_duplicate_slug_is_a_conflict_pointing_at_the_existing_clinic(db: Database) -> None:
    first = make_tenant(db)
    ctx = system_context(None)
    with pytest.raises(Conflict) as info, transaction(db, ctx) as session:
        service.create_tenant(session, ctx, data=TenantCreate(name="Again", slug=first.slug))
    assert info.value.extra == {"existingId": str(first.id)}


def test_concurrent_creates_of_one_slug_make_exactly_one_clinic(db: Database) -> None:
    slug = unique_slug()
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def create() -> None:
        ctx = system_context(None)
        start.wait()
        try:
            with transaction(db, ctx) as session:
                service.create_tenant(session, ctx, data=TenantCreate(name="Race", slug=slug))
            outcomes.append("created")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["created"]


def test_update_records_only_what_changed(db: Database, tenant: Tenant) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        service.update_tenant(
            session, ctx, tenant_id=tenant.id, changes=TenantUpdate(name="Asha Clinic & Labs")
        )
    with transaction(db, ctx) as session:  # no change: no event
        service.update_tenant(
            session, ctx, tenant_id=tenant.id, changes=TenantUpdate(name="Asha Clinic & Labs")
        )
    events = audit_trail(db, tenant)
    assert [e.action for e in events] == ["create", "update"]
    assert events[-1].diff == {
        "added": {},
        "updated": {"name": {"from": "Asha Clinic", "to": "Asha Clinic & Labs"}},
        "removed": {},
    }


def test_soft_deleted_clinic_is_hidden_until_restored(db: Database, tenant: Tenant) -> None:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        service.delete_tenant(session, ctx, tenant_id=tenant.id)
    with transaction(db, ctx) as session:
        assert service.find_by_slug(session, tenant.slug) is None
        assert session.execute(select(Tenant).where(Tenant.id == tenant.id)).first() is None
        assert service.find_by_slug(session, tenant.slug, include_deleted=True) is not None
        with pytest.raises(NotFound):
            service.get_by_slug(session, tenant.slug)
    with pytest.raises(Conflict, match="already deleted"), transaction(db, ctx) as session:
        service.delete_tenant(session, ctx, tenant_id=tenant.id)

    with transaction(db, ctx) as session:
        service.restore_tenant(session, ctx, tenant_id=tenant.id)
    with transaction(db, ctx) as session:
        assert service.get_by_slug(session, tenant.slug).id == tenant.id
    with pytest.raises(Conflict, match="is not deleted"), transaction(db, ctx) as session:
        service.restore_tenant(session, ctx, tenant_id=tenant.id)

    trail = [(e.action, e.from_state, e.to_state) for e in audit_trail(db, tenant)]
    assert trail[-2:] == [("soft-delete", "active", "deleted"), ("restore", "deleted", "active")]


def test_another_clinic_cannot_be_deleted_or_restored(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    ctx = ctx_for(tenant.id)
    for action in (service.delete_tenant, service.restore_tenant):
        with pytest.raises(NotFound), transaction(db, ctx) as session:
            action(session, ctx, tenant_id=other_tenant.id)
    with clinic_session(db, other_tenant.id) as session:
        assert session.get(Tenant, other_tenant.id).deleted_at is None  # type: ignore[union-attr]


def test_database_errors_do_not_carry_row_values(db: Database, tenant: Tenant) -> None:
    """A failing statement's message (which may reach a log) hides its parameters."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as info, clinic_session(db, tenant.id) as session:
        unaudited(session)  # the point is the message of the statement PostgreSQL refuses
        session.execute(
            text("insert into tenants (id, name, slug, invoice_prefix) values (:i, :n, :s, 'X')"),
            {"i": tenant.id, "n": "+919876543210", "s": tenant.slug},
        )
    assert "9876543210" not in str(info.value)
    assert "parameters hidden" in str(info.value)
