"""Prescriptions: drafts with items, the allergy and duplicate-therapy check, templates and
"repeat last", issuing (signed canonical JSON, a verification URL), changes after issue
(a new prescription that supersedes the old), and what a pharmacy's check finds.

An issued prescription and its items are frozen by PostgreSQL (SQLSTATE ``OD001``); this
module refuses the change first, and answers the trigger the same way (409) if it fires.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from opdesk import audit, records
from opdesk.clinical import formulary, signing
from opdesk.clinical.models import (
    FormularyDrug,
    Prescription,
    PrescriptionItem,
    PrescriptionTemplate,
    Visit,
)
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, FieldError, InvalidInput, NotFound
from opdesk.patients.models import Patient
from opdesk.scheduling.models import DoctorProfile
from opdesk.schemas import ApiModel
from opdesk.security.crypto import FieldCipher
from opdesk.tenancy.models import Tenant
from opdesk.uow import enter_tenant

ENTITY = "prescriptions"
FROZEN_SQLSTATE = "OD001"
MAX_ITEMS = 30
VERIFY_PATH = "/rx/verify/"
HASH_IN_URL = 32  # hex characters of the signed hash carried in the verification URL

TIMINGS = {
    "before-food": "before food",
    "after-food": "after food",
    "with-food": "with food",
    "empty-stomach": "on an empty stomach",
    "bedtime": "at bedtime",
}
ROUTES = ("oral", "topical", "inhaled", "nasal", "eye", "ear", "sublingual", "injection", "other")

# Allergy words as patients and doctors write them -> a drug class of the formulary.
CLASS_WORDS = {
    "penicillin": "penicillin",
    "penicillins": "penicillin",
    "sulfa": "sulfonamide",
    "sulpha": "sulfonamide",
    "sulfa drugs": "sulfonamide",
    "sulpha drugs": "sulfonamide",
    "sulfonamides": "sulfonamide",
    "nsaid": "nsaid",
    "nsaids": "nsaid",
    "painkillers (nsaid)": "nsaid",
    "cephalosporins": "cephalosporin",
    "quinolones": "fluoroquinolone",
    "fluoroquinolones": "fluoroquinolone",
    "macrolides": "macrolide",
    "tetracyclines": "tetracycline",
    "statins": "statin",
    "benzodiazepines": "benzodiazepine",
    "opioids": "opioid",
    "aminoglycosides": "aminoglycoside",
}
GENERIC_WORDS = {"aspirin": "acetylsalicylic acid", "paracetamol": "paracetamol"}


# --------------------------------------------------------------------------- input


class ItemIn(ApiModel):
    """One medicine: a formulary drug (``drugId``) or free text (``name``)."""

    drug_id: uuid.UUID | None = None
    name: str | None = Field(default=None, max_length=200)
    strength: str | None = Field(default=None, max_length=80)
    form: str | None = Field(default=None, max_length=80)
    route: str | None = Field(default=None, max_length=40)
    dose: str | None = Field(default=None, max_length=80)
    frequency: str | None = Field(default=None, max_length=60)
    duration_days: int | None = None
    timing: str | None = Field(default=None, max_length=80)
    instructions: str | None = Field(default=None, max_length=500)
    generic_allowed: bool = True
    refills: int = 0
    refill_interval_days: int | None = None


# --------------------------------------------------------------------------- frequency

_PART = r"(\d+(?:\.\d+)?|½|1½)"
NOTATION = re.compile(rf"^{_PART}-{_PART}-{_PART}(?:-{_PART})?$")
TIMES_OF_DAY = ("dose.morning", "dose.afternoon", "dose.night", "dose.bedtime")
WORDS = {
    "od": "once a day",
    "once daily": "once a day",
    "once a day": "once a day",
    "bd": "twice a day",
    "bid": "twice a day",
    "twice daily": "twice a day",
    "twice a day": "twice a day",
    "tds": "three times a day",
    "tid": "three times a day",
    "thrice daily": "three times a day",
    "three times a day": "three times a day",
    "qid": "four times a day",
    "four times a day": "four times a day",
    "hs": "at bedtime",
    "at bedtime": "at bedtime",
    "sos": "only when needed",
    "prn": "only when needed",
    "as needed": "only when needed",
    "when needed": "only when needed",
    "stat": "once, at once",
    "once a week": "once a week",
    "weekly": "once a week",
}
EVERY = re.compile(r"^(?:every|once every) (\d{1,3}) (hour|hours|day|days|week|weeks)$")

# The patient's language: how to take a medicine (frequency, timing, route, days) in the
# words of data/rx_phrases.csv. English is always there (the pharmacist's line).
PHRASES_FILE = Path(__file__).resolve().parent / "data" / "rx_phrases.csv"
PATIENT_LANGUAGES = ("hi", "mr", "ta")

Said = list[tuple[str, str]]  # (phrase key, the number it carries or "")


@cache
def phrases() -> dict[str, dict[str, str]]:
    """Phrase key -> {language: words} (blank cells left out)."""
    with PHRASES_FILE.open(encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {
        row["key"]: {lang: text for lang, text in row.items() if lang != "key" and text}
        for row in csv.DictReader(lines)
    }


def _say(said: Said, language: str) -> str | None:
    """The phrases in one language, or None if one of them has no translation."""
    table = phrases()
    out: list[str] = []
    for key, number in said:
        words = table.get(key, {}).get(language)
        if words is None:
            return None
        out.append(words.replace("{n}", number))
    return ", ".join(out) or None


def _amount(part: str) -> str:
    return {"0.5": "½", "1.5": "1½"}.get(part, part)


def _frequency(text: str | None) -> Said | None:
    """A frequency as phrases: "1-0-1" -> morning 1, night 1; None if unknown."""
    if text is None:
        return None
    compact = re.sub(r"\s*-\s*", "-", text.strip().lower())
    compact = re.sub(r"\s+", " ", compact)
    found = NOTATION.match(compact)
    if found:
        parts = [p for p in found.groups() if p is not None]
        said = [
            (when, _amount(part))
            for part, when in zip(parts, TIMES_OF_DAY, strict=False)
            if part not in ("0", "0.0")
        ]
        return said or None
    if compact in WORDS:
        return [("freq." + WORDS[compact], "")]
    every = EVERY.match(compact)
    if every and int(every.group(1)) > 0:
        number, unit = every.groups()
        unit = unit.rstrip("s") + ("s" if number != "1" else "")
        return [(f"every.{unit}", number)]
    return None


def frequency_words(text: str | None, language: str = "en") -> str | None:
    """ "1-0-1" -> "1 in the morning, 1 at night"; "bd" -> "twice a day"; None if unknown
    (or, in another language, if it has no translation).
    """
    said = _frequency(text)
    return _say(said, language) if said else None


def timing_words(timing: str | None, language: str = "en") -> str | None:
    if timing is None:
        return None
    if language == "en":
        return TIMINGS.get(timing, timing)
    return _say([("timing." + timing, "")], language)


def duration_words(days: int | None, language: str = "en") -> str | None:
    """ "for 5 days" (and "5 दिन तक")."""
    if not days:
        return None
    return _say([("days.one" if days == 1 else "days.many", str(days))], language)


def patient_line(
    language: str | None,
    *,
    frequency: str | None,
    timing: str | None,
    route: str | None,
    duration_days: int | None,
) -> str | None:
    """How to take a medicine in the patient's language (frequency, timing, route, days),
    or None for English or a language without translations. A part without a translation
    (a timing typed as free text) is left to the English line.
    """
    if language not in PATIENT_LANGUAGES:
        return None
    said = _frequency(frequency)
    parts = [
        _say(said, language) if said else None,
        timing_words(timing, language) if timing else None,
        _say([("route." + route, "")], language) if route else None,
        duration_words(duration_days, language),
    ]
    found = [p for p in parts if p]
    return " · ".join(found) or None


# --------------------------------------------------------------------------- reading


@dataclass
class ItemView:
    position: int
    drug_id: uuid.UUID | None
    name: str
    strength: str | None
    form: str | None
    route: str | None
    dose: str | None
    frequency: str | None
    frequency_words: str | None
    duration_days: int | None
    timing: str | None
    timing_words: str | None
    instructions: str | None
    generic_allowed: bool
    refill_allowed: bool
    refill_remaining: int
    refill_interval_days: int | None

    def said_in(self, language: str | None) -> str | None:
        """How to take it in the patient's language (None for English or no translation)."""
        return patient_line(
            language,
            frequency=self.frequency,
            timing=self.timing,
            route=self.route,
            duration_days=self.duration_days,
        )

    def signed(self) -> dict[str, Any]:
        """The item as signed (and as the API shows it)."""
        return {
            "position": self.position,
            "drugId": str(self.drug_id) if self.drug_id else None,
            "name": self.name,
            "strength": self.strength,
            "form": self.form,
            "route": self.route,
            "dose": self.dose,
            "frequency": self.frequency,
            "durationDays": self.duration_days,
            "timing": self.timing,
            "instructions": self.instructions,
            "genericAllowed": self.generic_allowed,
            "refillAllowed": self.refill_allowed,
            "refillRemaining": self.refill_remaining,
            "refillIntervalDays": self.refill_interval_days,
        }


