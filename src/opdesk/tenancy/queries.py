"""Read side for clinics."""

from __future__ import annotations

from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import ClinicPublic
from opdesk.tenancy.service import address_of


def public_profile(tenant: Tenant) -> ClinicPublic:
    return ClinicPublic(
        id=tenant.id,
        name=tenant.name,
        slug=tenant.slug,
        timezone=tenant.timezone,
        currency=tenant.currency,
        gstin=tenant.gstin,
        address=address_of(tenant),
        phone=tenant.phone,
    )
