"""``opdesk serve`` runs a worker in its own process (unless ``--no-worker``), so that on a
fresh ``make run`` a patient signs in with the code the worker "sent" to the dev inbox.

The server is a real ``python -m opdesk serve`` on a free port against the test's own
database, in development mode (the demo clinic is made as ``make run`` makes it); the
patient is an HTTP client with a cookie jar, going through the sign-in pages.
"""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text

from opdesk.db import Database
from opdesk.demo import DEMO_PATIENTS, DEMO_SLUG
from opdesk.security.keys import keyring_env, new_keyring
from tests.factories import csrf_of
from tests.factories.automation import wait_until

PHONE = DEMO_PATIENTS[0][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(db: Database, data_dir: Path, *flags: str) -> Iterator[str]:
    """``opdesk serve`` until the block ends (SIGTERM, as an operator stops it)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        **os.environ,
        **keyring_env(new_keyring()),
        "OPDESK_ENV": "dev",
        "OPDESK_DATABASE_URL": db.owner_url.render_as_string(hide_password=False),
        "OPDESK_DATA_DIR": str(data_dir),
        "OPDESK_BASE_URL": base,
        "OPDESK_LOG_LEVEL": "WARNING",
        "OPDESK_WORKER_POLL_SECONDS": "0.5",
    }
    environ.pop("OPDESK_APP_DATABASE_URL", None)
    log = data_dir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opdesk", "serve", "--port", str(port), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=240, every=0.5)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def form_token(page: str) -> dict[str, str]:
    """The page's CSRF field, if it has one (a signed-out visitor's forms have none)."""
    return {"csrf_token": csrf_of(page)} if 'name="csrf_token"' in page else {}


def ask_for_a_code(patient: httpx.Client) -> None:
    form = patient.get("/patient/sign-in")
    assert form.status_code == 200
    asked = patient.post(
        "/patient/sign-in",
        data={**form_token(form.text), "clinic": DEMO_SLUG, "phone": PHONE},
    )
    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == "/patient/sign-in/code"


def sent_code(base: str) -> str | None:
    """The code of the newest sign-in SMS to the demo patient that the dev inbox shows as
    sent (a waiting message shows too, with its status: it does not count)."""
    inbox = httpx.get(f"{base}/dev/inbox", timeout=10)
    assert inbox.status_code == 200
    for article in re.findall(r"<article>(.*?)</article>", inbox.text, re.S):
        header = html.unescape(article)
        if f"to {PHONE}" in header and "otp" in header:
            if "· sent" not in header:
                return None
            found = re.search(r'class="otp">(\d{6})<', article)
            return found.group(1) if found else None
    return None


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
        ask_for_a_code(patient)
        codes: list[str] = []

        def delivered() -> bool:
            code = sent_code(base)
            if code:
                codes.append(code)
            return bool(code)

        wait_until(delivered, timeout=60, every=0.25)
        assert outbox_rows(fresh_database) == [("sent", 1, None)]
        entry = patient.get("/patient/sign-in/code")
        signed_in = patient.post(
            "/patient/sign-in/code",
            data={**form_token(entry.text), "code": codes[-1]},
            follow_redirects=True,
        )
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
