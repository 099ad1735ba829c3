"""A synchronous client for the ABDM gateway (HIE-CM), as an HIP calls it.

What the gateway asks of every call (ABDM HIE-CM v3 gateway docs; NHA's integrator notes in
nha-in/docs, ``plugins/abdm-integrators-assistant/skills/abdm-gateway/``):

* ``POST /api/hiecm/gateway/v3/sessions`` with ``clientId``, ``clientSecret`` and
  ``grantType: client_credentials`` answers ``accessToken`` and ``expiresIn`` (seconds);
  the older ``/gateway/v0.5/sessions`` takes the same body and answers the same fields.
* Every call, the sessions call included, carries ``REQUEST-ID`` (a UUID), ``TIMESTAMP``
  (UTC, ISO-8601 with milliseconds and a trailing Z) and ``X-CM-ID`` (``sbx`` in the
  sandbox); every call but the sessions call carries ``Authorization: Bearer <token>``.
* Most calls are asynchronous: 202 means "accepted, the answer comes to your callback".

Errors come back in several shapes, and the code is what callers act on, so one parser reads
them all into ``GatewayError(status, code, message)``. Retrying is the caller's (the job
worker's) business: the error only says whether a retry can help and, if the gateway said
so, when.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import httpx

from opdesk.notifications.providers.http import retry_after_seconds

V3_SESSIONS_PATH = "/api/hiecm/gateway/v3/sessions"
V05_SESSIONS_PATH = "/gateway/v0.5/sessions"
SANDBOX_CM_ID = "sbx"

ACCEPTED = frozenset({200, 202, 204})

# Codes that mean "too many requests": ABDM-1022 (HIE-CM v3 error list), 2429 (the v0.5
# gateway's replay/too-many-attempts code, ProjectEKA wiki "API Error Codes").
RATE_LIMIT_CODES = frozenset({"ABDM-1022", "2429"})
# Codes that name an outage on ABDM's side, which some services send with a 4xx status:
# database/redis/dependent service unavailable, timeouts (HIE-CM v3 error list), service
# down and external resource unavailable (v0.5 gateway, ProjectEKA wiki).
UNAVAILABLE_CODES = frozenset(
    {
        "ABDM-1000",
        "ABDM-1007",
        "ABDM-1011",
        "ABDM-1019",
        "ABDM-1024",
        "ABDM-1029",
        "ABDM-1048",
        "2503",
        "2504",
    }
)

_CODE_KEYS = ("code", "errorCode", "error_code")
_MESSAGE_KEYS = (
    "message",
    "errorMessage",
    "error_message",
    "description",
    "error_description",
    "detail",
)
_LIST_KEYS = ("errors", "details")
# A message that carries its own code ("ABDM-1001: No data found") when no field does.
_CODE_IN_MESSAGE = re.compile(r"^\s*(ABDM-\d+)\s*:")
_MAX_MESSAGE = 500


class GatewayError(Exception):
    """The gateway refused a call, or never answered it (``status`` is None then)."""

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"ABDM gateway {status or 'no answer'} {code or '-'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        if self.status is None or self.status == 429 or self.status >= 500:
            return True
        return self.code in RATE_LIMIT_CODES or self.code in UNAVAILABLE_CODES


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    body: Any
    request_id: str  # the REQUEST-ID the gateway accepted: callbacks refer to it


@dataclass
class _Token:
    value: str
    refresh_at: float  # on the client's clock


def timestamp(now: datetime | None = None) -> str:
    """``2022-10-06T15:10:00.587Z``: the gateway refuses other forms (ABDM-1016)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_error(status: int, raw: bytes) -> tuple[str | None, str]:
    """(code, message) from an error body of any shape ABDM is known to send."""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return None, _status_phrase(status)
    try:
        data = json.loads(text)
    except ValueError:
        return _code_in(text), text[:_MAX_MESSAGE]
    code, message = _find_error(data)
    message = message or text[:_MAX_MESSAGE]
    return code or _code_in(message), message


def _find_error(data: Any) -> tuple[str | None, str | None]:
    if isinstance(data, list):
        return _find_error(data[0]) if data else (None, None)
    if not isinstance(data, dict):
        return None, str(data)
    nested = data.get("error")
    if isinstance(nested, dict):  # {"error": {"code", "message"}}: the gateway's own shape
        return _find_error(nested)
    code = _first(data, _CODE_KEYS)
    message = _first(data, _MESSAGE_KEYS)
    if isinstance(nested, str):  # Spring's default {"status", "error": "Bad Request", ...}
        message = message or nested
    for key in _LIST_KEYS:
        entries = data.get(key)
        if isinstance(entries, list) and entries:
            # The legacy ABHA shape puts a generic code outside and the real one inside
            # "details"; {"errors": [...]} has only the inside one.
            inner_code, inner_message = _find_error(entries[0])
            return inner_code or code, inner_message or message
    return code, message