def _where(item: PrescriptionItem) -> dict[str, Any]:
    # A composite key: the row is the prescription, the position names the column's place.
    return {
        "tenant_id": item.tenant_id,
        "table": "prescriptions_items",
        "column": f"name_encrypted#{item.position}",
        "row_id": item.prescription_id,
    }


def item_view(cipher: FieldCipher, item: PrescriptionItem) -> ItemView:
    return ItemView(
        position=item.position,
        drug_id=item.drug_id,
        name=cipher.decrypt_str(item.name_encrypted, **_where(item)),
        strength=item.strength,
        form=item.form,
        route=item.route,
        dose=item.dose,
        frequency=item.frequency,
        frequency_words=frequency_words(item.frequency),
        duration_days=item.duration_days,
        timing=item.timing,
        timing_words=timing_words(item.timing),
        instructions=item.instructions,
        generic_allowed=item.generic_allowed,
        refill_allowed=item.refill_allowed,
        refill_remaining=item.refill_remaining,
        refill_interval_days=item.refill_interval_days,
    )


def items_of(session: Session, cipher: FieldCipher, prescription: Prescription) -> list[ItemView]:
    rows = session.execute(
        select(PrescriptionItem)
        .where(PrescriptionItem.prescription_id == prescription.id)
        .order_by(PrescriptionItem.position)
    ).scalars()
    return [item_view(cipher, row) for row in rows]


