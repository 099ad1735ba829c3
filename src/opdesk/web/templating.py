"""Jinja2 pages: layout, navigation, flash messages and the form-error pattern.

Templates live beside their domain (``opdesk/<domain>/templates/<domain>/...``) and
the shared layout in ``opdesk/templates``; one loader searches them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from opdesk.consents.models import LABELS as CONSENT_LABELS
from opdesk.security.permissions import allowed
from opdesk.validation import phone_display
from opdesk.web.deps import csrf_token

PACKAGE = Path(__file__).resolve().parent.parent
FLASH_COOKIE = "opdesk_flash"
FLASH_LEVELS = ("info", "success", "warning", "error")


def template_dirs() -> list[str]:
    return [str(PACKAGE / "templates"), *sorted(str(p) for p in PACKAGE.glob("*/templates"))]


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str


# (label, address, action needed); shown to whoever may do the action.
NAVIGATION: tuple[tuple[str, str, str], ...] = (
    ("My clinic", "/me", "portal:self"),
    ("My appointments", "/me/appointments", "portal:self"),
    ("Desk", "/app", "clinic:read"),
    ("Patients", "/patients", "patients:read"),
    ("Calendar", "/calendar", "appointments:read"),
    ("Queue", "/queue", "appointments:read"),
    ("Waitlist", "/waitlist", "appointments:read"),
    ("My queue", "/my-queue", "visits:read"),
    ("Users", "/admin/users", "users:read"),
    ("Devices", "/admin/devices", "devices:manage"),
    ("Sign-ins", "/admin/sign-ins", "audit:read"),
    ("Security", "/admin/security", "clinic:manage"),
    ("Consent texts", "/admin/consents", "clinic:manage"),
    ("Doctors", "/admin/doctors", "clinic:manage"),
    ("Account", "/account", "account:self"),
)


def nav_items(request: Request) -> list[NavItem]:
    """The navigation for whoever is looking, from the permission table."""
    principal = getattr(request.state, "principal", None)
    if principal is None or not principal.active:
        items = [NavItem("Home", "/"), NavItem("Staff sign-in", "/sign-in")]
        items.append(NavItem("Patient sign-in", "/patient/sign-in"))
    else:
        items = [
            NavItem(label, href)
            for label, href, action in NAVIGATION
            if allowed(principal.role, action)
        ]
    if request.app.state.settings.env == "dev":
        items.append(NavItem("Dev inbox", "/dev/inbox"))
    return items


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


def local_time(moment: datetime | None, timezone: str = "Asia/Kolkata") -> str:
    """A timestamp as the clinic reads it: ``25 Nov 2026, 3:04 pm``."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%d %b %Y, %-I:%M %p").replace("AM", "am").replace("PM", "pm")


def clock_time(moment: datetime | None, timezone: str = "Asia/Kolkata") -> str:
    """Only the time of day, as a clinic says it: ``9:15 am``."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%-I:%M %p").replace("AM", "am").replace("PM", "pm")


def day_name(day: date) -> str:
    """``Mon 7 Dec``."""
    return day.strftime("%a %-d %b")


def clean_message(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


class Pages:
    def __init__(self, flash_key: bytes) -> None:
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
        self.env.filters["consent_label"] = lambda t: CONSENT_LABELS.get(t, t)
        self._flash_key = flash_key

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
            "nav": nav_items(request),
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
    pages: Pages = request.app.state.pages
    return pages.render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        status_code=status,
    )