def _first(data: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = data.get(key)
        if value is not None and not isinstance(value, dict | list) and str(value).strip():
            return _clean(value) if key in _CODE_KEYS else str(value)[:_MAX_MESSAGE]
    return None


def _clean(code: object) -> str:
    # Codes come bare, as numbers (2500), or with a trailing separator ("ABDM-1001: ").
    return str(code).strip().rstrip(":").strip()


def _code_in(message: str) -> str | None:
    found = _CODE_IN_MESSAGE.match(message)
    return found.group(1) if found else None


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


@dataclass
class _Held:
    """The session token of one gateway client and the clients made from it by ``on_host``."""

    token: _Token | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class GatewayClient:
    """One HIP's session with the gateway; safe to share between threads.

    The token is fetched on first use, reused until ``refresh_margin`` seconds before it
    expires, and fetched again (once) when a call is answered 401 anyway: the gateway can
    end a session early, and a clock can drift.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        cm_id: str = SANDBOX_CM_ID,
        sessions_path: str = V3_SESSIONS_PATH,
        timeout: float = 10.0,
        refresh_margin: float = 60.0,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.cm_id = cm_id
        self.sessions_path = sessions_path
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self._http = http or httpx.Client()
        self._owns_http = http is None
        self._clock = clock
        # The session is the gateway's: a client for another host (on_host) shares it.
        self._session_url = self.base_url
        self._held = _Held()

    def on_host(self, base_url: str, *, http: httpx.Client | None = None) -> GatewayClient:
        """A client for another ABDM host (the ABHA service) that signs in with this one's
        gateway session: the same token, refreshed once for both."""
        other = copy.copy(self)
        other.base_url = base_url.rstrip("/")
        other._http = http or self._http
        other._owns_http = False
        return other

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def post(
        self,
        path: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> GatewayResponse:
        return self.request("POST", path, body=body, headers=headers, request_id=request_id)

    def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> GatewayResponse:
        return self.request("GET", path, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> GatewayResponse:
        """Send one call; raise ``GatewayError`` unless the gateway accepted it.

        ``request_id`` pins the REQUEST-ID (a caller that stores it before sending, to match
        the callback); otherwise each attempt gets a fresh one.
        """
        token = self._current_token()
        response, sent_id = self._send(method, path, body, headers, token, request_id)
        if response.status_code == 401:
            token = self._replace_token(token)
            response, sent_id = self._send(method, path, body, headers, token, request_id)
        return self._judge(response, sent_id)

    # ------------------------------------------------------------------ token

    def _current_token(self) -> str:
        held = self._held
        with held.lock:
            if held.token is None or self._clock() >= held.token.refresh_at:
                held.token = self._fetch_token()
            return held.token.value

    def _replace_token(self, rejected: str) -> str:
        held = self._held
        with held.lock:
            # Another thread may have replaced it while this one waited for its 401.
            if held.token is None or held.token.value == rejected:
                held.token = self._fetch_token()
            return held.token.value

    def _fetch_token(self) -> _Token:
        body = {
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "grantType": "client_credentials",
        }
        response, sent_id = self._send(
            "POST", self.sessions_path, body, None, None, None, base=self._session_url
        )
        answer = self._judge(response, sent_id).body
        value = answer.get("accessToken") if isinstance(answer, dict) else None
        if not isinstance(value, str) or not value:
            raise GatewayError(response.status_code, None, "session answer has no accessToken")
        lifetime = _seconds(answer.get("expiresIn"))
        # A token shorter-lived than the margin would otherwise be fetched on every call.
        margin = min(self.refresh_margin, lifetime / 2)
        return _Token(value, self._clock() + lifetime - margin)

    # ------------------------------------------------------------------ transport

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        extra: Mapping[str, str] | None,
        token: str | None,
        request_id: str | None,
        *,
        base: str | None = None,
    ) -> tuple[httpx.Response, str]:
        sent_id = request_id or str(uuid.uuid4())
        headers = {
            "accept": "application/json",
            **(extra or {}),
            "REQUEST-ID": sent_id,
            "TIMESTAMP": timestamp(),
            "X-CM-ID": self.cm_id,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False).encode()
            headers["content-type"] = "application/json"
        url = (base or self.base_url) + path
        try:
            response = self._http.request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(self.timeout),
            )
        except httpx.TimeoutException as exc:
            raise GatewayError(
                None,
                None,
                f"{method} {path}: no answer within {self.timeout:g} s",
                request_id=sent_id,
            ) from exc
        except httpx.TransportError as exc:
            raise GatewayError(
                None, None, f"{method} {path}: {type(exc).__name__}: {exc}", request_id=sent_id
            ) from exc
        return response, sent_id

    def _judge(self, response: httpx.Response, sent_id: str) -> GatewayResponse:
        status = response.status_code
        if status in ACCEPTED:
            return GatewayResponse(status, _json_or_none(response.content), sent_id)
        code, message = parse_error(status, response.content)
        raise GatewayError(
            status,
            code,
            message,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            request_id=sent_id,
        )


def _json_or_none(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _seconds(value: Any) -> float:
    """``expiresIn`` in seconds; a missing or odd value gets a short life, not a long one."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 60.0
    return seconds if seconds > 0 else 60.0
