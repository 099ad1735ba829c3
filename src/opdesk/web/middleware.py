"""One ASGI middleware for request ids, security headers and the access log.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it adds no task or stream copy to
every request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's id when it looks like one (so traces join up), else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


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
        headers.setdefault(
            "Content-Security-Policy", CSP_DOCS if path.startswith("/api/docs") else CSP_PAGES
        )
        if not path.startswith("/static/"):
            # Pages and API answers may carry health data: never store them in caches.
            headers.setdefault("Cache-Control", "no-store")
        if self.hsts or scope.get("scheme") == "https":
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str) -> None:
        extra: MutableMapping[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "requestId": request_id,
        }
        log.info("request", extra=extra)
