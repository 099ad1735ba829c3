"""Orders and diet plans for tests: a draft visit for a booked appointment (inserted
directly, audited, so these tests do not wait on the visits service), orders moved along
their machine by the service, and diet plans drafted or issued through the service.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from opdesk import audit
from opdesk.clinical import diet, orders
from opdesk.clinical.models import DietPlan, DietPlanTemplate, Order, Visit, VisitStatus
from opdesk.db import Database, new_id
from opdesk.documents.storage import LocalStorage, Storage
from opdesk.identity.service import Identity
from opdesk.tenancy.models import Tenant
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for
from tests.factories.people import make_patient
from tests.factories.scheduling import book, clinic_with_slots

PDF = b"%PDF-1.4 a lab report"

DAL_ROTI = [
    {
        "day": 1,
        "meals": [
            {
                "label": "Breakfast",
                "items": [{"name": "Idli (इडली)", "qty": 3, "unit": "pieces"}],
            },
            {
                "label": "Lunch",
                "items": [
                    {"name": "Roti (रोटी)", "qty": 2, "unit": "pieces"},
                    {"name": "Dal (दाल)", "qty": 1, "unit": "bowl"},
                ],
            },
        ],
    },
    {
        "day": 2,
        "meals": [
            {"label": "Breakfast", "items": [{"name": "Poha (पोहा)", "qty": 1, "unit": "plate"}]},
            {
                "label": "Lunch",
                "items": [
                    {"name": "Rice (चावल)", "qty": 1, "unit": "cup"},
                    {"name": "Sabzi (सब्ज़ी)", "qty": 1, "unit": "bowl"},
                ],
            },
        ],
    },
]


@dataclass(frozen=True)
class Consult:
    """A booked patient's draft visit, and who is in it."""

    tenant: Tenant
    visit_id: uuid.UUID
    patient: Any
    doctor: Any


def make_visit(
    db: Database, ident: Identity, tenant: Tenant, *, patient: Any = None, **patient_fields: Any
) -> Consult:
    """A new doctor, a patient booked with them, and the appointment's draft visit."""
    tenant, doctor, slots = clinic_with_slots(db, ident, 1, tenant)
    patient = patient or make_patient(db, ident, tenant, **patient_fields)
    appointment = book(db, tenant, slots[0], patient)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        now = ctx.now()
        visit = Visit(
            tenant_id=tenant.id,
            id=new_id(),
            appointment_id=appointment.id,
            patient_id=patient.id,
            doctor_id=doctor.id,
            status=VisitStatus.DRAFT,
            created_at=now,
            updated_at=now,
        )
        session.add(visit)
        session.flush()
        audit.record(
            ctx,
            entity="visits",
            entity_id=visit.id,
            action="create",
            diff=audit.diff_of({}, {"appointmentId": appointment.id}),
        )
    return Consult(tenant, visit.id, patient, doctor)


def visit_id_of(db: Database, ident: Identity, tenant: Tenant) -> uuid.UUID:
    return make_visit(db, ident, tenant).visit_id


def make_order(
    db: Database,
    ident: Identity,
    tenant: Tenant,
    *,
    status: str = "ordered",
    visit: Consult | None = None,
    abnormal: bool | None = None,
    items: list[dict[str, Any]] | None = None,
    storage: Storage | None = None,
) -> Order:
    """An order moved through the service to ``status`` (ordered … patient-notified);
    give the app's ``storage`` for a report file the app is to read back.
    """
    visit = visit or make_visit(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        order = orders.place(
            session,
            ctx,
            visit_id=visit.visit_id,
            type_="lab",
            items=items or [{"name": "HbA1c", "code": "4548-4", "panel": "Diabetes"}],
        )
        if status == "cancelled":
            orders.cancel(session, ctx, order_id=order.id)
        if status in ("collected", "reported", "reviewed", "patient-notified"):
            orders.record_collected(session, ctx, order_id=order.id)
        if status in ("reported", "reviewed", "patient-notified"):
            orders.attach_report(
                session,
                ctx,
                ident.cipher,
                storage or LocalStorage(Path(mkdtemp())),
                order_id=order.id,
                filename="report.pdf",
                data=PDF,
                abnormal=abnormal,
                max_bytes=1024 * 1024,
            )
        if status in ("reviewed", "patient-notified"):
            orders.review(
                session,
                ctx,
                ident.cipher,
                order_id=order.id,
                abnormal=bool(abnormal),
                note="Sugar is well controlled.",
                base_url="https://opdesk.example",
            )
        if status == "patient-notified" and order.status != "patient-notified":
            orders.record_told(session, ctx, order_id=order.id)
        return order


def order_id_of(db: Database, ident: Identity, tenant: Tenant) -> uuid.UUID:
    return make_order(db, ident, tenant).id


def make_diet_plan(
    db: Database,
    ident: Identity,
    tenant: Tenant,
    *,
    issued: bool = True,
    visit: Consult | None = None,
    schedule: list[dict[str, Any]] | None = None,
) -> DietPlan:
    """A diet plan on a visit, issued unless asked for a draft."""
    visit = visit or make_visit(db, ident, tenant)
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        plan = diet.create(
            session,
            ctx,
            visit_id=visit.visit_id,
            macros={"calories": 1600, "protein": 60},
            schedule=schedule or DAL_ROTI,
        )
        if issued:
            diet.issue(session, ctx, plan_id=plan.id)
        return plan


def diet_plan_id_of(db: Database, ident: Identity, tenant: Tenant) -> uuid.UUID:
    return make_diet_plan(db, ident, tenant).id


def make_diet_template(db: Database, tenant: Tenant, name: str | None = None) -> DietPlanTemplate:
    ctx = ctx_for(tenant.id)
    with transaction(db, ctx) as session:
        return diet.add_template(
            session,
            ctx,
            name=name or f"Template {new_id().hex[-10:]}",
            macros={"calories": 1800},
            schedule=DAL_ROTI,
        )


def diet_template_id_of(db: Database, ident: Identity, tenant: Tenant) -> uuid.UUID:
    return make_diet_template(db, tenant).id
