"""Who is acting, for which clinic, in which request, and what time it is."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opdesk.audit.service import PendingEvent


def utc_now() -> datetime:
    return datetime.now(UTC)


Clock = Callable[[], datetime]

SYSTEM_ROLE = "system"


@dataclass
class RequestContext:
    """Everything a service needs to know about the caller besides the arguments.

    Services read the time from ``clock`` (never ``datetime.now()``) so tests can move it.
    ``pending_audit`` collects audit events until the transaction commits; see
    :mod:`opdesk.audit.service`.
    """

    tenant_id: uuid.UUID | None
    actor_id: uuid.UUID | None = None
    role: str = SYSTEM_ROLE
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ip: str | None = None
    user_agent: str | None = None
    clock: Clock = utc_now
    pending_audit: list[PendingEvent] = field(default_factory=list, repr=False)

    def now(self) -> datetime:
        return self.clock()

    def for_tenant(self, tenant_id: uuid.UUID) -> RequestContext:
        """The same caller acting inside another tenant (e.g. after resolving a slug)."""
        return RequestContext(
            tenant_id=tenant_id,
            actor_id=self.actor_id,
            role=self.role,
            request_id=self.request_id,
            ip=self.ip,
            user_agent=self.user_agent,
            clock=self.clock,
        )


def system_context(tenant_id: uuid.UUID | None, *, clock: Clock = utc_now) -> RequestContext:
    """Context for CLI commands and jobs: the actor is the system itself."""
    return RequestContext(tenant_id=tenant_id, role=SYSTEM_ROLE, clock=clock)
