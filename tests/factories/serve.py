"""A real ``opdesk serve`` process on a free port, as an operator starts it; a database
server of a test's own."""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from opdesk.db import Database, EmbeddedServer, ensure_app_login
from opdesk.demo import DEMO_PATIENTS, DEMO_SLUG
from opdesk.migrate import upgrade
from opdesk.security.keys import keyring_env, new_keyring
from tests.factories import csrf_of
from tests.factories.automation import wait_until

PHONE = DEMO_PATIENTS[0][0]
KEY_VARIABLES = frozenset(keyring_env(new_keyring()))


@contextmanager
def own_database_server(folder: Path, name: str) -> Iterator[tuple[EmbeddedServer, Database]]:
    """A PostgreSQL server of the caller's own (to stop and start at will, without
    touching the other tests' server), with database ``name`` migrated on it.
    """
    # A server a test restarted itself (pg_ctl stop, then start) is not one the package
    # knows how to stop: its "delete" then removed the folder under a running server (a
    # teardown failed with "Directory not empty: pg_wal") and left the server running. So
    # pg_ctl stops whichever server runs there, then the package, then the folder goes.
    server = EmbeddedServer(folder / "pg", cleanup_mode="stop")
    try:
        ensure_app_login(server.superuser_url)
        owner = server.database_url(name)
        db = Database(owner, server.app_url(owner), pool_size=4, pool_wait_seconds=2)
        try:
            upgrade(db.owner_engine)
            yield server, db
        finally:
            db.dispose()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.halt()  # refused when nothing runs there: the package stopped it
        server.stop()
        shutil.rmtree(folder / "pg", ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(
    db: Database,
    data_dir: Path,
    *flags: str,
    port: int | None = None,
    fresh_keys: bool = True,
    env: Mapping[str, str] | None = None,
    **more_env: str,
) -> Iterator[str]:
    """``opdesk serve`` until the block ends (SIGTERM, as an operator stops it).

    Development mode with fresh keys in the environment unless ``env`` says otherwise
    (``fresh_keys=False``: the data folder's key file); yields the server's own address
    once ``/healthz`` answers.
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in KEY_VARIABLES and name != "OPDESK_APP_DATABASE_URL"
    }
    environ = {
        **inherited,
        **(keyring_env(new_keyring()) if fresh_keys else {}),
        "OPDESK_ENV": "dev",
        "OPDESK_DATABASE_URL": db.owner_url.render_as_string(hide_password=False),
        "OPDESK_DATA_DIR": str(data_dir),
        "OPDESK_BASE_URL": base,
        "OPDESK_LOG_LEVEL": "WARNING",
        "OPDESK_WORKER_POLL_SECONDS": "0.5",
        **(env or {}),
        **more_env,
    }
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


# --------------------------------------------------------------------------- a patient


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


def patient_signs_in(base: str, patient: httpx.Client) -> httpx.Response:
    """The demo patient asks for a code, the server's worker "sends" it to the dev inbox,
    and the patient types it in; the answer after the redirects."""
    ask_for_a_code(patient)
    codes: list[str] = []

    def delivered() -> bool:
        code = sent_code(base)
        if code:
            codes.append(code)
        return bool(code)

    wait_until(delivered, timeout=60, every=0.25)
    entry = patient.get("/patient/sign-in/code")
    return patient.post(
        "/patient/sign-in/code",
        data={**form_token(entry.text), "code": codes[-1]},
        follow_redirects=True,
    )
