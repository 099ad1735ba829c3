"""Diet plans: the clinic's template library, a doctor's plan for a patient (macros and a
schedule of days and meals), issuing it, new versions that supersede it, and the
patient's ticks.

An issued plan is frozen by PostgreSQL (trigger ``opdesk_diet_plan_frozen``: SQLSTATE
``OD001``) except for its adherence summary, which :func:`tick` keeps current. A change
after issue is a new version (:func:`revise`) with ``supersedes``; a plan is superseded
at most once (a unique index), so two revisions at once cannot both win (409).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.clinical.models import DietPlan, DietPlanTemplate, MealTick, Visit
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound

FROZEN_SQLSTATE = "OD001"
MAX_DAYS = 31
MAX_MEALS = 8
MAX_ITEMS = 15
MAX_TEXT = 80
MACRO_LIMITS = {"calories": 6000, "protein": 500, "carbs": 1000, "fat": 400}
MACRO_LABELS = {
    "calories": "Calories (kcal)",
    "protein": "Protein (g)",
    "carbs": "Carbohydrates (g)",
    "fat": "Fat (g)",
}

# The clinic's first templates: everyday Indian meals (names as patients say them).
STANDARD_TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "name": "Diabetic vegetarian (1,600 kcal)",
        "macros": {"calories": 1600, "protein": 60, "carbs": 200, "fat": 50},
        "schedule": [
            {
                "day": 1,
                "meals": [
                    {
                        "label": "Breakfast",
                        "items": [
                            {"name": "Idli (इडली)", "qty": 3, "unit": "pieces"},
                            {"name": "Sambar (सांभर)", "qty": 1, "unit": "bowl"},
                        ],
                    },
                    {
                        "label": "Lunch",
                        "items": [
                            {"name": "Roti (रोटी)", "qty": 2, "unit": "pieces"},
                            {"name": "Dal (दाल)", "qty": 1, "unit": "bowl"},
                            {"name": "Sabzi (सब्ज़ी)", "qty": 1, "unit": "bowl"},
                            {"name": "Curd (दही)", "qty": 100, "unit": "g"},
                        ],
                    },
                    {
                        "label": "Evening",
                        "items": [{"name": "Roasted chana (भुना चना)", "qty": 30, "unit": "g"}],
                    },
                    {
                        "label": "Dinner",
                        "items": [
                            {"name": "Brown rice (ब्राउन चावल)", "qty": 1, "unit": "cup"},
                            {"name": "Dal (दाल)", "qty": 1, "unit": "bowl"},
                            {"name": "Salad (सलाद)", "qty": 1, "unit": "plate"},
                        ],
                    },
                ],
            }
        ],
    },
    {
        "name": "Low-salt heart healthy (1,800 kcal)",
        "macros": {"calories": 1800, "protein": 65, "carbs": 240, "fat": 55},
        "schedule": [
            {
                "day": 1,
                "meals": [
                    {
                        "label": "Breakfast",
                        "items": [
                            {"name": "Vegetable poha (पोहा)", "qty": 1, "unit": "plate"},
                            {"name": "Tea, no sugar (चाय)", "qty": 1, "unit": "cup"},
                        ],
                    },
                    {
                        "label": "Lunch",
                        "items": [
                            {"name": "Rice (चावल)", "qty": 1, "unit": "cup"},
                            {"name": "Rajma (राजमा)", "qty": 1, "unit": "bowl"},
                            {"name": "Sabzi (सब्ज़ी)", "qty": 1, "unit": "bowl"},
                        ],
                    },
                    {
                        "label": "Dinner",
                        "items": [
                            {"name": "Roti (रोटी)", "qty": 2, "unit": "pieces"},
                            {"name": "Moong dal (मूंग दाल)", "qty": 1, "unit": "bowl"},
                        ],
                    },
                ],
            }
        ],
    },
    {
        "name": "High-protein recovery (2,000 kcal)",
        "macros": {"calories": 2000, "protein": 90, "carbs": 250, "fat": 60},
        "schedule": [
            {
                "day": 1,
                "meals": [
                    {
                        "label": "Breakfast",
                        "items": [
                            {"name": "Besan chilla (बेसन चीला)", "qty": 2, "unit": "pieces"},
                            {"name": "Milk (दूध)", "qty": 200, "unit": "ml"},
                        ],
                    },
                    {
                        "label": "Lunch",
                        "items": [
                            {"name": "Roti (रोटी)", "qty": 3, "unit": "pieces"},
                            {"name": "Paneer sabzi (पनीर सब्ज़ी)", "qty": 1, "unit": "bowl"},
                            {"name": "Dal (दाल)", "qty": 1, "unit": "bowl"},
                        ],
                    },
                    {
                        "label": "Dinner",
                        "items": [
                            {"name": "Khichdi (खिचड़ी)", "qty": 1, "unit": "bowl"},
                            {"name": "Curd (दही)", "qty": 150, "unit": "g"},
                        ],
                    },
                ],
            }
        ],
    },
)


# --------------------------------------------------------------------------- checks


@contextmanager
def refusing_frozen(detail: str) -> Iterator[None]:
    """A write PostgreSQL refuses as frozen (``OD001``) answers 409 with ``detail``."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == FROZEN_SQLSTATE:
            raise Conflict(detail) from None
        raise


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def clean_macros(macros: dict[str, Any] | None) -> dict[str, float]:
    """{calories, protein, carbs, fat}: each optional, a number from 0 to a sane limit."""
    errors: list[FieldError] = []
    cleaned: dict[str, float] = {}
    for key, raw in (macros or {}).items():
        if key not in MACRO_LIMITS:
            errors.append(
                FieldError(f"macros.{key}", "is not one of calories, protein, carbs, fat")
            )
            continue
        if raw is None or raw == "":
            continue
        value = _number(raw)
        limit = MACRO_LIMITS[key]
        if value is None or not 0 <= value <= limit:
            errors.append(
                FieldError(f"macros.{key}", f"{MACRO_LABELS[key]}: a number 0 to {limit}")
            )
            continue
        cleaned[key] = int(value) if value == int(value) else round(value, 1)
    if errors:
        raise InvalidInput(errors)
    return cleaned


