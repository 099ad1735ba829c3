"""Domain errors raised by services; the web layer turns them into problem details."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    """Unknown id, or an id of another tenant: both look the same from outside."""

    status = 404
    title = "Not found"


class Conflict(DomainError):
    """The request is valid but clashes with the current state (duplicate, wrong state)."""

    status = 409
    title = "Conflict"


class Unauthorized(DomainError):
    status = 401
    title = "Sign-in required"


class Forbidden(DomainError):
    status = 403
    title = "Not allowed"


class TooManyRequests(DomainError):
    status = 429
    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after: timedelta | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        # Sent as the Retry-After header, so a client's own back-off can read it.
        self.retry_after = retry_after


class InvalidInput(DomainError):
    """Input that passed parsing but breaks a rule; names each bad field."""

    status = 422
    title = "Invalid input"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors
