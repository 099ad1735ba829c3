"""Random tokens (sessions, devices, OTP attempts) and their stored hashes.

A session token carries its clinic's id in the clear (``<tenant uuid>.<secret>``) so the
session can be looked up under that clinic's row-level security; only SHA-256 of the
whole token is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

TOKEN_BYTES = 32  # 256 bits


def random_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def session_token(tenant_id: uuid.UUID) -> str:
    return f"{tenant_id}.{random_token()}"


def tenant_of(token: str) -> uuid.UUID | None:
    """The clinic a session token names, or None for anything malformed."""
    prefix, dot, secret = token.partition(".")
    if not dot or len(secret) < 40 or len(token) > 200:
        return None
    try:
        return uuid.UUID(prefix)
    except ValueError:
        return None


def keyed_hash(key: bytes, *parts: str | bytes) -> bytes:
    """HMAC-SHA256 over length-prefixed parts (no ambiguity between ("ab","c") and ("a","bc"))."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        mac.update(len(data).to_bytes(4, "big") + data)
    return mac.digest()


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
