"""The rules an automation event can name, and what each does when it falls due.

A rule is a function ``(session, ctx, event) -> None`` registered under its name::

    @rule("reminder-24h")
    def remind(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
        ...

The worker calls it in a transaction of its own, scoped to the event's clinic, with the
event locked and still ``pending``; whatever the rule writes commits together with the
event's move to ``success``. A rule that must call an outside provider returns that call
(an :data:`AfterCommit`) instead: the worker commits the rule's writes, makes the call
with no transaction open, and only then moves the event to ``success``. A rule that
raises is retried with backoff (the transaction rolls back, the attempt is counted); one
that raises :class:`Permanent` fails at once.

The rules live in :mod:`.clinic_rules` (appointments, waitlist offers, holds) and
:mod:`.later_rules` (records not built yet: follow-ups, refills, lab results, balances,
diet plans, the daily report); importing :mod:`.clinic_rules`, as the worker does,
registers both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from opdesk.context import RequestContext

if TYPE_CHECKING:
    from opdesk.automation.models import AutomationEvent
    from opdesk.config import Settings
    from opdesk.db import Database
    from opdesk.security.crypto import FieldCipher

# Work a rule leaves for after its transaction commits (a call to an outside provider,
# which must not hold a transaction open): given the worker's database, cipher and
# settings. It must be safe to repeat: if it fails, or the worker dies, the rule runs again.
AfterCommit = Callable[["Database", "FieldCipher", "Settings"], None]
Handler = Callable[[Session, RequestContext, "AutomationEvent"], AfterCommit | None]

_RULES: dict[str, Handler] = {}

# The worker puts its cipher here (``session.info``) before it runs a rule: the rules that
# write messages need it to read the patient's phone and seal the recipient.
CIPHER_INFO = "opdesk.cipher"
# ... and its settings, for a rule that calls a provider the settings point at.
SETTINGS_INFO = "opdesk.settings"


class Permanent(Exception):
    """Trying again cannot help (the entity is gone, the payload is wrong): fail now."""


class Busy(Exception):
    """The rule's row is being changed by another transaction right now (a patient
    answering an offer, a booking taking the slot): the rule gives way rather than wait
    while it holds its event's lock, and the worker tries again after a backoff, when the
    other change has settled (often leaving the rule nothing to do).
    """


class TryLater(Exception):
    """Trying again can help, but not before ``retry_after`` seconds (a provider said so).

    The worker reads ``retry_after`` from any exception that carries one (a gateway's
    error, say), so a rule need not translate errors into this one."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_of(exc: BaseException) -> float | None:
    """The wait an error asks for, in seconds, if it names one."""
    wait = getattr(exc, "retry_after", None)
    return float(wait) if isinstance(wait, int | float) and wait > 0 else None


class UnknownRule(Permanent):
    def __init__(self, name: str) -> None:
        super().__init__(f"no rule named {name!r} is registered")


def rule(name: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the rule ``name`` (a second registration is a mistake)."""

    def register(handler: Handler) -> Handler:
        if name in _RULES and _RULES[name] is not handler:
            raise ValueError(f"rule {name!r} is already registered")
        _RULES[name] = handler
        return handler

    return register


def cipher_of(session: Session) -> FieldCipher:
    """The worker's cipher, for a rule that reads a phone number or writes a message."""
    found = session.info.get(CIPHER_INFO)
    if found is None:
        raise Permanent("this rule needs the worker's cipher (session.info) to send a message")
    return found  # type: ignore[no-any-return]


def settings_of(session: Session) -> Settings:
    """The worker's settings (where ABDM's gateway answers, say)."""
    found = session.info.get(SETTINGS_INFO)
    if found is None:
        raise Permanent("this rule needs the worker's settings (session.info)")
    return found  # type: ignore[no-any-return]


def handler_for(name: str) -> Handler:
    try:
        return _RULES[name]
    except KeyError:
        raise UnknownRule(name) from None


def registered() -> tuple[str, ...]:
    return tuple(sorted(_RULES))


# --------------------------------------------------------------------------- the stand-in


DEMO_RULE = "demo.check"


@rule(DEMO_RULE)
def demo_check(session: Session, ctx: RequestContext, event: AutomationEvent) -> None:
    """A stand-in rule for the worker's own tests and the demo: it succeeds (after
    ``{"seconds": n}`` of pretend work), or raises what its payload asks
    (``{"fail": "why"}``: retried, not before ``"retryAfter"`` seconds if given;
    ``{"permanent": "why"}``: failed at once).
    """
    if "seconds" in event.payload:
        time.sleep(float(event.payload["seconds"]))
    if "permanent" in event.payload:
        raise Permanent(str(event.payload["permanent"]))
    if "fail" in event.payload and "retryAfter" in event.payload:
        raise TryLater(str(event.payload["fail"]), float(event.payload["retryAfter"]))
    if "fail" in event.payload:
        raise RuntimeError(str(event.payload["fail"]))
