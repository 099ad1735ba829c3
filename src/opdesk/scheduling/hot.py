"""The desk's busiest API writes in one statement each (DESIGN, "Hot paths").

``POST /api/v1/appointments`` (``opdesk_api_book``), ``POST /api/v1/slots/{id}/hold``
(``opdesk_api_hold``) and the desk's moves through ``POST
/api/v1/appointments/{id}/status`` (``opdesk_api_move``; migrations 0020 and 0022). The
route does what needs the application's keys or its words: the same-origin and form
token checks of a browser's write, the request's fingerprint for its Idempotency-Key,
and the refusal in words. PostgreSQL does the rest in one round trip: the session, its
clinic and permission, the write, the audit events, and the follow-up work the worker
does moments later (a booking's draft invoice and reminders, a hold's expiry, what
follows a move). Answers are the same as the service path's, body for body.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from psycopg.types.json import Jsonb
from starlette.concurrency import run_in_threadpool

from opdesk import idempotency, metrics
from opdesk.automation import clinic_rules
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from opdesk.identity import sessions
from opdesk.scheduling import booking, lifecycle
from opdesk.scheduling.models import AppointmentStatus
from opdesk.scheduling.schemas import BookingIn, HoldOut
from opdesk.security.permissions import ROLES, allowed
from opdesk.security.tokens import random_token, tenant_of, token_hash
from opdesk.web.deps import (
    CSRF_HEADER,
    REPLAYED,
    bearer_or_cookie,
    caller_refusal,
    end_expired,
    form_token,
    request_context,
)

ACTION = "appointments:write"
# The moves the desk makes all day. Confirming (a payment arrived) and cancelling (money
# settled, the slot offered on at once) keep the services' path.
DESK_MOVES = frozenset(
    {
        AppointmentStatus.CHECKED_IN,
        AppointmentStatus.IN_CONSULT,
        AppointmentStatus.COMPLETED,
        AppointmentStatus.NO_SHOW,
    }
)


def _statement(function: str, arguments: int) -> str:
    """The call of a hot path's function: its answer without the appointment (whose status
    is kept as "made"), and the appointment apart as the API's JSON text (``api_appointment``,
    migration 0024), which the route sends as it is. A replayed booking's appointment is the
    row its Idempotency-Key stored.
    """
    placeholders = ", ".join(["%s"] * arguments)
    answer = (
        "r - 'appointment' - 'response' || jsonb_build_object('made', r #>> '{appointment,status}')"
    )
    appointment = "api_appointment(coalesce(r -> 'appointment', r #> '{response,row}'))::text"
    # The function's name is one of the three below, never input.
    return f"select {answer}, {appointment} from {function}({placeholders}) as r"  # noqa: S608


_BOOK = _statement("opdesk_api_book", 21)
_HOLD = _statement("opdesk_api_hold", 15)
_MOVE = _statement("opdesk_api_move", 14)


async def call(
    request: Request, ctx: RequestContext, action: str, statement: str, arguments: tuple[Any, ...]
) -> tuple[dict[str, Any], str | None]:
    """Run ``statement`` for this request: its first five arguments say who asks (as
    ``opdesk_caller`` takes them), the rest are ``arguments``. A caller it refuses is
    answered here (401 or 403, an idle session ended), so what returns is the operation's
    own answer, and the appointment's JSON when it names one.
    """
    token, via_cookie = bearer_or_cookie(request)
    tenant = tenant_of(token) if token else None
    if token is None or tenant is None:
        raise Unauthorized("sign in first")
    caller = (
        token_hash(token),
        tenant,
        not via_cookie or _form_token_ok(request, token),
        [role for role in ROLES if allowed(role, action)],
        sessions.TOUCH_EVERY,
    )
    outcome, appointment = await request.app.state.hot.row(statement, (*caller, *arguments))
    kind = outcome.get("answer")
    if kind == "expired":
        expired = sessions.Expired(tenant, uuid.UUID(outcome["sessionId"]), outcome["reason"])
        await run_in_threadpool(end_expired, request.app.state.db, ctx, expired)
    if kind in ("signed-out", "expired"):
        raise Unauthorized("sign in first")
    if kind == "csrf":
        raise Forbidden("the form expired or came from elsewhere; reload the page and try again")
    if kind == "stage":
        raise Unauthorized("finish signing in first", stage=outcome["stage"])
    if kind == "forbidden":
        raise Forbidden(f"a {outcome['role']} may not do {action}", action=action)
    return outcome, appointment


def asked(ctx: RequestContext, at: datetime) -> tuple[Any, ...]:
    """The last arguments of every hot path: who asked from where, and when."""
    return (ctx.request_id, ctx.ip, ctx.user_agent, at)


# ------------------------------------------------------------------ book


async def book(request: Request, body: BookingIn, key: str | None) -> Response:
    """``POST /api/v1/appointments``: see ``scheduling.api.book_appointment``."""
    if key is not None:
        await _check_key(request, key)
    ctx = await request_context(request)
    arguments = (
        key,
        None if key is None else idempotency.fingerprint("book", body.model_dump(mode="json")),
        body.slot_id,
        body.patient_id,
        body.visit_type,
        body.channel,
        body.reason,
        body.notes,
        _hold_hash(body.hold_token),
        body.follow_up_for,
        not body.allow_near_duplicate,
        [new_id() for _ in range(4)],
        *asked(ctx, ctx.now()),
    )
    try:
        outcome, appointment = await call(request, ctx, ACTION, _BOOK, arguments)
    except psycopg.errors.IntegrityError as exc:
        # The live-per-slot index caught what the slot's UPDATE did not: a lost race.
        metrics.BOOKINGS.labels("conflict").inc()
        raise Conflict("this conflicts with a change made just now") from exc
    kind = outcome["answer"]
    if kind == "booked" and appointment is not None:
        metrics.BOOKINGS.labels(outcome["made"]).inc()
        return _sent(appointment, 201)
    if kind == "replay" and appointment is not None:
        return _sent(appointment, outcome["status"], REPLAYED)
    if kind == "key-reused":
        raise Conflict("this Idempotency-Key was already used for a different request")
    refused = booking.refused(ctx, body.slot_id, body.patient_id, body.visit_type, outcome)
    metrics.BOOKINGS.labels("conflict" if isinstance(refused, Conflict) else "refused").inc()
    raise refused


async def _check_key(request: Request, key: str) -> None:
    """A malformed key is refused, but a caller who may not book is told that first."""
    try:
        idempotency.check_key(key)
    except InvalidInput:
        refusal = await caller_refusal(request, ACTION)
        if refusal is not None:
            raise refusal from None
        raise


# ------------------------------------------------------------------ hold


async def hold(request: Request, slot_id: uuid.UUID, hold_for: timedelta) -> JSONResponse:
    """``POST /api/v1/slots/{id}/hold``: see ``scheduling.api.hold_slot``."""
    ctx = await request_context(request)
    at = ctx.now()
    token, expires = random_token(), at + hold_for
    arguments = (
        slot_id,
        token_hash(token).hex(),
        expires,
        clinic_rules.hold_key(slot_id, expires),
        Jsonb(clinic_rules.hold_payload(expires)),
        [new_id() for _ in range(3)],
        *asked(ctx, at),
    )
    outcome, _ = await call(request, ctx, ACTION, _HOLD, arguments)
    if outcome["answer"] != "held":
        raise booking.slot_refusal(ctx, slot_id, outcome)
    held = HoldOut(slot_id=slot_id, hold_token=token, expires_at=expires)
    return JSONResponse(held.model_dump(mode="json", by_alias=True), status_code=201)


# ------------------------------------------------------------------ move


async def move(request: Request, appointment_id: uuid.UUID, to: str) -> Response:
    """A desk move through ``POST /api/v1/appointments/{id}/status``."""
    ctx = await request_context(request)
    rule = lifecycle.move_rule(to)
    arguments = (
        appointment_id,
        rule.target,
        rule.allowed_from,
        rule.stamp,
        [new_id() for _ in range(3)],
        *asked(ctx, ctx.now()),
    )
    outcome, appointment = await call(request, ctx, ACTION, _MOVE, arguments)
    if outcome["answer"] != "moved" or appointment is None:
        raise lifecycle.move_refusal(appointment_id, to, outcome)
    return _sent(appointment, 200)


# ------------------------------------------------------------------ helpers


def _sent(appointment: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """The appointment as PostgreSQL wrote it (``api_appointment``), sent unchanged."""
    return Response(
        appointment.encode(), status_code=status, headers=headers, media_type="application/json"
    )


def _hold_hash(hold_token: str | None) -> str | None:
    return token_hash(hold_token).hex() if hold_token else None


def _form_token_ok(request: Request, token: str) -> bool:
    """A browser's write names its session's form token (as ``Allow`` checks it)."""
    given = request.headers.get(CSRF_HEADER)
    return bool(given) and hmac.compare_digest(given or "", form_token(request, token))
