"""Finding patients: by phone (blind index), patient number, or name (prefix, then fuzzy)."""

from __future__ import annotations

import functools
import re
import uuid
from datetime import date

from sqlalchemy import ColumnElement, select, text, union_all
from sqlalchemy.orm import Session

from opdesk.identity.models import User
from opdesk.patients import service, sounds
from opdesk.patients.models import NUMBER_PREFIX, PHONE_PART_MIN, Patient, PatientPhoneKey
from opdesk.patients.schemas import Flags, PatientName, PatientSummary
from opdesk.patients.service import age_of
from opdesk.security.crypto import FieldCipher
from opdesk.validation import phone_e164

SEARCH_LIMIT = 20
FUZZY_MIN_LENGTH = 4
FUZZY_THRESHOLD = 0.3
# Pairs of similar first and last names fetched at most, before scoring.
FUZZY_PAIRS = 200
_NUMBER = re.compile(r"^(?:p-?)?0*(\d{1,7})$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^[+\d][\d\s-]{7,}$")
# Part of a phone number: five or more digits, perhaps spaced or dashed.
_PHONE_PART = re.compile(r"^\+?(?:\d[\s-]?){5,}$")
_COUNTRY = "+91"  # the clinics' country, as typed before a partial number


def search(
    session: Session, cipher: FieldCipher, query: str, *, limit: int = SEARCH_LIMIT
) -> list[Patient]:
    """What the front desk types: a phone or part of one, a patient number, or a name.

    Five digits or more are both a patient number (shown first) and the start or end of
    a mobile number: the desk types the last digits as often as the first.
    """
    query = query.replace("\x00", "").strip()
    if not query:
        return []
    if _PHONE_CHARS.match(query):
        found = by_phone(session, cipher, query)
        if found:
            return found
    number = patient_number(query)
    numbered = by_number(session, number) if number is not None else []
    if _PHONE_PART.match(query):
        seen = {p.id for p in numbered}
        parts = by_phone_part(session, cipher, query, limit=limit)
        return (numbered + [p for p in parts if p.id not in seen])[:limit]
    if number is not None:
        return numbered
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
    return [owner, *_families(session, [owner])]


def by_phone_part(
    session: Session, cipher: FieldCipher, typed: str, *, limit: int = SEARCH_LIMIT
) -> list[Patient]:
    """Patients whose mobile number starts or ends with the digits typed, in name order,
    each followed by the family members who share the number.

    The digits are looked up as blind indexes (``patient_phone_keys``), never in clear.
    """
    keys = _phone_part_keys(cipher, typed)
    if not keys:
        return []
    # The first digits of a city's mobile series are shared by many thousands: take the
    # first matches the index gives (twice the limit, as some may be deleted) and put
    # those in name order, rather than sort every match.
    matching = (
        select(PatientPhoneKey.patient_id).where(PatientPhoneKey.key.in_(keys)).limit(2 * limit)
    )
    ids = list(session.execute(matching).scalars())
    owners = list(
        session.execute(
            select(Patient)
            .where(Patient.id.in_(ids))
            .order_by(Patient.first_key, Patient.last_key)
            .limit(limit)
        ).scalars()
    )
    family = _families(session, owners)
    found: list[Patient] = []
    for owner in owners:
        found += [owner, *(p for p in family if p.guardian_id == owner.id)]
    return found


def _phone_part_keys(cipher: FieldCipher, typed: str) -> list[bytes]:
    """The keys to look for: the digits as a start and as an end of a national number."""
    digits = re.sub(r"\D", "", typed)
    if typed.startswith(_COUNTRY):
        digits = digits[len(_COUNTRY) - 1 :]
    keys = []
    if PHONE_PART_MIN <= len(digits) < 10:
        keys += [service.phone_part_key(cipher, end, digits) for end in ("start", "end")]
    national = digits.lstrip("0")  # "098220": a trunk 0 before the first digits
    if national != digits and PHONE_PART_MIN <= len(national) < 10:
        keys.append(service.phone_part_key(cipher, "start", national))
    return keys


