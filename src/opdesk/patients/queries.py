"""Finding patients: by phone (blind index), patient number, or name (prefix, then fuzzy)."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.orm import Session

from opdesk.identity.models import User
from opdesk.patients.models import NUMBER_PREFIX, Patient
from opdesk.patients.schemas import Flags, PatientName, PatientSummary
from opdesk.patients.service import age_of
from opdesk.security.crypto import FieldCipher
from opdesk.validation import phone_e164

SEARCH_LIMIT = 20
FUZZY_MIN_LENGTH = 4
FUZZY_THRESHOLD = 0.3
_NUMBER = re.compile(r"^(?:p-?)?0*(\d{1,7})$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^[+\d][\d\s-]{7,}$")


def search(
    session: Session, cipher: FieldCipher, query: str, *, limit: int = SEARCH_LIMIT
) -> list[Patient]:
    """What the front desk types: a phone, a patient number, or part of a name."""
    query = query.replace("\x00", "").strip()
    if not query:
        return []
    if _PHONE_CHARS.match(query):
        return by_phone(session, cipher, query)
    number = patient_number(query)
    if number is not None:
        return by_number(session, number)
    return by_name(session, query, limit=limit)


def patient_number(text: str) -> int | None:
    """``P-000123``, ``p123`` or ``123`` as the number 123; None for anything else."""
    match = _NUMBER.match(text.strip())
    return int(match.group(1)) if match else None


def by_phone(session: Session, cipher: FieldCipher, phone: str) -> list[Patient]:
    """The patient with this phone, and the family members who share it."""
    try:
        normalized = phone_e164(phone)
    except ValueError:
        return []
    owner = session.execute(
        select(Patient).where(Patient.phone_hash == cipher.blind_index(normalized, purpose="phone"))
    ).scalar_one_or_none()
    if owner is None:
        return []
    family = session.execute(
        select(Patient).where(Patient.guardian_id == owner.id).order_by(Patient.name_first)
    ).scalars()
    return [owner, *family]


def by_number(session: Session, number: int) -> list[Patient]:
    return list(session.execute(select(Patient).where(Patient.number == number)).scalars())


def by_name(session: Session, query: str, *, limit: int = SEARCH_LIMIT) -> list[Patient]:
    """Prefix matches on first or last name first, then (for 4+ letters) similar spellings."""
    words = query.lower().split()[:3]
    found = _prefix(session, words, limit)
    if len(found) < limit and len(" ".join(words)) >= FUZZY_MIN_LENGTH:
        seen = {p.id for p in found}
        found += [p for p in _fuzzy(session, " ".join(words), limit) if p.id not in seen]
    return found[:limit]


def _starts(column: ColumnElement[str], word: str) -> ColumnElement[bool]:
    """``column`` starts with ``word``, as a byte range the column's index can scan."""
    return (column >= word) & (column < word + _AFTER_EVERY_CHARACTER)


_AFTER_EVERY_CHARACTER = "\U0010ffff"


def _prefix(session: Session, words: list[str], limit: int) -> list[Patient]:
    """Two index range scans in name order, each stopping after ``limit`` rows.

    One query with ``first LIKE .. OR last LIKE ..`` would have to sort every match
    before the limit, which at a million patients is the difference between 1 and 100 ms.
    """
    first: ColumnElement[str] = Patient.first_key  # type: ignore[assignment]
    last: ColumnElement[str] = Patient.last_key  # type: ignore[assignment]
    a, b = words[0], words[-1]
    if len(words) == 1:
        scans = [(_starts(first, a), first), (_starts(last, a), last)]
    else:
        scans = [
            (_starts(first, a) & _starts(last, b), first),
            (_starts(last, a) & _starts(first, b), last),
        ]
    found: dict[object, Patient] = {}
    for condition, order in scans:
        stmt = select(Patient).where(condition).order_by(order).limit(limit)
        for patient in session.execute(stmt).scalars():
            found.setdefault(patient.id, patient)
    return sorted(found.values(), key=lambda p: (p.name_first.lower(), p.name_last.lower()))[:limit]


