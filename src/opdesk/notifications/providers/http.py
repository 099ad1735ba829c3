"""One JSON POST to a provider, with its failures sorted into retry-later and give-up.

Every call goes through one ``httpx.Client`` per process: its TLS context is built once
(loading the CA bundle takes tens of milliseconds, more than a whole send) and its
connections are kept alive between messages to the same provider.
"""

from __future__ import annotations

import email.utils
import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

import httpx

# Idle connections are closed before a provider's own idle timeout is likely to close them.
KEEPALIVE_SECONDS = 5.0
_clients: dict[int, httpx.Client] = {}
_clients_lock = threading.Lock()


def client() -> httpx.Client:
    """This process's client (thread-safe); a forked child makes its own, never sharing
    its parent's sockets.
    """
    pid = os.getpid()
    found = _clients.get(pid)
    if found is not None:
        return found
    with _clients_lock:
        found = _clients.get(pid)
        if found is None:
            _clients.clear()  # a parent's, inherited by fork: never used here
            found = _clients[pid] = httpx.Client(
                limits=httpx.Limits(
                    max_connections=32,
                    max_keepalive_connections=16,
                    keepalive_expiry=KEEPALIVE_SECONDS,
                )
            )
        return found


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def post_json(
    url: str, *, headers: dict[str, str], body: dict[str, Any], timeout: float
) -> tuple[int, dict[str, Any], httpx.Headers]:
    """POST ``body``; returns (status, parsed JSON or {}, headers).

    A timeout or connection failure raises ``RetryLater``; any HTTP answer is returned
    for the adapter to judge (it knows its provider's error codes).
    """
    from opdesk.notifications.delivery import RetryLater

    try:
        response = client().post(
            url,
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                **headers,
            },
            timeout=httpx.Timeout(timeout),
        )
    except httpx.TimeoutException as exc:
        raise RetryLater(f"{url}: no answer within {timeout:g} s") from exc
    except httpx.TransportError as exc:
        raise RetryLater(f"{url}: {type(exc).__name__}: {exc}") from exc
    try:
        parsed = response.json()
    except ValueError:
        parsed = {}
    return response.status_code, parsed if isinstance(parsed, dict) else {}, response.headers


def judge(status: int, headers: httpx.Headers, what: str) -> None:
    """Raise for a 429 or 5xx (retry later) and for any other non-2xx (undeliverable)."""
    from opdesk.notifications.delivery import RetryLater, Undeliverable

    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        raise RetryLater(
            f"{what}: HTTP {status}", retry_after=retry_after_seconds(headers.get("retry-after"))
        )
    raise Undeliverable(f"{what}: HTTP {status}")
