"""What the consultation screen shows of prescriptions, orders and diet plans.

The doctor writes each of them on its own page; the consultation screen shows this
visit's ones with where they stand, what the patient already has (the last prescription,
the diet plan in force, results waiting for review) and a button to start each. Every
list here is bounded, so a patient with years of history costs the page a few short
queries, not one per past record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opdesk.clinical import diet, orders, prescriptions
from opdesk.clinical.models import DietPlan, Order, OrderStatus, Prescription, Visit
from opdesk.clinical.prescriptions import ItemView
from opdesk.security import permissions
from opdesk.security.crypto import FieldCipher


@dataclass(frozen=True)
class RxSummary:
    prescription: Prescription
    items: list[ItemView]

    @property
    def issued_at(self) -> datetime | None:
        return self.prescription.issued_at


@dataclass(frozen=True)
class Regions:
    prescriptions: list[RxSummary]
    last_prescription: RxSummary | None
    orders: list[Order]
    results_to_review: int
    diet_plans: list[DietPlan]
    diet_in_force: DietPlan | None
    may: dict[str, bool] = field(default_factory=dict)

    @property
    def has_draft_prescription(self) -> bool:
        return any(rx.prescription.issued_at is None for rx in self.prescriptions)


def _last_issued_elsewhere(session: Session, visit: Visit) -> Prescription | None:
    return session.execute(
        select(Prescription)
        .where(
            Prescription.patient_id == visit.patient_id,
            Prescription.visit_id != visit.id,
            Prescription.issued_at.is_not(None),
        )
        .order_by(Prescription.issued_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def _results_to_review(session: Session, visit: Visit) -> int:
    """The patient's reported results from other visits that no doctor has reviewed."""
    return session.execute(
        select(func.count())
        .select_from(Order)
        .where(
            Order.patient_id == visit.patient_id,
            Order.visit_id != visit.id,
            Order.status == OrderStatus.REPORTED,
        )
    ).scalar_one()


def _diet_plans_of(session: Session, visit: Visit) -> list[DietPlan]:
    return list(
        session.execute(
            select(DietPlan)
            .where(DietPlan.visit_id == visit.id)
            .order_by(DietPlan.created_at, DietPlan.version)
        ).scalars()
    )


def _in_force_elsewhere(session: Session, visit: Visit) -> DietPlan | None:
    for plan in diet.current_for(session, [visit.patient_id]):
        if plan.visit_id != visit.id:
            return plan
    return None


def regions(session: Session, cipher: FieldCipher, role: str, visit: Visit) -> Regions:
    def summary(rx: Prescription) -> RxSummary:
        return RxSummary(rx, prescriptions.items_of(session, cipher, rx))

    last = _last_issued_elsewhere(session, visit)
    return Regions(
        prescriptions=[summary(rx) for rx in prescriptions.of_visit(session, visit.id)],
        last_prescription=summary(last) if last is not None else None,
        orders=orders.listing(session, visit_id=visit.id, limit=50),
        results_to_review=_results_to_review(session, visit),
        diet_plans=_diet_plans_of(session, visit),
        diet_in_force=_in_force_elsewhere(session, visit),
        may={
            "prescribe": permissions.allowed(role, "prescriptions:write"),
            "order": permissions.allowed(role, "orders:write"),
            "review": permissions.allowed(role, "orders:results"),
            "diet": permissions.allowed(role, "diet-plans:write"),
        },
    )
