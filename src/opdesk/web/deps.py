"""FastAPI dependencies: request context, the per-request transaction, who is asking,
and the permission each route declares.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from opdesk import records
from opdesk.config import Settings
from opdesk.context import RequestContext
from opdesk.errors import (
    DomainError,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from opdesk.idempotency import Replay
from opdesk.identity import sessions
from opdesk.identity.sessions import Principal
from opdesk.security.crypto import FieldCipher
from opdesk.security.permissions import DEV_ONLY, PUBLIC, SIGNING_IN, allowed
from opdesk.uow import transaction

if TYPE_CHECKING:
    from opdesk.bootstrap import Services

SESSION_COOKIE = "opdesk_session"
DEVICE_COOKIE = "opdesk_device"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def services(request: Request) -> Services:
    """What the app built once at start-up (opdesk/bootstrap.py).

    Routes take a typed part of it instead (``Cipher``, ``AppSettings``, or a domain's
    ``Ident``, ``Offers``, ``Store``); this is for helpers that already hold the request.
    """
    built: Services = request.app.state.services
    return built


async def request_context(request: Request) -> RequestContext:
    """Who asks and when; ``async`` only so FastAPI runs it inline, not on a worker thread."""
    client = request.client
    return RequestContext(
        tenant_id=None,
        request_id=getattr(request.state, "request_id", None) or "",
        ip=client.host if client else None,
        user_agent=(request.headers.get("user-agent") or "")[:400] or None,
        clock=services(request).clock,
    )


Ctx = Annotated[RequestContext, Depends(request_context)]


# The built parts as typed dependencies. ``async`` so FastAPI calls them inline: they
# only read a field, and a sync dependency would cost a trip to the thread pool.
async def _cipher(request: Request) -> FieldCipher:
    return services(request).cipher


async def _settings(request: Request) -> Settings:
    return services(request).settings


Cipher = Annotated[FieldCipher, Depends(_cipher)]
AppSettings = Annotated[Settings, Depends(_settings)]


# Marks the first answer to a key, sent again.
REPLAYED = {"Idempotent-Replayed": "true"}


def answer(result: BaseModel | Replay) -> BaseModel | JSONResponse:
    """What a route returns: its result, or the first answer to a repeated Idempotency-Key."""
    if isinstance(result, Replay):
        return JSONResponse(result.body, status_code=result.status_code, headers=REPLAYED)
    return result


def bearer_or_cookie(request: Request) -> tuple[str | None, bool]:
    """The session token and whether it came from the cookie (browsers) or a header."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), False
    return request.cookies.get(SESSION_COOKIE), True


def db_session(request: Request, ctx: Ctx) -> Iterator[Session]:
    """The request's one transaction; it commits before the response is sent.

    A valid session token scopes the transaction to its clinic and names the actor.
    """
    db = request.app.state.db
    with transaction(db, ctx) as session:
        token, via_cookie = bearer_or_cookie(request)
        principal = None
        if token:
            found = sessions.resolve(session, ctx, token, via_cookie=via_cookie)
            if isinstance(found, sessions.Expired):
                end_expired(db, ctx, found)
            else:
                principal = found
        if principal is not None:
            act_as(ctx, principal)
        request.state.principal = principal
        yield session


def act_as(ctx: RequestContext, principal: Principal) -> RequestContext:
    """``ctx`` scoped to the principal's clinic, naming them as the actor."""
    ctx.tenant_id, ctx.actor_id, ctx.role = principal.tenant_id, principal.user_id, principal.role
    return ctx


def end_expired(db: Any, ctx: RequestContext, expired: sessions.Expired) -> None:
    """Record the end of a timed-out session in its own transaction, so it sticks."""
    own = RequestContext(
        tenant_id=expired.tenant_id,
        request_id=ctx.request_id,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        clock=ctx.clock,
    )
    with transaction(db, own) as session:
        sessions.end_expired(session, own, expired)


# scope="function": the transaction ends (commit or rollback) when the endpoint returns,
# before the response goes out, so a failed commit can still become an error response.
DbSession = Annotated[Session, Depends(db_session, scope="function")]


def csrf_token(request: Request, principal: Principal) -> str:
    """The form token of a cookie session: bound to it, useless for any other."""
    return form_token(request, principal.token)


def form_token(request: Request, session_token: str) -> str:
    return hmac.new(services(request).csrf_key, session_token.encode(), hashlib.sha256).hexdigest()[
        :40
    ]


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int | None] | None:
    """A URL's origin as browsers compare it: scheme, host and port (default port filled in)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS.get(scheme)


def same_origin(request: Request) -> bool:
    """False only when the browser says the request came from another origin.

    An origin is scheme, host and port: ``http://clinic.example`` is not the same origin
    as ``https://clinic.example`` (a page on plain HTTP could be anyone's).
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    allowed_origins = {
        origin_of(str(request.base_url)),
        origin_of(services(request).settings.base_url),
    } - {None}
    return origin_of(source) in allowed_origins


