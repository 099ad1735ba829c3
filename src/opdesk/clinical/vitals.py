"""Vitals: measurements with units and plausible ranges; values encrypted; BMI derived
from the latest weight and height. The desk may take them before the doctor sees the
patient; once the visit is signed they cannot change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.clinical.models import VITAL_TYPES, Visit, Vital
from opdesk.clinical.visits import _draft_visit, frozen_as_conflict, where
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import FieldError, InvalidInput, NotFound
from opdesk.security.crypto import FieldCipher


@dataclass(frozen=True)
class Kind:
    label: str
    unit: str
    low: Decimal
    high: Decimal
    places: int


KINDS: dict[str, Kind] = {
    "bp-systolic": Kind("Blood pressure (systolic)", "mmHg", Decimal(50), Decimal(260), 0),
    "bp-diastolic": Kind("Blood pressure (diastolic)", "mmHg", Decimal(30), Decimal(160), 0),
    "pulse": Kind("Pulse", "/min", Decimal(25), Decimal(250), 0),
    "temperature": Kind("Temperature", "°F", Decimal("90.0"), Decimal("110.0"), 1),
    "spo2": Kind("SpO₂", "%", Decimal(50), Decimal(100), 0),
    "weight": Kind("Weight", "kg", Decimal("0.5"), Decimal(350), 1),
    "height": Kind("Height", "cm", Decimal(30), Decimal(250), 1),
    "blood-sugar-random": Kind("Random blood sugar", "mg/dL", Decimal(20), Decimal(800), 0),
}
assert tuple(KINDS) == VITAL_TYPES


@dataclass(frozen=True)
class Reading:
    id: uuid.UUID
    type: str
    value: Decimal
    unit: str
    collected_at: datetime


def check(kind: str, raw: str | float | Decimal, *, field: str = "value") -> Decimal:
    """The value as a number inside the plausible range, else 422 naming ``field``."""
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidInput([FieldError("type", f"must be one of {', '.join(VITAL_TYPES)}")])
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise InvalidInput([FieldError(field, f"{spec.label} must be a number")]) from None
    if not value.is_finite() or not spec.low <= value <= spec.high:
        raise InvalidInput(
            [
                FieldError(
                    field,
                    f"{spec.label} must be between {spec.low} and {spec.high} {spec.unit}; "
                    "check the reading",
                )
            ]
        )
    return round(value, spec.places)


def record(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    visit_id: uuid.UUID,
    readings: dict[str, str | float | Decimal],
    collected_at: datetime | None = None,
) -> list[Vital]:
    """Several readings at once (all or none): each checked against its range."""
    if not readings:
        raise InvalidInput([FieldError("readings", "enter at least one measurement")])
    checked: dict[str, Decimal] = {}
    errors: list[FieldError] = []
    for kind, raw in readings.items():
        try:
            checked[kind] = check(kind, raw, field=kind)
        except InvalidInput as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInput(errors)
    visit = _draft_visit(session, visit_id)
    now = ctx.now()
    when = collected_at or now
    if when > now:
        raise InvalidInput([FieldError("collectedAt", "is in the future")])
    assert ctx.actor_id is not None
    rows = []
    with frozen_as_conflict():
        for kind, value in checked.items():
            row = Vital(
                tenant_id=visit.tenant_id,
                id=new_id(),
                visit_id=visit.id,
                patient_id=visit.patient_id,
                type=kind,
                unit=KINDS[kind].unit,
                collected_at=when,
                recorded_by=ctx.actor_id,
                created_at=now,
            )
            row.value_encrypted = cipher.encrypt(
                str(value), **where(row, visit.tenant_id, "visits_vitals", "value_encrypted")
            )
            session.add(row)
            rows.append(row)
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of(None, {"vitals": sorted(checked)}),
    )
    return rows


def remove(
    session: Session, ctx: RequestContext, *, visit_id: uuid.UUID, vital_id: uuid.UUID
) -> None:
    visit = _draft_visit(session, visit_id)
    row = records.by_id(session, Vital, vital_id)
    if row.visit_id != visit.id:
        raise NotFound(f"no vital with id {vital_id}")
    with frozen_as_conflict():
        session.delete(row)
        session.flush()
    audit.record(
        ctx,
        entity="visits",
        entity_id=visit.id,
        action="update",
        diff=audit.diff_of({"vital": row.id, "type": row.type}, None),
    )


def value_of(cipher: FieldCipher, row: Vital) -> Decimal:
    return Decimal(
        cipher.decrypt_str(
            row.value_encrypted, **where(row, row.tenant_id, "visits_vitals", "value_encrypted")
        )
    )


def _read(cipher: FieldCipher, rows: list[Vital]) -> list[Reading]:
    return [Reading(r.id, r.type, value_of(cipher, r), r.unit, r.collected_at) for r in rows]


def of_visit(session: Session, cipher: FieldCipher, visit: Visit) -> list[Reading]:
    rows = session.execute(
        select(Vital).where(Vital.visit_id == visit.id).order_by(Vital.collected_at, Vital.type)
    ).scalars()
    return _read(cipher, list(rows))


def trend(
    session: Session, cipher: FieldCipher, patient_id: uuid.UUID, *, per_type: int = 5
) -> dict[str, list[Reading]]:
    """The patient's last ``per_type`` readings of each kind, oldest first.

    One query for every kind: a branch per kind, each walking the (patient, type,
    collected_at) index backwards for its few rows, however long the history.
    """
    newest = [
        select(Vital.tenant_id, Vital.id)
        .where(Vital.patient_id == patient_id, Vital.type == kind)
        .order_by(Vital.collected_at.desc())
        .limit(per_type)
        for kind in VITAL_TYPES
    ]
    wanted = union_all(*newest).subquery()
    rows = session.execute(
        select(Vital)
        .join(wanted, (wanted.c.tenant_id == Vital.tenant_id) & (wanted.c.id == Vital.id))
        .order_by(Vital.type, Vital.collected_at.desc())
    ).scalars()
    by_kind: dict[str, list[Vital]] = {}
    for row in rows:
        by_kind.setdefault(row.type, []).append(row)
    return {
        kind: list(reversed(_read(cipher, by_kind[kind])))
        for kind in VITAL_TYPES
        if kind in by_kind
    }


def bmi(latest: dict[str, list[Reading]]) -> Decimal | None:
    """Body-mass index from the latest weight (kg) and height (cm)."""
    weight, height = latest.get("weight"), latest.get("height")
    if not weight or not height:
        return None
    metres = height[-1].value / 100
    return round(weight[-1].value / (metres * metres), 1)