def _families(session: Session, owners: list[Patient]) -> list[Patient]:
    if not owners:
        return []
    stmt = (
        select(Patient)
        .where(Patient.guardian_id.in_([p.id for p in owners]))
        .order_by(Patient.name_first)
    )
    return list(session.execute(stmt).scalars())


def by_number(session: Session, number: int) -> list[Patient]:
    return list(session.execute(select(Patient).where(Patient.number == number)).scalars())


def by_name(session: Session, query: str, *, limit: int = SEARCH_LIMIT) -> list[Patient]:
    """Names starting with what was typed first (first or last name, or both in either
    order); then the same name written in another script ("Amit" finds "अमित"); then, for
    4+ letters, similar spellings, the closest first.
    """
    words = query.lower().split()[:3]
    found = _prefix(session, words, limit)
    if len(found) < limit:
        seen = {p.id for p in found}
        found += [p for p in _sound(session, words, limit) if p.id not in seen]
    if len(found) < limit and len(" ".join(words)) >= FUZZY_MIN_LENGTH:
        seen = {p.id for p in found}
        found += [p for p in _fuzzy(session, " ".join(words), limit) if p.id not in seen]
    return found[:limit]


def _starts(column: ColumnElement[str], word: str) -> ColumnElement[bool]:
    """``column`` starts with ``word``, as a byte range the column's index can scan."""
    return (column >= word) & (column < word + _AFTER_EVERY_CHARACTER)


_AFTER_EVERY_CHARACTER = "\U0010ffff"


def _prefix(session: Session, words: list[str], limit: int) -> list[Patient]:
    """First or last name starting with the word typed; with two words, both names."""
    first: ColumnElement[str] = Patient.first_key  # type: ignore[assignment]
    last: ColumnElement[str] = Patient.last_key  # type: ignore[assignment]
    return _scan_names(session, first, last, words, limit)


def _sound(session: Session, words: list[str], limit: int) -> list[Patient]:
    """The same, by sound, among the names written in the other script (``sounds``)."""
    script = sounds.other_script(" ".join(words))
    keys = [key for key in (sounds.word_key(w) for w in words) if key]
    if script is None or not keys:
        return []
    first: ColumnElement[str] = Patient.first_sound  # type: ignore[assignment]
    last: ColumnElement[str] = Patient.last_sound  # type: ignore[assignment]
    return _scan_names(session, first, last, [f"{script}:{key}" for key in keys], limit)


def _scan_names(
    session: Session,
    first: ColumnElement[str],
    last: ColumnElement[str],
    words: list[str],
    limit: int,
) -> list[Patient]:
    """Two index range scans in name order, each stopping after ``limit`` rows.

    One query with ``first LIKE .. OR last LIKE ..`` would have to sort every match
    before the limit, which at a million patients is the difference between 1 and 100 ms.
    """
    a, b = words[0], words[-1]
    if len(words) == 1:
        scans = [(_starts(first, a), first), (_starts(last, a), last)]
    else:
        scans = [
            (_starts(first, a) & _starts(last, b), first),
            (_starts(last, a) & _starts(first, b), last),
        ]
    # Both scans in one statement (one round trip); each keeps its own order and limit.
    both = union_all(
        *(
            select(Patient).where(condition).order_by(order).limit(limit)
            for condition, order in scans
        )
    )
    found: dict[object, Patient] = {}
    for patient in session.execute(select(Patient).from_statement(both)).scalars():
        found.setdefault(patient.id, patient)
    return sorted(found.values(), key=lambda p: (p.name_first.lower(), p.name_last.lower()))[:limit]


