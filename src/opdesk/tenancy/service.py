"""Creating, changing, deleting and restoring clinics."""

from __future__ import annotations

import uuid
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, NotFound
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import Address, TenantCreate, TenantUpdate
from opdesk.uow import enter_tenant

ENTITY = "tenants"


def _apply_address(tenant: Tenant, address: Address) -> None:
    tenant.address_line1 = address.line1
    tenant.address_line2 = address.line2
    tenant.address_city = address.city
    tenant.address_state = address.state
    tenant.address_pincode = address.pincode


def address_of(tenant: Tenant) -> Address:
    return Address(
        line1=tenant.address_line1,
        line2=tenant.address_line2,
        city=tenant.address_city,
        state=tenant.address_state,
        pincode=tenant.address_pincode,
    )


def create_tenant(session: Session, ctx: RequestContext, *, data: TenantCreate) -> Tenant:
    """A new clinic; the session is scoped to it afterwards. Duplicate slug: 409."""
    existing = find_by_slug(session, data.slug, include_deleted=True)
    if existing is not None:
        raise Conflict(f"the clinic code {data.slug!r} is taken", existingId=str(existing.id))
    now = ctx.now()
    tenant = Tenant(
        id=new_id(),
        name=data.name,
        slug=data.slug,
        timezone=data.timezone,
        currency="INR",
        gstin=data.gstin,
        phone=data.phone,
        invoice_prefix=data.invoice_prefix,
        created_at=now,
        updated_at=now,
    )
    _apply_address(tenant, data.address)
    try:
        with session.begin_nested():
            session.add(tenant)
    except IntegrityError as exc:  # a concurrent create won the slug
        raise Conflict(f"the clinic code {data.slug!r} is taken") from exc
    enter_tenant(session, ctx, tenant.id)
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=tenant.id,
        action="create",
        diff=audit.diff_of({}, tenant.snapshot()),
    )
    return tenant


def find_by_slug(session: Session, slug: str, *, include_deleted: bool = False) -> Tenant | None:
    stmt = select(Tenant).where(Tenant.slug == slug)
    return session.execute(
        stmt.execution_options(include_deleted=include_deleted)
    ).scalar_one_or_none()


def get_by_slug(session: Session, slug: str) -> Tenant:
    tenant = find_by_slug(session, slug)
    if tenant is None:
        raise NotFound(f"no clinic with the code {slug!r}")
    return tenant


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.deleted_at is not None:
        raise NotFound(f"no clinic with id {tenant_id}")
    return tenant


def zone_of(session: Session, tenant_id: uuid.UUID) -> ZoneInfo:
    return ZoneInfo(get_tenant(session, tenant_id).timezone)


def today_at_clinic(session: Session, ctx: RequestContext) -> date:
    """Today's date where the clinic is (the day a front desk would say)."""
    assert ctx.tenant_id is not None
    return ctx.now().astimezone(zone_of(session, ctx.tenant_id)).date()


def update_tenant(
    session: Session, ctx: RequestContext, *, tenant_id: uuid.UUID, changes: TenantUpdate
) -> Tenant:
    """Change a clinic's profile; only the clinic itself may be changed (RLS agrees)."""
    if tenant_id != ctx.tenant_id:
        raise NotFound(f"no clinic with id {tenant_id}")
    tenant = get_tenant(session, tenant_id)
    before = tenant.snapshot()
    given = changes.model_fields_set
    for name in ("name", "timezone", "gstin", "phone", "invoice_prefix"):
        if name in given:
            setattr(tenant, name, getattr(changes, name))
    if "address" in given and changes.address is not None:
        _apply_address(tenant, changes.address)
    after = tenant.snapshot()
    if after == before:
        return tenant
    tenant.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx, entity=ENTITY, entity_id=tenant.id, action="update", diff=audit.diff_of(before, after)
    )
    return tenant


def delete_tenant(session: Session, ctx: RequestContext, *, tenant_id: uuid.UUID) -> None:
    if tenant_id != ctx.tenant_id:
        raise NotFound(f"no clinic with id {tenant_id}")
    records.soft_delete(session, ctx, records.get_any(session, Tenant, tenant_id, lock=True))


def restore_tenant(session: Session, ctx: RequestContext, *, tenant_id: uuid.UUID) -> Tenant:
    if tenant_id != ctx.tenant_id:
        raise NotFound(f"no clinic with id {tenant_id}")
    tenant = records.get_any(session, Tenant, tenant_id, lock=True)
    records.restore(session, ctx, tenant)
    return tenant
