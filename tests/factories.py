"""Test data built through the services, so it is valid, audited and scoped like real data.

Tests build clinics, people and schedules here and never import another test module's
helpers. Anything written around a service on purpose goes through :func:`unaudited`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from opdesk.audit.guard import SKIP_SETTING
from opdesk.db import Database
from opdesk.identity.service import Identity
from opdesk.scheduling import service as scheduling
from opdesk.scheduling.models import DoctorProfile
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.conftest import ctx_for, make_user

CONSULTATION = scheduling.VisitType(code="consultation", label="Consultation", minutes=15)


def make_doctor(
    db: Database,
    ident: Identity,
    tenant: Tenant,
    *,
    name: str = "Dr. Anjali Deshmukh",
    fee: Decimal = Decimal("500.00"),
    **fields: Any,
) -> DoctorProfile:
    """A doctor-role user with a doctor profile (no weekly hours yet)."""
    user = make_user(db, ident, tenant, "doctor", name=name)
    ctx = ctx_for(tenant.id)
    profile = scheduling.DoctorFields(
        display_name=name,
        specialty=fields.pop("specialty", "General medicine"),
        registration_number=fields.pop("registration_number", "MMC-2011-04512"),
        consultation_fee=fee,
        visit_types=fields.pop("visit_types", (CONSULTATION,)),
        **fields,
    )
    with transaction(db, ctx) as session:
        return scheduling.create_doctor(session, ctx, user_id=user.id, fields=profile)


def unaudited(session: Session) -> None:
    """Let this transaction write around the services (constraint tests only)."""
    session.execute(text(f"select set_config('{SKIP_SETTING}', 'on', true)"))