def _fuzzy(session: Session, query: str, limit: int) -> list[Patient]:
    """Similar spellings, the closest first: "Sursh Jadav" finds "Suresh Jadhav" first.

    The nearest names come from the clinic's name vocabulary (so the cost follows the
    number of distinct names, not patients), for every word in one round trip. Their
    patients are found, ranked and loaded in one more, whatever the number of names:
    the pairs of a similar first and a similar last name, and up to ``limit`` patients
    of each similar name alone, ordered by :func:`closeness` (computed by PostgreSQL).
    """
    words = sorted(query.split(), key=len, reverse=True)[:2]
    similar = _similar_names(session, words)
    best: dict[str, float] = {}
    for scores in similar.values():
        for key, score in scores.items():
            best[key] = max(score, best.get(key, 0.0))
    if not best:
        return []
    a, b = (list(similar.get(word, {})) for word in (words[0], words[-1]))
    paired = len(words) == 2 and bool(a) and bool(b)
    params = {
        "a": a if paired else [],
        "b": b if paired else [],
        "pairs": FUZZY_PAIRS,
        "keys": sorted(best, key=lambda k: (-best[k], k))[:10],
        "n": limit,
        "wanted": limit + 5,
        "wa": words[0],
        "wb": words[-1],
        "two": len(words) == 2,
    }
    return list(session.execute(select(Patient).from_statement(_RANKED), params).scalars())


# The candidates for the misspelling stage, ranked and loaded in one statement:
# * patients whose first name is one of :a and last one of :b, or the other way round
#   (two index scans, each an exact probe per pair of names; an OR of the two was planned
#   as bitmap scans costing 5-10 times more);
# * up to :n patients with each of :keys as first name and :n with it as last name;
# then each candidate's :func:`closeness` to the words :wa and :wb, best first; only the
# best (and a few more, in case some were deleted) are read in full.
_RANKED = text(
    """
    with candidates as (
      (select id, first_key, last_key from patients
        where first_key = any(cast(:a as text[])) and last_key = any(cast(:b as text[]))
        limit :pairs)
      union all
      (select id, first_key, last_key from patients
        where first_key = any(cast(:b as text[])) and last_key = any(cast(:a as text[]))
        limit :pairs)
      union all
      select x.id, x.first_key, x.last_key
      from unnest(cast(:keys as text[])) as k(key)
      cross join lateral (
        (select id, first_key, last_key from patients
          where first_key = k.key collate "C" limit :n)
        union all
        (select id, first_key, last_key from patients
          where last_key = k.key collate "C" limit :n)
      ) x
    ),
    named as (
      select distinct on (id) id, first_key, last_key,
        similarity(:wa, first_key) as af, similarity(:wa, last_key) as al,
        similarity(:wb, first_key) as bf, similarity(:wb, last_key) as bl
      from candidates
    ),
    scored as (
      select id, first_key, last_key,
        case when :two then greatest(
          (3 * least(af, bl) + greatest(af, bl)) / 4,
          (3 * least(al, bf) + greatest(al, bf)) / 4)
        else greatest(af, al) end as score
      from named
    ),
    ranked as (
      select id, score, first_key, last_key from scored
      order by score desc, first_key, last_key
      limit :wanted
    )
    select p.* from ranked r join patients p on p.id = r.id
    where p.deleted_at is null
    order by r.score desc, r.first_key, r.last_key
    limit :n
    """
)


def closeness(words: list[str], first: str, last: str) -> float:
    """How well the words typed match a name, from 0 to 1 (the fuzzy search's order).

    Similarity is pg_trgm's (:func:`similarity`). One word: its similarity to the first or
    the last name, whichever is higher. Two words: each is paired with a name part, the
    pairing (first-last or last-first) that scores higher, and the score is
    ``(3 x weaker + stronger) / 4``: a name close in both words ("Suresh Jadhav" for
    "Sursh Jadav", 0.44) beats one exact in one word and unlike the other ("Sursh Kale",
    0.25), and among those close in both the closer pair wins.
    """
    if len(words) == 1:
        return max(similarity(words[0], first), similarity(words[0], last))
    a, b = words[0], words[1]
    pairings = (
        (similarity(a, first), similarity(b, last)),
        (similarity(a, last), similarity(b, first)),
    )
    return max((3 * min(pair) + max(pair)) / 4 for pair in pairings)