async def _check_csrf(request: Request, principal: Principal | None) -> None:
    if request.method in SAFE_METHODS:
        return
    if principal is not None and not principal.via_cookie:
        return  # bearer tokens are not sent by browsers on their own
    if not same_origin(request):
        raise Forbidden("cross-site request refused")
    if principal is None:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given, csrf_token(request, principal)):
        raise Forbidden("the form expired or came from elsewhere; reload the page and try again")


class Allow:
    """Route dependency declaring the action a route needs (see security/permissions.py)."""

    def __init__(self, action: str) -> None:
        self.action = action

    def __repr__(self) -> str:
        return f"Allow({self.action!r})"

    async def __call__(self, request: Request, session: DbSession) -> Principal | None:
        principal: Principal | None = request.state.principal
        if self.action == DEV_ONLY and not services(request).settings.dev_inbox_on:
            raise NotFound("not found")
        await _check_csrf(request, principal)
        if self.action in (PUBLIC, DEV_ONLY):
            return principal
        if principal is None:
            raise Unauthorized("sign in first")
        if self.action == SIGNING_IN:
            return principal
        if not principal.active:
            raise Unauthorized("finish signing in first", stage=principal.stage)
        if not allowed(principal.role, self.action):
            raise Forbidden(f"a {principal.role} may not do {self.action}", action=self.action)
        return principal


class HotPath(Allow):
    """A hot path's declared action (DESIGN, "Hot paths"): its one SQL statement checks the
    session, the clinic and the permission, so here only what needs no database is
    checked, the same-origin rule of a browser's write. When the request's input is
    invalid the statement never runs; :meth:`refusal_before_input` then answers what the
    statement would have answered first: a caller who may not act, or (``subject``: the
    path parameter and the model of the row it names) an unknown or foreign record.
    """

    def __init__(self, action: str, subject: tuple[str, type[Any]] | None = None) -> None:
        super().__init__(action)
        self.subject = subject

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        _token, via_cookie = bearer_or_cookie(request)
        if via_cookie and request.method not in SAFE_METHODS and not same_origin(request):
            raise Forbidden("cross-site request refused")

    async def refusal_before_input(self, request: Request) -> DomainError | None:
        refusal = await caller_refusal(request, self.action)
        if refusal is not None or self.subject is None:
            return refusal
        param, model = self.subject
        principal = signed_in(request.state.principal)
        ctx = act_as(await request_context(request), principal)
        try:
            row_id = uuid.UUID(request.path_params[param])
        except ValueError:
            return None  # a malformed id is invalid input, told with the rest of it
        try:
            await run_in_threadpool(_look_up, request, ctx, model, row_id)
        except DomainError as missing:
            return missing
        return None


def _look_up(request: Request, ctx: RequestContext, model: type[Any], row_id: uuid.UUID) -> None:
    with transaction(request.app.state.db, ctx) as session:
        records.by_id(session, model, row_id)


def hot_path_of(request: Request) -> HotPath | None:
    """The hot path this request was routed to, if it was."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    for dependency in getattr(dependant, "dependencies", ()):
        if isinstance(dependency.call, HotPath):
            return dependency.call
    return None


async def caller_refusal(request: Request, action: str) -> DomainError | None:
    """What ``Allow(action)`` would refuse this caller, asked in a transaction of its own."""
    ctx = await request_context(request)
    request.state.principal = await run_in_threadpool(_principal_now, request, ctx)
    try:
        await Allow(action)(request, session=None)  # type: ignore[arg-type]
    except DomainError as refusal:
        return refusal
    return None


def _principal_now(request: Request, ctx: RequestContext) -> Principal | None:
    token, via_cookie = bearer_or_cookie(request)
    if not token:
        return None
    db = request.app.state.db
    with transaction(db, ctx) as session:
        found = sessions.resolve(session, ctx, token, via_cookie=via_cookie)
    if isinstance(found, sessions.Expired):
        end_expired(db, ctx, found)
        return None
    return found


class Open(Allow):
    """A public route that needs no database (health checks, API docs)."""

    def __init__(self) -> None:
        super().__init__(PUBLIC)

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        if request.method not in SAFE_METHODS and not same_origin(request):
            raise Forbidden("cross-site request refused")


def signed_in(principal: Principal | None) -> Principal:
    """For routes whose ``Allow`` already guarantees a session."""
    if principal is None:
        raise Unauthorized("sign in first")
    return principal


def acting(action: str) -> Any:
    """``Annotated[Principal, acting("users:manage")]``: the route needs that action."""
    return Depends(Allow(action))


async def no_nul_in_query(request: Request) -> None:
    """PostgreSQL text cannot hold NUL: refuse it in the query string, naming the parameter
    (bodies are checked by ``ApiModel``).
    """
    bad = [name for name, value in request.query_params.multi_items() if "\x00" in name + value]
    if bad:
        raise InvalidInput(
            [FieldError(name or "query", "must not contain NUL characters") for name in bad]
        )


# A route anyone may call, signed in or not (CSRF is still checked for a cookie session).
Anyone = Annotated[Principal | None, Depends(Allow(PUBLIC))]
