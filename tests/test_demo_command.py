"""``opdesk demo`` as an operator runs it: a short summary, and believable patients."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from opdesk.db import Database
from opdesk.demo import DEMO_PATIENTS, FIRST_NAMES, RELATION_GENDERS
from tests.factories.cli import opdesk


def test_demo_prints_a_short_summary_with_the_logins_and_genders_match_names(
    fresh_database: Database, tmp_path: Path
) -> None:
    # At the default log level: font subsetting while the demo PDFs are made used to
    # print thousands of lines and push the logins off the screen.
    done = opdesk("demo", database=fresh_database, data_dir=tmp_path, OPDESK_LOG_LEVEL="INFO")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) < 60, f"{len(lines)} lines, e.g. {lines[:3]}"
    assert "fontTools" not in done.stderr
    for role in ("admin", "frontdesk", "doctor", "pharmacy", "accounts"):
        assert f"{role}@sunrise-clinic.example" in done.stdout
    for phone, _ in DEMO_PATIENTS:
        assert phone in done.stdout

    genders = {name: gender for gender, names in FIRST_NAMES.items() for name in names}
    with fresh_database.owner_engine.connect() as conn:
        rows = conn.execute(
            text("select name_first, gender, guardian_relation from patients")
        ).all()
    assert len(rows) == 300
    wrong = [
        (first, gender, relation)
        for first, gender, relation in rows
        if genders[first] != gender
        or (relation in RELATION_GENDERS and RELATION_GENDERS[relation] != gender)
    ]
    assert wrong == []

    # Bills in every state, paid in every way, and books that agree.
    with fresh_database.owner_engine.connect() as conn:
        statuses = set(conn.execute(text("select status from invoices")).scalars())
        methods = set(conn.execute(text("select method from payments")).scalars())
        splits = conn.execute(text("select count(*) from payments where split is not null"))
    assert statuses == {"draft", "issued", "partial", "paid", "refunded"}
    assert methods == {"cash", "card", "upi", "link"}
    assert splits.scalar() == 1
    checked = opdesk("ledger", "check", database=fresh_database, data_dir=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
