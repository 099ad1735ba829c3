"""Booking through the API in one statement (``opdesk_api_book``, migration 0020).

The route does what needs the application's keys or its words: the same-origin and form
token checks of a browser's write, the request's fingerprint for its Idempotency-Key,
and the refusal in words. PostgreSQL does the rest in one round trip: the session, its
clinic and permission, the key, the booking, the audit events, and the booking's
follow-up work, which the worker's ``booked`` rule does moments later (the draft
invoice, the reminders). Answers are the same as the service path's, body for body.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opdesk import idempotency, metrics
from opdesk.context import RequestContext
from opdesk.db import new_id
from opdesk.errors import Conflict, DomainError, Forbidden, InvalidInput, Unauthorized
from opdesk.idempotency import Replay
from opdesk.identity import sessions
from opdesk.scheduling import booking
from opdesk.scheduling.schemas import AppointmentOut, BookingIn
from opdesk.security.permissions import ROLES, allowed
from opdesk.security.tokens import tenant_of, token_hash
from opdesk.web.deps import (
    CSRF_HEADER,
    answer,
    bearer_or_cookie,
    caller_refusal,
    end_expired,
    form_token,
    request_context,
)

ACTION = "appointments:write"
ROLES_ALLOWED = [role for role in ROLES if allowed(role, ACTION)]

_BOOK = (
    "select opdesk_api_book(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s, %s, %s, %s)"
)


async def book(request: Request, body: BookingIn, key: str | None) -> JSONResponse:
    """``POST /api/v1/appointments``: see ``scheduling.api.book_appointment``."""
    token, via_cookie = bearer_or_cookie(request)
    tenant = tenant_of(token) if token else None
    if token is None or tenant is None:
        raise Unauthorized("sign in first")
    if key is not None:
        await _check_key(request, key)
    ctx = await request_context(request)
    fields = body.model_dump(mode="json")
    try:
        outcome = await request.app.state.hot.one(
            _BOOK,
            (
                token_hash(token),
                tenant,
                not via_cookie or _form_token_ok(request, token),
                ROLES_ALLOWED,
                sessions.TOUCH_EVERY,
                key,
                idempotency.fingerprint("book", fields),
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
                ctx.request_id,
                ctx.ip,
                ctx.user_agent,
                ctx.now(),
            ),
        )
    except psycopg.errors.IntegrityError as exc:
        # The live-per-slot index caught what the slot's UPDATE did not: a lost race.
        metrics.BOOKINGS.labels("conflict").inc()
        raise Conflict("this conflicts with a change made just now") from exc
    return await _answer(request, ctx, tenant, body, outcome)


async def _answer(
    request: Request,
    ctx: RequestContext,
    tenant: uuid.UUID,
    body: BookingIn,
    outcome: dict[str, Any],
) -> JSONResponse:
    kind = outcome["answer"]
    if kind == "booked":
        appointment = _out(outcome["appointment"])
        metrics.BOOKINGS.labels(appointment["status"]).inc()
        return JSONResponse(appointment, status_code=201)
    if kind == "replay":
        replayed = answer(Replay(outcome["status"], _out(outcome["response"]["row"])))
        assert isinstance(replayed, JSONResponse)
        return replayed
    if kind == "expired":
        expired = sessions.Expired(tenant, uuid.UUID(outcome["sessionId"]), outcome["reason"])
        await run_in_threadpool(end_expired, request.app.state.db, ctx, expired)
    raise _refusal(ctx, body, outcome)


def _refusal(ctx: RequestContext, body: BookingIn, outcome: dict[str, Any]) -> DomainError:
    kind = outcome["answer"]
    if kind in ("signed-out", "expired"):
        return Unauthorized("sign in first")
    if kind == "csrf":
        return Forbidden("the form expired or came from elsewhere; reload the page and try again")
    if kind == "stage":
        return Unauthorized("finish signing in first", stage=outcome["stage"])
    if kind == "forbidden":
        return Forbidden(f"a {outcome['role']} may not do {ACTION}", action=ACTION)
    if kind == "key-reused":
        return Conflict("this Idempotency-Key was already used for a different request")
    refused = booking.refused(ctx, body.slot_id, body.patient_id, body.visit_type, outcome)
    kind = "conflict" if isinstance(refused, Conflict) else "refused"
    metrics.BOOKINGS.labels(kind).inc()
    return refused


async def _check_key(request: Request, key: str) -> None:
    """A malformed key is refused, but a caller who may not book is told that first."""
    try:
        idempotency.check_key(key)
    except InvalidInput:
        refusal = await caller_refusal(request, ACTION)
        if refusal is not None:
            raise refusal from None
        raise


def _out(row: dict[str, Any]) -> dict[str, Any]:
    appointment = booking.appointment_of(row)
    return AppointmentOut.of(appointment).model_dump(mode="json", by_alias=True)


def _hold_hash(hold_token: str | None) -> str | None:
    return token_hash(hold_token).hex() if hold_token else None


def _form_token_ok(request: Request, token: str) -> bool:
    """A browser's write names its session's form token (as ``Allow`` checks it)."""
    given = request.headers.get(CSRF_HEADER)
    return bool(given) and hmac.compare_digest(given or "", form_token(request, token))
