"""The clinic's catalogue of billable services, and the services added to a visit
(billing reads ``visits_services``; each line keeps the price and tax of its day).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.clinical.models import ClinicService, VisitService
from opdesk.clinical.visits import _draft_visit, frozen_as_conflict
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound
from opdesk.validation import ascii_digits


@dataclass(frozen=True)
class ServiceFields:
    code: str
    name: str
    price: Decimal
    tax_rate: Decimal = Decimal(0)
    sac_hsn: str | None = None
    active: bool = True


def _check(fields: ServiceFields) -> ServiceFields:
    errors = []
    code = fields.code.strip().upper()
    if not code or len(code) > 20:
        errors.append(FieldError("code", "give a short code of up to 20 characters"))
    name = fields.name.strip()
    if not name or len(name) > 200:
        errors.append(FieldError("name", "give the name (up to 200 characters)"))
    if fields.price < 0 or fields.price >= Decimal("10000000"):
        errors.append(FieldError("price", "must be between ₹0 and ₹99,99,999.99"))
    if not Decimal(0) <= fields.tax_rate <= Decimal(28):
        errors.append(FieldError("taxRate", "GST rate must be between 0 and 28 %"))
    sac = (fields.sac_hsn or "").strip() or None
    if sac is not None and not (ascii_digits(sac) and 4 <= len(sac) <= 8):
        errors.append(FieldError("sacHsn", "SAC/HSN code is 4 to 8 digits"))
    if errors:
        raise InvalidInput(errors)
    return ServiceFields(
        code, name, round(fields.price, 2), round(fields.tax_rate, 2), sac, fields.active
    )


def catalogue(session: Session, *, active_only: bool = False) -> list[ClinicService]:
    stmt = select(ClinicService).order_by(func.lower(ClinicService.name))
    if active_only:
        stmt = stmt.where(ClinicService.active.is_(True))
    return list(session.execute(stmt).scalars())


def _snapshot(row: ClinicService) -> dict[str, object]:
    return {
        "code": row.code,
        "name": row.name,
        "price": row.price,
        "taxRate": row.tax_rate,
        "sacHsn": row.sac_hsn,
        "active": row.active,
    }


def create_service(session: Session, ctx: RequestContext, fields: ServiceFields) -> ClinicService:
    fields = _check(fields)
    now = ctx.now()
    row = ClinicService(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        code=fields.code,
        name=fields.name,
        price=fields.price,
        tax_rate=fields.tax_rate,
        sac_hsn=fields.sac_hsn,
        active=fields.active,
        created_at=now,
        updated_at=now,
    )
    _save(session, row)
    audit.record(
        ctx,
        entity="clinic_services",
        entity_id=row.id,
        action="create",
        diff=audit.diff_of(None, _snapshot(row)),
    )
    return row


def update_service(
    session: Session, ctx: RequestContext, *, service_id: uuid.UUID, fields: ServiceFields
) -> ClinicService:
    # An unknown or another clinic's service is 404 whatever was sent.
    row = records.by_id(session, ClinicService, service_id, lock=True)
    fields = _check(fields)
    before = _snapshot(row)
    row.code, row.name, row.price = fields.code, fields.name, fields.price
    row.tax_rate, row.sac_hsn, row.active = fields.tax_rate, fields.sac_hsn, fields.active
    row.updated_at = ctx.now()
    _save(session, row)
    audit.record(
        ctx,
        entity="clinic_services",
        entity_id=row.id,
        action="update",
        diff=audit.diff_of(before, _snapshot(row)),
    )
    return row


def _save(session: Session, row: ClinicService) -> None:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"another service already has the code {row.code}") from None


def services_of(session: Session, visit_id: uuid.UUID) -> list[VisitService]:
    return list(
        session.execute(
            select(VisitService)
            .where(VisitService.visit_id == visit_id)
            .order_by(VisitService.created_at)
        ).scalars()
    )


def add_to_visit(
    session: Session,
    ctx: RequestContext,
    *,
    visit_id: uuid.UUID,
    service_id: uuid.UUID,
    quantity: int = 1,
) -> VisitService:
    """A catalogue service on the visit, at today's price and tax."""
    if not 1 <= quantity <= 100:
        raise InvalidInput([FieldError("quantity", "must be between 1 and 100")])
    visit = _draft_visit(session, visit_id)
    try:
        service = records.by_id(session, ClinicService, service_id)
    except NotFound:
        raise InvalidInput([FieldError("serviceId", "is not a service of this clinic")]) from None
    if not service.active:
        raise InvalidInput([FieldError("serviceId", f"{service.name} is no longer offered")])
    assert ctx.actor_id is not None
    line = VisitService(
        tenant_id=visit.tenant_id,
        id=new_id(),
        visit_id=visit.id,
        service_id=service.id,
        code=service.code,
        description=service.name,
        quantity=quantity,
        unit_price=service.price,
        tax_rate=service.tax_rate,
        sac_hsn=service.sac_hsn,
        created_at=ctx.now(),
        created_by=ctx.actor_id,
    )
    with frozen_as_conflict():
        session.add(line)
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of(None, {"service": line.id, "code": line.code, "quantity": quantity}),
    )
    return line


def remove_from_visit(
    session: Session, ctx: RequestContext, *, visit_id: uuid.UUID, line_id: uuid.UUID
) -> None:
    visit = _draft_visit(session, visit_id)
    line = records.by_id(session, VisitService, line_id)
    if line.visit_id != visit.id:
        raise NotFound(f"no visit service with id {line_id}")
    with frozen_as_conflict():
        session.delete(line)
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of({"service": line.id, "code": line.code}, None),
    )
