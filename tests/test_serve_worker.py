"""``opdesk serve`` runs a worker in its own process (unless ``--no-worker``), so that on a
fresh ``make run`` a patient signs in with the code the worker "sent" to the dev inbox.

The server is a real ``python -m opdesk serve`` on a free port against the test's own
database, in development mode (the demo clinic is made as ``make run`` makes it); the
patient is an HTTP client with a cookie jar, going through the sign-in pages.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy import text

from opdesk.db import Database
from opdesk.demo import DEMO_PATIENTS
from tests.factories.serve import ask_for_a_code, patient_signs_in, sent_code, serving


def outbox_rows(db: Database) -> list[tuple[str, int, str | None]]:
    with db.owner_engine.connect() as conn:
        return [
            (r.status, r.attempts, r.claimed_by)
            for r in conn.execute(
                text(
                    "select status, attempts, claimed_by from notifications_outbox "
                    "where template = 'otp'"
                )
            )
        ]


def test_serve_sends_a_sign_in_code_that_signs_the_patient_in(
    fresh_database: Database, tmp_path: Path
) -> None:
    """The issue's "done when": a fresh demo clinic, a patient asks for a code, the worker
    inside ``opdesk serve`` sends it to the dev inbox, and the patient signs in with it."""
    with serving(fresh_database, tmp_path) as base, httpx.Client(base_url=base) as patient:
        signed_in = patient_signs_in(base, patient)
        assert outbox_rows(fresh_database) == [("sent", 1, None)]
        assert signed_in.status_code == 200, signed_in.text
        assert str(signed_in.url).endswith("/me")
        home = patient.get("/me")
        assert home.status_code == 200
        assert DEMO_PATIENTS[0][1].split()[0] in home.text  # Suresh, at home


def test_serve_with_no_worker_sends_nothing(fresh_database: Database, tmp_path: Path) -> None:
    with (
        serving(fresh_database, tmp_path, "--no-worker") as base,
        httpx.Client(base_url=base) as patient,
    ):
        ask_for_a_code(patient)
        # A worker polls every 0.5 s here and is woken at once by the commit: 5 s is ten
        # of its turns.
        time.sleep(5)
        assert outbox_rows(fresh_database) == [("pending", 0, None)]
        assert sent_code(base) is None