def get(session: Session, prescription_id: uuid.UUID) -> Prescription:
    return records.by_id(session, Prescription, prescription_id)


# --------------------------------------------------------------------------- drafts


def doctor_of(session: Session, ctx: RequestContext) -> DoctorProfile:
    """The signed-in doctor's profile: who prescribes."""
    profile = session.execute(
        select(DoctorProfile).where(DoctorProfile.user_id == ctx.actor_id)
    ).scalar_one_or_none()
    if profile is None:  # a state to fix (an admin adds the profile), not a permission
        raise Conflict("add your doctor profile (registration number) before prescribing")
    return profile


def start(session: Session, ctx: RequestContext, *, visit_id: uuid.UUID) -> Prescription:
    """The visit's open draft, or a new one (one click, twice, gives the same draft)."""
    visit = records.by_id(session, Visit, visit_id)
    doctor = doctor_of(session, ctx)
    records.lock(session, visit)
    draft = session.execute(
        select(Prescription)
        .where(Prescription.visit_id == visit.id, Prescription.issued_at.is_(None))
        .order_by(Prescription.created_at)
        .limit(1)
    ).scalar_one_or_none()
    if draft is not None:
        return draft
    return _new(session, ctx, visit=visit, doctor=doctor, version=1, supersedes=None)


def _new(
    session: Session,
    ctx: RequestContext,
    *,
    visit: Visit,
    doctor: DoctorProfile,
    version: int,
    supersedes: uuid.UUID | None,
) -> Prescription:
    assert ctx.tenant_id is not None
    now = ctx.now()
    prescription = Prescription(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        visit_id=visit.id,
        patient_id=visit.patient_id,
        doctor_id=doctor.id,
        version=version,
        supersedes=supersedes,
        allergy_flags=[],
        created_at=now,
        updated_at=now,
    )
    session.add(prescription)
    session.flush()
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=prescription.id,
        action="create",
        diff={
            "added": {
                "visitId": str(visit.id),
                "version": version,
                "supersedes": str(supersedes) if supersedes else None,
            },
            "updated": {},
            "removed": {},
        },
    )
    return prescription


def _draft(session: Session, prescription_id: uuid.UUID) -> Prescription:
    """The prescription, locked; 409 once issued."""
    prescription = records.by_id(session, Prescription, prescription_id, lock=True)
    if prescription.issued_at is not None:
        raise Conflict(
            "this prescription is issued and cannot change; "
            "use “Change” to write a new one that replaces it"
        )
    return prescription


