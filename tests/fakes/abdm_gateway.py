"""A stand-in for the ABDM gateway (HIE-CM v3), for the gateway client's tests.

It checks what the real gateway checks of every call: a UUID ``REQUEST-ID`` never seen
before, a ``TIMESTAMP`` in UTC with milliseconds and a Z, an ``X-CM-ID``, and (for all but
the sessions call) a bearer token it issued that has neither expired nor been revoked.

* ``POST /api/hiecm/gateway/v3/sessions`` (and ``/gateway/v0.5/sessions``): the right
  ``clientId``/``clientSecret`` get ``{"accessToken", "expiresIn", "refreshExpiresIn",
  "refreshToken", "tokenType": "bearer"}``; tokens die after ``token_ttl`` seconds (real
  time on the fake's side). Wrong credentials get 401; NHA's specification records no error
  code for the sessions module, so the body here is a stand-in in the gateway's shape.
* Any other path records the call (``received``) and answers 202 with no body, the way
  the gateway accepts an asynchronous request; ``answer_next`` scripts other answers.
* ``error_answer(shape, ...)`` builds a refusal in each shape ABDM services are known to
  use, for ``answer_next``.

It does not speak the real header checks' error codes for certain beyond the names in the
HIE-CM v3 error list (ABDM-1016 Invalid TimeStamp, ABDM-1030 Invalid request ID, ABDM-1032
Invalid header, ABDM-1064 request id already exists); their statuses are guesses (400).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SESSIONS_PATHS = ("/api/hiecm/gateway/v3/sessions", "/gateway/v0.5/sessions")
TIMESTAMP_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass
class Arrival:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(body).encode(), "application/json", headers or {})


def error_answer(
    shape: str,
    status: int,
    code: str | int,
    message: str,
    *,
    retry_after: str | None = None,
) -> Answer:
    """A refusal in one of the shapes ABDM services send (see ``ERROR_SHAPES``)."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    if shape == "text":
        return Answer(status, f"{code}: {message}".encode(), "text/plain", headers)
    if shape == "empty":
        return Answer(status, b"", "application/json", headers)
    return json_answer(status, ERROR_SHAPES[shape](code, message), headers)


# name -> body; where each is seen: the gateway's {"error": {...}} (HIE-CM v3 and v0.5,
# where the code can be a number); ABHA v3's bare {"code", "message"}; a list of errors;
# the legacy ABHA shape with the real code under "details"; a code with a trailing
# separator ("ABDM-1001: ", NHA's integrator notes); Spring's default error page.
ERROR_SHAPES: dict[str, Callable[[Any, str], Any]] = {
    "nested": lambda code, message: {"error": {"code": code, "message": message}},
    "flat": lambda code, message: {"code": code, "message": message},
    "errors-list": lambda code, message: {"errors": [{"code": code, "message": message}]},
    "details": lambda code, message: {
        "code": "HIS-400",
        "message": "Request failed",
        "details": [{"code": code, "message": message, "attribute": None}],
    },
    "separator": lambda code, message: {"error": {"code": f"{code}: ", "message": message}},
    "numeric": lambda code, message: {"error": {"code": int(code), "message": message}},
}


class FakeAbdmGateway:
    def __init__(
        self,
        *,
        client_id: str = "SBX_0000",
        client_secret: str = "sandbox-secret",  # noqa: S107 (a fake's own credential)
        token_ttl: float = 1200.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.delay = 0.0  # seconds every call waits before it is answered (a hung gateway)
        self.received: list[Arrival] = []
        self.sessions: list[Arrival] = []
        self.refused: list[tuple[Arrival, Answer]] = []
        self.lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> when it dies (monotonic)
        self._request_ids: set[str] = set()
        self._script: list[Answer] = []
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start(self) -> FakeAbdmGateway:
        # shutdown() waits for the loop's next poll: the default half second, per test.
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeAbdmGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def answer_next(self, answer: Answer, *, times: int = 1) -> None:
        """The next ``times`` authorised calls (not sessions calls) get ``answer``."""
        with self.lock:
            self._script.extend([answer] * times)

    def revoke_tokens(self) -> None:
        """Every token issued so far is now refused with 401 (a session ended early)."""
        with self.lock:
            self._tokens.clear()

    # ------------------------------------------------------------------ handling

    def handle(self, arrival: Arrival) -> Answer:
        refused = self._check_headers(arrival)
        if refused is None and arrival.path in SESSIONS_PATHS:
            return self._session(arrival)
        if refused is None:
            refused = self._check_token(arrival)
        if refused is not None:
            with self.lock:
                self.refused.append((arrival, refused))
            return refused
        with self.lock:
            self._request_ids.add(arrival.headers["request-id"])
            self.received.append(arrival)
            scripted = self._script.pop(0) if self._script else None
        return scripted or Answer(202)

    def _check_headers(self, arrival: Arrival) -> Answer | None:
        request_id = arrival.headers.get("request-id", "")
        try:
            uuid.UUID(request_id)
        except ValueError:
            return _refusal(400, "ABDM-1030", "Invalid request ID")
        with self.lock:
            if request_id in self._request_ids:
                return _refusal(400, "ABDM-1064", "request with this request id already exists")
        if not TIMESTAMP_FORM.match(arrival.headers.get("timestamp", "")):
            return _refusal(400, "ABDM-1016", "Invalid TimeStamp")
        if not arrival.headers.get("x-cm-id"):
            return _refusal(400, "ABDM-1032", "Invalid header")
        return None

    def _check_token(self, arrival: Arrival) -> Answer | None:
        scheme, _, token = arrival.headers.get("authorization", "").partition(" ")
        with self.lock:
            dies = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if dies is None or time.monotonic() >= dies:
            return _refusal(401, "ABDM-1066", "Invalid JWT token")
        return None

    def _session(self, arrival: Arrival) -> Answer:
        body = arrival.body if isinstance(arrival.body, dict) else {}
        with self.lock:
            self.sessions.append(arrival)
            self._request_ids.add(arrival.headers["request-id"])
        if (body.get("clientId"), body.get("clientSecret")) != (
            self.client_id,
            self.client_secret,
        ):
            return _refusal(401, "ABDM-1023", "Invalid client credentials")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        return json_answer(
            200,
            {
                "accessToken": token,
                "expiresIn": self.token_ttl,
                "refreshExpiresIn": self.token_ttl * 2,
                "refreshToken": secrets.token_urlsafe(24),
                "tokenType": "bearer",
            },
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, each call costs 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def do_PATCH(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                arrival = Arrival(self.command, self.path, headers, body)
                if fake.delay:
                    time.sleep(fake.delay)
                self._answer(fake.handle(arrival))

            def _answer(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(answer.body)

        return Handler


def _refusal(status: int, code: str, message: str) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message}})
