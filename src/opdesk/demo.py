"""The demo clinic: created or refreshed by ``opdesk demo`` (later issues add their data)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from opdesk.context import RequestContext
from opdesk.db import bind_tenant
from opdesk.tenancy import service as tenants
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import Address, TenantCreate, TenantUpdate

DEMO_SLUG = "sunrise-clinic"

DEMO_PROFILE = TenantCreate(
    name="Sunrise Family Clinic",
    slug=DEMO_SLUG,
    timezone="Asia/Kolkata",
    gstin="27AAPFU0939F1ZV",
    address=Address(
        line1="14, Shivaji Nagar Main Road",
        line2="Opp. Kamla Nehru Park",
        city="Pune",
        state="Maharashtra",
        pincode="411005",
    ),
    phone="+912025531234",
    invoice_prefix="SUN",
)


def refresh_demo(session: Session, ctx: RequestContext) -> Tenant:
    """Create the demo clinic, or put its profile back as shipped; restores it if deleted."""
    existing = tenants.find_by_slug(session, DEMO_SLUG, include_deleted=True)
    if existing is None:
        return tenants.create_tenant(session, ctx, data=DEMO_PROFILE)
    ctx.tenant_id = existing.id
    bind_tenant(session, existing.id)
    if existing.deleted_at is not None:
        tenants.restore_tenant(session, ctx, tenant_id=existing.id)
    fields = DEMO_PROFILE.model_dump(exclude={"slug"})
    return tenants.update_tenant(
        session, ctx, tenant_id=existing.id, changes=TenantUpdate.model_validate(fields)
    )
