"""How every page action answers: one savepoint, then a redirect with a flash.

A page action runs its service call through :func:`attempt`. On success the browser is
sent on (post/redirect/get) with a message shown once; on a :class:`DomainError` only
the savepoint's writes — and the audit events queued inside it — roll back, and the
person sees the message, on the page they came from or on the same page drawn again.
Whatever else the request wrote before the attempt still commits.

The cookie flags (the flash, the session, a held slot) and ``HX-Redirect`` for htmx
live here once, so every page answers the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar, overload

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from opdesk.errors import DomainError, FieldError, InvalidInput
from opdesk.web.deps import services
from opdesk.web.templating import FLASH_COOKIE, Pages, readable

T = TypeVar("T")
# What to answer when the attempt is refused: the page drawn again with the message.
Failure = Callable[[DomainError], Response]
FLASH_SECONDS = 60


def pages_of(request: Request) -> Pages:
    return services(request).pages


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A full page or an htmx partial; a form shown again passes ``errors`` and 422."""
    return pages_of(request).render(request, template, context, status_code=status_code)


def secure_cookies(request: Request) -> bool:
    """Cookies travel over HTTPS only, except on a developer's plain-HTTP machine."""
    settings = services(request).settings
    return bool(settings.env != "dev" or settings.is_https)


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """Every cookie the pages set: whole site, not readable by scripts, same-site lax."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


def delete_cookie(request: Request, response: Response, name: str) -> None:
    """Remove a cookie set by :func:`set_cookie`, with the same flags (Secure outside dev)."""
    response.delete_cookie(
        name, path="/", httponly=True, samesite="lax", secure=secure_cookies(request)
    )


def redirect(request: Request, url: str) -> Response:
    """303 to ``url``; an htmx request is told to load the whole page (``HX-Redirect``)."""
    response = RedirectResponse(url, status_code=303)
    if request.headers.get("HX-Request"):
        response.headers["HX-Redirect"] = url
    return response


def flash(
    request: Request,
    url: str,
    message: str,
    level: str = "success",
    fields: list[FieldError] | None = None,
) -> Response:
    """Post/redirect/get: the page at ``url`` shows ``message`` once.

    ``level`` is one of ``info``, ``success``, ``warning``, ``error``; ``fields`` (a
    refused form's bad fields) are shown instead, each named as that page labels it.
    """
    response = redirect(request, url)
    cookie = pages_of(request).sign_flash(level, message, fields)
    set_cookie(request, response, FLASH_COOKIE, cookie, FLASH_SECONDS)
    return response


@overload
def attempt(
    request: Request,
    session: Session,
    action: Callable[[], object],
    *,
    done: str,
    message: str,
    failed: str | Failure | None = None,
) -> Response: ...


@overload
def attempt(
    request: Request,
    session: Session,
    action: Callable[[], T],
    *,
    done: Callable[[T], Response],
    failed: str | Failure,
) -> Response: ...


def attempt(
    request: Request,
    session: Session,
    action: Callable[[], Any],
    *,
    done: str | Callable[[Any], Response],
    message: str = "",
    failed: str | Failure | None = None,
) -> Response:
    """Run ``action`` in a savepoint and answer the page.

    - success: ``done`` is the address to go to, shown with ``message``; or a function
      of what ``action`` returned that makes the answer (usually with :func:`flash`);
    - a ``DomainError``: the savepoint rolls back and the message goes to ``failed``, an
      address (``done`` when omitted) or a function that draws the page again.

    ``return attempt(request, session, lambda: service.cancel(...), done=url,
    message="Appointment cancelled.")``
    """
    try:
        with session.begin_nested():
            result = action()
    except DomainError as refused:
        if callable(failed):
            return failed(refused)
        back = failed if failed is not None else done
        assert isinstance(back, str), "attempt: give `failed` when `done` is a function"
        fields = refused.errors if isinstance(refused, InvalidInput) else None
        return flash(request, back, readable(refused), "error", fields)
    if callable(done):
        return done(result)
    return flash(request, done, message)


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form as text fields, read here so the endpoint itself stays ``def``."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


PostedForm = Annotated[dict[str, str], Depends(posted_form)]
