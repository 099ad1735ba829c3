"""Scan & Share: which OPDesk patient, if any, is the person whose ABHA profile arrived.

A patient scans the clinic's QR code and ABDM posts their ABHA profile (messages.
ShareProfile). The desk wants the patient's existing record, not a duplicate, but a wrong
match opens one person's history to another, so:

* **certain**: the ABHA number on file is the profile's. One ABHA number is one person.
* **likely**: no ABHA number to compare, but the mobile number, the year of birth and the
  gender all agree and the names are alike. Indian families share one mobile number, so
  the mobile alone never decides; siblings share a surname, so every word of the shorter
  name must be found in the longer one, word by word.
* **none**: anything else, including a *different* ABHA number on file (that record
  belongs to someone else, whatever else agrees).

``best_match`` returns a patient only when exactly one is certain, or none is certain
and exactly one is likely. Two likely candidates (twins with alike names, a record entered
twice) give None: the desk decides, the code never guesses between two people.

Names are compared within a script by spelling (difflib's ratio on case- and
accent-folded words) and across scripts by sound (``opdesk.patients.sounds.word_key``:
"अमित शर्मा" and "Amit Sharma" are both ``amit srm``). The sound key is coarse, which is
why it is only ever one of four agreeing facts here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from enum import StrEnum
from typing import Final, Protocol

from opdesk.patients.sounds import script_of, word_key
from opdesk.validation import ascii_digits

# Indian mobile numbers are ten digits starting 6-9 (TRAI's national numbering plan).
_MOBILE = re.compile(r"[6-9]\d{9}")
_SEPARATORS = re.compile(r"[\s\-.()]")
# Each word of the shorter name must reach this likeness with its own word in the longer
# one. 0.85 lets Jadhav/Jadav (0.91) and Mohammed/Mohammad (0.88) through, and keeps
# Rohan/Rohit (0.60), Sita/Gita (0.75) and Ravi/Raju (0.50) apart.
NAME_THRESHOLD: Final = 0.85

# ABDM's gender letters and OPDesk's words, to one vocabulary. D (undisclosed), U
# (unknown) and OPDesk's "undisclosed" compare as unknown: unknown never agrees. T has no
# word of its own in OPDesk and is filed as "other".
_GENDERS: Final = {
    "m": "male",
    "male": "male",
    "f": "female",
    "female": "female",
    "o": "other",
    "t": "other",
    "other": "other",
}


def mobile_e164(raw: str) -> str:
    """An Indian mobile number as ``+91XXXXXXXXXX``; ValueError for anything else.

    ABDM sends ten digits (``9876543210``), sometimes ``+919876543210``, ``919876543210``
    or ``09876543210``, with spaces or hyphens. A masked number (``98765*****``) or a
    landline is refused.
    """
    if not isinstance(raw, str):
        raise ValueError("a mobile number is text")
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("+"):
        if not text.startswith("+91"):
            raise ValueError("not an Indian (+91) mobile number")
        digits = text[3:]
    elif len(text) == 12 and text.startswith("91"):
        digits = text[2:]
    elif len(text) == 11 and text.startswith("0"):
        digits = text[1:]
    else:
        digits = text
    if not digits.isascii() or not _MOBILE.fullmatch(digits):
        raise ValueError("not a 10-digit Indian mobile number (starting 6-9)")
    return "+91" + digits


@dataclass(frozen=True)
class Candidate:
    """One OPDesk patient's plain facts, as the patient record holds them."""

    patient_id: str
    first_name: str
    last_name: str = ""
    abha_number: str | None = None  # 14 digits; hyphens and spaces are ignored
    phone: str | None = None  # E.164
    year_of_birth: int | None = None
    gender: str | None = None  # OPDesk's words (male/female/...) or ABDM's letters


class Profile(Protocol):
    """What matching reads of a Scan & Share profile (messages.ShareProfile has it)."""

    @property
    def abha_number(self) -> str | None: ...
    @property
    def mobile(self) -> str | None: ...
    @property
    def year_of_birth(self) -> int: ...
    @property
    def gender(self) -> str: ...
    @property
    def name(self) -> str: ...


class Verdict(StrEnum):
    CERTAIN = "certain"
    LIKELY = "likely"
    NONE = "none"


@dataclass(frozen=True)
class Match:
    candidate: Candidate
    verdict: Verdict
    reasons: tuple[str, ...]
    name_similarity: float


def _abha(value: str | None) -> str | None:
    if not value:
        return None
    digits = value.replace("-", "").replace(" ", "")
    return digits if len(digits) == 14 and ascii_digits(digits) else None


def _gender(value: str | None) -> str | None:
    return _GENDERS.get(value.strip().lower()) if value else None


def _mobile_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return mobile_e164(value)
    except ValueError:
        return None


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[\s,.]+", name) if w]