def _check_item(n: int, item: ItemIn, drug: FormularyDrug | None) -> list[FieldError]:
    label = f"Medicine {n}"
    errors: list[FieldError] = []
    if drug is None and not (item.name or "").strip():
        errors.append(FieldError(f"{label}: Name", "choose a medicine or type its name"))
    if item.frequency and frequency_words(item.frequency) is None:
        errors.append(
            FieldError(
                f"{label}: Frequency",
                "write it as 1-0-1 (morning-noon-night) or in words such as "
                "“twice daily”, “every 8 hours”, “as needed”",
            )
        )
    if item.duration_days is not None and not 1 <= item.duration_days <= 365:
        errors.append(FieldError(f"{label}: Days", "must be between 1 and 365"))
    if not 0 <= item.refills <= 12:
        errors.append(FieldError(f"{label}: Refills", "must be between 0 and 12"))
    if item.refill_interval_days is not None and not 1 <= item.refill_interval_days <= 365:
        errors.append(FieldError(f"{label}: Refill every (days)", "must be between 1 and 365"))
    if item.route is not None and item.route not in ROUTES:
        errors.append(FieldError(f"{label}: Route", "choose one of " + ", ".join(ROUTES)))
    return errors


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def set_items(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    prescription_id: uuid.UUID,
    items: list[ItemIn],
) -> Prescription:
    """Replace the draft's medicines (all or nothing) and check them again."""
    prescription = _draft(session, prescription_id)
    if len(items) > MAX_ITEMS:
        raise InvalidInput([FieldError("Medicines", f"at most {MAX_ITEMS} on one prescription")])
    formulary.ensure_seeded(session, ctx)
    errors: list[FieldError] = []
    drugs: list[FormularyDrug | None] = []
    for n, item in enumerate(items, start=1):
        drug = None
        if item.drug_id is not None:
            try:
                drug = formulary.drug(session, item.drug_id)
            except NotFound:
                errors.append(FieldError(f"Medicine {n}", "is not in the clinic's formulary"))
        drugs.append(drug)
        errors += _check_item(n, item, drug)
    if errors:
        raise InvalidInput(errors)
    before = len(items_of(session, cipher, prescription))
    _guarded(
        session,
        lambda: session.execute(
            delete(PrescriptionItem).where(PrescriptionItem.prescription_id == prescription.id)
        ),
    )
    for position, (item, drug) in enumerate(zip(items, drugs, strict=True), start=1):
        row = PrescriptionItem(
            tenant_id=prescription.tenant_id,
            prescription_id=prescription.id,
            position=position,
            drug_id=drug.id if drug else None,
            strength=_blank(item.strength) or (drug.strength if drug else None),
            form=_blank(item.form) or (drug.form if drug else None),
            route=item.route,
            dose=_blank(item.dose),
            frequency=_blank(item.frequency),
            duration_days=item.duration_days,
            timing=_blank(item.timing),
            instructions=_blank(item.instructions),
            generic_allowed=item.generic_allowed,
            refill_allowed=item.refills > 0,
            refill_remaining=item.refills,
            refill_interval_days=item.refill_interval_days if item.refills else None,
        )
        name = _blank(item.name) or (drug.generic_name if drug else "")
        if drug is not None and drug.brand_name and not _blank(item.name):
            name = f"{drug.generic_name} ({drug.brand_name})"
        row.name_encrypted = cipher.encrypt(name, **_where(row))
        session.add(row)
    prescription.updated_at = ctx.now()
    _guarded(session, session.flush)
    prescription.allergy_flags = allergy_check(session, cipher, prescription)
    _guarded(session, session.flush)
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=prescription.id,
        action="update",
        diff={
            "added": {},
            "updated": {"items": {"from": before, "to": len(items)}},
            "removed": {},
        },
    )
    return prescription


def _guarded(session: Session, write: Any) -> None:
    """Run a write; PostgreSQL's freeze (SQLSTATE OD001) becomes 409."""
    try:
        with session.begin_nested():
            write()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == FROZEN_SQLSTATE:
            raise Conflict("this prescription is issued and cannot change") from None
        raise