def similarity(a: str, b: str) -> float:
    """pg_trgm's ``similarity``: shared trigrams over all trigrams of the two texts."""
    ta, tb = _trigrams(a), _trigrams(b)
    if not ta or not tb:
        return 0.0
    shared = len(ta & tb)
    return shared / (len(ta) + len(tb) - shared)


# Scoring reads a few hundred rows whose names repeat (a clinic has thousands of distinct
# names): each name's trigrams are worked out once per process, not once per row.
@functools.lru_cache(maxsize=16384)
def _trigrams(text: str) -> frozenset[str]:
    grams: set[str] = set()
    for word in _WORD.findall(text.lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(grams)


_WORD = re.compile(r"[^\W_]+")


def _similar_names(session: Session, words: list[str]) -> dict[str, dict[str, float]]:
    """For each word, the clinic's names that look like it (at most ten) and their score."""
    similar: dict[str, dict[str, float]] = {word: {} for word in words}
    if _has_similar_function(session):
        rows = session.execute(_SIMILAR_TO_EACH, {"words": words}).all()
    else:  # without the function: the same question under RLS (reads every name)
        rows = session.execute(_SIMILAR_UNDER_RLS, {"words": words, "t": FUZZY_THRESHOLD}).all()
    for word, key, score in rows:
        similar[str(word)][str(key)] = float(score)
    return similar


_SIMILAR_TO_EACH = text(
    "select w.word, s.key, s.score from unnest(cast(:words as text[])) as w(word) "
    "cross join lateral opdesk_similar_names(w.word, 10) s"
)
_SIMILAR_UNDER_RLS = text(
    """
    select w.word, s.key, s.score from unnest(cast(:words as text[])) as w(word)
    cross join lateral (
      select key, similarity(key, w.word) as score from patient_names
      where patients > 0 and similarity(key, w.word) >= :t
      order by score desc, key limit 10
    ) s
    """
)


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
        registered_online=bool(patient.registered_online),
    )


def summaries(
    session: Session, cipher: FieldCipher, patients: list[Patient], today: date
) -> list[PatientSummary]:
    """Search results as the desk sees them: with the last digits of the phone to call
    (a dependent's is the guardian's), for telling namesakes apart.
    """
    # Guardians not among the results are read in one query (not one per dependent), and
    # each phone is opened once however many of the family are listed.
    by_id = {p.id: p for p in patients}
    missing = {p.guardian_id for p in patients if p.guardian_id is not None} - by_id.keys()
    if missing:
        found = session.execute(select(Patient).where(Patient.id.in_(missing))).scalars()
        by_id.update((g.id, g) for g in found)
    phones: dict[uuid.UUID, str | None] = {}

    def own_phone(patient: Patient) -> str | None:
        if patient.id not in phones:
            phones[patient.id] = service.open_phone(cipher, patient)
        return phones[patient.id]

    def phone_of(patient: Patient) -> str | None:
        if patient.phone_encrypted is not None or patient.guardian_id is None:
            return own_phone(patient)
        guardian = by_id.get(patient.guardian_id)
        return own_phone(guardian) if guardian is not None else None

    return [summary(p, today, phone=phone_of(p)) for p in patients]


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


__all__ = [
    "NUMBER_PREFIX",
    "by_name",
    "by_number",
    "by_phone",
    "by_phone_part",
    "search",
    "summaries",
    "summary",
]


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


def guardian_of(session: Session, patient: Patient) -> Patient | None:
    """The family member whose phone ``patient`` shares, even if they were deleted since
    (the profile then says so, instead of losing the dependent).
    """
    if patient.guardian_id is None:
        return None
    stmt = (
        select(Patient)
        .where(Patient.id == patient.guardian_id)
        .execution_options(include_deleted=True)
    )
    return session.execute(stmt).scalar_one_or_none()
