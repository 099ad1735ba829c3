"""The consultation screen's history queries, made for long histories: the past visits
with their diagnoses in a fixed number of queries, the vitals trend in one, and the
ICD-10 word search answering exactly as the SQL it replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import case, event, func, or_, select
from sqlalchemy.orm import Session

from opdesk.clinical import icd, visits, vitals
from opdesk.clinical.models import Icd10Code, Visit
from opdesk.db import Database
from opdesk.uow import transaction
from tests.factories import clinic_session
from tests.factories.clinical_visits import Consultation, consultation, open_visit
from tests.factories.scheduling import book


@contextmanager
def counted(session: Session) -> Iterator[list[str]]:
    """The queries the session sends while the block runs (not the tenant setting the
    transaction sends before its first one).
    """
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("select set_config("):
            sent.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def history(db: Database, ident: Any, cipher: Any, count: int) -> tuple[Consultation, list[Visit]]:
    """One patient's ``count`` signed visits, oldest first: each with a note, a coded
    diagnosis with a doctor's text, every other one a second code, and a pulse.
    """
    c = consultation(db, ident, slots=count + 1)
    made = []
    for n, slot in enumerate(c.slots[:count]):
        appointment = c.appointment if n == 0 else book(db, c.tenant, slot, c.patient)
        ctx = c.ctx()
        with transaction(db, ctx) as session:
            visit = visits.open_visit(session, ctx, appointment_id=appointment.id)
            visits.save_note(
                session,
                ctx,
                cipher,
                visit_id=visit.id,
                soap=visits.Soap(s=f"visit {n}"),
                explicit=True,
            )
            visits.add_diagnosis(
                session, ctx, cipher, visit_id=visit.id, code="A09", text=f"loose stools {n}"
            )
            if n % 2:
                visits.add_diagnosis(session, ctx, cipher, visit_id=visit.id, code="I10", text=None)
            vitals.record(session, ctx, cipher, visit_id=visit.id, readings={"pulse": 70 + n})
            made.append(visits.sign(session, ctx, cipher, visit_id=visit.id))
    return c, made


def test_the_summary_lists_the_newest_visits_with_their_diagnoses_and_counts_the_rest(
    db: Database, ident: Any, cipher: Any
) -> None:
    c, made = history(db, ident, cipher, 5)
    other, _ = history(db, ident, cipher, 1)  # another patient of another clinic
    with clinic_session(db, c.tenant.id) as session:
        newest = session.get_one(Visit, (c.tenant.id, made[-1].id))
        summary = visits.past_visits_summary(session, cipher, c.patient.id, before=newest, limit=3)
    assert [v.id for v in summary.visits] == [made[3].id, made[2].id, made[1].id]
    assert summary.more == 1  # made[0]; the one shown (``before``) is not counted
    assert set(summary.diagnoses) == {v.id for v in summary.visits}
    three = summary.diagnoses[made[3].id]
    assert [(d.code, d.text, d.primary, d.position) for d in three] == [
        ("A09", "loose stools 3", True, 1),
        ("I10", None, False, 2),
    ]
    assert [d.code for d in summary.diagnoses[made[2].id]] == ["A09"]
    with clinic_session(db, c.tenant.id) as session:
        described = {code: session.get_one(Icd10Code, code).description for code in ("A09", "I10")}
        assert [d.description for d in three] == [described["A09"], described["I10"]]
        assert visits.past_visits_summary(session, cipher, other.patient.id, before=None) == (
            visits.PastVisits([], {}, 0)
        )


def test_the_summary_leaves_out_draft_visits_and_has_nothing_for_a_new_patient(
    db: Database, ident: Any, cipher: Any
) -> None:
    c = consultation(db, ident)
    draft = open_visit(db, c)
    with clinic_session(db, c.tenant.id) as session:
        summary = visits.past_visits_summary(session, cipher, c.patient.id, before=None)
    assert draft.status == "draft"
    assert summary.visits == [] and summary.diagnoses == {} and summary.more == 0


def test_the_summary_takes_two_queries_however_many_visits_there_are(
    db: Database, ident: Any, cipher: Any
) -> None:
    c, _ = history(db, ident, cipher, 6)
    with clinic_session(db, c.tenant.id) as session:
        with counted(session) as few_sent:
            few = visits.past_visits_summary(session, cipher, c.patient.id, before=None, limit=2)
        with counted(session) as many_sent:
            many = visits.past_visits_summary(session, cipher, c.patient.id, before=None, limit=20)
    assert len(few.visits) == 2 and few.more == 4
    assert len(many.visits) == 6 and many.more == 0
    assert sum(len(d) for d in many.diagnoses.values()) == 9
    assert len(few_sent) == len(many_sent) == 2


def test_the_trend_keeps_the_last_readings_of_each_kind_oldest_first_in_one_query(
    db: Database, ident: Any, cipher: Any
) -> None:
    c = consultation(db, ident)
    visit = open_visit(db, c)
    ctx = c.ctx()
    for n in range(7):
        with transaction(db, ctx) as session:
            readings: dict[str, Any] = {"pulse": 60 + n}
            if n in (2, 5):
                readings |= {"weight": 60 + n, "height": 160}
            vitals.record(session, ctx, cipher, visit_id=visit.id, readings=readings)
    other = consultation(db, ident, c.tenant)
    other_visit = open_visit(db, other)
    with transaction(db, ctx) as session:
        vitals.record(session, ctx, cipher, visit_id=other_visit.id, readings={"spo2": 97})
    with clinic_session(db, c.tenant.id) as session, counted(session) as sent:
        trend = vitals.trend(session, cipher, c.patient.id, per_type=5)
    assert list(trend) == ["pulse", "weight", "height"]  # the kinds' own order
    assert [int(r.value) for r in trend["pulse"]] == [62, 63, 64, 65, 66]
    assert [int(r.value) for r in trend["weight"]] == [62, 65]
    assert [r.unit for r in trend["height"]] == ["cm", "cm"]
    assert vitals.bmi(trend) == Decimal("25.4")  # 65 kg, 160 cm: the latest of each
    assert len(sent) == 1


def _words_as_sql(session: Session, q: str, limit: int = 20) -> list[str]:
    """The word search as PostgreSQL answered it before (the oracle for the new one)."""
    words = " ".join(q.split())[:100].lower().split()
    description = func.lower(Icd10Code.description)

    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    first = words[0]
    stmt = (
        select(Icd10Code.code)
        .where(
            Icd10Code.kind.in_(icd.RECORDABLE),
            or_(description.op("%")(first), description.like("%" + escaped(first) + "%")),
            *[description.like("%" + escaped(w) + "%") for w in words],
        )
        .order_by(
            Icd10Code.is_leaf.desc(),
            case((description.like(escaped(first) + "%"), 0), else_=1),
            func.length(Icd10Code.description),
            Icd10Code.code,
        )
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def _code_as_sql(session: Session, prefix: str, limit: int = 20) -> list[str]:
    """The code-prefix search as PostgreSQL answered it before."""
    stmt = (
        select(Icd10Code.code)
        .where(Icd10Code.code.like(prefix.upper() + "%"), Icd10Code.kind.in_(icd.RECORDABLE))
        .order_by(Icd10Code.is_leaf.desc(), Icd10Code.code)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def test_the_code_search_answers_as_the_database_did(db: Database) -> None:
    prefixes = ["E11", "e11", "J0", "A0", "I10", "K29.7", "r50", "A09.9", "C7", "Z9", "S72.0"]
    with clinic_session(db, None) as session:
        for prefix in prefixes:
            expected = _code_as_sql(session, prefix)
            assert expected, prefix  # each one finds codes by prefix
            assert [c.code for c in icd.search(session, prefix)] == expected, prefix
            assert [c.code for c in icd.search(session, prefix, limit=3)] == expected[:3]
        # No code starts with it: the words are searched instead (and find nothing here).
        assert _code_as_sql(session, "B99.9") == []
        assert icd.search(session, "B99.9") == []


def test_the_word_search_answers_as_the_database_did(db: Database) -> None:
    asked = [
        "typhoid",
        "typhoid fever",
        "Diabetes   Mellitus",
        "fever",
        "hypertension",
        "pain",
        "ab",
        "low back pain",
        "urinary tract infection",
        "diabetis",  # a misspelling: every word must be found, as before
        "%_",
        "50%",
        "tuberculosis of lung",
        "A0 fever",  # not a code: words
    ]
    with clinic_session(db, None) as session:
        for q in asked:
            found = icd.search(session, q)
            assert [c.code for c in found] == _words_as_sql(session, q), q
        found = icd.search(session, "typhoid fever", limit=3)
        assert [(c.code, c.kind, c.is_leaf) for c in found] == [
            (c.code, c.kind, c.is_leaf)
            for c in (
                session.get_one(Icd10Code, code)
                for code in _words_as_sql(session, "typhoid fever", 3)
            )
        ]
        assert found[0].description == session.get_one(Icd10Code, found[0].code).description