def discard(session: Session, ctx: RequestContext, *, prescription_id: uuid.UUID) -> None:
    """Delete a draft and its medicines (an issued prescription stays: 409)."""
    prescription = _draft(session, prescription_id)
    session.execute(
        delete(PrescriptionItem).where(PrescriptionItem.prescription_id == prescription.id)
    )
    session.delete(prescription)
    _guarded(session, session.flush)
    audit.record(ctx, entity=ENTITY, entity_id=prescription.id, action="delete")


# --------------------------------------------------------------------------- checks


def patient_allergies(cipher: FieldCipher, patient: Patient) -> list[str]:
    if patient.allergies is None:
        return []
    plain = cipher.decrypt_str(
        patient.allergies,
        tenant_id=patient.tenant_id,
        table="patients",
        column="allergies",
        row_id=patient.id,
    )
    return [str(a.get("substance", "")).strip() for a in json.loads(plain) if a.get("substance")]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _classes_of(name: str, drug: FormularyDrug | None) -> set[str]:
    known = formulary.class_of_generic()
    found = {drug.drug_class} if drug is not None and drug.drug_class else set()
    for part in formulary._ingredients(name):
        part = re.sub(r"\s*\(.*$", "", part)
        if part in known:
            found.add(known[part])
        else:  # free text: "Amoxycillin 500" still names its first word
            first = part.split(" ")[0]
            found |= {c for g, c in known.items() if g == first}
    return found


def _mentions(name: str, generic: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(generic)}(?![a-z])", _norm(name)) is not None


def allergy_check(
    session: Session, cipher: FieldCipher, prescription: Prescription
) -> list[dict[str, Any]]:
    """The flags of the current medicines, keeping the acknowledgements of unchanged ones.

    ``allergy``: a medicine is (or contains) what the patient is allergic to;
    ``allergy-class``: it is of the class of the allergen (penicillin -> amoxicillin);
    ``duplicate-therapy``: two medicines of one class.
    """
    patient = records.by_id(session, Patient, prescription.patient_id)
    allergens = patient_allergies(cipher, patient)
    items = items_of(session, cipher, prescription)
    drug_ids = [i.drug_id for i in items if i.drug_id]
    drugs = {
        d.id: d
        for d in session.execute(
            select(FormularyDrug).where(FormularyDrug.id.in_(drug_ids))
        ).scalars()
    }
    known = formulary.class_of_generic()
    flags: list[dict[str, Any]] = []
    classes = {
        i.position: _classes_of(i.name, drugs.get(i.drug_id or uuid.UUID(int=0))) for i in items
    }
    for allergen in allergens:
        word = _norm(allergen)
        word = GENERIC_WORDS.get(word, word)
        allergen_class = CLASS_WORDS.get(word) or (word if word in known.values() else None)
        related = known.get(word)  # an allergy to one penicillin: the others may cross-react
        for item in items:
            if _mentions(item.name, word):
                detail = f"the patient is allergic to {allergen}"
                flags.append({"itemName": item.name, "type": "allergy", "detail": detail})
            elif allergen_class and allergen_class in classes[item.position]:
                detail = f"{item.name} is a {allergen_class}; the patient is allergic to {allergen}"
                flags.append({"itemName": item.name, "type": "allergy-class", "detail": detail})
            elif related and related in classes[item.position]:
                detail = (
                    f"{item.name} is a {related}, like {allergen}, to which the patient is allergic"
                )
                flags.append({"itemName": item.name, "type": "allergy-class", "detail": detail})
    seen: dict[str, ItemView] = {}
    for item in items:
        for drug_class in sorted(classes[item.position]):
            first = seen.get(drug_class)
            if first is None:
                seen[drug_class] = item
                continue
            detail = f"{first.name} and {item.name} are both {drug_class}"
            flags.append({"itemName": item.name, "type": "duplicate-therapy", "detail": detail})
    kept = {_key(f): f for f in prescription.allergy_flags or []}
    for flag in flags:
        old = kept.get(_key(flag))
        flag["acknowledgedBy"] = old.get("acknowledgedBy") if old else None
        flag["acknowledgedAt"] = old.get("acknowledgedAt") if old else None
    return flags


def _key(flag: dict[str, Any]) -> tuple[str, str, str]:
    return (flag.get("itemName", ""), flag.get("type", ""), flag.get("detail", ""))


