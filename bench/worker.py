"""The worker: messages per second through the outbox to a local SMS sink with 1 and 2
worker processes; the time to schedule 10,000 reminders; a worker's CPU when idle.

Workers are real ``opdesk worker`` processes against the bench database. The sink is a
local HTTP server answering as MSG91's Flow API does, so each message takes the real path:
claim, prepare (render, encrypt), the HTTP call, record as sent (audited).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from opdesk.automation import service as automation
from opdesk.context import system_context
from opdesk.db import Database
from opdesk.notifications import service as outbox
from opdesk.notifications.models import OutboxMessage, OutboxStatus
from opdesk.security.crypto import FieldCipher, Keyring, StaticKeyring
from opdesk.security.keys import keyring_env, new_keyring
from opdesk.tenancy.schemas import TenantCreate
from opdesk.tenancy.service import create_tenant
from opdesk.uow import transaction

MESSAGES = 1000
REMINDERS = 10_000
IDLE_SECONDS = 30.0


class Sink:
    """MSG91's answer to every message, counted."""

    def __init__(self) -> None:
        self.count = 0
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the second waits
            # for the client's delayed ACK (40 ms) and the sink, not the worker, is timed.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    sink.count += 1
                body = json.dumps({"type": "success", "message": secrets.token_hex(8)}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


def _clinic(db: Database, cipher: FieldCipher, sink: Sink) -> uuid.UUID:
    ctx = system_context(None)
    data = TenantCreate(name="Bench Clinic", slug=f"bench-{uuid.uuid4().hex[:10]}")
    with transaction(db, ctx) as session:
        tenant_id = create_tenant(session, ctx, data=data).id
    ctx = system_context(tenant_id)
    with transaction(db, ctx) as session:
        outbox.save_provider(
            session,
            ctx,
            cipher,
            channel="sms",
            values={"authKey": "bench", "senderId": "OPDESK", "baseUrl": sink.url},
            templates=json.dumps({"otp": {"en": {"templateId": "bench-otp"}}}),
            enabled=True,
        )
    return tenant_id


class _Workers:
    def __init__(self, db: Database, keys: Keyring, data_dir: Path, count: int) -> None:
        env = {
            **os.environ,
            **keyring_env(keys),
            "OPDESK_DATABASE_URL": db.owner_url.render_as_string(hide_password=False),
            "OPDESK_DATA_DIR": str(data_dir),
            "OPDESK_LOG_LEVEL": "WARNING",
        }
        if db.app_url is not None:
            env["OPDESK_APP_DATABASE_URL"] = db.app_url.render_as_string(hide_password=False)
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "opdesk", "worker"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            while "waiting for work" not in (line := proc.stdout.readline()):
                if not line:
                    raise RuntimeError("a worker did not start")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)


def _sent(db: Database, tenant_id: uuid.UUID) -> int:
    with transaction(db, system_context(tenant_id)) as session:
        return session.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.SENT)
        ).scalar_one()


def throughput(db: Database, keys: Keyring, data_dir: Path, workers: int) -> float:
    cipher = FieldCipher(StaticKeyring(keys))
    sink = Sink()
    tenant_id = _clinic(db, cipher, sink)
    running = _Workers(db, keys, data_dir, workers)
    try:
        ctx = system_context(tenant_id)
        with transaction(db, ctx) as session:
            for i in range(MESSAGES):
                outbox.enqueue(
                    session,
                    ctx,
                    cipher,
                    channel="sms",
                    template="otp",
                    recipient=f"+9198{i:08d}",
                    payload={"code": f"{i:06d}", "clinic": "Bench", "minutes": 10},
                    dedupe_key=f"bench:{i}",
                )
        started = time.perf_counter()  # committed: the workers are woken now
        while _sent(db, tenant_id) < MESSAGES:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        running.stop()
        sink.stop()
    return MESSAGES / elapsed


def schedule_reminders(db: Database) -> tuple[float, float]:
    """Seconds to schedule 10,000 reminders in one transaction, and again (all no-ops)."""
    ctx = system_context(None)
    data = TenantCreate(name="Reminder Clinic", slug=f"bench-{uuid.uuid4().hex[:10]}")
    with transaction(db, ctx) as session:
        tenant_id = create_tenant(session, ctx, data=data).id
    appointments = [uuid.uuid4() for _ in range(REMINDERS)]
    start = datetime.now(UTC) + timedelta(days=2)
    timings = []
    for _ in range(2):
        ctx = system_context(tenant_id)
        began = time.perf_counter()
        with transaction(db, ctx) as session:
            for i, appointment in enumerate(appointments):
                automation.schedule(
                    session,
                    ctx,
                    rule="reminder-24h",
                    entity_type="appointments",
                    entity_id=appointment,
                    when=start + timedelta(minutes=i),
                    dedupe_key=f"reminder-24h:{appointment}",
                )
        timings.append(time.perf_counter() - began)
    return timings[0], timings[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def idle_cpu(db: Database, keys: Keyring, data_dir: Path) -> float:
    """CPU seconds a worker used over IDLE_SECONDS with nothing to do (reminders pending
    in two days are there: it must not spin on them)."""
    running = _Workers(db, keys, data_dir, 1)
    try:
        time.sleep(2)  # settled
        pid = running.procs[0].pid
        before = _cpu_seconds(pid)
        time.sleep(IDLE_SECONDS)
        return _cpu_seconds(pid) - before
    finally:
        running.stop()


def run(db: Database) -> None:
    keys = new_keyring()
    print(f"worker: {MESSAGES} SMS through the outbox to a local MSG91-shaped sink")
    with tempfile.TemporaryDirectory(prefix="opdesk-bench-worker-") as tmp:
        data_dir = Path(tmp)
        for workers in (1, 2):
            rate = throughput(db, keys, data_dir, workers)
            noun = "process" if workers == 1 else "processes"
            print(f"  {workers} worker {noun}: {rate:7.1f} messages/s")
        first, again = schedule_reminders(db)
        print(
            f"  schedule {REMINDERS} reminders (one transaction): {first:.2f} s "
            f"({first / REMINDERS * 1000:.2f} ms each); again, all no-ops: {again:.2f} s"
        )
        used = idle_cpu(db, keys, data_dir)
        print(
            f"  idle worker: {used:.2f} CPU s over {IDLE_SECONDS:.0f} s "
            f"({used / IDLE_SECONDS * 100:.2f}% of a core)"
        )
