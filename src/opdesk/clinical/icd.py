"""WHO ICD-10 search: by code prefix ("E11" finds E11.9) and by words (each word found
in the description), the most specific codes (leaves) first.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opdesk.clinical.models import Icd10Code
from opdesk.errors import FieldError, InvalidInput

CODE_LIKE = re.compile(r"^[A-Za-z][0-9][0-9A-Za-z.]{0,5}$")
RECORDABLE = ("category", "subcategory")


def search(session: Session, q: str, *, limit: int = 20) -> list[Icd10Code]:
    """Codes matching ``q``: a code prefix, or all its words in the description."""
    q = " ".join(q.split())[:100]
    if len(q) < 2:
        return []
    codes = _recordable_codes(session)
    if CODE_LIKE.match(q):
        found = _by_code(codes, q.upper(), limit)
        if found:
            return found
    return _by_words(codes, q.lower().split(), limit)


@dataclass(frozen=True)
class _Entry:
    code: str
    description: str
    kind: str
    parent: str | None
    is_leaf: bool
    lowered: str  # lower(description), as PostgreSQL lowers it


@dataclass(frozen=True)
class _Codes:
    entries: tuple[_Entry, ...]
    text: str  # every lowered description, each ended by a NUL (which text never holds)
    ends: list[int]  # where each entry's description ends in ``text``
    by_code: list[_Entry]  # the same entries in code order
    codes: list[str]  # their codes, for bisecting


_codes: _Codes | None = None
_loading = threading.Lock()


def _recordable_codes(session: Session) -> _Codes:
    """Every recordable code (about 12,000), read once per process.

    The table is reference data written only by its migration (the app may only read
    it), so the copy cannot go stale while the process runs. Finding a word in one
    string of every description is a single scan in C, well under a millisecond, and a
    code prefix is a bisection; PostgreSQL took 7 to 30 ms for a word on a loaded
    two-core machine (it lowered and scanned every description: the trigram index does
    not pay for common words in a table this small), and a round trip for a code.
    """
    global _codes
    if _codes is None:
        with _loading:
            if _codes is None:
                rows = session.execute(
                    select(
                        Icd10Code.code,
                        Icd10Code.description,
                        Icd10Code.kind,
                        Icd10Code.parent,
                        Icd10Code.is_leaf,
                        func.lower(Icd10Code.description),
                    ).where(Icd10Code.kind.in_(RECORDABLE))
                ).all()
                entries = tuple(_Entry(*row) for row in rows)
                ends = list(accumulate(len(e.lowered) + 1 for e in entries))
                by_code = sorted(entries, key=lambda e: e.code)
                _codes = _Codes(
                    entries,
                    "".join(e.lowered + "\0" for e in entries),
                    ends,
                    by_code,
                    [e.code for e in by_code],
                )
    return _codes


def _containing(codes: _Codes, word: str) -> Iterator[_Entry]:
    """The entries whose description contains ``word`` (which holds no NUL)."""
    at = codes.text.find(word)
    while at != -1:
        n = bisect_right(codes.ends, at)
        yield codes.entries[n]
        at = codes.text.find(word, codes.ends[n])


def _by_code(codes: _Codes, prefix: str, limit: int) -> list[Icd10Code]:
    """Codes starting with ``prefix``, the most specific first, then by code."""
    found = []
    for n in range(bisect_left(codes.codes, prefix), len(codes.codes)):
        if not codes.codes[n].startswith(prefix):
            break
        found.append(codes.by_code[n])
    found.sort(key=lambda e: (not e.is_leaf, e.code))
    return _rows(found[:limit])


def _by_words(codes: _Codes, words: list[str], limit: int) -> list[Icd10Code]:
    """Codes whose description contains every word: the most specific codes first, then
    those starting with the first word, the shortest, and by code.
    """
    first, longest = words[0], max(words, key=len)
    found = [e for e in _containing(codes, longest) if all(w in e.lowered for w in words)]
    found.sort(
        key=lambda e: (not e.is_leaf, not e.lowered.startswith(first), len(e.description), e.code)
    )
    return _rows(found[:limit])


def _rows(entries: list[_Entry]) -> list[Icd10Code]:
    return [
        Icd10Code(
            code=e.code,
            description=e.description,
            kind=e.kind,
            parent=e.parent,
            is_leaf=e.is_leaf,
        )
        for e in entries
    ]


def recordable(session: Session, code: str, *, field: str = "code") -> Icd10Code:
    """The code to record on a diagnosis, else 422 naming ``field``."""
    found = session.get(Icd10Code, code.strip().upper())
    if found is None:
        raise InvalidInput([FieldError(field, f"{code!r} is not a WHO ICD-10 code")])
    if found.kind not in RECORDABLE:
        raise InvalidInput(
            [FieldError(field, f"{found.code} is a chapter or block; choose a code inside it")]
        )
    return found