def acknowledge(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    prescription_id: uuid.UUID,
    index: int,
) -> Prescription:
    """The doctor has seen flag ``index`` (as the prescription lists them now)."""
    prescription = _draft(session, prescription_id)
    flags = allergy_check(session, cipher, prescription)
    if not 0 <= index < len(flags):
        raise InvalidInput([FieldError("index", f"there are {len(flags)} warnings to acknowledge")])
    flags[index]["acknowledgedBy"] = str(ctx.actor_id) if ctx.actor_id else None
    flags[index]["acknowledgedAt"] = ctx.now().astimezone(UTC).isoformat()
    prescription.allergy_flags = flags
    prescription.updated_at = ctx.now()
    _guarded(session, session.flush)
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=prescription.id,
        action="update",
        diff={
            "added": {},
            "updated": {"allergyFlags": {"acknowledged": flags[index]["type"]}},
            "removed": {},
        },
    )
    return prescription


# --------------------------------------------------------------------------- templates


def _as_input(item: ItemView) -> dict[str, Any]:
    return {
        "drugId": str(item.drug_id) if item.drug_id else None,
        "name": item.name,
        "strength": item.strength,
        "form": item.form,
        "route": item.route,
        "dose": item.dose,
        "frequency": item.frequency,
        "durationDays": item.duration_days,
        "timing": item.timing,
        "instructions": item.instructions,
        "genericAllowed": item.generic_allowed,
        "refills": item.refill_remaining,
        "refillIntervalDays": item.refill_interval_days,
    }


def _add(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    prescription: Prescription,
    extra: list[dict[str, Any]],
) -> Prescription:
    current = [ItemIn.model_validate(_as_input(i)) for i in items_of(session, cipher, prescription)]
    added = [ItemIn.model_validate(i) for i in extra]
    return set_items(session, ctx, cipher, prescription_id=prescription.id, items=current + added)


