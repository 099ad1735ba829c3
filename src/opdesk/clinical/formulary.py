"""The clinic's formulary: seeded from the NLEM 2022 list shipped in ``data/`` on first
use, searched by generic or brand name, and the drug classes the allergy check reads.

Seeding is idempotent: rows go in with ``ON CONFLICT DO NOTHING`` against the formulary's
unique index, so two first uses at once (or a second run) add nothing twice.
"""

from __future__ import annotations

import csv
import re
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.clinical.models import FormularyDrug
from opdesk.context import RequestContext
from opdesk.db import new_id

SOURCE = "nlem-2022"
DATA_FILE = Path(__file__).resolve().parent / "data" / "nlem_2022.csv"
SEARCH_LIMIT = 20


@dataclass(frozen=True)
class Entry:
    generic_name: str
    strength: str
    form: str
    drug_class: str


@cache
def nlem() -> tuple[Entry, ...]:
    """The shipped list (a subset of NLEM 2022; see the file's header)."""
    with DATA_FILE.open(encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return tuple(
        Entry(row["generic_name"], row["strength"], row["form"], row["drug_class"])
        for row in csv.DictReader(lines)
    )


def _ingredients(name: str) -> list[str]:
    """The parts of a combination, lower case: "Amoxicillin + Clavulanic acid" -> both."""
    name = re.sub(r"\(.*?\)", " ", name.lower())
    return [part.strip() for part in name.split("+") if part.strip()]


@cache
def class_of_generic() -> dict[str, str]:
    """Every generic name and ingredient of the list -> its drug class."""
    classes: dict[str, str] = {}
    for entry in nlem():
        classes.setdefault(entry.generic_name.lower(), entry.drug_class)
        for part in _ingredients(entry.generic_name):
            classes.setdefault(part, entry.drug_class)
    return classes


def ensure_seeded(session: Session, ctx: RequestContext) -> int:
    """Add the NLEM rows the clinic does not have yet; the number added (0 after the first)."""
    assert ctx.tenant_id is not None
    already = session.execute(
        select(func.count()).select_from(FormularyDrug).where(FormularyDrug.source == SOURCE)
    ).scalar_one()
    if already >= len(nlem()):
        return 0
    now = ctx.now()
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "id": new_id(),
            "generic_name": e.generic_name,
            "strength": e.strength,
            "form": e.form,
            "drug_class": e.drug_class,
            "source": SOURCE,
            "created_at": now,
        }
        for e in nlem()
    ]
    added = list(
        session.execute(
            insert(FormularyDrug).values(rows).on_conflict_do_nothing().returning(FormularyDrug.id)
        ).scalars()
    )
    if added:
        audit.record(
            ctx,
            entity="formulary_drugs",
            entity_id=None,
            action="create",
            diff={"added": {"seeded": SOURCE, "count": len(added)}, "updated": {}, "removed": {}},
        )
    return len(added)


def search(session: Session, ctx: RequestContext, query: str) -> list[FormularyDrug]:
    """Active drugs whose name, brand, strength or form contain every word of ``query``."""
    ensure_seeded(session, ctx)
    words = [w for w in re.split(r"\s+", query.strip().lower()) if w][:5]
    brand = func.coalesce(FormularyDrug.brand_name, "")
    name = func.lower(
        FormularyDrug.generic_name
        + " "
        + brand
        + " "
        + FormularyDrug.strength
        + " "
        + FormularyDrug.form
    )
    stmt = select(FormularyDrug).where(FormularyDrug.active)
    for word in words:
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(name.like(f"%{escaped}%"))
    starts = func.lower(FormularyDrug.generic_name).like(f"{words[0]}%") if words else None
    order = [starts.desc()] if starts is not None else []
    stmt = stmt.order_by(
        *order, FormularyDrug.generic_name, FormularyDrug.form, FormularyDrug.strength
    )
    return list(session.execute(stmt.limit(SEARCH_LIMIT)).scalars())


def drug(session: Session, drug_id: uuid.UUID) -> FormularyDrug:
    """One of the clinic's drugs, else 404."""
    return records.by_id(session, FormularyDrug, drug_id)
