"""Jinja2 pages: layout, navigation, flash messages and the form-error pattern.

Templates live beside their domain (``opdesk/<domain>/templates/<domain>/...``) and
the shared layout in ``opdesk/templates``; one loader searches them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from opdesk.formatting import clock_time, day_name, local_time
from opdesk.security.permissions import DEV_ONLY, allowed
from opdesk.validation import phone_display
from opdesk.web.deps import csrf_token, services

PACKAGE = Path(__file__).resolve().parent.parent
FLASH_COOKIE = "opdesk_flash"
FLASH_LEVELS = ("info", "success", "warning", "error")


def template_dirs() -> list[str]:
    return [str(PACKAGE / "templates"), *sorted(str(p) for p in PACKAGE.glob("*/templates"))]


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str


# Where an entry sits in the bar; within a section, entries keep the order the app
# collects them in (see ``PAGE_MODULES`` in app.py).
SECTIONS = ("patient", "desk", "clinical", "admin", "account", "dev")


@dataclass(frozen=True)
class NavEntry:
    """A link a domain puts in the navigation, shown to whoever may do ``action``.

    Each page module lists its own as ``NAV``; ``DEV_ONLY`` entries show on a
    developer's machine to everyone.
    """

    label: str
    href: str
    action: str
    section: str

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"unknown navigation section {self.section!r}")


SIGNED_OUT_NAV = (
    NavItem("Home", "/"),
    NavItem("Staff sign-in", "/sign-in"),
    NavItem("Patient sign-in", "/patient/sign-in"),
)


def form_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as ``{field name: reason}`` for the form macros."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "__all__"
        errors.setdefault(name, FRIENDLY.get(err["type"]) or clean_message(err["msg"]))
    return errors


# Pydantic's wording for these is meant for programmers; people filling a form get these.
FRIENDLY = {
    "literal_error": "choose one of the options",
    "missing": "is required",
    "date_from_datetime_parsing": "is not a date",
    "date_parsing": "is not a date",
    "int_parsing": "must be a whole number",
}


def clean_message(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


class Pages:
    """The template environment, the navigation and the signed flash cookie."""

    def __init__(
        self,
        flash_key: bytes,
        *,
        navigation: tuple[NavEntry, ...] = (),
        filters: Mapping[str, Callable[..., Any]] | None = None,
        dev: bool = False,
    ) -> None:
        self.env = Environment(
            loader=FileSystemLoader(template_dirs()),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["phone"] = phone_display
        self.env.filters["local"] = local_time
        self.env.filters["clock"] = clock_time
        self.env.filters["dayname"] = day_name
        self.env.filters.update(filters or {})
        self._flash_key = flash_key
        self.dev = dev
        self.navigation = sorted(navigation, key=lambda entry: SECTIONS.index(entry.section))

    def nav_items(self, request: Request) -> list[NavItem]:
        """The navigation for whoever is looking, from the permission table."""
        principal = getattr(request.state, "principal", None)
        role = principal.role if principal is not None and principal.active else None
        items = [] if role else list(SIGNED_OUT_NAV)
        for entry in self.navigation:
            if entry.action == DEV_ONLY:
                shown = self.dev
            else:
                shown = role is not None and allowed(role, entry.action)
            if shown:
                items.append(NavItem(entry.label, entry.href))
        return items

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        flashes = self._read_flashes(request)
        principal = getattr(request.state, "principal", None)
        values = {
            "request": request,
            "principal": principal,
            "csrf_token": csrf_for(request, principal),
            "nav": self.nav_items(request),
            "flashes": flashes,
            "errors": {},
            "values": {},
            **(context or {}),
        }
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code=status_code)
        if flashes:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def sign_flash(self, level: str, message: str) -> str:
        """The flash cookie's value: the message, signed so no one else can plant one.

        Set it with :func:`opdesk.web.pages.flash`.
        """
        body = base64.urlsafe_b64encode(json.dumps([[level, message]]).encode()).decode()
        mac = hmac.new(self._flash_key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def _read_flashes(self, request: Request) -> list[tuple[str, str]]:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw or "." not in raw:
            return []
        body, mac = raw.rsplit(".", 1)
        expected = hmac.new(self._flash_key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return []
        try:
            items = json.loads(base64.urlsafe_b64decode(body))
        except ValueError:
            return []
        return [
            (str(level), str(text))
            for level, text in items
            if level in FLASH_LEVELS and isinstance(text, str)
        ]


def csrf_for(request: Request, principal: Any) -> str | None:
    if principal is None or not principal.via_cookie:
        return None
    return csrf_token(request, principal)


def render_error(request: Request, status: int, title: str, detail: str) -> Response:
    return services(request).pages.render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        status_code=status,
    )