def save_template(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    prescription_id: uuid.UUID,
    name: str,
) -> PrescriptionTemplate:
    """Keep this prescription's medicines as one of the doctor's templates ("Adult fever")."""
    prescription = records.by_id(session, Prescription, prescription_id)
    doctor = doctor_of(session, ctx)
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise InvalidInput([FieldError("Template name", "write a name of 1 to 80 characters")])
    items = [_as_input(i) for i in items_of(session, cipher, prescription)]
    if not items:
        raise InvalidInput([FieldError("Medicines", "add a medicine before saving a template")])
    now = ctx.now()
    assert ctx.tenant_id is not None
    template = PrescriptionTemplate(
        tenant_id=ctx.tenant_id,
        id=new_id(),
        doctor_id=doctor.id,
        name=name,
        items=items,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(template)
            session.flush()
    except IntegrityError:
        raise Conflict(f"you already have a template named “{name}”") from None
    audit.record(
        ctx,
        entity="prescription_templates",
        entity_id=template.id,
        action="create",
        diff={"added": {"name": name, "items": len(items)}, "updated": {}, "removed": {}},
    )
    return template


def templates(session: Session, ctx: RequestContext) -> list[PrescriptionTemplate]:
    """The signed-in doctor's templates, by name (none without a doctor profile)."""
    doctor = session.execute(
        select(DoctorProfile.id).where(DoctorProfile.user_id == ctx.actor_id)
    ).scalar_one_or_none()
    return list(
        session.execute(
            select(PrescriptionTemplate)
            .where(PrescriptionTemplate.doctor_id == doctor)
            .order_by(PrescriptionTemplate.name)
        ).scalars()
    )


def apply_template(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    prescription_id: uuid.UUID,
    template_id: uuid.UUID,
) -> Prescription:
    """Add a template's medicines to the draft (only the doctor's own templates)."""
    prescription = _draft(session, prescription_id)
    doctor = doctor_of(session, ctx)
    template = records.by_id(session, PrescriptionTemplate, template_id)
    if template.doctor_id != doctor.id:
        raise NotFound(f"no prescription_template with id {template_id}")
    return _add(session, ctx, cipher, prescription, template.items)


def repeat_last(
    session: Session, ctx: RequestContext, cipher: FieldCipher, *, prescription_id: uuid.UUID
) -> Prescription:
    """Add the medicines of the patient's latest issued prescription."""
    prescription = _draft(session, prescription_id)
    last = session.execute(
        select(Prescription)
        .where(
            Prescription.patient_id == prescription.patient_id,
            Prescription.issued_at.is_not(None),
            Prescription.id != prescription.id,
        )
        .order_by(Prescription.issued_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if last is None:
        raise Conflict("this patient has no issued prescription to repeat")
    return _add(
        session, ctx, cipher, prescription, [_as_input(i) for i in items_of(session, cipher, last)]
    )


# --------------------------------------------------------------------------- issuing


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def payload(session: Session, cipher: FieldCipher, prescription: Prescription) -> dict[str, Any]:
    """What is signed: the prescription and its medicines as stored (no names of people,
    which may be corrected later; they are shown beside, not signed).
    """
    assert prescription.issued_at is not None
    assert prescription.signing_key_id is not None
    return {
        "type": "opdesk-prescription",
        "id": str(prescription.id),
        "clinicId": str(prescription.tenant_id),
        "visitId": str(prescription.visit_id),
        "patientId": str(prescription.patient_id),
        "doctorId": str(prescription.doctor_id),
        "version": prescription.version,
        "supersedes": str(prescription.supersedes) if prescription.supersedes else None,
        "issuedAt": _at(prescription.issued_at),
        "signingKeyId": str(prescription.signing_key_id),
        "items": [i.signed() for i in items_of(session, cipher, prescription)],
        "allergyFlags": prescription.allergy_flags or [],
    }


def token_of(prescription: Prescription) -> str:
    """The verification URL's last part: the clinic and prescription ids, and the hash."""
    assert prescription.signed_hash is not None
    ids = base64.urlsafe_b64encode(prescription.tenant_id.bytes + prescription.id.bytes)
    return ids.decode().rstrip("=") + "." + prescription.signed_hash[:HASH_IN_URL]


def parse_token(token: str) -> tuple[uuid.UUID, uuid.UUID, str] | None:
    """(clinic id, prescription id, hash prefix) of a token, or None if it is not one."""
    token = token.strip().rstrip("/").rsplit("/", 1)[-1]
    ids, _, digest = token.partition(".")
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", ids) or not re.fullmatch(r"[0-9a-f]{8,64}", digest):
        return None
    try:
        raw = base64.urlsafe_b64decode(ids + "=")
    except (binascii.Error, ValueError):
        return None
    return uuid.UUID(bytes=raw[:16]), uuid.UUID(bytes=raw[16:]), digest


def issue(
    session: Session,
    ctx: RequestContext,
    cipher: FieldCipher,
    *,
    prescription_id: uuid.UUID,
    base_url: str,
) -> Prescription:
    """Sign and freeze the draft. 409 while a warning is not acknowledged."""
    prescription = _draft(session, prescription_id)
    items = items_of(session, cipher, prescription)
    if not items:
        raise InvalidInput([FieldError("Medicines", "add at least one medicine before issuing")])
    flags = allergy_check(session, cipher, prescription)
    open_ = [f for f in flags if not f.get("acknowledgedAt")]
    if open_:
        listed = "; ".join(f"{f['itemName']}: {f['detail']}" for f in open_)
        raise Conflict(
            f"acknowledge every warning before issuing ({len(open_)} open: {listed})",
            flags=open_,
        )
    if prescription.supersedes is not None:
        old = records.by_id(session, Prescription, prescription.supersedes)
        if old.issued_at is None:
            raise Conflict("the prescription this one replaces was never issued")
    key = signing.current_key(session, ctx, cipher)
    now = ctx.now()
    with session.no_autoflush:  # the row is written once, whole and signed
        prescription.allergy_flags = flags
        prescription.issued_at = now
        prescription.signing_key_id = key.id
        signed = payload(session, cipher, prescription)
        prescription.signed_hash = signing.digest(signed)
        prescription.signature = signing.sign(cipher, key, signed)
        prescription.qr_data = base_url.rstrip("/") + VERIFY_PATH + token_of(prescription)
        prescription.updated_at = now
    _guarded(session, session.flush)
    audit.record(
        ctx,
        entity=ENTITY,
        entity_id=prescription.id,
        action="sign-off",
        from_state="draft",
        to_state="issued",
        diff={
            "added": {"signedHash": prescription.signed_hash, "signingKeyId": str(key.id)},
            "updated": {},
            "removed": {},
        },
    )
    return prescription


def change(
    session: Session, ctx: RequestContext, cipher: FieldCipher, *, prescription_id: uuid.UUID
) -> Prescription:
    """A new draft that will replace an issued prescription, with its medicines copied.

    A prescription is replaced once: a second change (even at the same moment) is 409.
    """
    old = records.by_id(session, Prescription, prescription_id, lock=True)
    if old.issued_at is None:
        raise Conflict("this prescription is still a draft: change it directly")
    doctor = doctor_of(session, ctx)
    taken = session.execute(
        select(Prescription.id).where(Prescription.supersedes == old.id)
    ).scalar_one_or_none()
    if taken is not None:
        raise Conflict(f"this prescription has already been replaced (by {taken})")
    visit = records.by_id(session, Visit, old.visit_id)
    try:
        with session.begin_nested():
            new = _new(
                session, ctx, visit=visit, doctor=doctor, version=old.version + 1, supersedes=old.id
            )
    except IntegrityError:
        raise Conflict("this prescription has just been replaced by another change") from None
    copied = [ItemIn.model_validate(_as_input(i)) for i in items_of(session, cipher, old)]
    return set_items(session, ctx, cipher, prescription_id=new.id, items=copied)


# --------------------------------------------------------------------------- verification


@dataclass
class Check:
    """What a pharmacy's check of a prescription finds."""

    status: str  # valid, superseded, tampered
    prescription: Prescription
    items: list[ItemView]
    clinic: Tenant
    doctor: DoctorProfile
    patient: Patient
    superseded_by: Prescription | None = None
    reasons: list[str] = field(default_factory=list)


def check(session: Session, cipher: FieldCipher, prescription: Prescription, given: str) -> Check:
    """Compare the prescription as stored now with what was signed and with the hash the
    URL carries: any changed byte makes it ``tampered``.
    """
    if prescription.issued_at is None or prescription.signed_hash is None:
        raise NotFound("no issued prescription with this code")
    reasons: list[str] = []
    try:
        signed = payload(session, cipher, prescription)
    except Exception:  # a damaged ciphertext is tampering too
        signed = {}
        reasons.append("its medicines cannot be read")
    actual = signing.digest(signed)
    if not prescription.signed_hash.startswith(given) or len(given) < 8:
        reasons.append("the code does not match the prescription")
    if actual != prescription.signed_hash:
        reasons.append("its content differs from what was signed")
    key = (
        signing.key_by_id(session, prescription.signing_key_id)
        if prescription.signing_key_id
        else None
    )
    if key is None or not signing.verify(key.public_key, prescription.signature or b"", signed):
        reasons.append("the signature does not match")
    replaced = session.execute(
        select(Prescription).where(
            Prescription.supersedes == prescription.id, Prescription.issued_at.is_not(None)
        )
    ).scalar_one_or_none()
    status = "tampered" if reasons else ("superseded" if replaced else "valid")
    try:
        items = items_of(session, cipher, prescription)
    except Exception:
        items = []
    return Check(
        status=status,
        prescription=prescription,
        items=items,
        clinic=session.get_one(Tenant, prescription.tenant_id),
        doctor=records.by_id(session, DoctorProfile, prescription.doctor_id),
        patient=records.by_id(session, Patient, prescription.patient_id),
        superseded_by=replaced,
        reasons=reasons,
    )


def verify_token(session: Session, ctx: RequestContext, cipher: FieldCipher, token: str) -> Check:
    """The public check of a scanned code; 404 for anything that is not an issued one."""
    parsed = parse_token(token)
    if parsed is None:
        raise NotFound("no issued prescription with this code")
    clinic_id, prescription_id, given = parsed
    if session.get(Tenant, clinic_id) is None:
        raise NotFound("no issued prescription with this code")
    enter_tenant(session, ctx, clinic_id)
    prescription = session.execute(
        select(Prescription).where(Prescription.id == prescription_id)
    ).scalar_one_or_none()
    if prescription is None:
        raise NotFound("no issued prescription with this code")
    return check(session, cipher, prescription, given)


def issued_for(session: Session, patient_ids: list[uuid.UUID]) -> list[Prescription]:
    """The patients' issued prescriptions, newest first."""
    return list(
        session.execute(
            select(Prescription)
            .where(Prescription.patient_id.in_(patient_ids), Prescription.issued_at.is_not(None))
            .order_by(Prescription.issued_at.desc())
        ).scalars()
    )


def of_visit(session: Session, visit_id: uuid.UUID) -> list[Prescription]:
    return list(
        session.execute(
            select(Prescription)
            .where(Prescription.visit_id == visit_id)
            .order_by(Prescription.created_at)
        ).scalars()
    )