def _fuzzy(session: Session, query: str, limit: int) -> list[Patient]:
    """Similar spellings, best first: "Lakshmee" finds "Lakshmi".

    The nearest names come from the clinic's name vocabulary; their patients are then
    found by exact key, so the cost follows the number of distinct names, not patients.
    """
    words = sorted(query.split(), key=len, reverse=True)[:2]
    scored: dict[str, float] = {}
    for word in words:
        for key, score in _similar_names(session, word):
            scored[key] = max(score, scored.get(key, 0.0))
    if not scored:
        return []
    keys = sorted(scored, key=scored.__getitem__, reverse=True)[:10]
    found: dict[object, Patient] = {}
    for column in (Patient.first_key, Patient.last_key):
        stmt = select(Patient).where(column.in_(keys)).order_by(column).limit(limit)
        for patient in session.execute(stmt).scalars():
            found.setdefault(patient.id, patient)

    def closeness(p: Patient) -> tuple[float, str]:
        best = max(scored.get(p.first_key, 0.0), scored.get(p.last_key, 0.0))
        return (-best, p.first_key + " " + p.last_key)

    return sorted(found.values(), key=closeness)[:limit]


def _similar_names(session: Session, word: str) -> list[tuple[str, float]]:
    if _has_similar_function(session):
        rows = session.execute(
            text("select key, score from opdesk_similar_names(:q, 10)"), {"q": word}
        ).all()
    else:  # without the function: the same question under RLS (reads every name)
        rows = session.execute(
            text(
                "select key, similarity(key, :q) as score from patient_names "
                "where patients > 0 and similarity(key, :q) >= :t "
                "order by score desc limit 10"
            ),
            {"q": word, "t": FUZZY_THRESHOLD},
        ).all()
    return [(str(key), float(score)) for key, score in rows]


_SIMILAR_FUNCTION: dict[str, bool] = {}


def _has_similar_function(session: Session) -> bool:
    """Whether the migration could create the index-friendly function (cached per database)."""
    key = str(session.get_bind().engine.url)
    if key not in _SIMILAR_FUNCTION:
        found = session.execute(
            text("select to_regprocedure('opdesk_similar_names(text, integer)') is not null")
        ).scalar_one()
        _SIMILAR_FUNCTION[key] = bool(found)
    return _SIMILAR_FUNCTION[key]


def summary(patient: Patient, today: date, phone: str | None = None) -> PatientSummary:
    age, _ = age_of(patient, today)
    return PatientSummary(
        id=patient.id,
        number=patient.display_number,
        name=PatientName(first=patient.name_first, last=patient.name_last),
        age_years=age,
        gender=patient.gender,
        city=patient.city,
        phone_last4=phone[-4:] if phone else None,
        flags=Flags(vip=patient.flags_vip, blocked=patient.flags_blocked),
        guardian_id=patient.guardian_id,
    )


def of_portal_user(session: Session, user_id: object) -> list[Patient]:
    """The patients a signed-in patient may see: those with their phone, and dependents."""
    user = session.execute(select(User).where(User.id == user_id)).scalar_one()
    own = list(
        session.execute(select(Patient).where(Patient.phone_hash == user.phone_hash)).scalars()
    )
    ids = [p.id for p in own]
    family = (
        list(session.execute(select(Patient).where(Patient.guardian_id.in_(ids))).scalars())
        if ids
        else []
    )
    return own + family


__all__ = ["NUMBER_PREFIX", "by_name", "by_number", "by_phone", "search", "summary"]


def deleted(session: Session, *, limit: int = 200) -> list[Patient]:
    """Soft-deleted patients, most recently deleted first (for an admin to restore)."""
    stmt = (
        select(Patient)
        .where(Patient.deleted_at.is_not(None))
        .order_by(Patient.deleted_at.desc())
        .limit(limit)
        .execution_options(include_deleted=True)
    )
    return list(session.execute(stmt).scalars())
