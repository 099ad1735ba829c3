"""Clinics, the days tests choose, contexts and transactions for a clinic, audit trails."""

from __future__ import annotations

import secrets
import uuid
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from opdesk.audit.guard import SKIP_SETTING
from opdesk.audit.models import AuditEvent
from opdesk.context import RequestContext, system_context
from opdesk.db import Database
from opdesk.tenancy.models import Tenant
from opdesk.tenancy.schemas import TenantCreate
from opdesk.tenancy.service import create_tenant
from opdesk.uow import transaction

CLINIC_ZONE = ZoneInfo("Asia/Kolkata")  # a new clinic's time zone unless a test sets one


def clinic_today(zone: ZoneInfo = CLINIC_ZONE) -> date:
    """Today where the clinic is (the machine's ``date.today()`` may be a day off)."""
    return datetime.now(zone).date()


def coming(weekday: int, zone: ZoneInfo = CLINIC_ZONE) -> date:
    """The first ``weekday`` (0 = Monday) at least a week after today in the clinic's zone:
    all of that day lies ahead at whatever hour the tests run (and start), and it falls
    well inside every booking window.
    """
    first = clinic_today(zone) + timedelta(days=7)
    return first + timedelta(days=(weekday - first.weekday()) % 7)


def unique_slug(prefix: str = "clinic") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def make_tenant(database: Database, name: str = "Test Clinic", **fields: object) -> Tenant:
    ctx = system_context(None)
    data = TenantCreate.model_validate({"name": name, "slug": unique_slug(), **fields})
    with transaction(database, ctx) as session:
        return create_tenant(session, ctx, data=data)


def ctx_for(tenant_id: uuid.UUID | None, **overrides: object) -> RequestContext:
    """The system acting for this clinic (or for none), with any fields overridden."""
    ctx = system_context(tenant_id)
    for key, value in overrides.items():
        setattr(ctx, key, value)
    return ctx


def clinic_session(db: Database, tenant_id: uuid.UUID | None) -> AbstractContextManager[Session]:
    """One transaction for one clinic (or for none), as the system: commits on success."""
    return transaction(db, ctx_for(tenant_id))


def unaudited(session: Session) -> None:
    """Let this transaction write around the services (constraint tests only)."""
    session.execute(text(f"select set_config('{SKIP_SETTING}', 'on', true)"))


def events_of(db: Database, tenant_id: uuid.UUID) -> list[AuditEvent]:
    """The clinic's audit trail, lane by lane, oldest first (one writer at a time writes
    to lane 0 only)."""
    with clinic_session(db, tenant_id) as session:
        order = (AuditEvent.lane, AuditEvent.seq)
        return list(session.execute(select(AuditEvent).order_by(*order)).scalars())
