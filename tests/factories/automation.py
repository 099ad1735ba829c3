"""Automation events and workers for tests: events scheduled through the service, and a
worker tuned to retry and lease in seconds rather than minutes.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import select as io_select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from opdesk.automation import service
from opdesk.automation.models import AutomationEvent
from opdesk.automation.rules import DEMO_RULE
from opdesk.automation.worker import Tuning, Worker
from opdesk.config import Settings
from opdesk.context import Clock, utc_now
from opdesk.db import Database, new_id, psycopg_url
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OutboxMessage
from opdesk.security.crypto import FieldCipher, Keyring, StaticKeyring
from opdesk.security.keys import keyring_env
from opdesk.uow import transaction
from tests.factories.clinics import ctx_for

FAST = Tuning(
    max_attempts=3,
    backoff_base=0.05,
    backoff_cap=0.2,
    lease=2.0,
    send_timeout=2.0,
    poll=0.5,
    batch=10,
    sweep_every=3600.0,
)


def make_worker(
    db: Database,
    cipher: FieldCipher,
    *,
    clock: Clock = utc_now,
    settings: Settings | None = None,
    **tuning: Any,
) -> Worker:
    fields = {**FAST.__dict__, **tuning}
    return Worker(db, cipher, tuning=Tuning(**fields), clock=clock, settings=settings)


def make_event(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    rule: str = DEMO_RULE,
    when: datetime | None = None,
    payload: dict[str, Any] | None = None,
    entity_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    clock: Clock = utc_now,
) -> AutomationEvent:
    ctx = ctx_for(tenant_id, clock=clock)
    with transaction(db, ctx) as session:
        return service.schedule(
            session,
            ctx,
            rule=rule,
            entity_type="stand-ins",
            entity_id=entity_id or new_id(),
            when=when or clock() - timedelta(seconds=1),
            dedupe_key=dedupe_key or f"test:{new_id()}",
            payload=payload,
        )


def event_of(db: Database, tenant_id: uuid.UUID, event_id: uuid.UUID) -> AutomationEvent:
    with transaction(db, ctx_for(tenant_id)) as session:
        return session.execute(
            select(AutomationEvent).where(AutomationEvent.id == event_id)
        ).scalar_one()


def make_message(
    db: Database,
    cipher: FieldCipher,
    tenant_id: uuid.UUID,
    *,
    phone: str = "+919812345678",
    dedupe_key: str | None = None,
) -> OutboxMessage:
    """A sign-in code by SMS (no consent needed, never deferred by quiet hours)."""
    ctx = ctx_for(tenant_id)
    with transaction(db, ctx) as session:
        return outbox.enqueue(
            session,
            ctx,
            cipher,
            channel="sms",
            template="otp",
            recipient=phone,
            payload={"code": "123456", "clinic": "Asha", "minutes": 10},
            dedupe_key=dedupe_key,
        )


def message_of(db: Database, tenant_id: uuid.UUID, message_id: uuid.UUID) -> OutboxMessage:
    with transaction(db, ctx_for(tenant_id)) as session:
        return session.execute(
            select(OutboxMessage).where(OutboxMessage.id == message_id)
        ).scalar_one()


# --------------------------------------------------------------------------- processes


class WorkerProcess:
    """``opdesk worker`` as a separate process, the way an operator runs it."""

    def __init__(self, db: Database, data_dir: Path, env: dict[str, str]) -> None:
        self.db, self.data_dir, self.env = db, data_dir, env
        self.proc: subprocess.Popen[str] | None = None
        self.log = data_dir / f"worker-{secrets.token_hex(3)}.log"

    def start(self) -> WorkerProcess:
        environ = {
            **os.environ,
            "OPDESK_DATABASE_URL": self.db.owner_url.render_as_string(hide_password=False),
            "OPDESK_DATA_DIR": str(self.data_dir),
            "OPDESK_LOG_LEVEL": "WARNING",
            **self.env,
        }
        environ.pop("OPDESK_APP_DATABASE_URL", None)
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "opdesk", "worker"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=environ,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the worker says it is waiting for work (started, migrated, listening)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = io_select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if "waiting for work" in line:
                    return
                if not line and self.proc.poll() is not None:
                    break
        raise AssertionError(f"the worker did not start: {self.log.read_text()[-3000:]}")

    def signal(self, number: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(number)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def worker_env(keys: Keyring, **settings: object) -> dict[str, str]:
    """The keys (the same as the test's cipher) and ``OPDESK_WORKER_*`` settings."""
    return {
        **keyring_env(keys),
        **{f"OPDESK_WORKER_{name.upper()}": str(value) for name, value in settings.items()},
    }


def wait_until(check: Callable[[], bool], *, timeout: float, every: float = 0.05) -> float:
    """Seconds until ``check()`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


def _forked_worker(owner: str, app: str | None, keys: Keyring, tuning: Tuning, ready: Any) -> None:
    worker = Worker(
        Database(psycopg_url(owner), psycopg_url(app) if app else None, pool_size=2),
        FieldCipher(StaticKeyring(keys)),
        tuning=tuning,
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.run(ready=ready.set)


class ForkedWorker:
    """A worker process forked from a fork server that has imported OPDesk already: a real
    process to SIGKILL that starts in milliseconds. The fork server has no threads, so a
    child never inherits a lock another thread held (as a fork of the test process could:
    the fake provider's threads write to stderr when a killed worker's connection resets).
    """

    def __init__(self, db: Database, keys: Keyring, tuning: Tuning) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["opdesk.app", "tests.factories.automation"])
        self.ready = context.Event()
        app = db.app_url.render_as_string(hide_password=False) if db.app_url else None
        self.proc = context.Process(
            target=_forked_worker,
            args=(
                db.owner_url.render_as_string(hide_password=False),
                app,
                keys,
                tuning,
                self.ready,
            ),
            daemon=True,
        )

    def start(self, timeout: float = 120.0) -> ForkedWorker:
        self.proc.start()
        assert self.ready.wait(timeout), "the forked worker did not start"
        return self

    def kill(self) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(timeout=30)
