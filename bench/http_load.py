"""OPDesk over HTTP under load: the server, the clients' connection, and where the CPU went.

Shared by the HTTP benchmarks (booking, patient search): OPDesk runs as a separate
uvicorn process, client processes drive it over keep-alive connections, and the CPU the
server, its PostgreSQL and the clients used is read from ``/proc`` around the run.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import text

from opdesk.db import Database

# Two per core: requests spend part of their time waiting on PostgreSQL, and two
# processes alone left the cores partly idle (measured 127/s with 3, 143/s with 4).
# As `opdesk serve` runs by default (bench/booking.py measured 2 against 4 on two cores).
WORKERS = 2
# The server the benches run OPDesk on: uvicorn (as `opdesk serve`), or granian to compare.
SERVER = os.environ.get("BENCH_SERVER", "uvicorn")
# Unmeasured load before a measured run: a worker's first requests import and build
# what it uses lazily and open its database connections (about half a CPU second each).
WARM_UP = 2.0

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class Answers:
    """What one client process got: seconds per 200 answer, and what went wrong."""

    answered: list[float]
    errors: list[str]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * q) - 1)] * 1000


# ------------------------------------------------------------------ the OPDesk server


class Server:
    """``uvicorn --factory opdesk.app:create_app`` in its own process, on this database."""

    def __init__(self, db: Database, data_dir: Path, workers: int = WORKERS) -> None:
        self.port = _free_port()
        self.workers = workers
        app_url = db.app_url or db.owner_url
        self.env = {
            **os.environ,
            "OPDESK_DATABASE_URL": db.owner_url.render_as_string(hide_password=False),
            "OPDESK_APP_DATABASE_URL": app_url.render_as_string(hide_password=False),
            "OPDESK_DATA_DIR": str(data_dir),
            "OPDESK_LOG_LEVEL": "WARNING",
            "OPDESK_DB_POOL_SIZE": "12",
        }
        self.args = [
            sys.executable, "-m", "uvicorn", "--factory", "opdesk.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
            "--no-access-log", "--log-level", "warning",
            # On busy cores a worker can miss uvicorn's 5 s health check and be restarted
            # mid-run, dropping its connections and spending a start-up's CPU.
            "--timeout-worker-healthcheck", "120",
        ]  # fmt: skip
        if SERVER == "granian":  # pip install granian
            self.args = [
                sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
                "opdesk.app:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(workers), "--no-ws", "--log-level", "warning",
            ]  # fmt: skip

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.args, env=self.env)
        base = f"http://127.0.0.1:{self.port}"
        # Generous: four workers importing the app on two busy cores took 30 s and more.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    self._settle(time.monotonic() + 60)
                    return base
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()  # else it outlives the database and keeps restarting its workers
        raise RuntimeError("the OPDesk server did not start")

    def _settle(self, deadline: float) -> None:
        """Wait for the other workers: one answering is not all of them having started,
        and CPU spent starting up is not CPU spent on requests.
        """
        spent = -1.0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            tree = _process_tree(self.process.pid)
            now = sum(_cpu_seconds(tree).values())
            if len(tree) > self.workers and now - spent < 0.05:
                return
            spent = now

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ clients


class Http:
    """A bare keep-alive HTTP/1.1 connection: the load generator shares the server's two
    cores, so it should spend as little CPU per request as it can.
    """

    def __init__(self, base: str, token: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def get(self, path: str) -> tuple[int, Any]:
        return self._call("GET", path, None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return self._call("POST", path, json.dumps(body or {}))

    def page(self, path: str) -> tuple[int, int]:
        """Status and size of an HTML page (0, 0 when the connection failed)."""
        try:
            self.conn.request("GET", path, None, self.headers)
            response = self.conn.getresponse()
            return response.status, len(response.read())
        except (http.client.HTTPException, OSError):
            self.conn.close()
            return 0, 0

    def _call(self, method: str, path: str, body: str | None) -> tuple[int, Any]:
        """Status and JSON body; status 0 when the connection failed (the next reconnects)."""
        try:
            self.conn.request(method, path, body, self.headers)
            response = self.conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        except (http.client.HTTPException, OSError):
            self.conn.close()
            return 0, None


def fan_out(client: Callable[[J], R], jobs: Sequence[J]) -> tuple[list[R], float]:
    """Each job in its own client process; their results, and the wall time of the run."""
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(client, jobs))
    return results, time.perf_counter() - started


# ------------------------------------------------------------------ CPU accounting


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def _grown(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings; a process started in between counts from zero."""
    return sum(spent - before.get(pid, 0.0) for pid, spent in after.items())


def _process_tree(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(child) for child in found.split())]


def _postmaster(db: Database) -> int | None:
    """The pid of this database's PostgreSQL server when it runs on this machine.

    Only that server's processes are counted: other PostgreSQL servers on the machine
    (a test run's, another bench's) are none of this run's cost.
    """
    with db.owner_engine.connect() as conn:
        backend = conn.execute(text("select pg_backend_pid()")).scalar_one()
    try:
        if Path(f"/proc/{backend}/comm").read_text().strip() != "postgres":
            return None
        status = Path(f"/proc/{backend}/status").read_text()
    except OSError:
        return None  # the server is on another machine
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))


# PostgreSQL titles each background process by its job; a session's title is instead
# "user database host state".
_BACKGROUND = (
    "autovacuum",
    "walwriter",
    "checkpointer",
    "background writer",
    "io worker",
    "logical replication",
)


def _postgres_kind(pid: int) -> str:
    """Which kind of PostgreSQL process ``pid`` is: "sessions" or a background job."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return "gone"
    if not title.startswith("postgres: "):
        return "postmaster"
    name = title.removeprefix("postgres: ")
    return next((kind for kind in _BACKGROUND if name.startswith(kind)), "sessions")


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent by each party during a run, PostgreSQL's by kind of process."""

    server: float
    postgres: float
    clients: float
    postgres_kinds: dict[str, float]

    def per(self, count: int, what: str) -> str:
        """``CPU per <what>: ...`` for ``count`` done, and the rate these cores allow."""
        each = [1000 * part / max(count, 1) for part in (self.server, self.postgres, self.clients)]
        ceiling = 1000 * (os.cpu_count() or 1) / max(sum(each), 1e-9)
        kinds = ", ".join(
            f"{kind} {1000 * spent / max(count, 1):.2f}"
            for kind, spent in sorted(self.postgres_kinds.items(), key=lambda kv: -kv[1])
            if spent > 0
        )
        return (
            f"CPU per {what}: OPDesk {each[0]:.1f} ms, PostgreSQL {each[1]:.1f} ms ({kinds}), "
            f"clients {each[2]:.1f} ms -> at most ~{ceiling:.0f} {what}s/s on these cores"
        )


def measured(server_pid: int, db: Database, work: Callable[[], R]) -> tuple[R, CpuUse]:
    """Run ``work()`` and account the CPU the server, PostgreSQL and the clients used."""
    import resource

    postmaster = _postmaster(db)

    def postgres() -> dict[int, float]:
        return {} if postmaster is None else _cpu_seconds(_process_tree(postmaster))

    server, database = _cpu_seconds(_process_tree(server_pid)), postgres()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = work()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    clients = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    database_after = postgres()
    kinds: dict[str, float] = {}
    for pid, spent in database_after.items():
        kind = _postgres_kind(pid)
        kinds[kind] = kinds.get(kind, 0.0) + spent - database.get(pid, 0.0)
    used = CpuUse(
        _grown(server, _cpu_seconds(_process_tree(server_pid))),
        _grown(database, database_after),
        clients,
        kinds,
    )
    return result, used
