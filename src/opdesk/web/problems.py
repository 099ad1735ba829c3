"""Every error as RFC 9457 problem details (API) or a friendly page (HTML)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from opdesk import faults
from opdesk.errors import (
    DomainError,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
)
from opdesk.web.deps import hot_path_of
from opdesk.web.templating import clean_message, field_message, friendly_reason, render_error

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in ("/healthz", "/readyz")


@dataclass(frozen=True)
class ErrorPage:
    """What a person reads on an error page: no ids, no action codes, no field codes."""

    title: str
    detail: str
    items: tuple[str, ...] = ()


NOT_FOUND_PAGE = ErrorPage(
    "Page not found",
    "There is no page at this address. Check the link, or start again from the home page.",
)
RECORD_NOT_FOUND_PAGE = ErrorPage(
    "Record not found",
    "We could not find what this link points to: it may have been removed, or the link "
    "may be incomplete. Go back and open it again from its list, or start from the home page.",
)
FORBIDDEN_PAGE = ErrorPage(
    "You don't have access to this page",
    "Your account cannot open or change this. If your work needs it, ask your clinic's "
    "admin to change your role.",
)
STATUS_PAGES = {
    404: NOT_FOUND_PAGE,
    405: ErrorPage("This page cannot do that", "Go back and use the page's own buttons."),
    500: ErrorPage(
        "Something went wrong on our side",
        "Nothing you did caused this. Try again in a minute; if it keeps happening, tell "
        "your clinic's admin the time it happened.",
    ),
}


def page_for(exc: DomainError) -> ErrorPage:
    """A refused request, in people's words, for a page (the API keeps the codes)."""
    if isinstance(exc, NotFound):
        return RECORD_NOT_FOUND_PAGE
    if isinstance(exc, Forbidden) and "action" in exc.extra:
        return FORBIDDEN_PAGE
    if isinstance(exc, InvalidInput):
        reasons = tuple(field_message(e.field, e.reason) for e in exc.errors)
        return ErrorPage(INVALID_TITLE, INVALID_DETAIL, reasons)
    detail = exc.detail[:1].upper() + exc.detail[1:]
    title = PLAIN_TITLES.get(exc.status, exc.title)
    return ErrorPage(title, detail if detail.endswith((".", "?", "!")) else detail + ".")


# "Conflict" and "Bad request" are HTTP's words; the detail says what happened.
PLAIN_TITLES = {400: "This could not be done", 409: "This could not be done"}


INVALID_TITLE = "Please check what you entered"
INVALID_DETAIL = "Go back to the form, correct these and send it again:"


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
    page: ErrorPage | None = None,
) -> Response:
    if not wants_json(request):
        if status == 401:
            target = sign_in_url(request, (extra or {}).get("stage"))
            # HX-Redirect makes htmx navigate the whole page, not swap the sign-in form in.
            return RedirectResponse(target, 303, headers={"HX-Redirect": target})
        page = page or STATUS_PAGES.get(status) or ErrorPage(title, detail or title)
        return render_error(request, status, page.title, page.detail, page.items)
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "requestId": getattr(request.state, "request_id", None),
        **(extra or {}),
    }
    if errors is not None:
        body["errors"] = [e.as_dict() for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


# Pages patients use (their portal, a clinic's booking pages): they sign in by phone.
PATIENT_PAGES = ("/me", "/c/")


def sign_in_url(request: Request, stage: str | None) -> str:
    """Where a browser goes to finish or start signing in."""
    if stage in STAGE_PAGES:
        return STAGE_PAGES[stage]
    path = request.url.path
    if not path.startswith(PATIENT_PAGES):
        return f"/sign-in?{urlencode({'next': path})}"
    query = {"next": path}
    if path.startswith("/c/"):  # a clinic's booking page: sign in at that clinic
        query["clinic"] = path.split("/")[2]
    return f"/patient/sign-in?{urlencode(query)}"


STAGE_PAGES = {"mfa": "/sign-in/mfa", "mfa-enrol": "/account/mfa", "device": "/sign-in/device"}


def field_name(loc: tuple[Any, ...]) -> str:
    """``("body", "address", "pincode")`` -> ``address.pincode``; query/path keep a prefix."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


# unique_violation, exclusion_violation
CONFLICT_STATES = ("23505", "23P01")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    def _domain(request: Request, exc: DomainError) -> Response:
        errors = exc.errors if isinstance(exc, InvalidInput) else None
        answer = problem(
            request, exc.status, exc.title, exc.detail, errors, exc.extra, page_for(exc)
        )
        if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
            answer.headers["Retry-After"] = str(int(exc.retry_after.total_seconds()) + 1)
        return answer

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        hot = hot_path_of(request)
        refusal = await hot.refusal_before_input(request) if hot else None
        if refusal is not None:
            return _domain(request, refusal)
        errors = [
            FieldError(field_name(tuple(e["loc"])), clean_message(e["msg"])) for e in exc.errors()
        ]
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        if not wants_json(request) and any(e["loc"][:1] == ("path",) for e in exc.errors()):
            # A malformed id in a page's address: to a person, that record does not exist.
            return problem(request, 404, "Not found", detail, page=RECORD_NOT_FOUND_PAGE)
        reasons = tuple(
            field_message(field_name(tuple(e["loc"])), friendly_reason(e)) for e in exc.errors()
        )
        page = ErrorPage(INVALID_TITLE, INVALID_DETAIL, reasons)
        return problem(request, 422, "Invalid input", detail, errors, page=page)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return problem(request, exc.status_code, title, str(exc.detail))

    @app.exception_handler(IntegrityError)
    def _constraint(request: Request, exc: IntegrityError) -> Response:
        """A unique or exclusion constraint caught what the service checks did not (a race
        they lost): that is a conflict, not a crash.
        """
        if getattr(exc.orig, "sqlstate", None) in CONFLICT_STATES:
            return problem(request, 409, "Conflict", "this conflicts with a change made just now")
        return _unexpected(request, exc)

    def _database(request: Request, exc: Exception) -> Response:
        """The database could not serve this request (``opdesk.faults``): 503, not 500."""
        from opdesk.web import unavailable

        classified = faults.classify(exc)
        if classified is None:
            return _unexpected(request, exc)
        if classified.fault == faults.Fault.SLOW:
            log.warning(
                "statement cancelled after the statement timeout",
                extra={
                    "route": unavailable.route_of(request),
                    "statement": str(getattr(exc, "statement", "") or "")[:500],
                    "requestId": getattr(request.state, "request_id", None),
                },
            )
        return unavailable.answer(request, classified)

    for fault in faults.RAISED:
        app.add_exception_handler(fault, _database)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> Response:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"requestId": getattr(request.state, "request_id", None)},
        )
        return problem(request, 500, "Internal error", "Something went wrong on our side.")
