"""A small threaded HTTP server for standing in for a provider's API in tests.

Real sockets, one thread per request. A test (or a subprocess) starts it, points an
adapter at ``url``, and reads back what arrived. Answers can be scripted: the next
``n`` requests get a given status (429 with Retry-After, 500, 400…), or every request
waits ``delay`` seconds first (a slow provider, a timeout, a request in flight).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    reference: str | None
    at: float = field(default_factory=time.monotonic)  # when the request arrived


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class FakeProvider:
    """Subclasses say how to answer (``accept``) and how to name a message (``reference_of``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.delay = 0.0
        self._script: list[Scripted] = []
        self._in_flight: Counter[str] = Counter()
        # A reference seen by two requests at the same moment (two senders of one row).
        self.overlaps: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the second waits
            # for the client's delayed ACK (40 ms): every fake call would cost that much.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if self.path.startswith("/_received"):
                    self._answer(200, fake.summary(), {})
                else:
                    self._answer(404, {"error": "not found"}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer, extra = fake.handle(self.path, headers, raw, body)
                self._answer(status, answer, extra)

            def _answer(self, status: int, body: Any, headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start(self) -> FakeProvider:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def answer_next(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        *,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        """The next ``times`` requests get ``status`` (and a Retry-After header if given)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self.lock:
            self._script.extend(Scripted(status, body or {}, headers) for _ in range(times))

    # ------------------------------------------------------------------ reading back

    def references(self) -> Counter[str]:
        """How many requests carried each reference (dedupe key)."""
        with self.lock:
            return Counter(r.reference for r in self.received if r.reference is not None)

    @property
    def in_flight(self) -> int:
        """Requests taken and not yet answered (a slow provider's calls while it waits)."""
        with self.lock:
            return sum(self._in_flight.values())

    def summary(self) -> dict[str, Any]:
        with self.lock:
            refs = Counter(r.reference for r in self.received if r.reference is not None)
            return {
                "total": len(self.received),
                "byReference": dict(refs),
                "overlaps": list(self.overlaps),
            }

    # ------------------------------------------------------------------ handling

    def handle(
        self, path: str, headers: dict[str, str], raw: bytes, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        refused = self.refuse(path, headers, body)
        if refused is not None:
            return refused
        reference = self.reference_of(path, headers, body)
        arrived = time.monotonic()  # before the delay: a slow answer is still an arrival
        with self.lock:
            scripted = self._script.pop(0) if self._script else None
            if reference is not None:
                if self._in_flight[reference]:
                    self.overlaps.append(reference)
                self._in_flight[reference] += 1
        try:
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                if scripted is None:
                    self.received.append(
                        Received("POST", path, headers, raw, body, reference, arrived)
                    )
            if scripted is not None:
                return scripted.status, scripted.body, scripted.headers
            return 200, self.accept(path, headers, body), {}
        finally:
            if reference is not None:
                with self.lock:
                    self._in_flight[reference] -= 1

    def refuse(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]] | None:
        return None

    def reference_of(self, path: str, headers: dict[str, str], body: Any) -> str | None:
        return None

    def accept(self, path: str, headers: dict[str, str], body: Any) -> Any:
        return {}


def serve_from_command_line(make: Callable[[int], FakeProvider]) -> None:
    """``python -m tests.fakes.<name> [--port N]``: print the URL, serve until killed."""
    import argparse
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    fake = make(args.port)
    fake.delay = args.delay
    print(fake.url, flush=True)
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        fake.server.serve_forever()