def _folded(word: str) -> str:
    """A word without case or accents (Indic words keep their letters, NFC)."""
    text = unicodedata.normalize("NFKD", word.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", text)


def word_similarity(a: str, b: str) -> float:
    """How alike two name words are, 0..1.

    Same script: difflib's ratio of the folded spellings, raised to 0.9 when both sound the
    same (Jadhav/Jadav). Different scripts: 1.0 when their sound keys are equal (अमित and
    Amit are both ``amit``) and 0.0 otherwise. Keys drop most vowels, so a partial likeness
    of two keys says little (नेहा ``neh`` against Sneha ``sneh`` would score 0.86): across
    scripts only the same sound counts, and a spelling the key does not fold is left to the
    desk. A single letter (an initial) matches a word it begins, in the same script.
    """
    fa, fb = _folded(a), _folded(b)
    if not fa or not fb:
        return 0.0
    if script_of(a) == script_of(b):
        if len(fa) == 1 or len(fb) == 1:
            return 1.0 if fa[0] == fb[0] and fa.isalpha() and fb.isalpha() else 0.0
        ratio = SequenceMatcher(None, fa, fb).ratio()
        ka, kb = word_key(a), word_key(b)
        return max(ratio, 0.9) if ka and ka == kb else ratio
    ka = word_key(a)
    return 1.0 if ka and ka == word_key(b) else 0.0


def name_similarity(a: str, b: str) -> float:
    """How alike two full names are, 0..1: every word of the shorter name is paired with a
    different word of the longer one (best pairs first) and the weakest pair counts. So a
    middle name present on one side only costs nothing, and a differing first name sinks
    the match however alike the surnames are."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    short, long = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    pairs = sorted(
        ((word_similarity(s, t), i, j) for i, s in enumerate(short) for j, t in enumerate(long)),
        reverse=True,
    )
    used_short: set[int] = set()
    used_long: set[int] = set()
    weakest = 1.0
    for value, i, j in pairs:
        if i in used_short or j in used_long:
            continue
        used_short.add(i)
        used_long.add(j)
        weakest = min(weakest, value)
        if len(used_short) == len(short):
            break
    return weakest


def score(candidate: Candidate, profile: Profile) -> Match:
    """The verdict on one candidate, with the reasons a receptionist can read."""
    theirs, ours = _abha(profile.abha_number), _abha(candidate.abha_number)
    full_name = f"{candidate.first_name} {candidate.last_name}".strip()
    similarity = name_similarity(full_name, profile.name)
    if theirs and ours:
        if theirs == ours:
            return Match(candidate, Verdict.CERTAIN, ("ABHA number matches",), similarity)
        return Match(candidate, Verdict.NONE, ("a different ABHA number is on file",), similarity)

    failed: list[str] = []
    agreed: list[str] = []
    mobile = _mobile_or_none(profile.mobile)
    phone = _mobile_or_none(candidate.phone)
    if mobile is None:
        failed.append("the profile has no usable mobile number")
    elif phone != mobile:
        failed.append("mobile number differs")
    else:
        agreed.append("mobile number matches")
    if candidate.year_of_birth is None or candidate.year_of_birth != profile.year_of_birth:
        failed.append("year of birth differs or is unknown")
    else:
        agreed.append("year of birth matches")
    gender = _gender(candidate.gender)
    if gender is None or gender != _gender(profile.gender):
        failed.append("gender differs or is unknown")
    else:
        agreed.append("gender matches")
    if similarity < NAME_THRESHOLD:
        failed.append(f"names differ ({similarity:.2f} < {NAME_THRESHOLD})")
    else:
        agreed.append(f"names alike ({similarity:.2f})")
    if failed:
        return Match(candidate, Verdict.NONE, tuple(failed), similarity)
    return Match(candidate, Verdict.LIKELY, tuple(agreed), similarity)


def rank(candidates: Iterable[Candidate], profile: Profile) -> list[Match]:
    """Every candidate's match, certain first, then likely by name likeness, then none."""
    order = {Verdict.CERTAIN: 0, Verdict.LIKELY: 1, Verdict.NONE: 2}
    matches = [score(c, profile) for c in candidates]
    return sorted(matches, key=lambda m: (order[m.verdict], -m.name_similarity))


def best_match(candidates: Sequence[Candidate], profile: Profile) -> Candidate | None:
    """The one patient this profile is, or None when no candidate is, or more than one
    could be (two certain, or no certain and two or more likely)."""
    matches = [score(c, profile) for c in candidates]
    certain = [m for m in matches if m.verdict is Verdict.CERTAIN]
    if certain:
        return certain[0].candidate if len(certain) == 1 else None
    likely = [m for m in matches if m.verdict is Verdict.LIKELY]
    return likely[0].candidate if len(likely) == 1 else None