def _text(value: Any) -> str:
    return str(value if value is not None else "").strip()


def clean_schedule(schedule: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Days (numbered 1…31, each once) of meals (labels unique in a day) of items
    (name, qty, unit); 422 naming each bad place as the form shows it ("Day 1, Lunch, item 2").
    """
    errors: list[FieldError] = []
    if not schedule:
        raise InvalidInput([FieldError("schedule", "add at least one day with a meal")])
    if len(schedule) > MAX_DAYS:
        raise InvalidInput([FieldError("schedule", f"at most {MAX_DAYS} days")])
    days: list[dict[str, Any]] = []
    seen_days: set[int] = set()
    for d, day in enumerate(schedule, start=1):
        raw_day = day.get("day", d)
        number = _number(raw_day)
        if number is None or number != int(number) or not 1 <= number <= MAX_DAYS:
            errors.append(FieldError(f"schedule[{d}].day", f"Day: a number 1 to {MAX_DAYS}"))
            continue
        n = int(number)
        if n in seen_days:
            errors.append(FieldError(f"schedule[{d}].day", f"Day {n} appears twice"))
            continue
        seen_days.add(n)
        meals_in = day.get("meals") or []
        if not meals_in:
            errors.append(FieldError(f"schedule[{d}].meals", f"Day {n}: add at least one meal"))
        if len(meals_in) > MAX_MEALS:
            errors.append(FieldError(f"schedule[{d}].meals", f"Day {n}: at most {MAX_MEALS}"))
        meals: list[dict[str, Any]] = []
        labels: set[str] = set()
        for m, meal in enumerate(meals_in[:MAX_MEALS], start=1):
            label = _text(meal.get("label"))
            where = f"schedule[{d}].meals[{m}]"
            if not label or len(label) > MAX_TEXT:
                errors.append(
                    FieldError(f"{where}.label", f"Day {n}, meal {m}: name the meal (≤ {MAX_TEXT})")
                )
                continue
            if label.lower() in labels:
                errors.append(FieldError(f"{where}.label", f"Day {n}: {label} appears twice"))
                continue
            labels.add(label.lower())
            items: list[dict[str, Any]] = []
            items_in = meal.get("items") or []
            if not items_in:
                errors.append(FieldError(f"{where}.items", f"Day {n}, {label}: add a food"))
            for i, item in enumerate(items_in[:MAX_ITEMS], start=1):
                name = _text(item.get("name"))
                unit = _text(item.get("unit"))
                qty = _number(item.get("qty"))
                at = f"Day {n}, {label}, item {i}"
                if not name or len(name) > MAX_TEXT:
                    errors.append(FieldError(f"{where}.items[{i}].name", f"{at}: name the food"))
                if qty is None or not 0 < qty <= 10000:
                    errors.append(
                        FieldError(f"{where}.items[{i}].qty", f"{at}: quantity, a number above 0")
                    )
                if len(unit) > 20:
                    errors.append(
                        FieldError(f"{where}.items[{i}].unit", f"{at}: unit at most 20 characters")
                    )
                if qty is not None:
                    items.append(
                        {
                            "name": name,
                            "qty": int(qty) if qty == int(qty) else round(qty, 2),
                            "unit": unit,
                        }
                    )
            meals.append({"label": label, "items": items})
        days.append({"day": n, "meals": meals})
    if errors:
        raise InvalidInput(errors)
    return sorted(days, key=lambda x: x["day"])


def _name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 120:
        raise InvalidInput([FieldError("name", "enter a name (at most 120 characters)")])
    return cleaned


# --------------------------------------------------------------------------- templates


def templates(session: Session) -> list[DietPlanTemplate]:
    return list(
        session.execute(
            select(DietPlanTemplate).order_by(func.lower(DietPlanTemplate.name))
        ).scalars()
    )


def _name_taken(session: Session, name: str, but: uuid.UUID | None = None) -> bool:
    stmt = select(DietPlanTemplate.id).where(func.lower(DietPlanTemplate.name) == name.lower())
    if but is not None:
        stmt = stmt.where(DietPlanTemplate.id != but)
    return session.execute(stmt).first() is not None


def add_template(
    session: Session,
    ctx: RequestContext,
    *,
    name: str,
    macros: dict[str, Any] | None,
    schedule: Sequence[dict[str, Any]],
) -> DietPlanTemplate:
    assert ctx.tenant_id is not None
    clean_name = _name(name)
    if _name_taken(session, clean_name):
        raise Conflict(f"the library already has a template named {clean_name}")
    now = ctx.now()
    row = DietPlanTemplate(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        name=clean_name,
        macros=clean_macros(macros),
        schedule=clean_schedule(schedule),
        created_by=ctx.actor_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"the library already has a template named {clean_name}") from None
    audit.record(
        ctx,
        entity="diet_plan_templates",
        entity_id=row.id,
        action="create",
        diff=audit.diff_of({}, {"name": clean_name}),
    )
    return row


def update_template(
    session: Session,
    ctx: RequestContext,
    *,
    template_id: uuid.UUID,
    name: str,
    macros: dict[str, Any] | None,
    schedule: Sequence[dict[str, Any]],
) -> DietPlanTemplate:
    row = records.by_id(session, DietPlanTemplate, template_id, lock=True)
    clean_name = _name(name)
    if _name_taken(session, clean_name, but=row.id):
        raise Conflict(f"the library already has a template named {clean_name}")
    before = {"name": row.name, "macros": row.macros}
    row.name = clean_name
    row.macros = clean_macros(macros)
    row.schedule = clean_schedule(schedule)
    row.updated_at = ctx.now()
    session.flush()
    audit.record(
        ctx,
        entity="diet_plan_templates",
        entity_id=row.id,
        action="update",
        diff=audit.diff_of(before, {"name": row.name, "macros": row.macros}),
    )
    return row


def delete_template(session: Session, ctx: RequestContext, *, template_id: uuid.UUID) -> None:
    """Remove a template no plan was made from (409 otherwise: plans point at it)."""
    row = records.by_id(session, DietPlanTemplate, template_id, lock=True)
    used = session.execute(select(DietPlan.id).where(DietPlan.template_id == row.id)).first()
    if used is not None:
        raise Conflict(f"plans were made from {row.name}; it stays in the library")
    name = row.name
    session.delete(row)
    session.flush()
    audit.record(
        ctx,
        entity="diet_plan_templates",
        entity_id=template_id,
        action="delete",
        diff=audit.diff_of({"name": name}, {}),
    )


def add_standard_templates(session: Session, ctx: RequestContext) -> int:
    """The standard templates the library does not have yet (by name); returns how many."""
    added = 0
    for template in STANDARD_TEMPLATES:
        if not _name_taken(session, str(template["name"])):
            add_template(
                session,
                ctx,
                name=str(template["name"]),
                macros=dict(template["macros"]),
                schedule=list(template["schedule"]),
            )
            added += 1
    return added


# --------------------------------------------------------------------------- plans


def get(session: Session, plan_id: uuid.UUID, *, lock: bool = False) -> DietPlan:
    return records.by_id(session, DietPlan, plan_id, lock=lock)


def create(
    session: Session,
    ctx: RequestContext,
    *,
    visit_id: uuid.UUID,
    template_id: uuid.UUID | None = None,
    macros: dict[str, Any] | None = None,
    schedule: Sequence[dict[str, Any]] | None = None,
) -> DietPlan:
    """A draft plan on the visit, from a template (its macros and schedule unless given)."""
    assert ctx.tenant_id is not None
    visit = records.by_id(session, Visit, visit_id)
    template = None
    if template_id is not None:
        try:
            template = records.by_id(session, DietPlanTemplate, template_id)
        except NotFound:
            raise InvalidInput([FieldError("templateId", "is not in the library")]) from None
    if schedule is None and template is None:
        raise InvalidInput([FieldError("schedule", "choose a template or add a day with a meal")])
    starting = template or DietPlanTemplate(macros={}, schedule=[])
    now = ctx.now()
    plan = DietPlan(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        visit_id=visit.id,
        patient_id=visit.patient_id,
        doctor_id=visit.doctor_id,
        version=1,
        supersedes=None,
        template_id=template.id if template else None,
        macros=clean_macros(macros if macros is not None else starting.macros),
        schedule=clean_schedule(schedule if schedule is not None else starting.schedule),
        adherence_summary_completed_days=0,
        created_at=now,
        updated_at=now,
    )
    session.add(plan)
    session.flush()
    audit.record(
        ctx,
        entity="diet_plans",
        entity_id=plan.id,
        action="create",
        diff=audit.diff_of({}, {"visitId": visit.id, "version": 1, "templateId": plan.template_id}),
    )
    return plan


ISSUED = "this diet plan is issued and cannot change; write a new version instead"


def update(
    session: Session,
    ctx: RequestContext,
    *,
    plan_id: uuid.UUID,
    macros: dict[str, Any] | None,
    schedule: Sequence[dict[str, Any]],
) -> DietPlan:
    """Change a draft; an issued plan answers 409 (PostgreSQL refuses it too)."""
    plan = get(session, plan_id, lock=True)
    cleaned_macros = clean_macros(macros)
    cleaned = clean_schedule(schedule)
    if plan.issued_at is not None:
        raise Conflict(ISSUED)
    before = {"macros": plan.macros, "days": len(plan.schedule)}
    plan.macros = cleaned_macros
    plan.schedule = cleaned
    plan.updated_at = ctx.now()
    with refusing_frozen(ISSUED):
        session.flush()
    audit.record(
        ctx,
        entity="diet_plans",
        entity_id=plan.id,
        action="update",
        diff=audit.diff_of(before, {"macros": plan.macros, "days": len(plan.schedule)}),
    )
    return plan


def issue(session: Session, ctx: RequestContext, *, plan_id: uuid.UUID) -> DietPlan:
    """Issue the plan: from now on it is frozen and the patient sees it (409 if issued)."""
    plan = get(session, plan_id, lock=True)
    if plan.issued_at is not None:
        raise Conflict("this diet plan is already issued")
    plan.issued_at = ctx.now()
    plan.updated_at = plan.issued_at
    session.flush()
    audit.record(
        ctx,
        entity="diet_plans",
        entity_id=plan.id,
        action="sign-off",
        diff=audit.diff_of({"issuedAt": None}, {"issuedAt": plan.issued_at}),
    )
    return plan


def revise(session: Session, ctx: RequestContext, *, plan_id: uuid.UUID) -> DietPlan:
    """A new draft version of an issued plan, superseding it: a plan is superseded once
    (a second revision, or two at the same moment, answers 409).
    """
    assert ctx.tenant_id is not None
    old = get(session, plan_id)
    if old.issued_at is None:
        raise Conflict("this diet plan is still a draft: change it instead")
    taken = "this diet plan already has a newer version; change that one"
    if session.execute(select(DietPlan.id).where(DietPlan.supersedes == old.id)).first():
        raise Conflict(taken)
    now = ctx.now()
    plan = DietPlan(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        visit_id=old.visit_id,
        patient_id=old.patient_id,
        doctor_id=old.doctor_id,
        version=old.version + 1,
        supersedes=old.id,
        template_id=old.template_id,
        macros=dict(old.macros),
        schedule=list(old.schedule),
        adherence_summary_completed_days=0,
        created_at=now,
        updated_at=now,
    )
    session.add(plan)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(taken) from None
    audit.record(
        ctx,
        entity="diet_plans",
        entity_id=plan.id,
        action="create",
        diff=audit.diff_of({}, {"supersedes": old.id, "version": plan.version}),
    )
    return plan


def delete_draft(session: Session, ctx: RequestContext, *, plan_id: uuid.UUID) -> None:
    """Throw away a draft (409 once issued)."""
    plan = get(session, plan_id, lock=True)
    if plan.issued_at is not None:
        raise Conflict(ISSUED)
    session.delete(plan)
    with refusing_frozen(ISSUED):
        session.flush()
    audit.record(
        ctx,
        entity="diet_plans",
        entity_id=plan_id,
        action="delete",
        diff=audit.diff_of({"version": plan.version}, {}),
    )


def of_patient(session: Session, patient_id: uuid.UUID) -> list[DietPlan]:
    return list(
        session.execute(
            select(DietPlan)
            .where(DietPlan.patient_id == patient_id)
            .order_by(DietPlan.created_at.desc(), DietPlan.version.desc())
        ).scalars()
    )


# --------------------------------------------------------------------------- the patient


def current_for(session: Session, patient_ids: Sequence[uuid.UUID]) -> list[DietPlan]:
    """The family's issued plans that no issued newer version replaces, the newest first."""
    if not patient_ids:
        return []
    issued = list(
        session.execute(
            select(DietPlan)
            .where(DietPlan.patient_id.in_(list(patient_ids)), DietPlan.issued_at.is_not(None))
            .order_by(DietPlan.issued_at.desc())
        ).scalars()
    )
    replaced = {p.supersedes for p in issued if p.supersedes is not None}
    return [p for p in issued if p.id not in replaced]


def issued_for_family(
    session: Session, plan_id: uuid.UUID, patient_ids: Sequence[uuid.UUID]
) -> DietPlan:
    """An issued plan of the family (404 for a draft, another family's or unknown)."""
    plan = get(session, plan_id)
    if plan.patient_id not in patient_ids or plan.issued_at is None:
        raise NotFound(f"no diet plan with id {plan_id}")
    return plan


def ticks(session: Session, plan_id: uuid.UUID) -> dict[tuple[int, str], bool]:
    rows = session.execute(select(MealTick).where(MealTick.diet_plan_id == plan_id)).scalars()
    return {(t.day, t.meal): t.done for t in rows}


def completed_days(plan: DietPlan, done: dict[tuple[int, str], bool]) -> int:
    """Days whose every meal is ticked."""
    return sum(
        1
        for day in plan.schedule
        if day["meals"] and all(done.get((day["day"], m["label"])) for m in day["meals"])
    )


def tick(
    session: Session,
    ctx: RequestContext,
    *,
    plan: DietPlan,
    day: int,
    meal: str,
    done: bool,
) -> DietPlan:
    """The patient ate (or did not eat) a meal of the plan; the summary follows."""
    assert plan.issued_at is not None
    meals = {d["day"]: {m["label"] for m in d["meals"]} for d in plan.schedule}
    if day not in meals:
        raise InvalidInput([FieldError("day", "is not a day of this plan")])
    if meal not in meals[day]:
        raise InvalidInput([FieldError("meal", f"is not a meal of day {day}")])
    records.lock(session, plan)  # ticks of one plan, one at a time: the summary stays right
    now = ctx.now()
    row = session.get(MealTick, (plan.tenant_id, plan.id, day, meal))
    before = None if row is None else row.done
    if row is None:
        row = MealTick(
            tenant_id=plan.tenant_id,
            diet_plan_id=plan.id,
            day=day,
            meal=meal,
            done=done,
            updated_at=now,
        )
        session.add(row)
    else:
        row.done = done
        row.updated_at = now
    session.flush()
    completed_before = plan.adherence_summary_completed_days
    plan.adherence_summary_completed_days = completed_days(plan, ticks(session, plan.id))
    plan.adherence_summary_last_updated = now
    plan.updated_at = now
    with refusing_frozen(ISSUED):
        session.flush()
    audit.record(
        ctx,
        entity="diet_plans",
        entity_id=plan.id,
        action="update",
        diff=audit.diff_of(
            {"tick": {"day": day, "meal": meal, "done": before}, "completedDays": completed_before},
            {
                "tick": {"day": day, "meal": meal, "done": done},
                "completedDays": plan.adherence_summary_completed_days,
            },
        ),
    )
    return plan


@dataclass(frozen=True)
class DayView:
    day: int
    meals: list[dict[str, Any]]  # {label, items, done}


def days_of(plan: DietPlan, done: dict[tuple[int, str], bool]) -> list[DayView]:
    return [
        DayView(
            d["day"],
            [{**m, "done": bool(done.get((d["day"], m["label"])))} for m in d["meals"]],
        )
        for d in plan.schedule
    ]
