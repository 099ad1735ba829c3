"""What the identity routers share with the portal: the built identity service, the cookie
naming where a patient returns after signing in, and the answer to a successful sign-in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from opdesk.identity.service import Identity, SignedIn
from opdesk.web.deps import DEVICE_COOKIE, SESSION_COOKIE, services
from opdesk.web.pages import set_cookie
from opdesk.web.problems import STAGE_PAGES

# Where to go after a patient signs in (set by pages that send them to sign in).
NEXT_COOKIE = "opdesk_next"


async def _identity(request: Request) -> Identity:
    return services(request).identity


# Passwords, codes and the field cipher as this deployment built them at start-up.
Ident = Annotated[Identity, Depends(_identity)]


def safe_next(url: str | None, fallback: str) -> str:
    """Only same-site paths: never an open redirect to another host."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return fallback


def after_sign_in(request: Request, result: SignedIn, next_url: str | None = None) -> Response:
    """Set the session (and a new device's) cookie and go where the sign-in leads."""
    home = "/me" if result.user.role == "patient" else "/app"
    target = STAGE_PAGES.get(result.stage) or safe_next(next_url, home)
    response = RedirectResponse(target, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, result.token, None)
    if result.device_token:
        set_cookie(request, response, DEVICE_COOKIE, result.device_token, 400 * 24 * 3600)
    return response
