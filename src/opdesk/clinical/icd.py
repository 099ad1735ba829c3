"""WHO ICD-10 search: by code prefix ("E11" finds E11.9) and by words (trigram match on
the description), the most specific codes (leaves) first.
"""

from __future__ import annotations

import re

from sqlalchemy import case, func, or_, select
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
    recordable = Icd10Code.kind.in_(RECORDABLE)
    if CODE_LIKE.match(q):
        prefix = q.upper()
        by_code = (
            select(Icd10Code)
            .where(Icd10Code.code.like(_escape(prefix) + "%"), recordable)
            .order_by(Icd10Code.is_leaf.desc(), Icd10Code.code)
            .limit(limit)
        )
        found = list(session.execute(by_code).scalars())
        if found:
            return found
    words = q.lower().split()
    description = func.lower(Icd10Code.description)
    conditions = [description.like("%" + _escape(w) + "%") for w in words]
    # The trigram index answers the first word (similarity or substring); the others filter.
    first = words[0]
    stmt = (
        select(Icd10Code)
        .where(
            recordable,
            or_(description.op("%")(first), description.like("%" + _escape(first) + "%")),
            *conditions,
        )
        .order_by(
            Icd10Code.is_leaf.desc(),
            case((description.like(_escape(first) + "%"), 0), else_=1),
            func.length(Icd10Code.description),
            Icd10Code.code,
        )
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
