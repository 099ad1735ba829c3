"""ASGI middleware: request ids, security headers and the access log; compression.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it adds no task or stream copy to
every request.
"""

from __future__ import annotations

import gzip
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import brotli
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opdesk import faults, metrics
from opdesk.web.assets import accepted_encodings

log = logging.getLogger("opdesk.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CSP_PAGES = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; object-src 'none'"
)
# Swagger UI sets style attributes from its bundle; it still runs no inline script.
CSP_DOCS = CSP_PAGES.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
DOCS_PAGES = ("/api/v1/docs", "/api/docs")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's id when it looks like one (so traces join up), else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's template (/api/v1/patients/{patient_id}), never the path: one
    metrics series per route, and no patient's id in them.

    An included router's route knows only its own part (/patients/{patient_id}); the static
    prefix in front of it (/api/v1) is what the path has before the part the route matched.
    """
    path: str = scope["path"]
    route = scope.get("route")
    relative: str | None = getattr(route, "path", None)
    pattern: re.Pattern[str] | None = getattr(route, "path_regex", None)
    if relative is None or pattern is None:
        return "/static" if path.startswith("/static/") else "unmatched"
    at = 0
    while at != -1:
        if pattern.match(path[at:]):
            return path[:at] + relative
        at = path.find("/", at + 1)
    return relative


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        faults.attempt_started()
        path: str = scope["path"]
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._add_headers(MutableHeaders(scope=message), request_id, path, scope)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._log(scope, status, started, request_id)

    def _add_headers(
        self, headers: MutableHeaders, request_id: str, path: str, scope: Scope
    ) -> None:
        headers["X-Request-ID"] = request_id
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers.setdefault("Content-Security-Policy", CSP_DOCS if path in DOCS_PAGES else CSP_PAGES)
        if not path.startswith("/static/"):
            # Pages and API answers may carry health data: never store them in caches.
            headers.setdefault("Cache-Control", "no-store")
        if self.hsts or scope.get("scheme") == "https":
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str) -> None:
        metrics.timed(scope["method"], route_template(scope), status, started)
        extra: MutableMapping[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "requestId": request_id,
        }
        log.info("request", extra=extra)


# Smaller answers gain nothing from compression; WOFF2, PDF and images are compressed already.
MIN_COMPRESS = 500
COMPRESS_TYPES = (b"text/", b"application/json", b"application/problem+json", b"image/svg+xml")


class CompressMiddleware:
    """Brotli or gzip for answers to requests that carry no credentials.

    A page or API answer to a signed-in request carries secrets (the CSRF token, patient
    data) next to what the request typed (a search term): compressing those would let an
    onlooker who can make the browser send requests guess the secrets from the sizes
    (BREACH). Public pages (the clinic page, sign-in) carry none, and they are the ones
    a patient on a slow phone loads first. Static files are compressed by
    :mod:`opdesk.web.assets`, once per process.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = compression_for(scope)
        if coding is None:
            await self.app(scope, receive, send)
            return
        started: Message | None = None

        async def compressing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = message  # held until the body shows whether to compress
                return
            if started is None or message["type"] != "http.response.body":
                await send(message)
                return
            start, started = started, None
            body: bytes = message.get("body", b"")
            headers = MutableHeaders(scope=start)
            if (
                message.get("more_body", False)  # a stream: sent as it comes
                or len(body) < MIN_COMPRESS
                or "content-encoding" in headers
                or not headers.get("content-type", "").encode().startswith(COMPRESS_TYPES)
            ):
                await send(start)
                await send(message)
                return
            if coding == "br":
                body = brotli.compress(body, quality=5)
            else:
                body = gzip.compress(body, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = coding
            headers["Content-Length"] = str(len(body))
            headers.append("Vary", "Accept-Encoding")
            await send(start)
            await send({**message, "body": body})

        await self.app(scope, receive, compressing)


def compression_for(scope: Scope) -> str | None:
    """``br`` or ``gzip`` when the answer may be compressed and the client takes it."""
    if scope["path"].startswith("/static/") or scope["method"] not in ("GET", "HEAD"):
        return None
    accepted = ""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return None
        if name == b"cookie" and b"opdesk_session=" in value:  # web.deps.SESSION_COOKIE
            return None
        if name == b"accept-encoding":
            accepted += value.decode("latin-1") + ","
    allowed = accepted_encodings(accepted)
    return next((c for c in ("br", "gzip") if c in allowed), None)
